"""Concurrency keys and "where am I?" through a real server: every create takes a
`concurrencyKey` (hostile ones refused naming the field) and shows it in metadata; a
read of a PENDING operation says why it waits and how many of its kind are claimed
before it; `longops serve` and `longops worker` take the limits as flags and settings
(a malformed one is one line), and `longops ops get` shows the wait.

The servers in threads run no workers, so what they are sent stays PENDING; the limit
is held by a `longops serve` process whose one limited slot a long operation fills."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from longops import Client
from longops.types import GenerateVideosConfig, ImportFileConfig
from tests.support.servers import (
    Process,
    ThreadServer,
    free_port,
    run_longops,
    subprocess_env,
    wait_healthy,
)
from tests.support.twin import Twin
from tests.support.waiting import until_sync

START = "/v1beta/kinds/longops.sleep:start"
VEO = "veo-2.0-generate-001"


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(workers=0)


def _metadata(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    metadata: dict[str, Any] = answer.json()["metadata"]
    return metadata


async def test_the_sdk_sends_a_concurrency_key_on_every_create(
    api: Twin, server: ThreadServer
) -> None:
    """`concurrency_key=` on `operations.start`, and in the configs of a video
    generation, an import and an upload into a store, sync and async: each operation's
    metadata shows it, and a read of it says why it waits."""
    started = await api.operations.start("longops.sleep", {"seconds": 1}, concurrency_key="c-1")
    video = await api.models.generate_videos(
        model=VEO, prompt="a lighthouse", config=GenerateVideosConfig(concurrency_key="veo")
    )
    store = await api.file_search_stores.create()
    imported = await api.file_search_stores.import_file(
        store=store.name, file_name="files/notes", config=ImportFileConfig(concurrency_key="im")
    )
    uploaded = await api.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name,
        file=b"hello",
        config={"concurrency_key": "up", "mime_type": "text/plain"},
    )
    for operation, key in [(started, "c-1"), (video, "veo"), (imported, "im"), (uploaded, "up")]:
        assert (operation.metadata or {})["concurrencyKey"] == key
        read = await api.operations.get(operation.name)
        metadata = read.metadata or {}
        assert metadata["concurrencyKey"] == key
        assert (metadata["waitReason"], metadata["queuePosition"]) == ("queued", 0)


def test_a_read_of_a_pending_operation_says_why_it_waits_and_its_place(
    server: ThreadServer,
) -> None:
    url = f"{server.url}/v1beta"
    keys = ["k" * 128, "客户 42 ✓", None]
    bodies = [{"seconds": 1, "concurrency_key": keys[0]}, {"concurrencyKey": keys[1]}, {}]
    created = [httpx.post(f"{server.url}{START}", json=body) for body in bodies]
    for answer, key in zip(created, keys, strict=True):
        shown = _metadata(answer)
        assert shown.get("concurrencyKey") == key
        assert "waitReason" not in shown  # a create's answer: no extra read
    names = [answer.json()["name"] for answer in created]
    positions = [_metadata(httpx.get(f"{url}/{name}"))["queuePosition"] for name in names]
    assert positions == [0, 1, 2]
    assert {_metadata(httpx.get(f"{url}/{n}"))["waitReason"] for n in names} == {"queued"}
    # A listing shows no wait (one read per operation listed would cost too much).
    listed = httpx.get(f"{url}/operations").json()["operations"]
    assert len(listed) == 3 and not any("waitReason" in op["metadata"] for op in listed)
    # Once it is done, nothing waits.
    httpx.post(f"{url}/{names[0]}:cancel", json={})
    done = _metadata(httpx.get(f"{url}/{names[0]}"))
    assert done["state"] == "CANCELLED" and "waitReason" not in done
    assert _metadata(httpx.get(f"{url}/{names[2]}"))["queuePosition"] == 1
    # A delayed start says it is scheduled.
    later = httpx.post(f"{server.url}{START}", json={"scheduleDelay": "3600s"}).json()["name"]
    assert _metadata(httpx.get(f"{url}/{later}"))["waitReason"] == "scheduled"


def test_video_polls_say_why_a_generation_waits(server: ThreadServer) -> None:
    """Gemini's GET on the model's operation and Vertex's fetchPredictOperation."""
    body = {"instances": [{"prompt": "a lighthouse"}], "concurrencyKey": "veo"}
    gemini = httpx.post(f"{server.url}/v1beta/models/{VEO}:predictLongRunning", json=body)
    name = gemini.json()["name"]
    assert name.startswith(f"models/{VEO}/operations/")
    shown = _metadata(httpx.get(f"{server.url}/v1beta/{name}"))
    assert (shown["concurrencyKey"], shown["waitReason"], shown["queuePosition"]) == (
        "veo",
        "queued",
        0,
    )
    model = f"projects/p/locations/us-central1/publishers/google/models/{VEO}"
    vertex = httpx.post(f"{server.url}/v1/{model}:predictLongRunning", json=body)
    polled = httpx.post(
        f"{server.url}/v1/{model}:fetchPredictOperation",
        json={"operationName": vertex.json()["name"]},
    )
    assert (_metadata(polled)["waitReason"], _metadata(polled)["queuePosition"]) == ("queued", 1)


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"concurrencyKey": "a\x00b"}, "concurrencyKey"),
    ({"concurrencyKey": "k" * 129}, "concurrencyKey"),
    ({"concurrencyKey": 42}, "concurrencyKey"),
    ({"concurrencyKey": "line\nbreak"}, "concurrencyKey"),
    ({"concurrencyKey": "\x1b[31mred"}, "concurrencyKey"),
    ({"concurrencyKey": "\x85"}, "concurrencyKey"),
    ({"concurrencyKey": ""}, "concurrencyKey"),
    ({"concurrencyKey": ["k"]}, "concurrencyKey"),
    ({"concurrency_key": True}, "concurrencyKey"),
    ({"concurrencyKey": "a", "concurrency_key": "a"}, "concurrency_key"),
]


@pytest.mark.parametrize(("fields", "field"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_concurrency_keys_are_refused_naming_the_field(
    server: ThreadServer, fields: dict[str, Any], field: str
) -> None:
    answer = httpx.post(f"{server.url}{START}", json={"seconds": 1, **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert httpx.get(f"{server.url}/v1beta/operations").json().get("operations", []) == []


def test_every_creating_route_refuses_a_hostile_key(server: ThreadServer) -> None:
    store = httpx.post(f"{server.url}/v1beta/fileSearchStores", json={}).json()["name"]
    routes: list[tuple[str, dict[str, Any]]] = [
        (f"/v1beta/models/{VEO}:predictLongRunning", {"instances": [{"prompt": "a"}]}),
        (f"/v1beta/{store}:importFile", {"fileName": "files/notes"}),
        (
            f"/upload/v1beta/{store}:uploadToFileSearchStore",
            {"mimeType": "text/plain"},
        ),
    ]
    for path, body in routes:
        answer = httpx.post(
            f"{server.url}{path}",
            json={**body, "concurrencyKey": "tab\there"},
            headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
        )
        assert answer.status_code == 400, (path, answer.text)
        violation = answer.json()["error"]["details"][0]["fieldViolations"][0]
        assert violation["field"] == "concurrencyKey", path
    assert httpx.get(f"{server.url}/v1beta/operations").json().get("operations", []) == []


def test_serve_holds_a_kind_at_its_concurrency_flag_and_says_why_others_wait(
    database_url: str, tmp_path: Path
) -> None:
    """`--concurrency test.record=1` with four worker slots: one runs, the rest wait
    `concurrency_limited`, each with its place, as a read and `longops ops get` show;
    the start-up line names the limits (LONGOPS_RATE's too)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(
        ["serve", "--port", str(port), "--database", database_url, "--workers", "4",
         "--load", "tests.support.kinds", "--concurrency", "test.record=1"],
        subprocess_env({"LONGOPS_RATE": "test.flaky=30/m"}),
        tmp_path / "serve.log",
    ).start()  # fmt: skip
    try:
        _limited(server, url, tmp_path)
    finally:
        server.close()  # the one running is killed with it


def _limited(server: Process, url: str, tmp_path: Path) -> None:
    wait_healthy(url)
    banner = server.log.read_text()
    assert "limits: test.flaky rate=30/m, test.record concurrency=1)" in banner, banner
    journal = {"journal": str(tmp_path / "journal")}
    with Client(base_url=url) as client:
        blocker = client.operations.start("test.record", {**journal, "seconds": 600})
        until_sync(
            lambda: (client.operations.get(blocker.name).metadata or {})["state"] == "RUNNING",
            what="the first one runs",
        )
        waiting = [
            client.operations.start("test.record", journal, concurrency_key=f"c{i}")
            for i in range(2)
        ]
        shown = [client.operations.get(op.name).metadata or {} for op in waiting]
    assert [(m["state"], m["waitReason"], m["queuePosition"]) for m in shown] == [
        ("PENDING", "concurrency_limited", 0),
        ("PENDING", "concurrency_limited", 1),
    ]
    got = run_longops("ops", "get", waiting[1].name, env={"LONGOPS_BASE_URL": url})
    assert got.returncode == 0, got.stderr
    lines = [line.split(None, 1) for line in got.stdout.splitlines()[1:]]
    fields = {label: value.strip() for label, value in lines}
    assert fields["state"] == "PENDING (concurrency_limited, 1 ahead)"
    assert fields["concurrencyKey"] == "c1"
    as_json = run_longops("ops", "get", waiting[0].name, "--json", env={"LONGOPS_BASE_URL": url})
    assert json.loads(as_json.stdout)["metadata"]["waitReason"] == "concurrency_limited"


@pytest.mark.parametrize(
    ("command", "args", "env", "said"),
    [
        ("worker", ["--concurrency", "test.record"], {}, "'test.record' is not KIND=NUMBER"),
        ("serve", ["--rate", "test.record=fast"], {}, "'test.record=fast' is not KIND=NUMBER"),
        ("serve", ["--key-rate", "test.record=1/d"], {}, "is not KIND=NUMBER"),
        ("worker", [], {"LONGOPS_KEY_CONCURRENCY": "nope=1"}, "'nope' is not registered"),
    ],
)
def test_a_malformed_limit_is_one_line(
    database_url: str, command: str, args: list[str], env: dict[str, str], said: str
) -> None:
    answer = run_longops(
        command, "--database", database_url, "--load", "tests.support.kinds", *args, env=env
    )
    assert answer.returncode == 2, answer.stderr
    assert "Traceback" not in answer.stderr
    errors = [line for line in answer.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and said in errors[0], answer.stderr
