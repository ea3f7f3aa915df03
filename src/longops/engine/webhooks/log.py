"""The delivery log: each delivery with its attempts, looked up by webhook or operation,
sent again on request, and purged with the operations' retention."""

from __future__ import annotations

from typing import Any

import orjson

from longops.engine.store.database import Database, Row, Session
from longops.engine.webhooks.config import WebhookSettings
from longops.engine.webhooks.records import PENDING, AttemptRecord, DeliveryRecord

DELIVERY_COLUMNS = (
    "id, webhook_id, uri, event_type, operation, payload, state, attempts, create_time,"
    " next_attempt_time, last_status, last_error, seq"
)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def delivery_record(row: Row, attempts: tuple[AttemptRecord, ...] = ()) -> DeliveryRecord:
    return DeliveryRecord(
        id=row[0],
        webhook_id=row[1],
        uri=row[2],
        event_type=row[3],
        operation=row[4],
        payload=orjson.loads(row[5]),
        state=row[6],
        attempts=row[7],
        create_time=float(row[8]),
        next_attempt_time=_float(row[9]),
        last_status=row[10],
        last_error=row[11],
        attempts_log=attempts,
    )


async def deliveries(
    database: Database,
    tenant: str,
    *,
    webhook_id: str | None,
    operation: str | None,
    page_size: int,
    before: int,
) -> tuple[list[DeliveryRecord], str | None]:
    where, args = ["tenant = ?", "seq < ?"], [tenant, before]
    if webhook_id is not None:
        where.append("webhook_id = ?")
        args.append(webhook_id)
    if operation is not None:
        where.append("operation = ?")
        args.append(operation)
    found = await database.read(
        lambda s: s.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?",
            *args,
            page_size + 1,
        )
    )
    token = str(found[page_size - 1][12]) if len(found) > page_size else None
    return [delivery_record(row) for row in found[:page_size]], token


async def delivery(database: Database, tenant: str, id: str) -> DeliveryRecord | None:
    async def body(s: Session) -> DeliveryRecord | None:
        row = await s.fetchrow(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ? AND tenant = ?",
            id,
            tenant,
        )
        if row is None:
            return None
        attempts = await s.fetch(
            "SELECT time, status_code, latency_seconds, error, next_attempt_time"
            " FROM webhook_attempts WHERE delivery_id = ? ORDER BY seq",
            id,
        )
        return delivery_record(
            row,
            tuple(
                AttemptRecord(float(a[0]), a[1], float(a[2]), a[3], _float(a[4])) for a in attempts
            ),
        )

    return await database.read(body)


_REDELIVER = (
    "UPDATE webhook_deliveries SET state = 'pending', next_attempt_time = ?, retry_until = ?,"
    " lease_owner = NULL, lease_expires = NULL"
)


async def redeliver(
    database: Database, tenant: str, id: str, settings: WebhookSettings, now: float
) -> DeliveryRecord | None:
    """Due again now (its webhook-id stays; each attempt signs afresh). A delivery being
    sent right now is left to that send."""

    async def body(s: Session) -> DeliveryRecord | None:
        await s.execute(
            f"{_REDELIVER} WHERE id = ? AND tenant = ?"
            " AND (state <> 'pending' OR lease_expires IS NULL OR lease_expires < ?)",
            now, now + settings.retry_hours * 3600, id, tenant, now,
        )  # fmt: skip
        row = await s.fetchrow(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ? AND tenant = ?",
            id,
            tenant,
        )
        return None if row is None else delivery_record(row)

    return await database.transaction(body)


async def redeliver_range(
    database: Database,
    tenant: str,
    *,
    webhook_id: str | None,
    start: float,
    end: float,
    settings: WebhookSettings,
    now: float,
) -> int:
    """Every delivery of the tenant (of one webhook) made in [start, end) not pending now."""
    where, args = (
        ["tenant = ?", "create_time >= ?", "create_time < ?", f"state <> '{PENDING}'"],
        [
            tenant,
            start,
            end,
        ],
    )
    if webhook_id is not None:
        where.append("webhook_id = ?")
        args.append(webhook_id)
    return await database.write(
        lambda s: s.execute(
            f"{_REDELIVER} WHERE {' AND '.join(where)}",
            now,
            now + settings.retry_hours * 3600,
            *args,
        )
    )


async def purge(database: Database, before: float, batch: int) -> int:
    dialect = database.dialect
    sql = (
        f"WITH picked AS {dialect.materialized} (SELECT seq FROM webhook_deliveries"
        f" WHERE create_time < ? AND state <> 'pending' LIMIT ?{dialect.skip_locked})"
        " DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM picked)"
        " RETURNING id"
    )

    async def body(s: Session) -> int:
        gone = [r[0] for r in await s.fetch(sql, before, batch)]
        if gone:
            condition, ids = dialect.any_of("delivery_id", gone)
            await s.execute(f"DELETE FROM webhook_attempts WHERE {condition}", *ids)
        return len(gone)

    total = 0
    while True:
        count = await database.transaction(body)
        total += count
        if count < batch:
            return total
