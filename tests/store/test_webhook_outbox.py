"""The webhooks' outbox and deliveries on every backend: every way an operation ends
writes its event in the same transaction (and none when nobody listens), events expand
into one delivery per target, claims under a lease are disjoint, and the delivery log
answers per tenant."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from longops.engine import State
from longops.engine.store import Store
from longops.engine.webhooks import TenantWebhooks, Webhooks, outbox
from tests.store.records import ABANDONED, CANCELLED, FINAL, operation

PUBLIC_URL = "http://longops.test"


async def events(store: Store) -> list[tuple[Any, ...]]:
    found = await store.database.read(
        lambda s: s.fetch("SELECT operation_id, name, kind, tenant, state FROM webhook_events")
    )
    return [tuple(row) for row in found]


async def claimed_op(
    store: Store, *, webhook: dict[str, Any] | None = None, max_attempts: int = 3
) -> Any:
    new = operation(kind=f"k-{uuid.uuid4().hex}", max_attempts=max_attempts)
    new.webhook = webhook
    await store.create(new, 1.0)
    [claimed] = await store.claim([new.kind], "w", 30, 1, 2.0)
    return claimed


@pytest.fixture
async def hooks(store: Store) -> TenantWebhooks:
    webhooks = Webhooks.of(store.database)
    await webhooks.open()
    return webhooks.tenant("")


async def expand(store: Store, owner: str = "me") -> list[outbox.Leased]:
    made, _ = await outbox.expand(
        store.database, owner=owner, lease_seconds=30, retry_seconds=3600,
        public_url=PUBLIC_URL, now=time.time(),
    )  # fmt: skip
    return made


# -- the outbox ------------------------------------------------------------------------


async def test_nothing_is_written_when_nobody_listens(store: Store, hooks: TenantWebhooks) -> None:
    other = Webhooks.of(store.database).tenant("someone-else")
    await other.create(uri="https://example.com/x", events=["operation.succeeded"], name=None)
    op = await claimed_op(store)
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0)
    disabled, _ = await hooks.create(
        uri="https://example.com/x", events=["operation.succeeded"], name=None
    )
    await hooks.update(disabled.id, state="disabled")
    op = await claimed_op(store)
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0)
    assert await events(store) == []


async def test_every_way_an_operation_ends_writes_its_event(
    store: Store, hooks: TenantWebhooks
) -> None:
    await hooks.create(uri="https://example.com/x", events=["operation.succeeded"], name=None)
    finished = await claimed_op(store)
    await store.heartbeat("w", 30, 2.5)  # lease renewals and progress write no event
    await store.save_progress(finished.id, 1, {"p": 1}, 2.5)
    assert await events(store) == []
    assert await store.finish(finished.id, 1, State.SUCCEEDED, 3.0)
    failed = await claimed_op(store, max_attempts=1)
    assert await store.fail_attempt(failed.id, 1, 3.0, 3.0, FINAL) is State.FAILED
    retried = await claimed_op(store, max_attempts=2)
    assert await store.fail_attempt(retried.id, 1, 3.0, 3.0, FINAL) is State.PENDING
    pending, _ = await store.create(operation(), 1.0)
    await store.cancel(pending.id, 3.0, CANCELLED)
    abandoned = await claimed_op(store, max_attempts=1)
    recovered = await store.recover_expired(1e9, CANCELLED, ABANDONED)
    assert (abandoned.id, State.FAILED) in recovered
    written = {row[0]: row[4] for row in await events(store)}
    assert written == {
        finished.id: "SUCCEEDED",
        failed.id: "FAILED",
        pending.id: "CANCELLED",
        abandoned.id: "FAILED",
    }


async def test_a_per_request_webhook_writes_its_event_alone(
    store: Store, hooks: TenantWebhooks
) -> None:
    op = await claimed_op(
        store, webhook={"uris": ["https://example.com/r"], "userMetadata": {"a": 1}}
    )
    assert await store.finish(op.id, 1, State.FAILED, 3.0, error={"code": 13, "message": "m"})
    assert [row[0] for row in await events(store)] == [op.id]


# -- expanding events into deliveries ------------------------------------------------------


async def test_events_expand_once_into_one_delivery_per_subscribed_webhook_and_type(
    store: Store, hooks: TenantWebhooks
) -> None:
    both, _ = await hooks.create(
        uri="https://example.com/both",
        events=["operation.succeeded", "operation.failed"],
        name=None,
    )
    await hooks.create(uri="https://example.com/videos", events=["video.generated"], name=None)
    op = await claimed_op(store)
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0)
    made = await expand(store)
    assert [(d.webhook_id, d.uri, d.event_type) for d in made] == [
        (both.id, "https://example.com/both", "operation.succeeded")
    ]
    assert await expand(store) == []
    assert await events(store) == []
    [delivery] = made
    body = orjson.loads(delivery.body)
    assert body["type"] == "operation.succeeded"
    assert body["data"] == {"name": op.name, "kind": op.kind, "state": "SUCCEEDED"}
    assert body["timestamp"].endswith("Z")


async def test_per_request_uris_replace_the_tenants_webhooks(
    store: Store, hooks: TenantWebhooks
) -> None:
    await hooks.create(uri="https://example.com/static", events=["operation.failed"], name=None)
    op = await claimed_op(
        store,
        webhook={
            "uris": ["https://a.example/1", "https://b.example/2"],
            "userMetadata": {"k": "v"},
        },
    )
    assert await store.finish(op.id, 1, State.FAILED, 3.0, error={"code": 13, "message": "boom"})
    made = await expand(store)
    assert sorted((d.webhook_id, d.uri, d.event_type) for d in made) == [
        (None, "https://a.example/1", "operation.failed"),
        (None, "https://b.example/2", "operation.failed"),
    ]
    data = orjson.loads(made[0].body)["data"]
    assert data["userMetadata"] == {"k": "v"}
    assert data["error"] == {"code": 13, "message": "boom"}


async def test_a_video_fires_its_own_event_with_the_download_address(
    store: Store, hooks: TenantWebhooks
) -> None:
    await hooks.create(
        uri="https://example.com/v", events=["video.generated", "operation.succeeded"], name=None
    )
    new = operation(kind="generate_videos")
    await store.create(new, 1.0)
    [op] = await store.claim(["generate_videos"], "w", 30, 1, 2.0)
    sample = {"video": {"uri": "https://longops.test/v1beta/files/abc123:download?alt=media"}}
    response = {"generateVideoResponse": {"generatedSamples": [sample]}}
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0, response=response)
    made = await expand(store)
    bodies = [orjson.loads(d.body) for d in made]
    assert [b["type"] for b in bodies] == ["video.generated", "operation.succeeded"]
    download = f"{PUBLIC_URL}/v1beta/files/abc123:download?alt=media"
    assert all(b["data"]["videos"] == [{"uri": download}] for b in bodies)


# -- claims ------------------------------------------------------------------------------


async def test_two_claimers_take_disjoint_deliveries_and_an_expired_lease_is_taken_again(
    stores: Callable[[], Awaitable[Store]], store: Store, hooks: TenantWebhooks
) -> None:
    other = await stores()
    webhook, _ = await hooks.create(
        uri="https://example.com/x", events=["operation.succeeded"], name=None
    )
    for _ in range(40):
        await hooks.ping(webhook.id)
    now = time.time() + 1

    async def take(s: Store, owner: str) -> list[str]:
        taken: list[str] = []
        for _ in range(10):
            taken += [
                d.id
                for d in await outbox.claim(
                    s.database, owner=owner, lease_seconds=30, now=now, limit=3
                )
            ]
        return taken

    a, b = await asyncio.gather(take(store, "a"), take(other, "b"))
    assert not set(a) & set(b)
    assert len(a) + len(b) == 40
    assert await outbox.claim(store.database, owner="c", lease_seconds=30, now=now, limit=100) == []
    later = await outbox.claim(store.database, owner="c", lease_seconds=30, now=now + 31, limit=100)
    assert len(later) == 40  # nobody sent them within the lease: they are anyone's again


# -- the delivery log ----------------------------------------------------------------------


async def test_deliveries_are_listed_and_redelivered_per_tenant(
    store: Store, hooks: TenantWebhooks
) -> None:
    webhook, _ = await hooks.create(
        uri="https://example.com/x", events=["operation.succeeded"], name=None
    )
    op = await claimed_op(store)
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0)
    [made] = await expand(store)
    await outbox.record(
        store.database, made,
        outbox.Outcome(time.time(), 200, 0.01, None, None, delivered=True),
        owner="me", uri=made.uri, disable_after_failures=50, failing_seconds=86400,
    )  # fmt: skip
    page, token = await hooks.deliveries(operation=op.name, page_size=10, after=None)
    assert [(d.id, d.state, d.attempts, d.last_status) for d in page] == [
        (made.id, "delivered", 1, 200)
    ]
    assert token is None
    assert [
        d.id for d in (await hooks.deliveries(webhook_id=webhook.id, page_size=10, after=None))[0]
    ] == [made.id]
    found = await hooks.delivery(made.id)
    assert found is not None and [a.status_code for a in found.attempts_log] == [200]
    again = await hooks.redeliver(made.id)
    assert again is not None and (again.id, again.state) == (made.id, "pending")
    [retaken] = await outbox.claim(
        store.database, owner="me", lease_seconds=30, now=time.time() + 1, limit=10
    )
    assert retaken.id == made.id  # the same webhook-id
    other = Webhooks.of(store.database).tenant("team-b")
    assert await other.delivery(made.id) is None
    assert await other.redeliver(made.id) is None
    assert await other.deliveries(page_size=10, after=None) == ([], None)
    assert await other.redeliver_range(webhook_id=None, start=0, end=time.time() + 10) == 0


async def test_a_410_or_a_given_up_delivery_disables_the_webhook(
    store: Store, hooks: TenantWebhooks
) -> None:
    webhook, _ = await hooks.create(
        uri="https://example.com/x", events=["operation.succeeded"], name=None
    )
    await hooks.ping(webhook.id)  # pings never change the webhook's state
    op = await claimed_op(store)
    assert await store.finish(op.id, 1, State.SUCCEEDED, 3.0)
    [made] = await expand(store)
    await outbox.record(
        store.database, made,
        outbox.Outcome(time.time(), 410, 0.01, "HTTP 410", None, delivered=False, disable=True),
        owner="me", uri=made.uri, disable_after_failures=50, failing_seconds=86400,
    )  # fmt: skip
    found = await hooks.get(webhook.id)
    assert found is not None and found.state == "disabled_due_to_failed_deliveries"
    enabled = await hooks.update(webhook.id, state="enabled")
    assert enabled is not None and enabled.state == "enabled"


async def test_old_deliveries_are_purged(store: Store, hooks: TenantWebhooks) -> None:
    webhook, _ = await hooks.create(
        uri="https://example.com/x", events=["operation.succeeded"], name=None
    )
    await hooks.ping(webhook.id)
    [made] = await outbox.claim(
        store.database, owner="me", lease_seconds=30, now=time.time() + 1, limit=10
    )
    await outbox.record(
        store.database, made, outbox.Outcome(time.time(), 200, 0.01, None, None, delivered=True),
        owner="me", uri=made.uri, disable_after_failures=50, failing_seconds=86400,
    )  # fmt: skip
    webhooks = Webhooks.of(store.database)
    assert await webhooks.purge(time.time() - 3600) == 0
    assert await webhooks.purge(time.time() + 1) == 1
    assert await hooks.delivery(made.id) is None
