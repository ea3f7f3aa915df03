"""Property-based fuzzing of every route, on both backends: whatever a client sends,
the answer is never a 5xx, and every error is Google's envelope with nothing internal
in it.

Requests are drawn from each route's real shape (its path, parameters, body fields and
upload headers) with hostile values mixed in: NUL, numbers of thousands of digits,
paths that climb out of folders, URLs that point at localhost, deep nesting. The
server has no workers, so nothing drawn here is ever run; what is checked is the edge.
Bounded for CI (a fixed number of examples, derandomized under `CI=true`); run with
`FUZZ_EXAMPLES=5000` for a longer hunt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.usefixtures("quiet_server")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LEAKS = ("Traceback", "object at 0x", 'File "', "Internal Server Error")
KEY = "FUZZ_KEY"

HOSTILE = [
    "\x00",
    "a\x00b",
    "9" * 5000,
    "-1",
    "1e400",
    "NaN",
    "",
    " ",
    "../../etc/passwd",
    "file:///etc/passwd",
    "http://127.0.0.1:1/x",
    "http://[::1]/",
    "gs://bucket/a\x00b",
    "gs://",
    "%00",
    "operations/",
    "files/../x",
    "𝔘ñí©ødé\u202e",
    "x" * 3000,
]
text = st.one_of(st.text(max_size=24), st.sampled_from(HOSTILE))
numbers = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.integers(min_value=10**60, max_value=10**80)
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)


def values(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON values whose objects mostly use `keys` (so they reach deep into validation)."""
    key = st.one_of(st.sampled_from(keys), text) if keys else text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(key, inner, max_size=4),
        max_leaves=10,
    )


def bodies(keys: list[str]) -> st.SearchStrategy[Any]:
    """A request body: an object of the route's fields with drawn values, or any JSON."""
    shaped = st.fixed_dictionaries({}, optional={k: values(keys) for k in keys})
    return st.one_of(shaped, shaped, values(keys))


FIELDS = {
    "start": [
        "seconds",
        "steps",
        "failWith",
        "code",
        "message",
        "result",
        "webhookConfig",
        "uris",
        "priority",
        "scheduleTime",
        "scheduleDelay",
        "concurrencyKey",
    ],
    "video": [
        "instances",
        "prompt",
        "image",
        "bytesBase64Encoded",
        "gcsUri",
        "mimeType",
        "parameters",
        "durationSeconds",
        "aspectRatio",
        "resolution",
        "sampleCount",
        "seed",
        "fps",
        "negativePrompt",
        "storageUri",
        "generateAudio",
        "concurrencyKey",
    ],
    "import": [
        "fileName",
        "gcsUri",
        "uri",
        "displayName",
        "mimeType",
        "customMetadata",
        "key",
        "stringValue",
        "numericValue",
        "stringListValue",
        "values",
        "chunkingConfig",
        "whiteSpaceConfig",
        "maxTokensPerChunk",
        "maxOverlapTokens",
        "concurrencyKey",
    ],
    "query": [
        "query",
        "resultsCount",
        "metadataFilters",
        "key",
        "conditions",
        "operation",
        "stringValue",
        "numericValue",
    ],
    "store": ["displayName", "embeddingModel"],
    "wait": ["timeout"],
    "fetch": ["operationName"],
    "upload": ["file", "name", "displayName", "mimeType", "customMetadata", "chunkingConfig"],
    "webhook": [
        "uri",
        "subscribed_events",
        "name",
        "state",
        "revocation_behavior",
        "start_time",
        "end_time",
    ],
}
VERSIONS = st.sampled_from(["v1", "v1beta", "v1beta1", "v2"])
PARAMS = ["pageSize", "pageToken", "filter", "requestId", "force", "alt", "timeout", "key"]
PARAMS += ["page_size", "page_token", "update_mask", "operation"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A server without workers, and names that exist on it (an operation, a store, a
    file, an upload session) for paths to point at besides drawn ones."""
    folder: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with database(request.param, folder) as url:
        config = ServerConfig(api_keys={KEY: "fuzz"}, max_wait_seconds=0.05)
        server = ThreadServer(
            database_url=url, workers=0, config=config, blobs=folder / "blobs"
        ).start()
        headers = {"x-goog-api-key": KEY}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        try:
            yield client, _existing(client)
        finally:
            client.close()
            server.stop()


def _existing(client: httpx.Client) -> dict[str, str]:
    op = client.post("/v1beta/kinds/longops.sleep:start", json={"seconds": 1}).json()["name"]
    store = client.post("/v1beta/fileSearchStores", json={}).json()["name"]
    start = {"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"}
    session = client.post("/upload/v1beta/files", json={}, headers=start)
    upload_url = session.headers["x-goog-upload-url"]
    upload = client.post(
        upload_url,
        content=b"hello",
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
    )
    file = upload.json()["file"]["name"]
    open_session = client.post("/upload/v1beta/files", json={}, headers=start)
    hook = {"uri": "https://r.example/h", "subscribed_events": ["video.generated"]}
    webhook = client.post("/v1/webhooks", json=hook).json()["id"]
    client.post(f"/v1/webhooks/{webhook}:ping")
    delivery = client.get(f"/v1/webhooks/{webhook}/deliveries").json()["deliveries"][0]["id"]
    return {
        "webhook": webhook,
        "delivery": delivery,
        "operation": op,
        "store": store,
        "file": file,
        "upload_id": httpx.URL(open_session.headers["x-goog-upload-url"]).params["upload_id"],
    }


def segment(existing: dict[str, str], which: str) -> st.SearchStrategy[str]:
    """A path segment: the id of something that exists, or drawn text (URL-quoted)."""
    real = existing[which].rsplit("/", 1)[-1]
    return st.one_of(st.just(real), text.map(lambda t: quote(t, safe="") or "x"))


@st.composite
def requests(draw: st.DrawFn, existing: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) for one route, drawn."""
    v = draw(VERSIONS)
    op = draw(segment(existing, "operation"))
    store = draw(segment(existing, "store"))
    file = draw(segment(existing, "file"))
    hook = draw(segment(existing, "webhook"))
    sent = draw(segment(existing, "delivery"))
    model = draw(st.sampled_from(["veo-2.0-generate-001", "veo-3.0-generate-001"]) | text)
    model = quote(model, safe="") or "m"
    kind = quote(draw(st.sampled_from(["longops.sleep", "generate_videos"]) | text), safe="") or "k"
    routes: list[tuple[str, str, str | None]] = [
        ("GET", f"/{v}/operations", None),
        ("GET", f"/{v}/operations/{op}", None),
        ("GET", f"/{v}/models/{model}/operations", None),
        ("GET", f"/{v}/{existing['store']}/operations/{op}", None),
        ("POST", f"/{v}/operations/{op}:wait", "wait"),
        ("GET", f"/{v}/operations/{op}:watch", None),
        ("GET", f"/{v}/operations:watch", None),
        ("GET", f"/{v}/models/{model}/operations:watch", None),
        ("POST", f"/{v}/operations/{op}:cancel", "wait"),
        ("DELETE", f"/{v}/operations/{op}", None),
        ("POST", f"/{v}/kinds/{draw(st.sampled_from(['longops.sleep', 'x']))}:start", "start"),
        ("GET", f"/{v}/kinds", None),
        ("GET", f"/{v}/kinds/{kind}", None),
        ("GET", f"/{v}/models", None),
        ("GET", f"/{v}/models/{model}", None),
        ("POST", f"/{v}/models/{model}:predictLongRunning", "video"),
        (
            "POST",
            f"/{v}/projects/p/locations/us-central1/publishers/google/models/{model}"
            ":predictLongRunning",
            "video",
        ),
        ("POST", f"/{v}/publishers/google/models/{model}:fetchPredictOperation", "fetch"),
        ("GET", f"/{v}/files", None),
        ("GET", f"/{v}/files/{file}", None),
        ("GET", f"/{v}/files/{file}:download", None),
        ("DELETE", f"/{v}/files/{file}", None),
        ("POST", f"/{v}/fileSearchStores", "store"),
        ("GET", f"/{v}/fileSearchStores", None),
        ("GET", f"/{v}/fileSearchStores/{store}", None),
        ("DELETE", f"/{v}/fileSearchStores/{store}", None),
        ("POST", f"/{v}/fileSearchStores/{store}:importFile", "import"),
        ("POST", f"/{v}/fileSearchStores/{store}:query", "query"),
        ("GET", f"/{v}/fileSearchStores/{store}/documents", None),
        ("GET", f"/{v}/fileSearchStores/{store}/documents/{file}", None),
        ("POST", f"/upload/{v}/files", "upload"),
        ("POST", f"/upload/{v}/fileSearchStores/{store}:uploadToFileSearchStore", "upload"),
        ("GET", "/.well-known/jwks.json", None),
        ("POST", f"/{v}/webhooks", "webhook"),
        ("GET", f"/{v}/webhooks", None),
        ("GET", f"/{v}/webhooks/{hook}", None),
        ("PATCH", f"/{v}/webhooks/{hook}", "webhook"),
        ("DELETE", f"/{v}/webhooks/{hook}", None),
        ("POST", f"/{v}/webhooks/{hook}:ping", None),
        ("POST", f"/{v}/webhooks/{hook}:rotateSigningSecret", "webhook"),
        ("POST", f"/{v}/webhooks/{hook}:redeliver", "webhook"),
        ("GET", f"/{v}/webhooks/{hook}/deliveries", None),
        ("GET", f"/{v}/webhooks/{hook}/deliveries/{sent}", None),
        ("POST", f"/{v}/webhooks/{hook}/deliveries/{sent}:redeliver", None),
        ("GET", f"/{v}/webhookDeliveries", None),
        ("GET", f"/{v}/webhookDeliveries/{sent}", None),
        ("POST", f"/{v}/webhookDeliveries/{sent}:redeliver", None),
        ("POST", f"/{v}/webhookDeliveries:redeliver", "webhook"),
    ]
    method, path, shape = draw(st.sampled_from(routes))
    params = draw(st.dictionaries(st.sampled_from(PARAMS), text, max_size=3))
    if "key" in params:
        params["key"] = KEY
    kwargs: dict[str, Any] = {"params": params}
    if path.startswith("/upload/"):
        if draw(st.booleans()):
            params["upload_id"] = draw(st.just(existing["upload_id"]) | text)
        kwargs["headers"] = draw(upload_headers())
    if shape is not None:
        body = draw(bodies(FIELDS[shape]))
        content = json.dumps(body, ensure_ascii=False).encode()
        if draw(st.integers(0, 9)) == 0:  # now and then, a number of hundreds of digits
            content = content.replace(b"0", b"0" * 300, 1)
        kwargs["content"] = content
        kwargs["headers"] = {**kwargs.get("headers", {}), "content-type": "application/json"}
    return method, path, kwargs


@st.composite
def upload_headers(draw: st.DrawFn) -> dict[str, str]:
    header_text = st.one_of(
        # What an HTTP client can send: no leading or trailing whitespace.
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip),
        st.sampled_from(["start", "upload", "upload, finalize", "finalize", "query", "9" * 400]),
    )
    names = [
        "x-goog-upload-protocol",
        "x-goog-upload-command",
        "x-goog-upload-offset",
        "x-goog-upload-header-content-length",
        "x-goog-upload-header-content-type",
        "x-goog-upload-file-name",
    ]
    headers = draw(st.dictionaries(st.sampled_from(names), header_text, max_size=4))
    if draw(st.booleans()):
        headers["x-goog-upload-protocol"] = "resumable"
    return headers


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.url, response.text[:500])
    for leak in LEAKS:
        assert leak not in response.text, (response.request.url, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = response.json()["error"]
        assert error["code"] == response.status_code
        assert isinstance(error["message"], str) and isinstance(error["status"], str)


@FUZZ
@given(data=st.data())
def test_no_route_answers_5xx(target: tuple[httpx.Client, dict[str, str]], data: Any) -> None:
    client, existing = target
    method, path, kwargs = data.draw(requests(existing))
    if path.endswith(":watch"):  # a stream stays open while its operation runs
        with client.stream(method, path, **kwargs) as response:
            if response.status_code == 200:
                assert response.headers["content-type"].startswith("text/event-stream")
                return
            response.read()
        check(response)
        return
    check(client.request(method, path, **kwargs))


@FUZZ
@given(data=st.data())
def test_no_route_answers_5xx_to_arbitrary_bytes(
    target: tuple[httpx.Client, dict[str, str]], data: Any
) -> None:
    """Bodies that are not JSON at all, or JSON of the wrong shape, on every POST."""
    client, existing = target
    method, path, kwargs = data.draw(requests(existing))
    content = data.draw(st.binary(max_size=200) | st.sampled_from([b"[]", b"1", b'"x"', b"{"]))
    kwargs["content"] = content
    check(client.request("POST" if method == "GET" else method, path, **kwargs))
