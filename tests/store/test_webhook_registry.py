"""The webhook registry (`engine/webhooks/registry.py`) on every backend: create, get,
list, update, delete and rotate, each tenant seeing only its own webhooks."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook

from longops.engine.store import Store
from longops.engine.webhooks import InvalidWebhook, TenantWebhooks, Webhooks
from longops.engine.webhooks.signing import standard_signature


@pytest.fixture
def hooks(store: Store) -> TenantWebhooks:
    return Webhooks.of(store.database).tenant("team-a")


async def test_create_gives_the_secret_once_and_get_shows_it_truncated(
    hooks: TenantWebhooks,
) -> None:
    record, secret = await hooks.create(
        uri="https://example.com/hook", events=["video.generated", "operation.failed"], name="n"
    )
    assert secret.startswith("whsec_")
    assert Webhook(secret)  # the Standard Webhooks format: it decodes
    assert (record.uri, record.events, record.name, record.state) == (
        "https://example.com/hook",
        ("video.generated", "operation.failed"),
        "n",
        "enabled",
    )
    assert len(record.secrets) == 1 and record.secrets[0].expire_time is None
    shown = record.secrets[0].truncated
    assert shown.startswith("whsec_") and secret not in shown and len(shown) < 16
    assert await hooks.get(record.id) == record


async def test_list_pages_newest_first(hooks: TenantWebhooks) -> None:
    made = [
        (
            await hooks.create(
                uri=f"https://example.com/{i}", events=["operation.succeeded"], name=None
            )
        )[0]
        for i in range(5)
    ]
    seen, token, pages = [], None, 0
    while True:
        page, token = await hooks.list(page_size=2, after=token)
        seen += [w.id for w in page]
        pages += 1
        if token is None:
            break
    assert seen == [w.id for w in reversed(made)]
    assert pages == 3


async def test_update_changes_only_the_fields_given(hooks: TenantWebhooks) -> None:
    record, _ = await hooks.create(
        uri="https://example.com/a", events=["video.generated"], name="x"
    )
    updated = await hooks.update(record.id, state="disabled")
    assert updated is not None
    assert (updated.state, updated.uri, updated.name) == ("disabled", record.uri, "x")
    updated = await hooks.update(
        record.id, uri="http://example.org/b", events=["operation.cancelled"], name="y"
    )
    assert updated is not None
    assert (updated.uri, updated.events, updated.name, updated.state) == (
        "http://example.org/b",
        ("operation.cancelled",),
        "y",
        "disabled",
    )
    assert await hooks.update("nope", name="z") is None


async def test_delete(hooks: TenantWebhooks) -> None:
    record, _ = await hooks.create(
        uri="https://example.com/a", events=["video.generated"], name=None
    )
    assert await hooks.delete(record.id)
    assert not await hooks.delete(record.id)
    assert await hooks.get(record.id) is None


async def test_rotation_keeps_the_old_secret_signing_for_a_day(hooks: TenantWebhooks) -> None:
    record, first = await hooks.create(
        uri="https://example.com/a", events=["video.generated"], name=None
    )
    rotated = await hooks.rotate(record.id, revoke_previous_immediately=False)
    assert rotated is not None
    after, second = rotated
    assert second != first
    assert [s.expire_time is None for s in after.secrets] == [True, False]
    expire = after.secrets[1].expire_time
    assert expire is not None and 23.9 * 3600 < expire - time.time() <= 24 * 3600
    # Both sign: a receiver holding either secret verifies the delivery.
    body, now = b'{"type":"video.generated"}', int(time.time())
    header = standard_signature([second, first], "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (first, second):
        Webhook(secret).verify(body, headers)
    revoked = await hooks.rotate(record.id, revoke_previous_immediately=True)
    assert revoked is not None
    assert [s.expire_time for s in revoked[0].secrets] == [None]


async def test_another_tenants_webhook_is_not_found(store: Store, hooks: TenantWebhooks) -> None:
    record, _ = await hooks.create(
        uri="https://example.com/a", events=["video.generated"], name=None
    )
    other = Webhooks.of(store.database).tenant("team-b")
    assert await other.get(record.id) is None
    assert await other.list(page_size=10, after=None) == ([], None)
    assert await other.update(record.id, state="disabled") is None
    assert await other.rotate(record.id, revoke_previous_immediately=True) is None
    assert not await other.ping(record.id)
    assert not await other.delete(record.id)
    assert (await hooks.get(record.id)) == record


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"uri": "ftp://example.com/x"}, "uri"),
        ({"uri": "https://user:pw@example.com/x"}, "uri"),
        ({"uri": "https://example.com/\x00"}, "uri"),
        ({"uri": "https://example.com/" + "a" * 3000}, "uri"),
        ({"uri": "https:///nohost"}, "uri"),
        ({"events": ["no.such"]}, "subscribed_events"),
        ({"events": []}, "subscribed_events"),
        ({"name": "a\x00b"}, "name"),
    ],
)
async def test_bad_fields_are_named(
    hooks: TenantWebhooks, fields: dict[str, object], field: str
) -> None:
    values: dict[str, object] = {
        "uri": "https://example.com/a",
        "events": ["video.generated"],
        "name": None,
    }
    with pytest.raises(InvalidWebhook) as raised:
        await hooks.create(**(values | fields))  # type: ignore[arg-type]
    assert raised.value.field == field


async def test_bad_page_tokens_and_states_are_named(hooks: TenantWebhooks) -> None:
    for token in ("x", "9" * 10_000, "-1", "0"):
        with pytest.raises(InvalidWebhook) as raised:
            await hooks.list(page_size=10, after=token)
        assert raised.value.field == "page_token"
    record, _ = await hooks.create(
        uri="https://example.com/a", events=["video.generated"], name=None
    )
    with pytest.raises(InvalidWebhook) as raised:
        await hooks.update(record.id, state="disabled_due_to_failed_deliveries")
    assert raised.value.field == "state"
