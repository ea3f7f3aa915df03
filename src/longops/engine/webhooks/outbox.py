"""From the outbox to deliveries, and deliveries under a lease: the store side of sending.

An event row (written by the trigger in `schema.py`, in the same transaction as the
finish) is expanded, in one transaction, into one delivery per target, and deleted:
an event is expanded once, whichever process takes it (PostgreSQL: SKIP LOCKED). The
deliveries a process makes are leased to it at once, so it sends them without a
second write; any other delivery is claimed when due (`claim`), under a lease (owner
and expiry) that a process killed mid-send loses when it expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from longops.engine.ids import new_token_id
from longops.engine.store.database import Database, Session
from longops.engine.webhooks.checks import check_uri
from longops.engine.webhooks.events import (
    PING,
    VIDEO_KIND,
    event_types,
    payload,
    request_event_type,
)
from longops.engine.webhooks.records import DELIVERED, DISABLED_BY_FAILURES, FAILED, PENDING

_SENT_COLUMNS = "id, tenant, webhook_id, uri, event_type, payload, attempts, retry_until"


MAX_REQUEST_URIS = 10
"""The most URIs a per-request webhook is sent to (the API refuses more)."""


def _sendable(uri: object) -> bool:
    """A per-request URI a delivery can go to (the API checked it; other callers of
    `Engine.create` may not have)."""
    try:
        check_uri(uri)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Leased:
    """A delivery this process holds the lease on, ready to send."""

    id: str
    tenant: str
    webhook_id: str | None
    uri: str
    event_type: str
    body: bytes
    attempts: int
    """Attempts made before this one."""
    retry_until: float


def _leased(row: Any) -> Leased:
    body = row[5].encode() if isinstance(row[5], str) else bytes(row[5])
    return Leased(row[0], row[1], row[2], row[3], row[4], body, row[6], float(row[7]))


async def insert_delivery(
    s: Session,
    *,
    tenant: str,
    webhook_id: str | None,
    uri: str,
    payload: dict[str, Any],
    operation: str | None,
    now: float,
    retry_until: float,
    owner: str | None = None,
    lease_seconds: float = 0.0,
) -> Leased:
    """A new delivery, due now; leased to `owner` when given."""
    id = f"msg_{new_token_id(26)}"
    body = orjson.dumps(payload)
    await s.execute(
        "INSERT INTO webhook_deliveries (id, tenant, webhook_id, uri, event_type, operation,"
        " payload, state, create_time, retry_until, next_attempt_time, lease_owner,"
        " lease_expires) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
        id, tenant, webhook_id, uri, payload["type"], operation, body.decode(), now,
        retry_until, now, owner, None if owner is None else now + lease_seconds,
    )  # fmt: skip
    return Leased(id, tenant, webhook_id, uri, payload["type"], body, 0, retry_until)


async def expand(
    database: Database,
    *,
    owner: str,
    lease_seconds: float,
    retry_seconds: float,
    public_url: str,
    now: float,
    limit: int = 100,
) -> tuple[list[Leased], bool]:
    """Turn up to `limit` events into deliveries leased to `owner`: those deliveries, and
    whether events may be left."""
    dialect = database.dialect
    load = dialect.load

    async def body(s: Session) -> tuple[list[Leased], bool]:
        events = await s.fetch(
            "SELECT seq, operation_id, name, kind, tenant, state, error, webhook, time"
            f" FROM webhook_events ORDER BY seq LIMIT ?{dialect.skip_locked}",
            limit,
        )
        made: list[Leased] = []
        hooks: dict[str, list[Any]] = {}
        for _, operation_id, name, kind, tenant, state, error, webhook, ended in events:
            config = load(webhook) if webhook is not None else None
            config = config if isinstance(config, dict) else {}
            uris = [u for u in config.get("uris") or () if _sendable(u)][:MAX_REQUEST_URIS]
            metadata = config.get("userMetadata", config.get("user_metadata"))
            targets: list[tuple[str | None, str, str]]
            if uris:
                targets = [(None, uri, request_event_type(kind, state)) for uri in uris]
            else:
                if tenant not in hooks:
                    hooks[tenant] = await s.fetch(
                        "SELECT id, uri, events FROM webhooks"
                        " WHERE tenant = ? AND state = 'enabled' ORDER BY seq",
                        tenant,
                    )
                targets = [
                    (id, uri, event_type)
                    for id, uri, subscribed in hooks[tenant]
                    for event_type in event_types(kind, state)
                    if event_type in load(subscribed)
                ]
            if not targets:
                continue
            response = None
            if kind == VIDEO_KIND and state == "SUCCEEDED":
                row = await s.fetchrow("SELECT response FROM operations WHERE id = ?", operation_id)
                response = None if row is None or row[0] is None else load(row[0])
            for webhook_id, uri, event_type in targets:
                made.append(
                    await insert_delivery(
                        s,
                        tenant=tenant,
                        webhook_id=webhook_id,
                        uri=uri,
                        payload=payload(
                            event_type,
                            time=float(ended),
                            name=name,
                            kind=kind,
                            state=state,
                            error=None if error is None else load(error),
                            response=response,
                            user_metadata=metadata,
                            public_url=public_url,
                        ),
                        operation=name,
                        now=now,
                        retry_until=now + retry_seconds,
                        owner=owner,
                        lease_seconds=lease_seconds,
                    )
                )
        if events:
            await s.executemany(
                "DELETE FROM webhook_events WHERE seq = ?", [(e[0],) for e in events]
            )
        return made, len(events) == limit

    return await database.transaction(body)


async def claim(
    database: Database, *, owner: str, lease_seconds: float, now: float, limit: int
) -> list[Leased]:
    """Due deliveries nobody holds, leased to `owner` (PostgreSQL: concurrent claimers
    skip each other's rows, so no two take one)."""
    if limit <= 0:
        return []
    dialect = database.dialect
    free = "state = 'pending' AND (lease_expires IS NULL OR lease_expires < ?)"
    sql = (
        f"WITH picked AS {dialect.materialized} (SELECT seq FROM webhook_deliveries"
        f" WHERE {free} AND next_attempt_time <= ?"
        f" ORDER BY next_attempt_time LIMIT ?{dialect.skip_locked})"
        " UPDATE webhook_deliveries SET lease_owner = ?, lease_expires = ?"
        f" WHERE seq IN (SELECT seq FROM picked) AND {free}"
        f" RETURNING {_SENT_COLUMNS}"
    )
    found = await database.write(
        lambda s: s.fetch(sql, now, now, limit, owner, now + lease_seconds, now),
        durable=False,
    )
    return [_leased(row) for row in found]


async def renew(database: Database, id: str, owner: str, lease_seconds: float) -> bool:
    """Extend `owner`'s lease on delivery `id`; False when it is no longer `owner`'s."""
    changed = await database.write(
        lambda s: s.execute(
            "UPDATE webhook_deliveries SET lease_expires = ?"
            " WHERE id = ? AND lease_owner = ? AND state = 'pending'",
            time.time() + lease_seconds,
            id,
            owner,
        ),
        durable=False,
    )
    return changed > 0


async def release_dead(database: Database, is_dead: Callable[[str], bool]) -> int:
    """Hand back the leases of owners `is_dead` proves gone (a process killed on this
    host), so their deliveries are sent again now rather than when the lease ends."""
    found = await database.read(
        lambda s: s.fetch(
            "SELECT DISTINCT lease_owner FROM webhook_deliveries"
            " WHERE state = 'pending' AND lease_owner IS NOT NULL"
        )
    )
    dead = [row[0] for row in found if is_dead(row[0])]
    if not dead:
        return 0
    condition, owners = database.dialect.any_of("lease_owner", dead)
    return await database.write(
        lambda s: s.execute(
            "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires = NULL"
            f" WHERE state = 'pending' AND {condition}",
            *owners,
        )
    )


async def has_events(database: Database) -> bool:
    """Whether the outbox holds events (a read: idle rounds write nothing)."""
    row = await database.read(lambda s: s.fetchrow("SELECT 1 FROM webhook_events LIMIT 1"))
    return row is not None


async def next_due(database: Database, now: float) -> float | None:
    """When a pending delivery is next claimable: its next attempt, or its lease's
    expiry while someone holds it (None: nothing is pending)."""
    row = await database.read(
        lambda s: s.fetchrow(
            "SELECT min(CASE WHEN lease_expires > ? THEN lease_expires"
            " ELSE next_attempt_time END) FROM webhook_deliveries WHERE state = 'pending'",
            now,
        )
    )
    return None if row is None or row[0] is None else float(row[0])


async def target(
    database: Database, delivery: Leased, now: float
) -> tuple[str, str, list[str]] | None:
    """For a static webhook's delivery: its state, current URI and live secrets (newest
    first); None when the webhook is gone."""
    assert delivery.webhook_id is not None

    async def body(s: Session) -> tuple[str, str, list[str]] | None:
        row = await s.fetchrow(
            "SELECT state, uri FROM webhooks WHERE id = ? AND tenant = ?",
            delivery.webhook_id,
            delivery.tenant,
        )
        if row is None:
            return None
        secrets = await s.fetch(
            "SELECT secret FROM webhook_secrets WHERE webhook_id = ?"
            " AND (expire_time IS NULL OR expire_time > ?) ORDER BY create_time DESC",
            delivery.webhook_id,
            now,
        )
        return row[0], row[1], [r[0] for r in secrets]

    return await database.read(body)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    time: float
    status_code: int | None
    latency_seconds: float
    error: str | None
    next_attempt_time: float | None
    """None when settled: delivered, or given up."""
    delivered: bool
    disable: bool = False
    """The receiver asked for no more deliveries (410 Gone)."""


async def record(
    database: Database,
    delivery: Leased,
    outcome: Outcome,
    *,
    owner: str,
    uri: str,
    disable_after_failures: int,
    failing_seconds: float,
) -> None:
    """Log the attempt and settle the delivery, and keep its webhook's failure count:
    a success clears it; 410, a delivery given up, or `disable_after_failures` failed
    attempts in a row spanning `failing_seconds` disable the webhook."""
    state = DELIVERED if outcome.delivered else PENDING if outcome.next_attempt_time else FAILED

    async def body(s: Session) -> None:
        await s.execute(
            "INSERT INTO webhook_attempts (delivery_id, time, status_code, latency_seconds,"
            " error, next_attempt_time) VALUES (?, ?, ?, ?, ?, ?)",
            delivery.id, outcome.time, outcome.status_code, outcome.latency_seconds,
            outcome.error, outcome.next_attempt_time,
        )  # fmt: skip
        await s.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, uri = ?,"
            " next_attempt_time = ?, last_status = ?, last_error = ?,"
            " lease_owner = NULL, lease_expires = NULL WHERE id = ? AND lease_owner = ?",
            state, uri, outcome.next_attempt_time, outcome.status_code, outcome.error,
            delivery.id, owner,
        )  # fmt: skip
        if delivery.webhook_id is None or delivery.event_type == PING:
            return
        if outcome.delivered:
            await s.execute(
                "UPDATE webhooks SET failures = 0, failing_since = NULL"
                " WHERE id = ? AND failures > 0",
                delivery.webhook_id,
            )
            return
        given_up = outcome.disable or state == FAILED
        await s.execute(
            "UPDATE webhooks SET failures = failures + 1,"
            " failing_since = coalesce(failing_since, ?),"
            " state = CASE WHEN state = 'enabled' AND (?::boolean OR (?::int > 0"
            " AND failures + 1 >= ?::int"
            " AND ?::float8 - coalesce(failing_since, ?::float8) >= ?::float8))"
            " THEN ? ELSE state END"
            " WHERE id = ?",
            outcome.time, given_up, disable_after_failures, disable_after_failures,
            outcome.time, outcome.time, failing_seconds, DISABLED_BY_FAILURES,
            delivery.webhook_id,
        )  # fmt: skip

    await database.transaction(body)
