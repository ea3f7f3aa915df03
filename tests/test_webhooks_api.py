"""The webhooks API against a real server: the official google-genai SDK's
`client.webhooks`, longops's own SDK, per-request `webhookConfig` on every route that
starts an operation, and hostile input (always a 400 naming the field, never a 500),
on SQLite and PostgreSQL.

Nothing here waits for a delivery (tests/test_webhooks_e2e.py does): the server's
workers are off unless a test needs an operation to run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import types as gt
from google.genai._interactions_errors import APIStatusError

from longops import Client, errors, types
from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.usefixtures("quiet_server")

KEY, OTHER_KEY = "KEY", "OTHER"
RECEIVER = "https://receiver.example/hooks"


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith(("GOOGLE_", "GEMINI_"))]:
        monkeypatch.delenv(var)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    return make_server(
        config=ServerConfig(api_keys={KEY: "acme", OTHER_KEY: "intruder"}), workers=0
    )


@pytest.fixture
def http(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"x-goog-api-key": KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def longops_client(server: ThreadServer) -> Iterator[Client]:
    with Client(KEY, base_url=server.url) as client:
        yield client


def official(server: ThreadServer, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=gt.HttpOptions(base_url=server.url))


def stored_webhook(server: ThreadServer, name: str) -> Any:
    """The per-request config as the operations row holds it, read from the database on
    the server's own loop (the column is no part of any answer)."""
    database = server.engine.store.database

    async def read() -> Any:
        return await database.read(
            lambda s: s.fetchrow("SELECT webhook FROM operations WHERE name = ?", name)
        )

    assert server.loop is not None
    (raw,) = asyncio.run_coroutine_threadsafe(read(), server.loop).result(30)
    return None if raw is None else database.dialect.load(raw)


def assert_bad(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = [v for d in error.get("details", []) for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == [field], error


# -- per-request webhookConfig ------------------------------------------------------------


async def test_webhook_config_reaches_the_operation_from_every_sdk_create(
    server: ThreadServer, twin: Any, tmp_path: Path
) -> None:
    sdk = twin(KEY, base_url=server.url)
    config = types.WebhookConfig(uris=[RECEIVER], user_metadata={"job": 7, "tags": ["a"]})
    expected = {"uris": [RECEIVER], "userMetadata": {"job": 7, "tags": ["a"]}}

    started = await sdk.operations.start("longops.sleep", {"seconds": 0}, webhook_config=config)
    assert stored_webhook(server, started.name) == expected

    # google-genai's own WebhookConfig in google-genai's own GenerateVideosConfig.
    video = await sdk.models.generate_videos(
        model="veo-2.0-generate-001",
        prompt="a lighthouse at dusk",
        config=gt.GenerateVideosConfig(
            duration_seconds=5,
            webhook_config=gt.WebhookConfig(
                uris=[RECEIVER], user_metadata={"job": 7, "tags": ["a"]}
            ),
        ),
    )
    assert stored_webhook(server, video.name) == expected

    store = await sdk.file_search_stores.create(config={"display_name": "notes"})
    assert store.name is not None
    imported = await sdk.file_search_stores.import_file(
        store=store.name,
        source={"uri": "https://example.com/a.txt"},
        config={"webhook_config": {"user_metadata": {"only": "metadata"}}},
    )
    assert stored_webhook(server, imported.name) == {
        "uris": [],
        "userMetadata": {"only": "metadata"},
    }

    path = tmp_path / "a.txt"
    path.write_text("lighthouses and volcanoes")
    uploaded = await sdk.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=str(path), config={"webhook_config": config}
    )
    assert stored_webhook(server, uploaded.name) == expected
    # Without one, nothing is stored.
    plain = await sdk.operations.start("longops.sleep", {"seconds": 0})
    assert stored_webhook(server, plain.name) is None


def test_webhook_config_on_the_wire(server: ThreadServer, http: httpx.Client) -> None:
    # Google's wire, raw: top-level camelCase, `user_metadata` inside tolerated.
    raw = http.post(
        "/v1beta/models/veo-2.0-generate-001:predictLongRunning",
        json={
            "instances": [{"prompt": "waves"}],
            "webhookConfig": {"uris": [RECEIVER, RECEIVER], "user_metadata": {"k": "v"}},
        },
    )
    assert raw.status_code == 200, raw.text
    assert stored_webhook(server, raw.json()["name"]) == {
        "uris": [RECEIVER],
        "userMetadata": {"k": "v"},
    }
    # proto-JSON's other spelling is read, not dropped; both at once are refused.
    snake = http.post(
        "/v1beta/models/veo-2.0-generate-001:predictLongRunning",
        json={"instances": [{"prompt": "waves"}], "webhook_config": {"uris": [RECEIVER]}},
    )
    assert stored_webhook(server, snake.json()["name"]) == {"uris": [RECEIVER], "userMetadata": {}}
    both = {"seconds": 0, "webhookConfig": {}, "webhook_config": {}}
    assert_bad(http.post("/v1beta/kinds/longops.sleep:start", json=both), "webhook_config")


BAD_CONFIGS: list[tuple[Any, str]] = [
    ("https://x", "webhookConfig"),
    ({"uris": "https://x"}, "webhookConfig.uris"),
    ({"uris": [f"https://x/{i}" for i in range(11)]}, "webhookConfig.uris"),
    ({"uris": ["ftp://x/y"]}, "webhookConfig.uris[0]"),
    ({"uris": ["https://ok", "https://u:p@x/"]}, "webhookConfig.uris[1]"),
    ({"uris": ["https://x/" + "a" * 2048]}, "webhookConfig.uris[0]"),
    ({"uris": ["https://x/\x00"]}, "webhookConfig.uris[0]"),
    ({"uris": ["https://[::1/"]}, "webhookConfig.uris[0]"),
    ({"uris": [7]}, "webhookConfig.uris[0]"),
    ({"userMetadata": ["not", "an", "object"]}, "webhookConfig.userMetadata"),
    ({"userMetadata": {"big": "x" * (16 << 10)}}, "webhookConfig.userMetadata"),
    ({"urls": ["https://x"]}, "webhookConfig.urls"),
]


def test_a_bad_webhook_config_is_a_400_naming_the_field(http: httpx.Client) -> None:
    creates: list[tuple[str, dict[str, Any]]] = [
        ("/v1beta/kinds/longops.sleep:start", {"seconds": 0}),
        (
            "/v1beta/models/veo-2.0-generate-001:predictLongRunning",
            {"instances": [{"prompt": "p"}]},
        ),
    ]
    for config, field in BAD_CONFIGS:
        for path, body in creates:
            assert_bad(http.post(path, json={**body, "webhookConfig": config}), field)


def test_a_bad_webhook_config_on_an_upload_start_is_refused(
    longops_client: Client, tmp_path: Path
) -> None:
    store = longops_client.file_search_stores.create()
    assert store.name is not None
    path = tmp_path / "a.txt"
    path.write_text("text")
    with pytest.raises(errors.ClientError) as refused:
        longops_client.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name,
            file=str(path),
            config={"webhook_config": {"uris": ["gopher://x"]}},
        )
    assert refused.value.code == 400
    assert "webhookConfig.uris[0]" in str(refused.value.details)


# -- the official SDK's client.webhooks -----------------------------------------------------


def events(*names: str) -> Any:
    """Event names for the official SDK, whose type lists only Google's (it sends others)."""
    return list(names)


def gaos_status(call: Callable[[], Any]) -> int:
    """The HTTP status of the official SDK's webhooks error (an APIStatusError,
    raised for every 4xx)."""
    with pytest.raises(APIStatusError) as raised:
        call()
    status = raised.value.status_code
    assert status is not None
    return status


def test_official_sdk_create_list_get_update_ping_rotate_delete(
    server: ThreadServer, longops_client: Client
) -> None:
    client = official(server)
    first = client.webhooks.create(
        subscribed_events=events("video.generated", "operation.failed"), uri=RECEIVER, name="first"
    )
    assert first.id and first.new_signing_secret and first.new_signing_secret.startswith("whsec_")
    assert first.state == "enabled" and first.name == "first" and first.uri == RECEIVER
    assert first.subscribed_events == ["video.generated", "operation.failed"]
    assert first.create_time is not None and first.create_time.tzinfo is not None
    assert [s.expire_time for s in first.signing_secrets or []] == [None]
    # The secret is shown once; afterwards only its truncation.
    got = client.webhooks.get(first.id)
    assert got.new_signing_secret is None
    (shown,) = got.signing_secrets or []
    assert shown.truncated_secret and first.new_signing_secret not in shown.truncated_secret

    others = [
        client.webhooks.create(
            subscribed_events=events("operation.succeeded"), uri=f"{RECEIVER}/{i}"
        )
        for i in range(2)
    ]
    seen: list[str] = []
    token = None
    for _ in range(4):
        page = client.webhooks.list(page_size=1, page_token=token)
        assert len(page.webhooks or []) <= 1
        seen += [w.id for w in page.webhooks or [] if w.id]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted([first.id, *(w.id for w in others if w.id)])
    assert len(client.webhooks.list().webhooks or []) == 3

    # With a mask, only the named fields change (the body's others are ignored).
    masked = client.webhooks.update(first.id, update_mask="state", state="disabled", name="x")
    assert (masked.state, masked.name) == ("disabled", "first")
    # Without one, the fields sent.
    changed = client.webhooks.update(
        first.id,
        uri="https://elsewhere.example/h",
        name="renamed",
        subscribed_events=events("operation.cancelled"),
    )
    assert (changed.uri, changed.name, changed.subscribed_events, changed.state) == (
        "https://elsewhere.example/h",
        "renamed",
        ["operation.cancelled"],
        "disabled",
    )
    both = client.webhooks.update(
        first.id, update_mask="state,subscribed_events", state="enabled",
        subscribed_events=["video.generated"],
    )  # fmt: skip
    assert (both.state, both.subscribed_events) == ("enabled", ["video.generated"])
    assert client.webhooks.get(first.id).update_time == both.update_time

    client.webhooks.ping(first.id)
    pings = list(longops_client.webhooks.list_deliveries(first.id))
    assert [d.event_type for d in pings] == ["webhook.ping"]
    assert pings[0].name == f"webhooks/{first.id}/deliveries/{pings[0].id}"

    rotated = client.webhooks.rotate_signing_secret(first.id)
    assert rotated.secret and rotated.secret.startswith("whsec_")
    assert rotated.secret != first.new_signing_secret
    secrets = client.webhooks.get(first.id).signing_secrets or []
    assert len(secrets) == 2
    assert secrets[0].expire_time is None  # the new one
    old_expiry = secrets[1].expire_time
    assert old_expiry is not None and both.update_time is not None
    assert 23 * 3600 < (old_expiry - both.update_time).total_seconds() < 25 * 3600
    client.webhooks.rotate_signing_secret(
        first.id, revocation_behavior="revoke_previous_secrets_immediately"
    )
    assert len(client.webhooks.get(first.id).signing_secrets or []) == 1

    client.webhooks.delete(first.id)
    gone = first.id
    assert gaos_status(lambda: client.webhooks.get(gone)) == 404
    assert gaos_status(lambda: client.webhooks.delete(gone)) == 404
    assert len(client.webhooks.list().webhooks or []) == 2


async def test_official_async_sdk(server: ThreadServer) -> None:
    client = official(server)
    made = await client.aio.webhooks.create(subscribed_events=events("video.failed"), uri=RECEIVER)
    assert made.id and made.new_signing_secret
    assert (await client.aio.webhooks.get(made.id)).uri == RECEIVER
    listed = await client.aio.webhooks.list()
    assert [w.id for w in listed.webhooks or []] == [made.id]
    updated = await client.aio.webhooks.update(made.id, update_mask="name", name="async")
    assert updated.name == "async"
    await client.aio.webhooks.ping(made.id)
    assert (await client.aio.webhooks.rotate_signing_secret(made.id)).secret
    await client.aio.webhooks.delete(made.id)
    assert (await client.aio.webhooks.list()).webhooks in (None, [])


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1beta1", "v1alpha"])
def test_every_api_version_serves_webhooks(http: httpx.Client, version: str) -> None:
    made = http.post(
        f"/{version}/webhooks", json={"uri": RECEIVER, "subscribed_events": ["video.generated"]}
    )
    assert made.status_code == 200, made.text
    id = made.json()["id"]
    assert http.get(f"/{version}/webhooks/{id}").json()["id"] == id
    assert http.get(f"/v2/webhooks/{id}").status_code == 404


def test_another_tenant_sees_nothing_and_reaches_nothing(
    server: ThreadServer, longops_client: Client, http: httpx.Client
) -> None:
    owner = official(server)
    mine = owner.webhooks.create(subscribed_events=["video.generated"], uri=RECEIVER)
    assert mine.id
    id = mine.id
    owner.webhooks.ping(id)
    (delivery,) = longops_client.webhooks.list_deliveries(id)
    assert delivery.id

    intruder = official(server, OTHER_KEY)
    assert intruder.webhooks.list().webhooks in (None, [])
    assert gaos_status(lambda: intruder.webhooks.get(id)) == 404
    assert gaos_status(lambda: intruder.webhooks.update(id, name="owned")) == 404
    assert gaos_status(lambda: intruder.webhooks.ping(id)) == 404
    assert gaos_status(lambda: intruder.webhooks.rotate_signing_secret(id)) == 404
    assert gaos_status(lambda: intruder.webhooks.delete(id)) == 404

    other = {"x-goog-api-key": OTHER_KEY}
    for method, path, body in [
        ("GET", f"/v1/webhooks/{mine.id}/deliveries", None),
        ("GET", f"/v1/webhooks/{mine.id}/deliveries/{delivery.id}", None),
        ("GET", f"/v1/webhookDeliveries/{delivery.id}", None),
        ("POST", f"/v1/webhooks/{mine.id}/deliveries/{delivery.id}:redeliver", {}),
        ("POST", f"/v1/webhookDeliveries/{delivery.id}:redeliver", {}),
        ("POST", f"/v1/webhooks/{mine.id}:redeliver", {"start_time": "2000-01-01T00:00:00Z"}),
    ]:
        answer = http.request(method, path, json=body, headers=other)
        assert answer.status_code == 404, (path, answer.text)
    assert http.get("/v1/webhookDeliveries", headers=other).json() == {"deliveries": []}
    ranged = http.post(
        "/v1/webhookDeliveries:redeliver",
        json={"start_time": "2000-01-01T00:00:00Z"},
        headers=other,
    )
    assert ranged.json() == {"redelivered_count": 0}
    # Untouched, and still the owner's.
    assert longops_client.webhooks.get(mine.id).name is None
    assert longops_client.webhooks.get_delivery(delivery.id).attempt_count == delivery.attempt_count
    assert httpx.get(f"{server.url}/v1/webhooks").status_code == 403  # no key at all


# -- longops's own SDK: the same calls, and the delivery log ---------------------------------


async def test_longops_sdk_webhooks_and_delivery_log(server: ThreadServer, twin: Any) -> None:
    sdk = twin(KEY, base_url=server.url)
    made = await sdk.webhooks.create(subscribed_events=events("operation.succeeded"), uri=RECEIVER)
    assert isinstance(made, types.Webhook)
    assert made.id and made.new_signing_secret and made.new_signing_secret.startswith("whsec_")
    assert (await sdk.webhooks.get(made.id)).new_signing_secret is None
    second = await sdk.webhooks.create(
        subscribed_events=["video.generated"], uri=f"{RECEIVER}/2", name="two"
    )
    pager = await sdk.webhooks.list(page_size=1)
    assert len(pager.page) == 1
    assert {w.id for w in await sdk.collect(pager)} == {made.id, second.id}
    updated = await sdk.webhooks.update(made.id, update_mask=["state"], state="disabled")
    assert updated.state == "disabled"
    assert isinstance(await sdk.webhooks.ping(made.id), types.WebhookPingResponse)
    rotated = await sdk.webhooks.rotate_signing_secret(made.id)
    assert rotated.secret and rotated.secret.startswith("whsec_")

    (delivery,) = await sdk.collect(await sdk.webhooks.list_deliveries(made.id))
    assert isinstance(delivery, types.WebhookDelivery)
    assert (delivery.event_type, delivery.webhook_id, delivery.uri) == (
        "webhook.ping",
        made.id,
        RECEIVER,
    )
    assert delivery.payload is not None and delivery.payload["type"] == "webhook.ping"
    assert [d.id for d in await sdk.collect(await sdk.webhooks.list_deliveries())] == [delivery.id]
    assert await sdk.collect(await sdk.webhooks.list_deliveries(second.id)) == []
    # Paged, newest first, each page bound to its listing.
    for _ in range(2):
        await sdk.webhooks.ping(second.id)
    paged = await sdk.webhooks.list_deliveries(second.id, page_size=1)
    assert len(paged.page) == 1 and paged.next_page_token
    newest = paged.page[0].id
    pinged = [d.id for d in await sdk.collect(paged)]
    assert len(set(pinged)) == 2 and pinged[0] == newest
    assert [d.id for d in await sdk.collect(await sdk.webhooks.list_deliveries())][2:] == [
        delivery.id
    ]
    elsewhere = await sdk.webhooks.list_deliveries(made.id, page_size=1)
    assert elsewhere.next_page_token is None
    for ref in (delivery, delivery.id, delivery.name):
        found = await sdk.webhooks.get_delivery(ref)
        assert found.id == delivery.id and found.attempts is not None
    again = await sdk.webhooks.redeliver(delivery)
    assert again.id == delivery.id
    # With no workers the ping is still pending, due anyway: a range sends again only
    # deliveries that were settled (tests/test_webhooks_e2e.py has those).
    since = datetime(2000, 1, 1, tzinfo=UTC)
    assert await sdk.webhooks.redeliver_range(made.id, start_time=since) == 0
    assert await sdk.webhooks.redeliver_range(start_time=datetime(2000, 1, 1)) == 0

    await sdk.webhooks.delete(made.id)
    with pytest.raises(errors.ClientError) as gone:
        await sdk.webhooks.get(made.id)
    assert gone.value.code == 404


def test_jwks_is_public_json(server: ThreadServer) -> None:
    answer = httpx.get(f"{server.url}/.well-known/jwks.json")
    assert answer.status_code == 200
    assert isinstance(answer.json()["keys"], list)


# -- hostile input: a 400 naming the field, never a 500 ---------------------------------------

GOOD = {"uri": RECEIVER, "subscribed_events": ["video.generated"]}


HOSTILE_CREATES: list[tuple[dict[str, Any], str]] = [
    ({**GOOD, "uri": "https://r.example/\x00"}, "uri"),
    ({**GOOD, "name": "a\x00b"}, "name"),
    ({**GOOD, "uri": "ftp://r.example/x"}, "uri"),
    ({**GOOD, "uri": "javascript:alert(1)"}, "uri"),
    ({**GOOD, "uri": "https://user:pw@r.example/x"}, "uri"),
    ({**GOOD, "uri": "https://r.example/" + "a" * 2048}, "uri"),
    ({**GOOD, "uri": "https://r.example:99999/"}, "uri"),
    ({**GOOD, "uri": 12}, "uri"),
    ({"subscribed_events": ["video.generated"]}, "uri"),
    ({**GOOD, "subscribed_events": []}, "subscribed_events"),
    ({**GOOD, "subscribed_events": "video.generated"}, "subscribed_events"),
    ({**GOOD, "subscribed_events": ["video.generated"] * 100}, "subscribed_events"),
    ({**GOOD, "subscribed_events": ["video.exploded"]}, "subscribed_events[0]"),
    ({**GOOD, "subscribed_events": [None]}, "subscribed_events[0]"),
    ({**GOOD, "name": "n" * 513}, "name"),
    ({**GOOD, "name": {"a": 1}}, "name"),
]


def test_hostile_create(http: httpx.Client) -> None:
    for body, field in HOSTILE_CREATES:
        assert_bad(http.post("/v1/webhooks", json=body), field)
    assert http.get("/v1/webhooks").json() == {"webhooks": []}


def test_hostile_bodies_queries_and_updates(http: httpx.Client) -> None:
    for raw in (b"[1, 2]", b'"text"', b"{not json", b"9" * 10_000):
        answer = http.post(
            "/v1/webhooks", content=raw, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    for size in ("9" * 10_000, "-1", "-" + "9" * 5000, "1e3", "2147483648", "NaN", " 1"):
        assert_bad(http.get("/v1/webhooks", params={"page_size": size}), "page_size")
        assert_bad(http.get("/v1/webhookDeliveries", params={"page_size": size}), "page_size")
    assert http.get("/v1/webhooks", params={"page_size": "2147483647"}).status_code == 200
    assert http.get("/v1/webhooks", params={"page_size": "0" * 5000 + "3"}).status_code == 200
    for token in ("garbage", "9" * 5000, "eyJhIjoiXHUwMDAwIiwicSI6IngifQ"):
        assert_bad(http.get("/v1/webhooks", params={"page_token": token}), "page_token")
    assert http.get("/v1/webhooks", params={"page_token": "a\x00"}).status_code == 400

    id = http.post("/v1/webhooks", json=GOOD).json()["id"]
    http.post("/v1/webhooks", json=GOOD)
    token = http.get("/v1/webhooks", params={"page_size": 1}).json()["next_page_token"]
    # A token continues the listing it came from, and no other, nor another tenant's.
    assert_bad(http.get("/v1/webhookDeliveries", params={"page_token": token}), "page_token")
    intruder = {"x-goog-api-key": OTHER_KEY}
    stolen = http.get("/v1/webhooks", params={"page_token": token}, headers=intruder)
    assert_bad(stolen, "page_token")
    path = f"/v1/webhooks/{id}"
    for params, body, field in [
        ({"update_mask": "state"}, {"state": "paused"}, "state"),
        ({"update_mask": "state"}, {"state": "disabled_due_to_failed_deliveries"}, "state"),
        ({"update_mask": "state"}, {}, "state"),
        ({"update_mask": "secret"}, {"secret": "x"}, "update_mask"),
        ({"update_mask": "uri"}, {}, "uri"),
        ({}, {"uri": "file:///etc/passwd"}, "uri"),
        ({}, {"subscribed_events": ["x"] * 100}, "subscribed_events"),
        ({}, {"name": 7}, "name"),
        ({}, {}, "update_mask"),
    ]:
        assert_bad(http.patch(path, params=params, json=body), field)
    assert_bad(
        http.post(f"{path}:rotateSigningSecret", json={"revocation_behavior": "never"}),
        "revocation_behavior",
    )
    for body, field in [
        ({}, "start_time"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": "9" * 10_000}, "start_time"),
        ({"start_time": 5}, "start_time"),
        ({"start_time": "2026-01-02T00:00:00Z", "end_time": "2026-01-01T00:00:00Z"}, "end_time"),
    ]:
        assert_bad(http.post(f"{path}:redeliver", json=body), field)
        assert_bad(http.post("/v1/webhookDeliveries:redeliver", json=body), field)
    assert_bad(http.get(f"{path}/deliveries", params={"operation": "x" * 2000}), "operation")
    # Ids that could never exist are simply not found, however odd.
    for odd in ("x" * 5000, "%F0%9D%94%98", "..", "a%00b"):
        answer = http.get(f"/v1/webhooks/{odd}")
        assert answer.status_code in (400, 404), answer.text
        assert http.get(f"/v1/webhookDeliveries/{odd}").status_code in (400, 404)
    # A custom method is no id: a GET of `:ping` is that route's 405.
    assert http.get(f"{path}:ping").status_code == 405
