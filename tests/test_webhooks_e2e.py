"""Webhooks end to end for videos: a real server (with its worker in-process) makes a
real video and a real HTTP receiver on a port gets the signed `video.generated`.

- A static webhook registered through the official google-genai SDK: its deliveries
  verify with the `standardwebhooks` package and the `whsec_` secret the create showed.
- Per-request `webhookConfig.uris`, sent by longops's SDK
  (`generate_videos(config={"webhook_config": ...})`; google-genai 3.6.1 refuses to send
  it) and as Google's raw JSON to `predictLongRunning`: verified with PyJWT's
  `PyJWKClient` against the server's `/.well-known/jwks.json`.

The server may post to 127.0.0.1 only because LONGOPS_EGRESS_ALLOW says so.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from google import genai
from google.genai import types as gt
from standardwebhooks import Webhook as StandardWebhook

from longops import Client, types
from longops.server import ServerConfig
from tests.support.receiver import Received, Receiver
from tests.support.servers import REPO, ThreadServer
from tests.support.waiting import until_sync
from tests.test_videos import settings

KEY = "KEY"
ONE_SECOND = {"duration_seconds": 1, "number_of_videos": 1}


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGOPS_EGRESS_ALLOW", "127.0.0.1/32")
    for var in [v for v in os.environ if v.startswith(("GOOGLE_", "GEMINI_"))]:
        monkeypatch.delenv(var)


@pytest.fixture
def server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    return make_server(config=ServerConfig(api_keys={KEY: "studio"}), videos=settings(tmp_path))


@pytest.fixture
def client(server: ThreadServer) -> Iterator[Client]:
    with Client(KEY, base_url=server.url) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def arrived(receiver: Receiver, count: int) -> list[Received]:
    until_sync(lambda: len(receiver.requests) >= count, what=f"{count} deliveries")
    return receiver.requests[:count]


def jwt_claims(server: ThreadServer, request: Received, audience: str) -> dict[str, Any]:
    """What a per-request receiver does: the key from the JWKS by the token's `kid`, the
    RS256 signature, the audience (its own URL), then the body's digest."""
    token = request.headers["webhook-signature"]
    keys = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json")
    claims: dict[str, Any] = jwt.decode(
        token, keys.get_signing_key_from_jwt(token), algorithms=["RS256"], audience=audience
    )
    assert claims["body_sha256"] == hashlib.sha256(request.body).hexdigest()
    assert claims["jti"] == request.id
    assert claims["webhook_timestamp"] == request.headers["webhook-timestamp"]
    return claims


def test_a_static_webhook_gets_a_signed_video_generated(
    server: ThreadServer, client: Client, receiver: Receiver
) -> None:
    google = genai.Client(api_key=KEY, http_options=gt.HttpOptions(base_url=server.url))
    events: Any = ["video.generated", "operation.succeeded"]
    made = google.webhooks.create(subscribed_events=events, uri=receiver.url, name="studio")
    assert made.id is not None and made.new_signing_secret is not None

    operation = client.models.generate_videos(
        model="veo-test",
        prompt="a paper boat on a pond",
        config={**ONE_SECOND, "webhook_config": {"user_metadata": {"order": 42}}},
    )
    requests = arrived(receiver, 2)
    verifier = StandardWebhook(made.new_signing_secret)
    payloads = [verifier.verify(r.body, r.headers) for r in requests]
    assert sorted(p["type"] for p in payloads) == ["operation.succeeded", "video.generated"]
    assert len({r.id for r in requests}) == 2  # one delivery per event type
    video_event = next(p for p in payloads if p["type"] == "video.generated")
    data = video_event["data"]
    assert (data["name"], data["state"], data["kind"]) == (
        operation.name,
        "SUCCEEDED",
        "generate_videos",
    )
    assert data["userMetadata"] == {"order": 42}
    # The payload is thin; its download address fetches the video itself.
    (video,) = data["videos"]
    clip = httpx.get(video["uri"], headers={"x-goog-api-key": KEY}, follow_redirects=True)
    assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"

    # The delivery log, for this webhook and this operation.
    until_sync(
        lambda: (
            {d.state for d in client.webhooks.list_deliveries(made.id, operation=operation)}
            == {"delivered"}
        ),
        what="both deliveries settled",
    )
    logged = list(client.webhooks.list_deliveries(made.id, operation=operation.name))
    assert {d.id for d in logged} == {r.id for r in requests}
    assert {d.event_type for d in logged} == {"video.generated", "operation.succeeded"}
    detail = client.webhooks.get_delivery(logged[0])
    assert detail.attempts is not None
    (attempt,) = detail.attempts
    assert attempt.status_code == 200 and attempt.error is None
    assert attempt.latency is not None and attempt.next_attempt_time is None
    assert detail.last_status_code == 200

    # Redelivered: the same webhook-id, and it still verifies.
    client.webhooks.redeliver(detail)
    (again,) = arrived(receiver, 3)[2:]
    assert again.id == detail.id
    assert verifier.verify(again.body, again.headers)["data"]["name"] == operation.name


def test_per_request_uris_get_a_jwt_signed_video_generated(
    server: ThreadServer, client: Client, receiver: Receiver
) -> None:
    with Receiver() as registered:
        google = genai.Client(api_key=KEY, http_options=gt.HttpOptions(base_url=server.url))
        events: Any = ["video.generated"]
        google.webhooks.create(subscribed_events=events, uri=registered.url)

        through_sdk = client.models.generate_videos(
            model="veo-test",
            prompt="a lighthouse at dusk",
            config=types.GenerateVideosConfig(
                duration_seconds=1,
                webhook_config=types.WebhookConfig(
                    uris=[receiver.url], user_metadata={"via": "sdk"}
                ),
            ),
        )
        raw = httpx.post(
            f"{server.url}/v1beta/models/veo-test:predictLongRunning",
            headers={"x-goog-api-key": KEY},
            json={
                "instances": [{"prompt": "waves at night"}],
                "parameters": {"durationSeconds": 1},
                "webhookConfig": {"uris": [receiver.url], "userMetadata": {"via": "raw"}},
            },
        )
        assert raw.status_code == 200, raw.text
        requests = arrived(receiver, 2)
        for name in (through_sdk.name, raw.json()["name"]):
            client.operations.wait(name, timeout=30)

    by_name = {orjson.loads(r.body)["data"]["name"]: r for r in requests}
    assert set(by_name) == {through_sdk.name, raw.json()["name"]}
    for name, via in ((through_sdk.name, "sdk"), (raw.json()["name"], "raw")):
        request = by_name[name]
        jwt_claims(server, request, receiver.url)
        payload = orjson.loads(request.body)
        # One event per per-request uri: the video one.
        assert payload["type"] == "video.generated"
        assert payload["data"]["userMetadata"] == {"via": via}
        assert len(payload["data"]["videos"]) == 1
        # A per-request delivery belongs to no webhook: the tenant-wide log has it.
        (logged,) = client.webhooks.list_deliveries(operation=name)
        assert logged.webhook_id is None and logged.id == request.id
        assert logged.name == f"webhookDeliveries/{request.id}"
    # The request's uris replaced the registered webhook for these operations.
    assert registered.requests == []


def test_the_readme_webhooks_section_runs_as_written(
    server: ThreadServer, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each Python block of the README's "Webhooks", in order, in one namespace, with the
    server's and the receivers' addresses for the examples' (and the test model)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Webhooks\n") : readme.index("\n## Configuration\n")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 6
    with Receiver() as per_request:
        replacements = {
            "http://127.0.0.1:8000": server.url,
            "https://hooks.example.com/longops": receiver.url,
            "https://hooks.example.com/veo": per_request.url,
            "veo-3.0-generate-001": "veo-test",
        }
        runnable = []
        for block in blocks:
            for example, real in replacements.items():
                block = block.replace(example, real)
            runnable.append(block)
        namespace: dict[str, Any] = {}
        register, manage, per_request_code, verify_static, verify_jwt, log = runnable
        exec(register, namespace)
        (ping,) = arrived(receiver, 1)
        exec(manage, namespace)
        assert "None, datetime" in capsys.readouterr().out
        exec(per_request_code, namespace)
        told = arrived(per_request, 2)
        exec(verify_static, namespace)
        exec(verify_jwt, namespace)
        check_static, check_jwt = namespace["verify_static"], namespace["verify_per_request"]
        assert check_static(ping.body, ping.headers, namespace["secret"])["type"] == "webhook.ping"
        events = sorted(check_jwt(r.body, r.headers, per_request.url)["type"] for r in told)
        assert events == ["operation.succeeded", "video.generated"]
        with pytest.raises(ValueError, match="not the one signed"):
            check_jwt(told[0].body + b" ", told[0].headers, per_request.url)

        client, video = namespace["client"], namespace["video"]
        until_sync(
            lambda: (
                [d.state for d in client.webhooks.list_deliveries(operation=video)] == ["delivered"]
            ),
            what="the video's delivery to be logged",
        )
        exec(log, namespace)
        printed = capsys.readouterr().out
        video_delivery = next(r for r in told if b"video.generated" in r.body)
        assert "webhook.ping" in printed  # the static webhook's log
        assert f"webhookDeliveries/{video_delivery.id}" in printed  # the video's
        assert ", 200, datetime.timedelta(" in printed  # its attempt
        (again,) = arrived(per_request, 3)[2:]  # redelivered
    assert again.id == video_delivery.id
    check_jwt(again.body, again.headers, per_request.url)
