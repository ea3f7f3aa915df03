"""Schemathesis fuzzes a real server from the server's own `/openapi.json`, on SQLite and
on PostgreSQL (each a fresh database), with an API key configured.

Every operation of the document gets a bounded number of cases, valid ones (drawn from
its schemas) and invalid ones (schemathesis' negative mode), each sent with one of the
ways a client authenticates, or a wrong one, or none. Each answer must be no 5xx, every
4xx in Google's envelope, and conform to the document: its status documented, its
content type and body those the document gives for that status, its headers too.

The parameters that name a resource may also name one seeded before (`seed`, `aim`),
so valid cases reach past the lookup. Deterministic (derandomized hypothesis, no example
database, a fresh database per backend); the server runs no workers, so nothing drawn
here is run. About 680 cases per backend, 30 s for both; `OPENAPI_FUZZ_EXAMPLES=120`
(with `--timeout=0`) hunts longer: 13,000 cases per backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.usefixtures("quiet_server")

EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "6"))
KEY = "FUZZ_KEY"
AUTHS: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"x-goog-api-key": KEY}, {}),
    ({"authorization": f"Bearer {KEY}"}, {}),
    ({}, {"key": KEY}),
    ({"x-goog-api-key": KEY}, {}),
    ({}, {}),
    ({"x-goog-api-key": "not-a-key"}, {}),
    ({"authorization": "Bearer not-a-key"}, {}),
    ({}, {"key": "not-a-key"}),
]
"""(headers, query): mostly a good key, in each place a client may send one; else none,
or a wrong one. What schemathesis drew for the document's security schemes is dropped
first, so each case is sent with exactly one of these."""
CREDENTIALS = ("x-goog-api-key", "authorization")
STREAMS = {"text/event-stream"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def in_envelope(response: Response) -> str | None:
    """Why a 4xx answer is not Google's error envelope, or None when it is."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"a {response.status_code} whose body is not JSON: {response.content[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and error.get("code") == response.status_code
        and isinstance(error.get("message"), str)
        and isinstance(error.get("status"), str)
    ):
        return f"a {response.status_code} outside the envelope: {body!r:.300}"
    return None


def bodiless(response: Response) -> bool:
    """An upload step's answer: no body, no Content-Type, `x-goog-upload-status` — which
    OpenAPI cannot give beside the final step's JSON (the document says so in words)."""
    return (
        response.status_code == 200
        and not response.content
        and "x-goog-upload-status" in response.headers
        and "content-type" not in response.headers
    )


def seed(url: str) -> dict[str, str]:
    """Resources for the cases to find, by parameter name: an operation, a store with a
    document being imported, a file, a webhook and its ping's delivery, and an open
    upload session. Without them nearly every valid case would stop at a 404 before the
    code that reads it."""
    api = httpx.Client(base_url=f"{url}/v1beta", headers={"x-goog-api-key": KEY}, timeout=30)
    with api:
        operation = api.post("/kinds/longops.sleep:start", json={}).json()["name"]
        store = api.post("/fileSearchStores", json={"displayName": "fuzz"}).json()["name"]
        start = {"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"}
        upload = api.post(f"{url}/upload/v1beta/files", headers=start, json={})
        done = httpx.post(
            upload.headers["x-goog-upload-url"],
            headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
            content=b"fuzz bytes\n",
        )
        file = done.json()["file"]["name"]
        api.post(f"/{store}:importFile", json={"fileName": file})
        webhook = api.post(
            f"{url}/v1/webhooks",
            json={"uri": "https://hooks.example/fuzz", "subscribed_events": ["video.generated"]},
        ).json()["id"]
        api.post(f"{url}/v1/webhooks/{webhook}:ping")
        log = api.get(f"{url}/v1/webhooks/{webhook}/deliveries").json()["deliveries"]
        session = api.post(f"{url}/upload/v1beta/files", headers=start, json={})
    return {
        "delivery": log[0]["id"],
        "operationId": operation.rsplit("/", 1)[1],
        "store": store.removeprefix("fileSearchStores/"),
        "file": file.removeprefix("files/"),
        "webhook": webhook,
        "upload_id": parse_qs(urlsplit(session.headers["x-goog-upload-url"]).query)["upload_id"][0],
    }


def aim(raw: dict[str, Any], seeds: dict[str, str]) -> None:
    """Let each parameter that names a seeded resource also be that resource (deletes
    excepted, so that the seeds stay for the operations after them)."""
    for item in raw["paths"].values():
        for method, operation in item.items():
            for param in operation.get("parameters", []) if method != "delete" else []:
                if param["name"] in seeds:
                    param["schema"] = {"anyOf": [{"enum": [seeds[param["name"]]]}, param["schema"]]}


def fuzz(server: ThreadServer) -> tuple[int, list[str]]:
    """Every operation of the server's document, fuzzed: (cases sent, failures)."""
    raw = httpx.get(f"{server.url}/openapi.json").json()
    aim(raw, seed(server.url))
    schema = schemathesis.openapi.from_dict(raw, config=schemathesis.Config())
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            count, found = fuzz_operation(server, operation, mode)
            sent += count
            failures.extend(found)
    return sent, failures


def fuzz_operation(
    server: ThreadServer, operation: APIOperation, mode: GenerationMode
) -> tuple[int, list[str]]:
    """One operation's cases of one mode: (cases sent, the first few failures)."""
    media = {
        media_type
        for answer in operation.definition.raw["responses"].values()
        for media_type in answer.get("content", {})
    }
    # A stream that stays open is read for half a second, then cut (schemathesis judges
    # the events it got; the server's keep-alives every 0.1 s carry it to that moment);
    # such cases cost that much each, so there are fewer of them.
    streaming = bool(media & STREAMS)
    timeout = (30, 0.5) if streaming else 30
    sent = 0
    failures: list[str] = []

    @settings(
        max_examples=max(1, EXAMPLES // 3) if streaming else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), auth=st.sampled_from(AUTHS))
    def run(case: Case, auth: tuple[dict[str, str], dict[str, str]]) -> None:
        nonlocal sent
        sent += 1
        for name in CREDENTIALS:
            if case.headers:
                case.headers.pop(name, None)
        if case.query:
            case.query.pop("key", None)
        headers, query = auth
        try:
            response = case.call(
                base_url=server.url, headers=headers, params=query, timeout=timeout
            )
        except requests.Timeout:
            if streaming:  # a stream the machine was too busy to start within the moment
                return
            raise
        problems = []
        if (why := in_envelope(response)) is not None:
            problems.append(why)
        if not bodiless(response):
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:
                problems.append(str(exc))
        if problems and len(failures) < 3:
            curl = case.as_curl_command(headers)
            failures.append(f"{operation.label} [{mode.value}]: {curl}\n" + "\n".join(problems))

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE
    return sent, failures


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_server_answers_as_its_document_says(backend: str, tmp_path: Path) -> None:
    """On PostgreSQL unreachable, `database` skips, which `CI=true` fails (conftest)."""
    with database(backend, tmp_path) as url:
        server = ThreadServer(
            url,
            config=ServerConfig(
                api_keys={KEY: "fuzz"}, max_wait_seconds=0.2, watch_keepalive_seconds=0.1
            ),
            workers=0,
            load=(),
            blobs=tmp_path / "blobs",
        ).start()
        try:
            sent, failures = fuzz(server)
        finally:
            server.stop()
    print(f"{backend}: {sent} cases")  # the count the note reports (with -s)
    assert not failures, "\n\n".join(failures)
    assert sent > 100
