"""API keys and tenants.

Without configured keys the server is open and every operation belongs to the
empty tenant. With keys, each key maps to a tenant and a caller only ever sees
its own tenant's operations; anything else is simply not found.

Keys arrive as Google clients send them: `x-goog-api-key`, `?key=`, or a bearer
token (Vertex clients), so one key serves both SDK modes. The answers copy
Google's: an unknown key is 400 API_KEY_INVALID, a missing one 403.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from longops.server.errors import ERROR_INFO, ErrorReply

DEFAULT_TENANT = "default"


def parse_api_keys(entries: Iterable[str]) -> dict[str, str]:
    """`KEY` or `TENANT=KEY` entries → {key: tenant}; bare keys share the default tenant."""
    keys: dict[str, str] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, key = entry.partition("=")
        if not sep:
            tenant, key = DEFAULT_TENANT, entry
        if not key or not tenant:
            raise ValueError(f"bad API key entry {entry!r}: expected KEY or TENANT=KEY")
        keys[key] = tenant
    return keys


def _invalid_key(reason: str) -> ErrorReply:
    return ErrorReply(
        400,
        "API key not valid. Please pass a valid API key.",
        details=[{"@type": ERROR_INFO, "reason": reason, "domain": "longops"}],
    )


class Authenticator:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    def tenant(self, request: Request) -> str:
        if not self.keys:
            return ""
        headers = request.headers
        key = headers.get("x-goog-api-key") or request.query_params.get("key")
        if key is not None:
            tenant = self.keys.get(key)
            if tenant is None:
                raise _invalid_key("API_KEY_INVALID")
            return tenant
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            tenant = self.keys.get(token.strip()) if scheme.lower() == "bearer" else None
            if tenant is None:
                raise ErrorReply(
                    401,
                    "Request had invalid authentication credentials.",
                    details=[{"@type": ERROR_INFO, "reason": "ACCESS_TOKEN_INVALID"}],
                    headers={"www-authenticate": "Bearer"},
                )
            return tenant
        raise ErrorReply(
            403,
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )
