"""The SDK against real servers: configuration, retries, errors, and parsing operations.

Where a server must misbehave on purpose (503s, a 500 after acting, odd bodies), a tiny real
Starlette app under uvicorn stands in front of, or in place of, a longops server.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longops.errors import APIError, ClientError, ServerError
from longops.server import ServerConfig
from longops.types import (
    GenerateVideosOperation,
    GenerateVideosResponse,
    ImportFileOperation,
    Operation,
    UploadToFileSearchStoreOperation,
    operation_from_wire,
)
from tests.support.servers import AppThread, ThreadServer
from tests.support.twin import Twin

SLEEP = "longops.sleep"
PATIENCE = 30.0
FAST_RETRY = {"retry": {"attempts": 4, "initial_delay": 0.01, "max_delay": 0.05}}


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(workers=0)


# -- a tiny real server ----------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request, int], Awaitable[Response]]


class TinyServer(AppThread):
    """A Starlette app under uvicorn on an ephemeral port, in a thread.

    Every request is recorded in `seen`; `handler(request, n)` answers the n-th (1-based).
    """

    def __init__(self, handler: Handler) -> None:
        self.seen: list[Seen] = []

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            self.seen.append(
                Seen(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    dict(request.headers),
                    body,
                )
            )
            return await handler(request, len(self.seen))

        methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
        super().__init__(
            Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)]), lifespan="off"
        )

    def requests_to(self, method: str, path_end: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.endswith(path_end)]


@pytest.fixture
def tiny() -> Iterator[Callable[[Handler], TinyServer]]:
    started: list[TinyServer] = []

    def make(handler: Handler) -> TinyServer:
        started.append(TinyServer(handler).start())
        return started[-1]

    yield make
    for s in started:
        s.stop()


def envelope(code: int, status: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "status": status}}
    return Response(orjson.dumps(body), status_code=code, media_type="application/json")


async def forward(request: Request, upstream: str) -> Response:
    """Send `request` on to `upstream` and answer with what it answered."""
    headers = {k: v for k, v in request.headers.items() if k not in {"host", "content-length"}}
    async with httpx.AsyncClient(base_url=upstream, timeout=PATIENCE) as http:
        answer = await http.request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )


async def seed(server: ThreadServer, parent: str) -> str:
    """Create an operation under `parent` through the server's engine, on the server's loop
    (no route starts one under a parent yet)."""
    assert server.loop is not None
    future = asyncio.run_coroutine_threadsafe(
        server.engine.create(SLEEP, {}, parent=parent), server.loop
    )
    return (await asyncio.wrap_future(future)).name


async def raw(method: str, url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=PATIENCE) as http:
        return await http.request(method, url, **kwargs)


async def operation_names(server: ThreadServer) -> list[str]:
    response = await raw("GET", f"{server.url}/v1beta/operations", params={"pageSize": 1000})
    assert response.status_code == 200
    return [op["name"] for op in response.json().get("operations", [])]


async def start_raw(server: ThreadServer) -> str:
    response = await raw("POST", f"{server.url}/v1beta/kinds/{SLEEP}:start")
    assert response.status_code == 200
    name: str = response.json()["name"]
    return name


# -- configuration ---------------------------------------------------------------------


async def test_base_url_from_the_environment(
    twin: Callable[..., Twin], server: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGOPS_BASE_URL", server.url + "/")  # a trailing slash is dropped
    api = twin()
    op = await api.operations.start(SLEEP)
    assert (await api.operations.get(op)).name == op.name
    assert await operation_names(server) == [op.name]

    # An explicit base_url wins over the environment.
    monkeypatch.setenv("LONGOPS_BASE_URL", "http://127.0.0.1:9/nowhere")
    explicit = twin(base_url=server.url)
    assert (await explicit.operations.get(op.name)).name == op.name


async def test_api_key_from_the_environment(
    twin: Callable[..., Twin],
    make_server: Callable[..., ThreadServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyed = make_server(
        config=ServerConfig(api_keys={"k1": "alice", "k2": "bob"}),
        workers=0,
        database_url=f"sqlite:///{tmp_path / 'keyed.db'}",
    )
    anonymous = twin(base_url=keyed.url)
    with pytest.raises(ClientError) as info:
        await anonymous.operations.start(SLEEP)
    assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")

    monkeypatch.setenv("LONGOPS_API_KEY", "k1")
    alice = twin(base_url=keyed.url)
    op = await alice.operations.start(SLEEP)
    assert (await alice.operations.get(op)).name == op.name

    bob = twin(api_key="k2", base_url=keyed.url)  # an explicit key wins over the environment
    with pytest.raises(ClientError) as info:
        await bob.operations.get(op)
    assert info.value.code == 404
    assert await bob.collect(await bob.operations.list()) == []


# -- retries ---------------------------------------------------------------------------


async def test_get_is_retried_after_503(
    twin: Callable[..., Twin], server: ThreadServer, tiny: Callable[[Handler], TinyServer]
) -> None:
    name = await start_raw(server)

    async def handler(request: Request, n: int) -> Response:
        if n <= 2:
            return envelope(503, "UNAVAILABLE", "try again")
        return await forward(request, server.url)

    proxy = tiny(handler)
    op = await twin(base_url=proxy.url).operations.get(name)
    assert op.name == name
    assert [(s.method, s.path) for s in proxy.seen] == [("GET", f"/v1beta/{name}")] * 3


async def test_create_retried_after_500_makes_one_operation(
    twin: Callable[..., Twin], server: ThreadServer, tiny: Callable[[Handler], TinyServer]
) -> None:
    async def handler(request: Request, n: int) -> Response:
        answer = await forward(request, server.url)
        if n == 1:
            # The server acted on the create, but the client only sees a failure.
            return envelope(500, "INTERNAL", "lost the answer")
        return answer

    proxy = tiny(handler)
    op = await twin(base_url=proxy.url).operations.start(SLEEP, {"seconds": 1})

    starts = proxy.requests_to("POST", f"/kinds/{SLEEP}:start")
    assert len(starts) == 2
    request_ids = {s.query["requestId"] for s in starts}
    assert len(request_ids) == 1 and "" not in request_ids
    assert starts[0].body == starts[1].body
    assert await operation_names(server) == [op.name]


async def test_non_idempotent_delete_is_not_retried(
    twin: Callable[..., Twin], tiny: Callable[[Handler], TinyServer]
) -> None:
    async def handler(request: Request, n: int) -> Response:
        return envelope(500, "INTERNAL", "may or may not have deleted it")

    broken = tiny(handler)
    with pytest.raises(ServerError) as info:
        await twin(base_url=broken.url).operations.delete("operations/abc")
    assert info.value.code == 500
    assert len(broken.seen) == 1


async def test_client_errors_are_not_retried(
    twin: Callable[..., Twin], server: ThreadServer, tiny: Callable[[Handler], TinyServer]
) -> None:
    async def handler(request: Request, n: int) -> Response:
        return await forward(request, server.url)

    proxy = tiny(handler)
    with pytest.raises(ClientError) as info:
        await twin(base_url=proxy.url).operations.get("operations/" + "c" * 20)
    assert info.value.code == 404
    assert len(proxy.seen) == 1


async def test_retries_stop_after_the_configured_attempts(
    twin: Callable[..., Twin], tiny: Callable[[Handler], TinyServer]
) -> None:
    async def handler(request: Request, n: int) -> Response:
        return envelope(503, "UNAVAILABLE", "still down")

    down = tiny(handler)
    api = twin(base_url=down.url, http_options={"retry": {"attempts": 3, "initial_delay": 0.01}})
    with pytest.raises(ServerError) as info:
        await api.operations.get("operations/abc")
    assert (info.value.code, info.value.status, info.value.message) == (
        503,
        "UNAVAILABLE",
        "still down",
    )
    assert len(down.seen) == 3

    single = twin(base_url=down.url, http_options={"retry": {"attempts": 1}})
    with pytest.raises(ServerError):
        await single.operations.get("operations/abc")
    assert len(down.seen) == 4


# -- errors ----------------------------------------------------------------------------


async def test_api_error_fields_for_a_404_from_the_server(
    twin: Callable[..., Twin], server: ThreadServer
) -> None:
    missing = "operations/" + "d" * 20
    with pytest.raises(APIError) as info:
        await twin(base_url=server.url).operations.get(missing)
    error = info.value
    assert isinstance(error, ClientError) and not isinstance(error, ServerError)
    assert error.code == 404
    assert error.status == "NOT_FOUND"
    assert error.message is not None and missing in error.message
    wire = (await raw("GET", f"{server.url}/v1beta/{missing}")).json()
    assert error.details == wire  # the whole parsed body
    assert wire["error"]["code"] == 404
    assert str(error).startswith("404 NOT_FOUND.")


async def test_client_error_server_error_and_other_answers(
    twin: Callable[..., Twin], tiny: Callable[[Handler], TinyServer]
) -> None:
    async def handler(request: Request, n: int) -> Response:
        kind = request.url.path.rpartition("/")[2]
        if kind == "invalid":
            return envelope(400, "INVALID_ARGUMENT", "bad")
        if kind == "limited":
            return envelope(429, "RESOURCE_EXHAUSTED", "slow down")
        if kind == "broken":
            return envelope(500, "INTERNAL", "oops")
        if kind == "gateway":
            return Response(b"<html>upstream down</html>", 502, media_type="text/html")
        if kind == "created":
            return Response(b'{"name": "operations/created"}', 201, media_type="application/json")
        return Response(b"", 204)

    odd = tiny(handler)
    api = twin(base_url=odd.url, http_options={"retry": {"attempts": 1}})

    async def failure(name: str) -> APIError:
        with pytest.raises(APIError) as info:
            await api.operations.get(f"operations/{name}")
        return info.value

    for name, code, status in (("invalid", 400, "INVALID_ARGUMENT"), ("limited", 429, None)):
        error = await failure(name)
        assert type(error) is ClientError, name
        assert error.code == code
        assert error.status == (status or "RESOURCE_EXHAUSTED")

    broken = await failure("broken")
    assert type(broken) is ServerError
    assert (broken.code, broken.status, broken.message) == (500, "INTERNAL", "oops")

    gateway = await failure("gateway")
    assert type(gateway) is ServerError
    assert gateway.code == 502
    assert gateway.message == "<html>upstream down</html>"
    assert gateway.status == "Bad Gateway"

    # Only 200 is success: anything else is an APIError, neither client's nor server's fault.
    for name, code in (("created", 201), ("empty", 204)):
        error = await failure(name)
        assert type(error) is APIError, name
        assert error.code == code


# -- parsing operations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("models/veo-2.0-generate-001/operations/kgsh9xu56mas", GenerateVideosOperation),
        (
            "projects/p/locations/us-central1/publishers/google/models/veo-2.0-generate-001"
            "/operations/90665a6b-0f3e-4b6c-9a1e-2f4b7c8d9e0f",
            GenerateVideosOperation,
        ),
        (
            "publishers/google/models/veo-3.0-generate-preview/operations/"
            "90665a6b-0f3e-4b6c-9a1e-2f4b7c8d9e0f",
            GenerateVideosOperation,
        ),
        ("fileSearchStores/first-vectorstore-ovrri9954z60/operations/abc123", ImportFileOperation),
        (
            "fileSearchStores/first-vectorstore-hh58fgddzd0w/upload/operations/"
            "k1lmltked3tp-d9144s0drobd",
            UploadToFileSearchStoreOperation,
        ),
        ("operations/abc123", Operation),
        ("tunedModels/t/operations/abc", Operation),
    ],
)
def test_operation_from_wire_picks_the_class_by_name(name: str, cls: type[Operation]) -> None:
    op = operation_from_wire({"name": name})
    assert type(op) is cls
    assert op.name == name
    assert op.done is None  # omitted means not done


@pytest.mark.parametrize(
    ("response_type", "cls"),
    [
        (
            "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            GenerateVideosOperation,
        ),
        (
            "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            GenerateVideosOperation,
        ),
        (
            "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse",
            ImportFileOperation,
        ),
        (
            "type.googleapis.com/google.ai.generativelanguage.v1main"
            ".UploadToFileSearchStoreResponse",
            UploadToFileSearchStoreOperation,
        ),
        ("type.googleapis.com/longops.v1.SleepResponse", Operation),
    ],
)
def test_operation_from_wire_falls_back_to_the_response_type(
    response_type: str, cls: type[Operation]
) -> None:
    data = {"name": "operations/abc", "done": True, "response": {"@type": response_type}}
    assert type(operation_from_wire(data)) is cls


def test_import_and_upload_responses_have_the_official_attributes() -> None:
    """google-genai reads both responses as `parent` and `document_name`; so does longops."""
    for name, cls, kind in [
        ("fileSearchStores/s/operations/x", ImportFileOperation, "ImportFileResponse"),
        (
            "fileSearchStores/s/upload/operations/x",
            UploadToFileSearchStoreOperation,
            "UploadToFileSearchStoreResponse",
        ),
    ]:
        response = {
            "@type": f"type.googleapis.com/google.ai.generativelanguage.v1main.{kind}",
            "parent": "fileSearchStores/s",
            "documentName": "fileSearchStores/s/documents/d",
        }
        op = operation_from_wire({"name": name, "done": True, "response": response})
        assert isinstance(op, cls)
        assert op.response is not None
        assert (op.response.parent, op.response.document_name) == (
            "fileSearchStores/s",
            "fileSearchStores/s/documents/d",
        )


# Bytes whose base64 uses both URL-safe characters and needs padding.
VIDEO_A = bytes(range(256)) + b"\xfb\xff\xbf"
VIDEO_B = b"\x00\x00\x00\x20ftypisom" + b"\xfe\xff" * 7
assert len(VIDEO_A) % 3 and len(VIDEO_B) % 3


def url_safe_unpadded(data: bytes) -> str:
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert "-" in text or "_" in text
    return text


def standard_padded(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    assert text.endswith("=")
    return text


def test_gemini_video_response_is_parsed() -> None:
    data = {
        "name": "models/veo-2.0-generate-001/operations/kgsh9xu56mas",
        "done": True,
        "metadata": {"@type": "type.googleapis.com/x", "progressPercent": 100},
        "response": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta"
            ".PredictLongRunningResponse",
            "generateVideoResponse": {
                "generatedSamples": [
                    {
                        "video": {
                            "encodedVideo": url_safe_unpadded(VIDEO_A),
                            "encoding": "video/mp4",
                        }
                    },
                    {"video": {"encodedVideo": standard_padded(VIDEO_B)}},
                    {"video": {"uri": "https://h/v1beta/files/kavvacjtxd38:download?alt=media"}},
                ],
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["unsafe"],
            },
        },
    }
    op = operation_from_wire(data)
    assert isinstance(op, GenerateVideosOperation)
    assert op.metadata == data["metadata"]
    response = op.response
    assert isinstance(response, GenerateVideosResponse)
    videos = [generated.video for generated in response.generated_videos]
    assert videos[0].data == VIDEO_A
    assert videos[0].mime_type == "video/mp4"
    assert videos[1].data == VIDEO_B
    assert videos[2].uri == "https://h/v1beta/files/kavvacjtxd38:download?alt=media"
    assert videos[2].video_bytes is None
    assert response.rai_media_filtered_count == 1
    assert response.rai_media_filtered_reasons == ["unsafe"]


def test_vertex_video_response_is_parsed() -> None:
    data = {
        "name": "projects/p/locations/us-central1/publishers/google/models/veo-2.0-generate-001"
        "/operations/90665a6b-0f3e-4b6c-9a1e-2f4b7c8d9e0f",
        "done": True,
        "response": {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "raiMediaFilteredCount": 0,
            "videos": [
                {"bytesBase64Encoded": url_safe_unpadded(VIDEO_A), "mimeType": "video/mp4"},
                {"bytesBase64Encoded": standard_padded(VIDEO_B), "mimeType": "video/mp4"},
                {"gcsUri": "gs://bucket/out/op/sample_2.mp4", "mimeType": "video/mp4"},
            ],
        },
    }
    op = operation_from_wire(data)
    assert isinstance(op, GenerateVideosOperation)
    assert op.response is not None
    videos = [generated.video for generated in op.response.generated_videos]
    assert [v.data for v in videos[:2]] == [VIDEO_A, VIDEO_B]
    assert [v.mime_type for v in videos] == ["video/mp4"] * 3
    assert videos[2].uri == "gs://bucket/out/op/sample_2.mp4"
    assert op.response.rai_media_filtered_count == 0


async def test_video_uri_is_downloaded_through_the_client(
    twin: Callable[..., Twin], tiny: Callable[[Handler], TinyServer]
) -> None:
    name = "models/veo-2.0-generate-001/operations/kgsh9xu56mas"
    files = {"kavvacjtxd38": VIDEO_A, "n1y0brpr60bs": VIDEO_B}

    async def handler(request: Request, n: int) -> Response:
        path = request.url.path
        if request.method == "GET" and path == f"/v1beta/{name}":
            samples = [
                {
                    "video": {
                        "uri": "https://elsewhere/v1beta/files/kavvacjtxd38:download?alt=media"
                    }
                },
                {"video": {"uri": "files/n1y0brpr60bs"}},
            ]
            body = {
                "name": name,
                "done": True,
                "response": {"generateVideoResponse": {"generatedSamples": samples}},
            }
            return Response(orjson.dumps(body), media_type="application/json")
        file_id = path.removeprefix("/v1beta/files/").removesuffix(":download")
        if request.method == "GET" and file_id in files:
            assert request.query_params.get("alt") == "media"
            return Response(files[file_id], media_type="video/mp4")
        return envelope(404, "NOT_FOUND", f"nothing at {path}")

    google_like = tiny(handler)
    api = twin(base_url=google_like.url)
    op = await api.operations.get(name)
    assert isinstance(op, GenerateVideosOperation) and op.response is not None
    videos = [g.video for g in op.response.generated_videos]
    # `data` is a plain (sync) property: fetch off the event loop.
    assert await asyncio.to_thread(lambda: [v.data for v in videos]) == [VIDEO_A, VIDEO_B]
    assert [v.video_bytes for v in videos] == [VIDEO_A, VIDEO_B]  # kept after the download
    downloads = [s.path for s in google_like.seen if ":download" in s.path]
    assert downloads == [
        "/v1beta/files/kavvacjtxd38:download",
        "/v1beta/files/n1y0brpr60bs:download",
    ]


async def test_vertex_mode_polls_model_operations_with_fetch_predict_operation(
    twin: Callable[..., Twin], server: ThreadServer, tiny: Callable[[Handler], TinyServer]
) -> None:
    model = "projects/p/locations/us-central1/publishers/google/models/veo-3.0"
    name = await seed(server, model)
    plain = await start_raw(server)

    async def handler(request: Request, n: int) -> Response:
        return await forward(request, server.url)

    proxy = tiny(handler)
    vertex = twin(vertexai=True, project="p", location="us-central1", base_url=proxy.url)

    op = await vertex.operations.get(name)
    assert isinstance(op, GenerateVideosOperation)
    assert op.name == name
    fetch = proxy.seen[-1]
    assert (fetch.method, fetch.path) == ("POST", f"/v1beta1/{model}:fetchPredictOperation")
    assert orjson.loads(fetch.body) == {"operationName": name}

    # Anything else is polled with a plain GET, under v1beta1.
    assert (await vertex.operations.get(plain)).name == plain
    assert (proxy.seen[-1].method, proxy.seen[-1].path) == ("GET", f"/v1beta1/{plain}")
