"""The official `google-genai` SDK, unmodified, against a real longops server.

Every flow runs twice, once through the sync client (in a thread, so the test's loop
stays free) and once through `client.aio`. The server requires the key "KEY", so each
test also proves the SDK's credentials (x-goog-api-key or a bearer token) reach it.
See /work/shared/wire-contract.md for what the SDK sends and expects.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import google.oauth2.credentials
import httpx
import pytest
from google import genai
from google.genai import errors, types

from longops.kinds.videos.settings import Fault
from longops.server import ServerConfig
from tests.support.servers import ThreadServer
from tests.test_videos import probe, settings

# `generate_videos(prompt=...)` is what users write today; 3.x warns that it prefers `source=`.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The generate_videos method with prompt:DeprecationWarning"
)

Mode = Literal["sync", "async"]
Flavour = Literal["vertex", "express", "gemini-v1", "gemini-v1beta"]

KEY = "KEY"
PROJECT, LOCATION = "p", "us-central1"
POLL_SECONDS = 0.2
DEADLINE_SECONDS = 60.0
ONE_SECOND = types.GenerateVideosConfig(duration_seconds=1, number_of_videos=1)
VERTEX_PREFIX = f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/veo-test/"
EXPRESS_PREFIX = "publishers/google/models/veo-test/"


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOOGLE_*/GEMINI_* variables steer the SDK (base URL, keys, Vertex mode): clear them."""
    for var in list(os.environ):
        if var.startswith(("GOOGLE_", "GEMINI_")):
            monkeypatch.delenv(var)


@pytest.fixture
def video_server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    return make_server(
        config=ServerConfig(api_keys={KEY: "compat"}),
        videos=settings(
            tmp_path,
            faults=(Fault("please fail", fail_code=8, fail_message="Quota exceeded (injected)."),),
        ),
    )


class Sdk:
    """One awaitable surface over `client.X.y(...)` (in a thread) and `client.aio.X.y(...)`."""

    def __init__(self, client: genai.Client, mode: Mode) -> None:
        self.client = client
        self.mode = mode

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        resource, _, name = method.partition(".")
        if self.mode == "sync":
            sync_fn = getattr(getattr(self.client, resource), name)
            return await asyncio.to_thread(sync_fn, *args, **kwargs)
        async_fn = getattr(getattr(self.client.aio, resource), name)
        return await async_fn(*args, **kwargs)

    async def file_names(self) -> list[str]:
        if self.mode == "sync":
            return await asyncio.to_thread(lambda: [f.name for f in self.client.files.list()])
        pager = await self.client.aio.files.list()
        return [f.name async for f in pager]

    async def until_done(self, operation: types.GenerateVideosOperation) -> Any:
        """The documented loop: `operations.get(operation)` until `done`, under a deadline."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not operation.done:
            assert time.monotonic() < deadline, f"{operation.name} not done in time"
            await asyncio.sleep(POLL_SECONDS)
            polled = await self.call("operations.get", operation)
            assert type(polled) is type(operation)
            assert polled.name == operation.name
            operation = polled
        return operation


def make_client(url: str, flavour: Flavour, key: str = KEY) -> genai.Client:
    if flavour == "vertex":
        return genai.Client(
            vertexai=True,
            project=PROJECT,
            location=LOCATION,
            credentials=google.oauth2.credentials.Credentials(token=key),
            http_options=types.HttpOptions(base_url=url),
        )
    if flavour == "express":
        options = types.HttpOptions(base_url=url)
        return genai.Client(vertexai=True, api_key=key, http_options=options)
    version = flavour.removeprefix("gemini-")
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=url, api_version=version)
    )


@pytest.fixture
async def sdk_for(
    video_server: ThreadServer,
) -> AsyncIterator[Callable[..., Sdk]]:
    """`sdk_for(flavour, mode)`: an SDK client on the video server, closed at teardown."""
    made: list[genai.Client] = []

    def make(flavour: Flavour, mode: Mode, key: str = KEY) -> Sdk:
        client = make_client(video_server.url, flavour, key)
        made.append(client)
        return Sdk(client, mode)

    yield make
    for client in made:
        client.close()
        await client.aio.aclose()


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def assert_one_second_clip(data: bytes | None) -> None:
    assert data, "no video bytes"
    info = probe(data)
    assert "mp4" in str(info["format"])
    assert (info["codec"], info["width"], info["height"], info["frames"]) == (
        "h264",
        1280,
        720,
        24,
    )


async def raw_gemini_create(url: str, prompt: str, key: str = KEY) -> str:
    """The Gemini create exactly as SDK 2.x sent it (3.x refuses it client-side, §0.2)."""
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{url}/v1beta/models/veo-test:predictLongRunning",
            headers={"x-goog-api-key": key, "content-type": "application/json"},
            json={
                "instances": [{"prompt": prompt}],
                "parameters": {"sampleCount": 1, "durationSeconds": 1},
            },
        )
    assert answer.status_code == 200, answer.text
    name: str = answer.json()["name"]
    assert name.startswith("models/veo-test/operations/")
    return name


# -- Vertex: bearer token and express mode ------------------------------------------------


@MODES
@pytest.mark.parametrize("flavour", ["vertex", "express"])
async def test_vertex_generate_poll_inline_mp4_and_save(
    sdk_for: Callable[..., Sdk], tmp_path: Path, flavour: Flavour, mode: Mode
) -> None:
    sdk = sdk_for(flavour, mode)
    operation = await sdk.call(
        "models.generate_videos",
        model="veo-test",
        prompt="a paper boat on a pond",
        config=ONE_SECOND,
    )
    assert isinstance(operation, types.GenerateVideosOperation)
    prefix = VERTEX_PREFIX if flavour == "vertex" else EXPRESS_PREFIX
    assert operation.name.startswith(prefix + "operations/")

    done = await sdk.until_done(operation)
    assert done.error is None
    assert isinstance(done.metadata, dict)
    assert done.response is not None and len(done.response.generated_videos) == 1
    video = done.response.generated_videos[0].video
    assert video is not None and video.uri is None  # inline, as Vertex does without storageUri
    assert video.mime_type == "video/mp4"
    assert_one_second_clip(video.video_bytes)
    # The SDK copies the response into `result` as well.
    assert done.result is not None
    assert done.result.generated_videos[0].video.video_bytes == video.video_bytes

    path = tmp_path / f"{flavour}-{mode}.mp4"
    video.save(str(path))
    assert path.read_bytes() == video.video_bytes
    assert_one_second_clip(path.read_bytes())


@MODES
async def test_vertex_output_gcs_uri_writes_the_bucket_folder(
    sdk_for: Callable[..., Sdk], tmp_path: Path, mode: Mode
) -> None:
    sdk = sdk_for("vertex", mode)
    operation = await sdk.call(
        "models.generate_videos",
        model="veo-test",
        source=types.GenerateVideosSource(prompt="a lighthouse at dusk"),  # the newer spelling
        config=types.GenerateVideosConfig(
            duration_seconds=1, number_of_videos=1, output_gcs_uri="gs://bucket/out"
        ),
    )
    done = await sdk.until_done(operation)
    assert done.error is None and done.response is not None
    video = done.response.generated_videos[0].video
    assert video is not None and video.video_bytes is None
    assert video.uri is not None and video.uri.startswith("gs://bucket/out/")
    assert video.mime_type == "video/mp4"
    written = tmp_path / "gcs" / video.uri.removeprefix("gs://")
    assert written.is_file()
    assert_one_second_clip(written.read_bytes())
    with pytest.raises(NotImplementedError):  # the SDK cannot save a remote video
        video.save(str(tmp_path / "remote.mp4"))


# -- Gemini: raw create (as SDK 2.x), then everything through SDK 3.x -----------------------


@MODES
@pytest.mark.parametrize("flavour", ["gemini-v1", "gemini-v1beta"])
async def test_gemini_poll_download_save_and_files(
    video_server: ThreadServer,
    sdk_for: Callable[..., Sdk],
    tmp_path: Path,
    flavour: Flavour,
    mode: Mode,
) -> None:
    sdk = sdk_for(flavour, mode)
    with pytest.raises(ValueError):  # §0.2: 3.x refuses Gemini-mode generate_videos itself
        await sdk.call("models.generate_videos", model="veo-test", prompt="x", config=ONE_SECOND)

    name = await raw_gemini_create(video_server.url, "a red kite over the sea")
    done = await sdk.until_done(types.GenerateVideosOperation(name=name))
    assert done.error is None
    assert done.response is not None and len(done.response.generated_videos) == 1
    generated = done.response.generated_videos[0]
    assert generated.video is not None and generated.video.video_bytes is None
    uri = generated.video.uri
    assert uri is not None and uri.startswith("https://") and "/files/" in uri

    data = await sdk.call("files.download", file=generated)
    assert isinstance(data, bytes)
    assert_one_second_clip(data)
    assert generated.video.video_bytes == data  # download sets it on the Video
    path = tmp_path / f"{flavour}-{mode}.mp4"
    generated.video.save(str(path))
    assert path.read_bytes() == data

    file_name = "files/" + uri.split("/files/", 1)[1].split(":", 1)[0]
    file = await sdk.call("files.get", name=file_name)
    assert isinstance(file, types.File)
    assert file.name == file_name
    assert file.mime_type == "video/mp4"
    assert file.size_bytes == len(data)
    assert file.source == types.FileSource.GENERATED
    assert file.state == types.FileState.ACTIVE
    assert file.download_uri is not None
    again = await sdk.call("files.download", file=file)  # a File with a downloadUri
    assert again == data
    assert await sdk.call("files.download", file=file_name) == data

    assert file_name in await sdk.file_names()
    await sdk.call("files.delete", name=file_name)
    assert file_name not in await sdk.file_names()
    with pytest.raises(errors.ClientError) as gone:
        await sdk.call("files.get", name=file_name)
    assert (gone.value.code, gone.value.status) == (404, "NOT_FOUND")


# -- Errors through the SDK -----------------------------------------------------------------

UNKNOWN_OPERATIONS: dict[str, str] = {
    "vertex": VERTEX_PREFIX + "operations/00000000-0000-4000-8000-000000000000",
    "express": EXPRESS_PREFIX + "operations/00000000-0000-4000-8000-000000000000",
    "gemini-v1": "models/veo-test/operations/nosuchop0000",
    "gemini-v1beta": "models/veo-test/operations/nosuchop0000",
}


@MODES
@pytest.mark.parametrize("flavour", list(UNKNOWN_OPERATIONS))
async def test_unknown_operation_is_client_error_404(
    sdk_for: Callable[..., Sdk], flavour: Flavour, mode: Mode
) -> None:
    sdk = sdk_for(flavour, mode)
    unknown = types.GenerateVideosOperation(name=UNKNOWN_OPERATIONS[flavour])
    with pytest.raises(errors.ClientError) as info:
        await sdk.call("operations.get", unknown)
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    assert isinstance(info.value.details, dict)
    assert info.value.details["error"]["code"] == 404


@MODES
@pytest.mark.parametrize("flavour", ["vertex", "express"])
async def test_unsupported_duration_is_client_error_400(
    sdk_for: Callable[..., Sdk], flavour: Flavour, mode: Mode
) -> None:
    sdk = sdk_for(flavour, mode)
    with pytest.raises(errors.ClientError) as info:
        await sdk.call(
            "models.generate_videos",
            model="veo-test",
            prompt="too long",
            config=types.GenerateVideosConfig(duration_seconds=9, number_of_videos=1),
        )
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "durationSeconds" in str(info.value.details)


@MODES
async def test_unknown_model_is_client_error_404(sdk_for: Callable[..., Sdk], mode: Mode) -> None:
    sdk = sdk_for("vertex", mode)
    with pytest.raises(errors.ClientError) as info:
        await sdk.call(
            "models.generate_videos", model="veo-9", prompt="anything", config=ONE_SECOND
        )
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")


@MODES
@pytest.mark.parametrize("flavour", ["vertex", "gemini-v1"])
async def test_failed_operation_error_is_a_dict(
    video_server: ThreadServer, sdk_for: Callable[..., Sdk], flavour: Flavour, mode: Mode
) -> None:
    sdk = sdk_for(flavour, mode)
    if flavour == "vertex":
        operation = await sdk.call(
            "models.generate_videos", model="veo-test", prompt="please fail", config=ONE_SECOND
        )
    else:
        operation = types.GenerateVideosOperation(
            name=await raw_gemini_create(video_server.url, "please fail")
        )
    done = await sdk.until_done(operation)
    assert done.response is None
    assert isinstance(done.error, dict)  # the official SDK leaves google.rpc.Status a dict
    assert done.error["code"] == 8
    assert done.error["message"] == "Quota exceeded (injected)."


@MODES
@pytest.mark.parametrize(
    ("flavour", "code", "status"),
    [
        ("vertex", 401, "UNAUTHENTICATED"),
        ("express", 400, "INVALID_ARGUMENT"),
        ("gemini-v1", 400, "INVALID_ARGUMENT"),
    ],
)
async def test_wrong_credentials_are_client_errors(
    sdk_for: Callable[..., Sdk], flavour: Flavour, code: int, status: str, mode: Mode
) -> None:
    sdk = sdk_for(flavour, mode, key="WRONG")
    unknown = types.GenerateVideosOperation(name=UNKNOWN_OPERATIONS[flavour])
    with pytest.raises(errors.ClientError) as info:
        await sdk.call("operations.get", unknown)
    assert (info.value.code, info.value.status) == (code, status)
