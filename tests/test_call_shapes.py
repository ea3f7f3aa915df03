"""Code written for google-genai runs against longops with only the import changed.

Every method the two SDKs share is called through both, with identical arguments, on one
real server, sync and async, with `config=` as a dict, as google-genai's typed config (the
same object to both) and as each SDK's own typed config (what changing the import does).
The results must agree attribute by attribute, under google-genai's attribute names and
type names (an official enum may be a plain string in longops, a dict an object that
reads like one).
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from google.genai import types as gt
from pydantic import BaseModel

import longops
from longops import types as lt
from longops.server import ServerConfig
from tests.support.servers import ThreadServer
from tests.test_compat_genai import make_client, raw_gemini_create
from tests.test_videos import settings

pytestmark = pytest.mark.filterwarnings(
    "ignore:The generate_videos method with prompt:DeprecationWarning"
)

KEY = "KEY"
PROJECT, LOCATION = "p", "us-central1"
DEADLINE_SECONDS = 60.0
TEXT = "Lighthouses guide ships along dangerous coasts; the Fresnel lens made beams visible."
METADATA = [{"key": "author", "string_value": "ann"}]

Mode = Literal["sync", "async"]
Form = Literal["dict", "google-types", "own-types"]


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith(("GOOGLE_", "GEMINI_")):
            monkeypatch.delenv(var)


class World:
    """The server, a client of each SDK per API, and what a case prepares with them."""

    def __init__(self, server: ThreadServer, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.setup = longops.Client(api_key=KEY, base_url=server.url)
        self.clients: dict[tuple[str, bool], Any] = {}
        self._count = 0

    def client(self, sdk: str, vertex: bool) -> Any:
        key = (sdk, vertex)
        if key not in self.clients:
            if sdk == "google":
                made: Any = make_client(self.server.url, "vertex" if vertex else "gemini-v1beta")
            elif vertex:
                made = longops.Client(
                    vertexai=True,
                    project=PROJECT,
                    location=LOCATION,
                    api_key=KEY,
                    base_url=self.server.url,
                )
            else:
                made = longops.Client(api_key=KEY, base_url=self.server.url)
            self.clients[key] = made
        return self.clients[key]

    def text_file(self) -> str:
        self._count += 1
        path = self.folder / f"notes-{self._count}.txt"
        path.write_text(f"{TEXT} ({self._count})")
        return str(path)

    def uploaded(self) -> lt.File:
        return self.setup.files.upload(file=self.text_file())

    def store(self, documents: int = 0) -> str:
        store = self.setup.file_search_stores.create(config={"display_name": "Field notes"})
        assert store.name is not None
        for _ in range(documents):
            self.document(store.name)
        return store.name

    def document(self, store: str) -> str:
        operation = self.setup.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store, file=self.text_file(), config={"mime_type": "text/plain"}
        )
        done = self.setup.operations.wait(operation, timeout=DEADLINE_SECONDS)
        assert done.done and done.error is None and done.response is not None, done
        assert done.response.document_name is not None
        return done.response.document_name

    def generated_file(self) -> str:
        """A generated video's file name (only generated files can be downloaded)."""
        name = asyncio.run(raw_gemini_create(self.server.url, "a red kite over the sea"))
        done = self.setup.operations.wait(name, timeout=DEADLINE_SECONDS)
        assert isinstance(done, lt.GenerateVideosOperation) and done.response is not None
        uri = done.response.generated_videos[0].video.uri
        assert uri is not None
        return "files/" + uri.split("/files/", 1)[1].split(":", 1)[0]

    def video_operation(self) -> gt.GenerateVideosOperation:
        """A done Vertex video operation, as google-genai's own object."""
        operation = self.client("longops", True).models.generate_videos(
            model="veo-test", prompt="a paper boat", config={"duration_seconds": 1}
        )
        self.setup.operations.wait(operation.name, timeout=DEADLINE_SECONDS)
        return gt.GenerateVideosOperation(name=operation.name)


@dataclass(frozen=True)
class Case:
    """One shared method: its arguments (prepared once for both SDKs, or once for each when
    `fresh`), its config and the config's class name in both SDKs' types."""

    method: str
    prepare: Callable[[World], dict[str, Any]]
    config: dict[str, Any] | None = None
    config_class: str | None = None
    fresh: bool = False
    vertex: bool = False
    # Fields that differ between two fresh objects: names, times, generated ids.
    volatile: frozenset[str] = frozenset()
    # Started operations are followed to the end through the same SDK's operations.get.
    follow: bool = False
    # Download destinations: each SDK writes its own; the bytes written are compared.
    destination: bool = False


def two_files(world: World) -> dict[str, Any]:
    world.uploaded()
    world.uploaded()
    return {}


def two_stores(world: World) -> dict[str, Any]:
    world.store()
    world.store()
    return {}


CREATED = frozenset(
    {"name", "create_time", "update_time", "expiration_time", "uri", "download_uri"}
)
STARTED = frozenset({"name", "metadata", "document_name", "parent"})

CASES: dict[str, Case] = {
    "models.generate_videos": Case(
        "models.generate_videos",
        lambda w: {"model": "veo-test", "prompt": "a paper boat on a pond"},
        {"duration_seconds": 1, "number_of_videos": 1, "seed": 7},
        "GenerateVideosConfig",
        vertex=True,
        volatile=frozenset({"name", "metadata"}),
        follow=True,
    ),
    "operations.get": Case(
        "operations.get",
        lambda w: {"operation": w.video_operation()},
        {},
        "GetOperationConfig",
        vertex=True,
    ),
    "files.upload": Case(
        "files.upload",
        lambda w: {"file": w.text_file()},
        {"display_name": "notes.txt", "mime_type": "text/plain"},
        "UploadFileConfig",
        fresh=True,
        volatile=CREATED | {"size_bytes", "sha256_hash"},
    ),
    "files.get": Case("files.get", lambda w: {"name": w.uploaded().name}, {}, "GetFileConfig"),
    "files.list": Case(
        "files.list",
        two_files,
        {"page_size": 1},
        "ListFilesConfig",
    ),
    "files.delete": Case(
        "files.delete", lambda w: {"name": w.uploaded().name}, {}, "DeleteFileConfig", fresh=True
    ),
    "files.download": Case(
        "files.download", lambda w: {"file": w.generated_file()}, {}, "DownloadFileConfig"
    ),
    "files.download(File)": Case(
        "files.download",
        lambda w: {"file": w.client("google", False).files.get(name=w.generated_file())},
        {},
        "DownloadFileConfig",
    ),
    "files.download(destination)": Case(
        "files.download",
        lambda w: {"file": w.generated_file()},
        {},
        "DownloadFileConfig",
        destination=True,
    ),
    "file_search_stores.create": Case(
        "file_search_stores.create",
        lambda w: {},
        {"display_name": "Field notes"},
        "CreateFileSearchStoreConfig",
        fresh=True,
        volatile=CREATED,
    ),
    "file_search_stores.get": Case(
        "file_search_stores.get", lambda w: {"name": w.store()}, {}, "GetFileSearchStoreConfig"
    ),
    "file_search_stores.list": Case(
        "file_search_stores.list",
        two_stores,
        {"page_size": 1},
        "ListFileSearchStoresConfig",
    ),
    "file_search_stores.delete": Case(
        "file_search_stores.delete",
        lambda w: {"name": w.store(documents=1)},  # so that only `force` lets it go
        {"force": True},
        "DeleteFileSearchStoreConfig",
        fresh=True,
    ),
    "file_search_stores.import_file": Case(
        "file_search_stores.import_file",
        lambda w: {"file_search_store_name": w.store(), "file_name": w.uploaded().name},
        {"custom_metadata": METADATA},
        "ImportFileConfig",
        fresh=True,
        volatile=STARTED,
        follow=True,
    ),
    "file_search_stores.upload_to_file_search_store": Case(
        "file_search_stores.upload_to_file_search_store",
        lambda w: {"file_search_store_name": w.store(), "file": w.text_file()},
        {"display_name": "notes.txt", "mime_type": "text/plain", "custom_metadata": METADATA},
        "UploadToFileSearchStoreConfig",
        fresh=True,
        volatile=STARTED,
        follow=True,
    ),
    "file_search_stores.documents.get": Case(
        "file_search_stores.documents.get",
        lambda w: {"name": w.document(w.store())},
        {},
        "GetDocumentConfig",
    ),
    "file_search_stores.documents.list": Case(
        "file_search_stores.documents.list",
        lambda w: {"parent": w.store(documents=2)},
        {"page_size": 1},
        "ListDocumentsConfig",
    ),
    "file_search_stores.documents.delete": Case(
        "file_search_stores.documents.delete",
        lambda w: {"name": w.document(w.store())},  # it holds chunks: only `force` removes it
        {"force": True},
        "DeleteDocumentConfig",
        fresh=True,
    ),
}


def config_for(case: Case, form: Form, sdk: str) -> Any:
    if case.config is None or case.config_class is None:
        return None
    if form == "dict":
        return dict(case.config)
    module = gt if form == "google-types" or sdk == "google" else lt
    return getattr(module, case.config_class)(**case.config)


async def call(client: Any, mode: Mode, method: str, **kwargs: Any) -> Any:
    """`client.a.b(**kwargs)` in a thread, or `client.aio.a.b(**kwargs)`; pagers listed."""
    *path, name = method.split(".")
    target = client if mode == "sync" else client.aio
    for part in path:
        target = getattr(target, part)
    function = getattr(target, name)
    if mode == "sync":
        result = await asyncio.to_thread(function, **kwargs)
        if hasattr(result, "next_page"):
            return await asyncio.to_thread(list, result)
        return result
    result = await function(**kwargs)
    if hasattr(result, "next_page"):
        return [item async for item in result]
    return result


async def follow(client: Any, mode: Mode, operation: Any) -> Any:
    """The documented loop: operations.get(operation) until done, through the same SDK."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not operation.done:
        assert time.monotonic() < deadline, f"{operation.name} not done in time"
        await asyncio.sleep(0.1)
        operation = await call(client, mode, "operations.get", operation=operation)
    return operation


def assert_same(official: Any, ours: Any, volatile: frozenset[str], path: str = "result") -> None:
    """`ours` reads like `official`: every attribute google-genai sets, by its name, equal."""
    if isinstance(official, BaseModel):
        assert type(ours).__name__ == type(official).__name__, path
        for name in type(official).model_fields:
            value = getattr(official, name)
            if value is None or name in volatile or name == "sdk_http_response":
                continue
            assert hasattr(ours, name), f"{path}.{name} missing"
            assert_same(value, getattr(ours, name), volatile, f"{path}.{name}")
    elif isinstance(official, dict):
        for key, value in official.items():
            if key not in volatile:
                assert_same(value, ours[key], volatile, f"{path}[{key!r}]")
    elif isinstance(official, list):
        assert isinstance(ours, list) and len(ours) == len(official), path
        for index, (a, b) in enumerate(zip(official, ours, strict=True)):
            assert_same(a, b, volatile, f"{path}[{index}]")
    elif isinstance(official, enum.Enum):
        assert ours == official.value, path
    else:
        assert ours == official, path


@pytest.fixture
async def world(make_server: Callable[..., ThreadServer], tmp_path: Path) -> AsyncIterator[World]:
    server = make_server(config=ServerConfig(api_keys={KEY: "t"}), videos=settings(tmp_path))
    made = World(server, tmp_path)
    yield made
    made.setup.close()
    for client in made.clients.values():
        client.close()
        await client.aio.aclose()


@pytest.mark.parametrize("form", ["dict", "google-types", "own-types"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_both_sdks_take_the_same_call_and_answer_alike(
    world: World, case: Case, mode: Mode, form: Form, tmp_path: Path
) -> None:
    # Preparing blocks (and may run a loop of its own): in a thread, as the sync SDKs run.
    shared = None if case.fresh else await asyncio.to_thread(case.prepare, world)
    results: dict[str, Any] = {}
    for sdk in ("google", "longops"):
        client = world.client(sdk, case.vertex)
        kwargs = dict(
            shared if shared is not None else await asyncio.to_thread(case.prepare, world)
        )
        if case.config is not None:
            kwargs["config"] = config_for(case, form, sdk)
        if case.destination:
            kwargs["destination"] = str(tmp_path / f"{sdk}.download")
        result = await call(client, mode, case.method, **kwargs)
        if case.follow:
            result = await follow(client, mode, result)
        if case.destination:
            assert result is None
            result = (tmp_path / f"{sdk}.download").read_bytes()
        results[sdk] = result
    if case.method.endswith("list"):
        assert len(results["google"]) >= 2  # more than one page of `page_size` 1
    assert_same(results["google"], results["longops"], case.volatile)


async def test_server_refuses_an_unforced_delete_of_a_full_store(world: World) -> None:
    """What makes the `force` cases above meaningful: without it, the delete is refused."""
    name = await asyncio.to_thread(world.store, 1)
    async with httpx.AsyncClient() as http:
        answer = await http.delete(
            f"{world.server.url}/v1beta/{name}", headers={"x-goog-api-key": KEY}
        )
    assert answer.status_code == 400, answer.text
