"""The webhook registry: each tenant's webhooks and their signing secrets.

Like the file search index, these tables are a component's own in the engine's
database (`schema.py`), reached through `Webhooks.of(database).tenant(tenant)`, the one
way in: every statement names the tenant, so another tenant's webhook or delivery is
as absent as one never made.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from longops.engine.ids import new_token_id
from longops.engine.store.database import Database, Row, Session
from longops.engine.webhooks import log, outbox
from longops.engine.webhooks.checks import check_events, check_name, check_uri, page_token
from longops.engine.webhooks.config import WebhookSettings
from longops.engine.webhooks.events import ping_payload
from longops.engine.webhooks.records import (
    DISABLED,
    ENABLED,
    DeliveryRecord,
    InvalidWebhook,
    SigningSecret,
    WebhookRecord,
)
from longops.engine.webhooks.schema import MIGRATIONS
from longops.engine.webhooks.signing import new_secret, truncated

ROTATION_GRACE = 24 * 3600.0
"""How long a rotated secret keeps signing, unless revoked at once."""

_COLUMNS = "id, tenant, name, uri, events, state, create_time, update_time, seq"
_LIVE = "(expire_time IS NULL OR expire_time > ?)"

_registries: weakref.WeakKeyDictionary[Database, Webhooks] = weakref.WeakKeyDictionary()


class Webhooks:
    """The webhooks of one database (one object per database, so it is migrated once)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.settings = WebhookSettings.from_env()
        self._load = database.dialect.load
        self._opened = False
        self._opening = asyncio.Lock()
        self._listeners: set[Callable[[], None]] = set()

    @classmethod
    def of(cls, database: Database) -> Webhooks:
        found = _registries.get(database)
        if found is None:
            found = _registries[database] = cls(database)
        return found

    async def open(self) -> None:
        """Create or bring up to date the component's tables and trigger; the first call does it."""
        if self._opened:
            return
        async with self._opening:
            if not self._opened:
                await self.database.migrate("webhooks", MIGRATIONS[self.database.dialect.name])
                self._opened = True

    def tenant(self, tenant: str) -> TenantWebhooks:
        return TenantWebhooks(self, tenant)

    def on_enqueue(self, listener: Callable[[], None]) -> Callable[[], None]:
        """`listener()` is called when this process queued deliveries (a ping, a
        redelivery); a dispatcher in this process sends them at once."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def enqueued(self) -> None:
        for listener in list(self._listeners):
            listener()

    async def purge(self, before: float, batch: int = 1000) -> int:
        """Delete deliveries (and their attempts) made before `before` (retention)."""
        await self.open()
        return await log.purge(self.database, before, batch)


class TenantWebhooks:
    """One tenant's webhooks and deliveries."""

    def __init__(self, webhooks: Webhooks, tenant: str) -> None:
        self._webhooks = webhooks
        self._database = webhooks.database
        self._json = webhooks.database.dialect.json
        self.tenant = tenant

    def _record(self, row: Row, secrets: Sequence[Row]) -> WebhookRecord:
        return WebhookRecord(
            id=row[0],
            tenant=row[1],
            name=row[2],
            uri=row[3],
            events=tuple(self._webhooks._load(row[4])),
            state=row[5],
            create_time=float(row[6]),
            update_time=float(row[7]),
            secrets=tuple(
                SigningSecret(truncated(s[0]), None if s[1] is None else float(s[1]))
                for s in secrets
            ),
        )

    async def _read_one(self, s: Session, id: str, now: float) -> WebhookRecord | None:
        row = await s.fetchrow(
            f"SELECT {_COLUMNS} FROM webhooks WHERE id = ? AND tenant = ?", id, self.tenant
        )
        if row is None:
            return None
        secrets = await s.fetch(
            f"SELECT secret, expire_time FROM webhook_secrets WHERE webhook_id = ? AND {_LIVE}"
            " ORDER BY create_time DESC, expire_time DESC",
            id,
            now,
        )
        return self._record(row, secrets)

    # -- the registry ----------------------------------------------------------

    async def create(
        self, *, uri: str, events: Sequence[str], name: str | None
    ) -> tuple[WebhookRecord, str]:
        """A new enabled webhook and its first secret (shown this once)."""
        uri, subscribed, name = check_uri(uri), check_events(events), check_name(name)
        await self._webhooks.open()
        id, secret, now = new_token_id(), new_secret(), time.time()

        async def body(s: Session) -> WebhookRecord | None:
            await s.execute(
                "INSERT INTO webhooks (id, tenant, name, uri, events, state, create_time,"
                " update_time) VALUES (?, ?, ?, ?, ?::jsonb, ?, ?, ?)",
                id, self.tenant, name, uri, self._json(list(subscribed)), ENABLED, now, now,
            )  # fmt: skip
            await s.execute(
                "INSERT INTO webhook_secrets (webhook_id, secret, create_time) VALUES (?, ?, ?)",
                id,
                secret,
                now,
            )
            return await self._read_one(s, id, now)

        record = await self._database.transaction(body)
        assert record is not None
        return record, secret

    async def get(self, id: str) -> WebhookRecord | None:
        await self._webhooks.open()
        now = time.time()
        return await self._database.read(lambda s: self._read_one(s, id, now))

    async def list(
        self, *, page_size: int, after: str | None
    ) -> tuple[list[WebhookRecord], str | None]:
        """Newest first; the token names the last webhook of the page."""
        before = page_token(after)
        size = max(1, min(page_size, 1000))
        await self._webhooks.open()
        now = time.time()

        async def body(s: Session) -> tuple[list[Row], list[Row]]:
            found = await s.fetch(
                f"SELECT {_COLUMNS} FROM webhooks WHERE tenant = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                self.tenant,
                before,
                size + 1,
            )
            if not found:
                return found, []
            condition, ids = self._database.dialect.any_of("webhook_id", [r[0] for r in found])
            secrets = await s.fetch(
                f"SELECT webhook_id, secret, expire_time FROM webhook_secrets"
                f" WHERE {condition} AND {_LIVE} ORDER BY create_time DESC, expire_time DESC",
                *ids,
                now,
            )
            return found, secrets

        found, secrets = await self._database.read(body)
        page = [
            self._record(row, [(s[1], s[2]) for s in secrets if s[0] == row[0]])
            for row in found[:size]
        ]
        token = str(found[size - 1][8]) if len(found) > size else None
        return page, token

    async def update(
        self,
        id: str,
        *,
        uri: str | None = None,
        events: Sequence[str] | None = None,
        name: str | None = None,
        state: str | None = None,
    ) -> WebhookRecord | None:
        """Change the fields given; setting `enabled` again forgets past failures."""
        sets: list[str] = []
        args: list[Any] = []
        if uri is not None:
            sets.append("uri = ?")
            args.append(check_uri(uri))
        if events is not None:
            sets.append("events = ?::jsonb")
            args.append(self._json(list(check_events(events))))
        if name is not None:
            sets.append("name = ?")
            args.append(check_name(name))
        if state is not None:
            if state not in {ENABLED, DISABLED}:
                raise InvalidWebhook("state", f"must be {ENABLED!r} or {DISABLED!r}")
            sets.append("state = ?")
            args.append(state)
            if state == ENABLED:
                sets.append("failures = 0, failing_since = NULL")
        await self._webhooks.open()
        now = time.time()

        async def body(s: Session) -> WebhookRecord | None:
            if sets:
                await s.execute(
                    f"UPDATE webhooks SET {', '.join(sets)}, update_time = ?"
                    " WHERE id = ? AND tenant = ?",
                    *args,
                    now,
                    id,
                    self.tenant,
                )
            return await self._read_one(s, id, now)

        return await self._database.transaction(body)

    async def delete(self, id: str) -> bool:
        """The webhook, its secrets and its deliveries."""
        await self._webhooks.open()

        async def body(s: Session) -> bool:
            gone = await s.execute(
                "DELETE FROM webhooks WHERE id = ? AND tenant = ?", id, self.tenant
            )
            if gone:
                await s.execute("DELETE FROM webhook_secrets WHERE webhook_id = ?", id)
                await s.execute(
                    "DELETE FROM webhook_attempts WHERE delivery_id IN"
                    " (SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND tenant = ?)",
                    id,
                    self.tenant,
                )
                await s.execute(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND tenant = ?",
                    id,
                    self.tenant,
                )
            return gone > 0

        return await self._database.transaction(body)

    async def rotate(
        self, id: str, *, revoke_previous_immediately: bool
    ) -> tuple[WebhookRecord, str] | None:
        """A new secret; the previous ones keep signing for 24 hours (or stop now)."""
        await self._webhooks.open()
        secret, now = new_secret(), time.time()
        expire = now if revoke_previous_immediately else now + ROTATION_GRACE

        async def body(s: Session) -> WebhookRecord | None:
            found = await s.fetchrow(
                "SELECT id FROM webhooks WHERE id = ? AND tenant = ?"
                + self._database.dialect.for_update,
                id,
                self.tenant,
            )
            if found is None:
                return None
            await s.execute(
                "DELETE FROM webhook_secrets WHERE webhook_id = ? AND expire_time <= ?", id, now
            )
            await s.execute(
                "UPDATE webhook_secrets SET expire_time = ? WHERE webhook_id = ?"
                " AND (expire_time IS NULL OR expire_time > ?)",
                expire,
                id,
                expire,
            )
            await s.execute(
                "INSERT INTO webhook_secrets (webhook_id, secret, create_time) VALUES (?, ?, ?)",
                id,
                secret,
                now,
            )
            await s.execute("UPDATE webhooks SET update_time = ? WHERE id = ?", now, id)
            return await self._read_one(s, id, now)  # a secret expiring now is not live

        record = await self._database.transaction(body)
        return None if record is None else (record, secret)

    async def ping(self, id: str) -> bool:
        """Queue a `webhook.ping` delivery to the webhook; False if the tenant has none."""
        await self._webhooks.open()
        settings = self._webhooks.settings
        now = time.time()

        async def body(s: Session) -> bool:
            row = await s.fetchrow(
                "SELECT uri FROM webhooks WHERE id = ? AND tenant = ?", id, self.tenant
            )
            if row is None:
                return False
            await outbox.insert_delivery(
                s,
                tenant=self.tenant,
                webhook_id=id,
                uri=row[0],
                payload=ping_payload(id, now),
                operation=None,
                now=now,
                retry_until=now + settings.retry_hours * 3600,
            )
            return True

        queued = await self._database.transaction(body)
        if queued:
            self._webhooks.enqueued()
        return queued

    # -- the delivery log --------------------------------------------------------

    async def deliveries(
        self,
        *,
        webhook_id: str | None = None,
        operation: str | None = None,
        page_size: int,
        after: str | None,
    ) -> tuple[builtins.list[DeliveryRecord], str | None]:
        """Newest first, of one webhook, one operation (its name), or all the tenant's."""
        before = page_token(after)
        await self._webhooks.open()
        return await log.deliveries(
            self._database,
            self.tenant,
            webhook_id=webhook_id,
            operation=operation,
            page_size=max(1, min(page_size, 1000)),
            before=before,
        )

    async def delivery(self, id: str) -> DeliveryRecord | None:
        """One delivery with every attempt made at it."""
        await self._webhooks.open()
        return await log.delivery(self._database, self.tenant, id)

    async def redeliver(self, id: str) -> DeliveryRecord | None:
        """Send a delivery again (same webhook-id, fresh timestamp and signature)."""
        await self._webhooks.open()
        record = await log.redeliver(
            self._database, self.tenant, id, self._webhooks.settings, time.time()
        )
        if record is not None:
            self._webhooks.enqueued()
        return record

    async def redeliver_range(self, *, webhook_id: str | None, start: float, end: float) -> int:
        """Send again every delivery made in [start, end) (of one webhook, or all)."""
        await self._webhooks.open()
        count = await log.redeliver_range(
            self._database,
            self.tenant,
            webhook_id=webhook_id,
            start=start,
            end=end,
            settings=self._webhooks.settings,
            now=time.time(),
        )
        if count:
            self._webhooks.enqueued()
        return count
