"""How deliveries are signed.

Static webhooks: Standard Webhooks (`webhook-signature: v1,<base64 HMAC-SHA256 of
id.timestamp.body>`), one signature per live `whsec_` secret, space-separated during a
rotation, so `standardwebhooks.Webhook(secret).verify(body, headers)` accepts a
delivery with either secret.

Per-request URIs have no secret of their own: their `webhook-signature` is an RS256
JWT signed by a key kept in the database (`keys.py`, published as a JWKS), as Google
signs its dynamic webhooks. Its claims bind it to this delivery: `aud` the URI, `jti`
the webhook-id, `webhook_timestamp` the header, `body_sha256` the body's digest.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import jwt
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
JWT_LIFETIME = 300
"""Seconds a per-request delivery's JWT is valid (Standard Webhooks' replay tolerance)."""


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes, as Standard Webhooks says."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def truncated(secret: str) -> str:
    """What the API shows of a secret after it was given out: enough to tell two apart."""
    body = secret.removeprefix(SECRET_PREFIX)
    return f"{SECRET_PREFIX}{body[:2]}…{body[-2:]}"


def standard_signature(secrets: list[str], id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,<sig>` for each secret, space-separated."""
    when = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    return " ".join(Webhook(secret).sign(id, when, text) for secret in secrets)


def jwt_signature(
    private_pem: str, kid: str, *, issuer: str, uri: str, id: str, timestamp: int, body: bytes
) -> str:
    """The RS256 JWT a per-request delivery carries as its `webhook-signature`."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": uri,
        "iat": timestamp,
        "exp": timestamp + JWT_LIFETIME,
        "jti": id,
        "webhook_timestamp": str(timestamp),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})
