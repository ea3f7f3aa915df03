"""The RSA key pairs that sign per-request deliveries, kept in the database so every
process signs with a key the JWKS publishes (`GET /.well-known/jwks.json`).

The first process to need one makes it; two processes doing so at once each insert
their own, which is harmless: both are published, each JWT names its key by `kid`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from longops.engine.ids import new_token_id
from longops.engine.store.database import Database


def _new_key() -> tuple[str, str, str]:
    """A new key: its id, its private key in PEM, its public JWK as JSON."""
    kid = new_token_id(16)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public.update(kid=kid, use="sig", alg="RS256")
    return kid, pem, json.dumps(public)


async def signing_key(database: Database) -> tuple[str, str]:
    """The newest key's id and private PEM, made if there is none."""
    from longops.engine.webhooks.registry import Webhooks

    await Webhooks.of(database).open()
    select = "SELECT kid, private_pem FROM longops_signing_keys ORDER BY create_time DESC LIMIT 1"
    row = await database.read(lambda s: s.fetchrow(select))
    if row is None:
        kid, pem, public = _new_key()
        await database.write(
            lambda s: s.execute(
                "INSERT INTO longops_signing_keys (kid, private_pem, public_jwk, create_time)"
                " VALUES (?, ?, ?, ?)",
                kid,
                pem,
                public,
                time.time(),
            )
        )
        row = await database.read(lambda s: s.fetchrow(select))
        assert row is not None
    return row[0], row[1]


async def jwks(database: Database) -> dict[str, Any]:
    """The JSON Web Key Set of every signing key: public halves only."""
    await signing_key(database)  # a receiver may fetch it before the first delivery
    found = await database.read(
        lambda s: s.fetch("SELECT public_jwk FROM longops_signing_keys ORDER BY create_time")
    )
    return {"keys": [json.loads(row[0]) for row in found]}
