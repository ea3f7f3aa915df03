"""The egress policy: which addresses outbound requests may reach, checked on real
connections to real local servers (redirects included)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import httpcore
import httpx
import pytest

from longops.engine.egress import EgressBackend, EgressPolicy, egress_client, is_internal
from tests.support.web import redirect, serving, text

TIMEOUT = httpx.Timeout(5)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1",
        "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1", "239.1.1.1",
        "255.255.255.255", "240.0.0.1", "fe80::1", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1",
    ],
)  # fmt: skip
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert is_internal(ip)
    assert not EgressPolicy().allows(ip)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().allows(ipaddress.ip_address(address))


def test_the_allow_list_takes_ranges_addresses_and_host_names() -> None:
    policy = EgressPolicy.parse(" 10.0.0.0/8, 127.0.0.2 ,files.internal., ")
    assert policy.allows(ipaddress.ip_address("10.20.30.40"))
    assert policy.allows(ipaddress.ip_address("::ffff:10.0.0.1"))  # the same host
    assert policy.allows(ipaddress.ip_address("127.0.0.2"))
    assert not policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert policy.allows_host("FILES.internal")
    with pytest.raises(ValueError, match="neither a CIDR range nor a host name"):
        EgressPolicy.parse("10.0.0.0/33")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "[::1]"])
async def test_loopback_in_any_spelling_is_never_connected_to(host: str) -> None:
    with serving("127.0.0.1", {"/": text(b"private")}) as web:
        port = web.url.rsplit(":", 1)[1]
        async with egress_client(EgressPolicy(), TIMEOUT) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://{host}:{port}/")
    assert web.hits == []


async def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_not_followed() -> None:
    with serving("127.0.0.1", {"/secret": text(b"private")}) as private:
        routes = {"/doc": text(b"public"), "/hop": redirect(f"{private.url}/secret")}
        with serving("127.0.0.2", routes) as public:
            policy = EgressPolicy.parse("127.0.0.2/32")
            async with egress_client(policy, TIMEOUT) as client:
                assert (await client.get(f"{public.url}/doc")).text == "public"
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"{public.url}/hop")
    assert public.hits == ["/doc", "/hop"]
    assert private.hits == []


class _Recording(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.hosts: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """No second lookup: a DNS server that answers differently the second time (DNS
    rebinding) never gets asked."""
    with serving("127.0.0.1", {"/": text(b"ok")}) as web:
        port = int(web.url.rsplit(":", 1)[1])
        recording = _Recording()
        backend = EgressBackend(EgressPolicy.parse("127.0.0.0/8,::1"), recording)
        async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
            answer = await pool.request("GET", f"http://localhost:{port}/")
    assert answer.status == 200
    assert recording.hosts and set(recording.hosts) <= {"127.0.0.1", "::1"}


async def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would connect on the client's behalf, past the address check."""
    with serving("127.0.0.1", {"/": text(b"proxied")}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        async with egress_client(EgressPolicy(), TIMEOUT) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/")
    assert proxy.hits == []
