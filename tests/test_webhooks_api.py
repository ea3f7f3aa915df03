"""The webhooks API against a real server: the official google-genai SDK's
`client.webhooks`, longops's own SDK, per-request `webhookConfig` on every route that
starts an operation, and hostile input (always a 400 naming the field, never a 500).

Nothing here waits for a delivery (tests/test_webhooks_e2e.py does): the server's
workers are off unless a test needs an operation to run.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import types as gt

from longops import Client, errors, types
from longops.server import ServerConfig
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.usefixtures("quiet_server")

KEY, OTHER_KEY = "KEY", "OTHER"
RECEIVER = "https://receiver.example/hooks"


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith(("GOOGLE_", "GEMINI_"))]:
        monkeypatch.delenv(var)


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
    """The per-request config as the operations row holds it, read from the SQLite file."""
    path = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (raw,) = db.execute("SELECT webhook FROM operations WHERE name = ?", (name,)).fetchone()
    return None if raw is None else orjson.loads(raw)


def assert_bad(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = [v for d in error.get("details", []) for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == [field], error


# -- per-request webhookConfig ------------------------------------------------------------


def test_webhook_config_reaches_the_operation_from_every_create(
    server: ThreadServer, longops_client: Client, http: httpx.Client, tmp_path: Path
) -> None:
    config = types.WebhookConfig(uris=[RECEIVER], user_metadata={"job": 7, "tags": ["a"]})
    expected = {"uris": [RECEIVER], "userMetadata": {"job": 7, "tags": ["a"]}}

    started = longops_client.operations.start(
        "longops.sleep", {"seconds": 0}, webhook_config=config
    )
    assert stored_webhook(server, started.name) == expected

    # google-genai's own WebhookConfig in google-genai's own GenerateVideosConfig.
    video = longops_client.models.generate_videos(
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

    store = longops_client.file_search_stores.create(config={"display_name": "notes"})
    assert store.name is not None
    imported = longops_client.file_search_stores.import_file(
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
    uploaded = longops_client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=str(path), config={"webhook_config": config}
    )
    assert stored_webhook(server, uploaded.name) == expected

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
    # Without one, nothing is stored.
    plain = longops_client.operations.start("longops.sleep", {"seconds": 0})
    assert stored_webhook(server, plain.name) is None


@pytest.mark.parametrize(
    ("config", "field"),
    [
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
    ],
)
def test_a_bad_webhook_config_is_a_400_naming_the_field(
    http: httpx.Client, config: Any, field: str
) -> None:
    creates: list[tuple[str, dict[str, Any]]] = [
        ("/v1beta/kinds/longops.sleep:start", {"seconds": 0}),
        (
            "/v1beta/models/veo-2.0-generate-001:predictLongRunning",
            {"instances": [{"prompt": "p"}]},
        ),
    ]
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
