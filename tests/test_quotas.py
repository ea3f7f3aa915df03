"""Tenant quotas through a real server: above a tenant's unfinished or per-minute quota a
create is refused with 429 RESOURCE_EXHAUSTED (QuotaFailure, RetryInfo, Retry-After) and
other tenants are unaffected; the longops SDK waits as told and succeeds once there is
room; the official SDK sees a ClientError 429 with the details; a malformed setting
stops `longops serve` with one line."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from longops import Client
from longops.engine.quotas import Quota, Quotas
from longops.errors import ClientError
from longops.server import ServerConfig
from longops.types import HttpOptions, RetryOptions
from tests.support.postgres import database
from tests.support.servers import ThreadServer, subprocess_env
from tests.test_videos import settings as video_settings

KEYS = {"KEY_A": "team-a", "KEY_B": "team-b"}
A, B = {"x-goog-api-key": "KEY_A"}, {"x-goog-api-key": "KEY_B"}
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
SLEEP = {"seconds": 3600}


def quota_server(
    make_server: Callable[..., ThreadServer], tmp_path: Path, **team_a: int
) -> ThreadServer:
    """A server without workers (operations stay PENDING) where team-a has `team_a`'s
    quota and team-b none; it serves the test video model too."""
    server = make_server(
        config=ServerConfig(api_keys=KEYS), workers=0, videos=video_settings(tmp_path)
    )
    server.engine.config.quotas = Quotas(tenants={"team-a": Quota(**team_a)})
    return server


def start(server: ThreadServer, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1beta/kinds/longops.sleep:start",
        json=SLEEP,
        headers=headers,
        params=params,
    )


def assert_quota_refusal(response: httpx.Response, words: str) -> int:
    """The 429 in Google's shape; returns its retry delay in seconds."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert words in error["message"]
    by_type = {d["@type"]: d for d in error["details"]}
    violation = by_type[QUOTA_FAILURE]["violations"][0]
    assert violation["subject"] == "tenant:team-a"
    assert words in violation["description"]
    delay = by_type[RETRY_INFO]["retryDelay"]
    assert delay.endswith("s")
    seconds = int(delay.removesuffix("s"))
    assert seconds >= 1
    assert response.headers["retry-after"] == str(seconds)
    return seconds


def refusals(server: ThreadServer) -> float:
    """How many 429s the server's process has answered (`/metrics`)."""
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("longops_http_requests_total{") and 'code="429"' in line
    )


def test_unfinished_quota_refuses_team_a_and_not_team_b(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = quota_server(make_server, tmp_path, unfinished=2)
    first = start(server, A, requestId="r1")
    assert first.status_code == 200
    assert start(server, A).status_code == 200
    assert_quota_refusal(start(server, A), "unfinished")
    # A repeated requestId creates nothing: it is answered with the stored operation.
    again = start(server, A, requestId="r1")
    assert again.status_code == 200
    assert again.json()["name"] == first.json()["name"]
    for _ in range(3):
        assert start(server, B).status_code == 200
    # Cancelling one of team-a's makes room for one more.
    cancelled = httpx.post(f"{server.url}/v1beta/{first.json()['name']}:cancel", headers=A)
    assert cancelled.status_code == 200
    assert start(server, A).status_code == 200
    assert start(server, A).status_code == 429


def test_every_create_route_is_refused_at_the_quota(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    """predictLongRunning, importFile, and the start of an upload into a file search
    store (refused before any bytes are sent; its finalize is not refused again); a
    plain file upload, which starts no operation, is not refused."""
    server = quota_server(make_server, tmp_path, unfinished=1)
    store = httpx.post(f"{server.url}/v1beta/fileSearchStores", headers=A, json={}).json()

    def upload_start() -> httpx.Response:
        return httpx.post(
            f"{server.url}/upload/v1beta/{store['name']}:uploadToFileSearchStore",
            headers={**A, "x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
            json={"displayName": "notes.txt", "mimeType": "text/plain"},
        )

    started = upload_start()
    assert started.status_code == 200
    assert start(server, A).status_code == 200  # now at the quota
    assert_quota_refusal(upload_start(), "unfinished")
    predict = httpx.post(
        f"{server.url}/v1beta/models/veo-test:predictLongRunning",
        headers=A,
        json={"instances": [{"prompt": "a cat"}]},
    )
    assert_quota_refusal(predict, "unfinished")
    file = httpx.post(
        httpx.post(
            f"{server.url}/upload/v1beta/files",
            headers={**A, "x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
            json={"file": {"mimeType": "text/plain"}},
        ).headers["x-goog-upload-url"],
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
        content=b"more notes",
    )
    assert file.status_code == 200, file.text  # files are no operations: not refused
    imported = httpx.post(
        f"{server.url}/v1beta/{store['name']}:importFile",
        headers=A,
        json={"fileName": file.json()["file"]["name"]},
    )
    assert_quota_refusal(imported, "unfinished")
    finalized = httpx.post(
        started.headers["x-goog-upload-url"],
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
        content=b"field notes",
    )
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["name"].startswith(store["name"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_api_servers_on_one_database_share_the_quotas(
    make_server: Callable[..., ThreadServer], tmp_path: Path, backend: str
) -> None:
    """The counts come from the database: what one server created fills the quota that
    another server enforces."""
    with database(backend, tmp_path) as url:
        servers = [
            make_server(config=ServerConfig(api_keys=KEYS), workers=0, database_url=url)
            for _ in range(2)
        ]
        for server in servers:
            server.engine.config.quotas = Quotas(tenants={"team-a": Quota(unfinished=2)})
        assert start(servers[0], A).status_code == 200
        assert start(servers[1], A).status_code == 200
        assert_quota_refusal(start(servers[0], A), "unfinished")
        assert_quota_refusal(start(servers[1], A), "unfinished")
        for server in servers:
            server.stop()


def test_creates_per_minute_quota(make_server: Callable[..., ThreadServer], tmp_path: Path) -> None:
    server = quota_server(make_server, tmp_path, creates_per_minute=2)
    assert start(server, A).status_code == 200
    assert start(server, A).status_code == 200
    delay = assert_quota_refusal(start(server, A), "per minute")
    assert delay <= 60
    assert start(server, B).status_code == 200


def test_sdk_waits_as_retry_after_says_and_succeeds_once_there_is_room(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = quota_server(make_server, tmp_path, unfinished=1)
    client = Client(api_key="KEY_A", http_options=HttpOptions(base_url=server.url))
    first = client.operations.start("longops.sleep", SLEEP)
    before = refusals(server)

    def cancel_once_refused() -> None:
        # Cancel only after the SDK's create was refused, so that it must wait and retry.
        while refusals(server) == before:
            if given_up.wait(0.05):
                return
        client.operations.cancel(first)

    given_up = threading.Event()
    helper = threading.Thread(target=cancel_once_refused)
    helper.start()
    try:
        second = client.operations.start("longops.sleep", SLEEP)  # refused, waits, retried
    finally:
        given_up.set()
        helper.join()
    assert refusals(server) == before + 1  # refused once, then created on the retry
    assert second.name != first.name
    assert client.operations.get(second).done is not True
    client.close()


async def test_async_sdk_raises_client_error_with_details_when_retries_run_out(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = quota_server(make_server, tmp_path, unfinished=1)
    options = HttpOptions(base_url=server.url, retry=RetryOptions(attempts=1))
    client = Client(api_key="KEY_A", http_options=options)
    await client.aio.operations.start("longops.sleep", SLEEP)
    with pytest.raises(ClientError) as info:
        await client.aio.operations.start("longops.sleep", SLEEP)
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    types = [d["@type"] for d in info.value.details["error"]["details"]]
    assert types == [QUOTA_FAILURE, RETRY_INFO]
    await client.aio.aclose()


def test_sdk_does_not_wait_longer_than_max_retry_after(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = quota_server(make_server, tmp_path, unfinished=1)
    options = HttpOptions(base_url=server.url, retry=RetryOptions(max_retry_after=1))
    client = Client(api_key="KEY_A", http_options=options)
    client.operations.start("longops.sleep", SLEEP)
    with pytest.raises(ClientError) as info:  # Retry-After 5 s is past the bound: no wait
        client.operations.start("longops.sleep", SLEEP)
    assert info.value.code == 429
    client.close()


class RetryInfoOnly(http.server.BaseHTTPRequestHandler):
    """Answers a 429 whose only delay is a RetryInfo in the body (as Google's APIs often
    do, with no Retry-After), then the operation."""

    answered: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        refuse = not self.answered
        status = 429 if refuse else 200
        self.answered.append(status)
        details = [{"@type": RETRY_INFO, "retryDelay": "0.2s"}]
        body = (
            {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}
            if refuse
            else {"name": "operations/x", "done": False}
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sdk_waits_as_a_retry_info_without_retry_after_says(mode: str) -> None:
    RetryInfoOnly.answered = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RetryInfoOnly)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    # A backoff this long would outlast the test: only the RetryInfo makes the retry come.
    retry = RetryOptions(initial_delay=3600, max_delay=3600)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = Client(http_options=HttpOptions(base_url=url, retry=retry))
    try:
        if mode == "sync":
            operation = client.operations.get("operations/x")
        else:
            operation = await client.aio.operations.get("operations/x")
            await client.aio.aclose()
        assert operation.name == "operations/x"
        assert RetryInfoOnly.answered == [429, 200]
    finally:
        client.close()
        server.shutdown()
        thread.join()


def test_official_sdk_sees_client_error_429_with_the_details(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    server = quota_server(make_server, tmp_path, unfinished=1)
    assert start(server, A).status_code == 200
    client = genai.Client(  # Vertex express mode: an API key
        vertexai=True,
        api_key="KEY_A",
        http_options=genai_types.HttpOptions(
            base_url=server.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.generate_videos(model="veo-test", source={"prompt": "a cat"})
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    details: Any = info.value.details
    by_type = {d["@type"]: d for d in details["error"]["details"]}
    assert by_type[QUOTA_FAILURE]["violations"][0]["subject"] == "tenant:team-a"
    assert by_type[RETRY_INFO]["retryDelay"] == "5s"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LONGOPS_QUOTA_UNFINISHED", "-1"),
        ("LONGOPS_QUOTA_CREATES_PER_MINUTE", "ten"),
        ("LONGOPS_QUOTA_TENANTS", "team-a:unfinished=1,burst=3"),
        ("LONGOPS_QUOTA_TENANTS", "team-a"),
        ("LONGOPS_QUOTA_TENANTS", "team-a:unfinished=" + "9" * 10_000),
    ],
)
def test_malformed_setting_is_one_error_line(tmp_path: Path, name: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "longops", "serve", "--database", f"sqlite:///{tmp_path}/q.db"],
        env=subprocess_env({name: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: LONGOPS_QUOTA_"), done.stderr


def test_settings_parse_defaults_and_per_tenant_overrides() -> None:
    quotas = Quotas.from_env(
        {
            "LONGOPS_QUOTA_UNFINISHED": "1000",
            "LONGOPS_QUOTA_CREATES_PER_MINUTE": "600",
            "LONGOPS_QUOTA_TENANTS": "a:unfinished=10,creates_per_minute=60; b:unfinished=0",
        }
    )
    assert quotas.of("a") == Quota(unfinished=10, creates_per_minute=60)
    assert quotas.of("b") == Quota(unfinished=0, creates_per_minute=600)
    assert quotas.of("c") == Quota(unfinished=1000, creates_per_minute=600)
    assert not Quotas.from_env({}).any
