"""Outbound HTTP to addresses that clients name (imports; webhooks later), kept off the
server's own network.

A client that may make the server fetch a URL could otherwise make it read its own
`/healthz`, a cloud metadata service or any internal host, and tell open ports from
closed ones by the errors. So connections go through `EgressBackend`, which resolves
each host name itself, refuses it when any of its addresses is internal (loopback,
private, link-local, multicast, reserved, unspecified, or one of those embedded in an
IPv6 address), and connects to the address it checked: there is no second lookup for
a rebinding DNS server to answer differently, and every redirect opens its connection
through the same check. TLS still verifies the host name.

Operators who must reach some internal hosts list them in `LONGOPS_EGRESS_ALLOW`:
comma-separated CIDR ranges (`10.0.0.0/8`) and host names (`files.internal`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpcore
import httpx

__all__ = ["EGRESS_ALLOW", "EgressBackend", "EgressPolicy", "EgressRefused", "egress_client"]

EGRESS_ALLOW = "LONGOPS_EGRESS_ALLOW"
MAX_REDIRECTS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("longops.egress")

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressRefused(httpcore.ConnectError):
    """The policy refuses every address a host resolved to. httpx reports it as an
    `httpx.ConnectError`, like a closed port: callers must not tell the two apart."""


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo), or itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def is_internal(address: IPAddress) -> bool:
    """Whether `address` may reach this machine or its private network."""
    inner = _embedded(address)
    return any(
        (
            not inner.is_global,
            inner.is_private,
            inner.is_loopback,
            inner.is_link_local,
            inner.is_multicast,
            inner.is_reserved,
            inner.is_unspecified,
        )
    )


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Which addresses outbound requests may reach: every public one, plus what the
    operator allows."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> EgressPolicy:
        """`10.0.0.0/8, 127.0.0.1, files.internal`: ranges, addresses and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                if "/" in item or not item.replace("-", "").replace(".", "").isalnum():
                    raise ValueError(
                        f"{EGRESS_ALLOW}: {item} is neither a CIDR range nor a host name"
                    ) from None
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EgressPolicy:
        return cls.parse(environ.get(EGRESS_ALLOW, ""))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def allows(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed_networks):
            return True
        inner = _embedded(address)
        if inner is not address and any(inner in network for network in self.allowed_networks):
            return True
        return not is_internal(address)


class EgressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `policy` allows."""

    def __init__(
        self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}") from exc
        addresses: list[IPAddress] = []
        for _, _, _, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port)
        if not self.policy.allows_host(host):
            refused = [a for a in addresses if not self.policy.allows(a)]
            if refused or not addresses:
                # Any internal address refuses the host: a name that resolves to a public
                # and a private address must not reach the private one on a retry.
                log.warning("egress refused: %s resolves to internal %s", host, refused[0])
                raise EgressRefused(f"egress to {host} refused")
        last: Exception | None = None
        for address in addresses:  # each one as checked: no second lookup
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def egress_client(policy: EgressPolicy, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An httpx client whose every connection, redirects included, obeys `policy`; it
    ignores proxy settings in the environment (a proxy would connect on its behalf)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool is rebuilt with one (the settings httpx
    # would give it, from an empty configuration).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=EgressBackend(policy),
    )
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=timeout,
    )
