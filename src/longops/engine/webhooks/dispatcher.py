"""The sender that runs in every process running workers (`Worker.run` starts it).

It is woken at once when an operation ends in this process, when the change feed
hears of another process's commit, or when a ping or redelivery was queued here; it
also looks every `poll_seconds` (and when the next retry is due). Each round it
expands the outbox into deliveries leased to itself and claims due retries nobody
holds, then sends each in a task of its own: at most `concurrency` at once, and
`concurrency_per_endpoint` to one host. A process killed mid-send leaves its leases
to expire; another process (or this one restarted) sends those deliveries again, with
the same webhook-id, so a receiver that deduplicates by it sees each event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from longops.engine import metrics
from longops.engine.egress import EgressPolicy
from longops.engine.liveness import dead_here, owner_identity
from longops.engine.store import StoreBusy
from longops.engine.webhooks import keys, outbox
from longops.engine.webhooks.delivery import Answer, Sender, retry_delay
from longops.engine.webhooks.events import PING
from longops.engine.webhooks.records import ENABLED
from longops.engine.webhooks.registry import Webhooks
from longops.engine.webhooks.signing import jwt_signature, standard_signature

if TYPE_CHECKING:
    from longops.engine.engine import Engine

log = logging.getLogger("longops.webhooks")


class Dispatcher:
    def __init__(self, engine: Engine, policy: EgressPolicy | None = None) -> None:
        self.engine = engine
        self.database = engine.store.database
        self.webhooks = Webhooks.of(self.database)
        self.settings = self.webhooks.settings
        # Named as workers' leases are, so a process on this host that finds this
        # one dead takes its deliveries over at once (`engine/liveness.py`).
        self.owner = owner_identity()
        self._looked_for_dead = 0.0
        self._policy = policy or EgressPolicy.from_env()
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self._key: tuple[str, str] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; sends in flight are cancelled with it (their leases
        expire, and the deliveries are sent again)."""
        await self.webhooks.open()
        sender = Sender(self.settings, self._policy)
        unsubscribe = [self.engine.on_done(self.wake), self.webhooks.on_enqueue(self.wake)]
        delay = 0.05
        try:
            while True:
                self._wake.clear()
                try:
                    wait = await self._round(sender)
                    delay = 0.05
                except StoreBusy as exc:
                    log.warning("webhook dispatch interrupted (%s)", exc)
                    wait, delay = delay, min(delay * 2, 2.0)
                except Exception:
                    log.exception("webhook dispatch failed")
                    wait, delay = delay, min(delay * 2, 2.0)
                if wait > 0:
                    # Not wait_for: on Python 3.11 it loses a cancellation that comes
                    # as the event is set (a finish during shutdown), and never returns.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
        finally:
            for stop in unsubscribe:
                stop()
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)
            await sender.close()

    async def _round(self, sender: Sender) -> float:
        """Start what there is to send; how long to wait before the next round. Only
        reads unless there is something to do, so an idle dispatcher writes nothing."""
        settings = self.settings
        now = time.time()
        if now - self._looked_for_dead >= settings.poll_seconds:
            self._looked_for_dead = now
            if released := await outbox.release_dead(self.database, dead_here):
                log.warning("took over %d webhook deliveries from a dead process", released)
        more = await outbox.has_events(self.database)
        while more and len(self._sending) < settings.concurrency:
            made, more = await outbox.expand(
                self.database,
                owner=self.owner,
                lease_seconds=settings.lease_seconds,
                retry_seconds=settings.retry_hours * 3600,
                public_url=self.engine.config.public_url,
                now=now,
            )
            self._start(sender, made)
        free = settings.concurrency - len(self._sending)
        if free <= 0:
            return settings.poll_seconds
        due = await outbox.next_due(self.database, now)
        if due is not None and due <= now:
            claimed = await outbox.claim(
                self.database,
                owner=self.owner,
                lease_seconds=settings.lease_seconds,
                now=now,
                limit=free,
            )
            self._start(sender, claimed)
            if len(claimed) == free:
                return 0.0
            due = await outbox.next_due(self.database, time.time())
        if due is None:
            return settings.poll_seconds
        return min(max(due - time.time(), 0.001), settings.poll_seconds)

    def _start(self, sender: Sender, deliveries: list[outbox.Leased]) -> None:
        for delivery in deliveries:
            task = asyncio.create_task(self._send(sender, delivery, time.monotonic()))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a webhook delivery failed to be recorded", exc_info=error)
        self.wake()  # a slot is free

    async def _send(self, sender: Sender, delivery: outbox.Leased, claimed: float) -> None:
        uri = delivery.uri
        secrets: list[str] = []
        if delivery.webhook_id is not None:
            found = await outbox.target(self.database, delivery, time.time())
            if found is None:
                return  # the webhook was deleted, and its deliveries with it
            state, uri, secrets = found
            if state != ENABLED and delivery.event_type != PING:
                answer = Answer(None, 0.0, f"not sent: the webhook is {state}", final=True)
                await self._record(delivery, uri, answer)
                return
        elif self._key is None:
            self._key = await keys.signing_key(self.database)
        async with sender.slot(uri):
            # Waiting for a slot may have taken most of the lease: renew it first, or
            # leave the delivery to whoever took it over.
            late = time.monotonic() - claimed > self.settings.lease_seconds / 2
            if late and not await outbox.renew(
                self.database, delivery.id, self.owner, self.settings.lease_seconds
            ):
                return
            timestamp = int(time.time())
            headers = {"webhook-id": delivery.id, "webhook-timestamp": str(timestamp)}
            if delivery.webhook_id is not None:
                signature = standard_signature(secrets, delivery.id, timestamp, delivery.body)
            else:
                assert self._key is not None
                kid, pem = self._key
                signature = jwt_signature(
                    pem,
                    kid,
                    issuer=self.engine.config.public_url,
                    uri=uri,
                    id=delivery.id,
                    timestamp=timestamp,
                    body=delivery.body,
                )
            headers["webhook-signature"] = signature
            answer = await sender.post(uri, headers, delivery.body)
        await self._record(delivery, uri, answer)

    async def _record(self, delivery: outbox.Leased, uri: str, answer: Answer) -> None:
        settings = self.settings
        now = time.time()
        attempt = delivery.attempts + 1
        next_time: float | None = None
        if not (answer.delivered or answer.gone or answer.final):
            candidate = now + retry_delay(attempt, settings, answer.retry_after)
            if candidate <= delivery.retry_until:
                next_time = candidate
        if answer.delivered:
            outcome_label = "delivered"
        elif answer.refused:
            outcome_label = "refused"
        else:
            outcome_label = "retrying" if next_time is not None else "failed"
        metrics.WEBHOOK_DELIVERIES.labels(outcome_label).inc()
        metrics.WEBHOOK_DELIVERY_SECONDS.observe(answer.latency_seconds)
        await outbox.record(
            self.database,
            delivery,
            outbox.Outcome(
                time=now,
                status_code=answer.status_code,
                latency_seconds=answer.latency_seconds,
                error="HTTP 410: the receiver disabled this webhook"
                if answer.gone
                else answer.error,
                next_attempt_time=next_time,
                delivered=answer.delivered,
                disable=answer.gone,
            ),
            owner=self.owner,
            uri=uri,
            disable_after_failures=settings.disable_after_failures,
            failing_seconds=settings.retry_hours * 3600,
        )
