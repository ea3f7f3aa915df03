"""File search stores end to end: uploads, imports, documents and queries.

Every test runs on both stores (SQLite and PostgreSQL): the `database_url` fixture,
which `make_server` and `server` use, is parametrised here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.servers import ThreadServer
from tests.test_extract_chunking import make_pdf  # a real multi-page PDF, made in the test

ARTICLE = (
    "Lighthouses guide ships along dangerous coasts. The Fresnel lens made their beams visible "
    "for miles.\n\nVolcanoes form where magma reaches the surface; basalt flows build islands."
)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    (tmp_path / "gcs" / "my-bucket").mkdir(parents=True)
    os.environ["LONGOPS_GCS_ROOT"] = str(tmp_path / "gcs")
    try:
        return make_server(config=ServerConfig(api_keys={"KEY": "t"}))
    finally:
        del os.environ["LONGOPS_GCS_ROOT"]


@pytest.fixture
def client(server: ThreadServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[genai.Client]:
    for var in [v for v in os.environ if v.startswith(("GOOGLE_", "GEMINI_"))]:
        monkeypatch.delenv(var)
    yield genai.Client(api_key="KEY", http_options=gt.HttpOptions(base_url=server.url))


def finish(client: genai.Client, operation: gt.Operation) -> gt.Operation:
    deadline = time.monotonic() + 60
    while not operation.done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        operation = client.operations.get(operation)
    return operation


def test_official_sdk_import_upload_documents_and_query(
    client: genai.Client, server: ThreadServer, tmp_path: Path
) -> None:
    store = client.file_search_stores.create(config={"display_name": "Field notes"})
    assert store.name is not None and store.name.startswith("fileSearchStores/field-notes-")

    path = tmp_path / "article.txt"
    path.write_text(ARTICLE)
    uploaded = client.files.upload(file=str(path))
    imported = finish(
        client,
        client.file_search_stores.import_file(
            file_search_store_name=store.name,
            file_name=uploaded.name,
            config=gt.ImportFileConfig(
                custom_metadata=[
                    gt.CustomMetadata(key="author", string_value="bob"),
                    gt.CustomMetadata(key="year", numeric_value=2024),
                ],
                chunking_config=gt.ChunkingConfig(
                    white_space_config=gt.WhiteSpaceConfig(
                        max_tokens_per_chunk=12, max_overlap_tokens=2
                    )
                ),
            ),
        ),
    )
    assert imported.error is None, imported.error
    assert imported.response is not None
    assert imported.response.parent == store.name

    pdf = tmp_path / "volcanoes.pdf"
    pdf.write_bytes(make_pdf(["Page one about lava.", "Page two: basalt columns."]))
    upload_op = finish(
        client,
        client.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name,
            file=str(pdf),
            config={
                "display_name": "volcanoes.pdf",
                "custom_metadata": [{"key": "author", "string_value": "ann"}],
            },
        ),
    )
    assert upload_op.error is None, upload_op.error
    assert upload_op.name.startswith(f"{store.name}/upload/operations/")

    documents = list(client.file_search_stores.documents.list(parent=store.name))
    assert {d.display_name for d in documents} == {"article.txt", "volcanoes.pdf"}
    article = next(d for d in documents if d.display_name == "article.txt")
    assert article.state.name == "STATE_ACTIVE"
    assert {m.key for m in article.custom_metadata or []} == {"author", "year"}
    assert imported.response.document_name == article.name
    assert client.file_search_stores.get(name=store.name).active_documents_count == 2

    def query(text: str, **extra: object) -> list[dict[str, object]]:
        answer = httpx.post(
            f"{server.url}/v1beta/{store.name}:query",
            headers={"x-goog-api-key": "KEY"},
            json={"query": text, "resultsCount": 5, **extra},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["relevantChunks"]

    hits = query("Fresnel lens")
    assert hits and "Fresnel" in hits[0]["chunk"]["data"]["stringValue"]
    assert 0 < hits[0]["chunkRelevanceScore"] <= 1
    basalt = query("basalt")
    assert {h["document"]["displayName"] for h in basalt} == {"article.txt", "volcanoes.pdf"}
    only_ann = query(
        "basalt",
        metadataFilters=[
            {"key": "author", "conditions": [{"operation": "EQUAL", "stringValue": "ann"}]}
        ],
    )
    assert {h["document"]["displayName"] for h in only_ann} == {"volcanoes.pdf"}
    assert query("zeppelin") == []

    # Re-importing the same file replaces its document instead of adding one.
    finish(
        client,
        client.file_search_stores.import_file(
            file_search_store_name=store.name, file_name=uploaded.name
        ),
    )
    assert len(list(client.file_search_stores.documents.list(parent=store.name))) == 2

    with pytest.raises(genai_errors.ClientError) as info:
        client.file_search_stores.delete(name=store.name)
    assert info.value.code == 400 and info.value.status == "FAILED_PRECONDITION"
    client.file_search_stores.delete(name=store.name, config={"force": True})
    with pytest.raises(genai_errors.ClientError) as missing:
        client.file_search_stores.get(name=store.name)
    assert missing.value.code == 404


def test_bad_files_fail_their_operation_and_leave_the_store_unchanged(
    client: genai.Client, tmp_path: Path
) -> None:
    store = client.file_search_stores.create()
    for name, data in [
        ("empty.txt", b""),
        ("picture.png", b"\x89PNG\r\n\x1a\n" + os.urandom(64)),
        ("broken.pdf", b"%PDF-1.4\n" + os.urandom(200)),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        uploaded = client.files.upload(
            file=str(path), config={"mime_type": "application/octet-stream"}
        )
        operation = finish(
            client,
            client.file_search_stores.import_file(
                file_search_store_name=store.name, file_name=uploaded.name
            ),
        )
        assert operation.error is not None and operation.error["code"] == 3, name
    assert list(client.file_search_stores.documents.list(parent=store.name)) == []
    with pytest.raises(genai_errors.ClientError) as info:
        client.file_search_stores.import_file(file_search_store_name=store.name, file_name="")
    assert info.value.code == 400


def test_spec_file_import_example(server: ThreadServer, tmp_path: Path) -> None:
    """The spec's example, with only the import, the server and a key added."""
    from longops import Client
    from longops.types import ImportFileSource

    (tmp_path / "gcs" / "my-bucket" / "document.pdf").write_bytes(
        make_pdf(["Quarterly report: revenue grew.", "Outlook: steady."])
    )
    store = Client(api_key="KEY", base_url=server.url).file_search_stores.create()

    client = Client(
        vertexai=True, project="PROJECT_ID", location="us-central1", api_key="KEY",
        base_url=server.url,
    )  # fmt: skip
    source = ImportFileSource(gcs_uri="gs://my-bucket/document.pdf")
    operation = client.file_search_stores.import_file(store=store.name, source=source)
    assert operation.name.startswith(f"{store.name}/operations/")
    while not operation.done:
        time.sleep(0.05)
        operation = client.operations.get(operation)
    assert operation.error is None
    assert operation.response is not None and operation.response.document_name is not None
    assert operation.response.document_name.startswith(f"{store.name}/documents/")
    assert operation.metadata is not None and operation.metadata["chunksIndexed"] >= 1


async def test_longops_sdk_stores_documents_and_query_sync_and_async(
    server: ThreadServer,
) -> None:
    from longops import Client
    from longops.types import MetadataFilter

    client = Client(api_key="KEY", base_url=server.url)
    store = await client.aio.file_search_stores.create(config={"display_name": "async notes"})
    operation = await client.aio.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name,
        file=ARTICLE.encode(),
        config={
            "display_name": "article.txt",
            "mime_type": "text/plain",
            "custom_metadata": [{"key": "topic", "string_value": "sea"}],
        },
    )
    done = await client.aio.operations.wait(operation, timeout=60)
    assert done.error is None
    result = await client.aio.file_search_stores.query(
        name=store.name,
        query="lighthouse beams",
        metadata_filters=[
            MetadataFilter.model_validate(
                {"key": "topic", "conditions": [{"operation": "EQUAL", "string_value": "sea"}]}
            )
        ],
    )
    assert (
        result.relevant_chunks
        and "Lighthouses" in result.relevant_chunks[0].chunk.data.string_value
    )
    documents = [
        d async for d in await client.aio.file_search_stores.documents.list(parent=store.name)
    ]
    assert [d.display_name for d in documents] == ["article.txt"]
    sync_docs = list(client.file_search_stores.documents.list(parent=store.name))
    assert [d.name for d in sync_docs] == [d.name for d in documents]
    none = client.file_search_stores.query(
        name=store.name,
        query="lighthouse",
        metadata_filters=[
            {"key": "topic", "conditions": [{"operation": "EQUAL", "string_value": "land"}]}
        ],
    )
    assert none.relevant_chunks == []
    client.file_search_stores.documents.delete(name=documents[0].name, force=True)
    assert list(client.file_search_stores.documents.list(parent=store.name)) == []
    await client.aio.aclose()
    client.close()


def test_http_and_file_sources(
    make_server: Callable[..., ThreadServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from longops import Client
    from longops.types import ImportFileSource
    from tests.support.servers import AppThread

    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("Glaciers carve valleys into a U shape over millennia.")

    web = AppThread(Starlette(routes=[Route("/notes.txt", page)]), lifespan="off").start()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "local.md").write_text("# Tides\n\nThe moon pulls the oceans into tides.")
    (tmp_path / "secret.txt").write_text("not for import")
    monkeypatch.setenv("LONGOPS_IMPORT_FOLDER", str(allowed))
    monkeypatch.setenv("LONGOPS_EGRESS_ALLOW", "127.0.0.1")  # the test's own web server
    server = make_server(workers=1)
    try:
        with Client(base_url=server.url) as client:
            store = client.file_search_stores.create()

            def run(source: ImportFileSource) -> object:
                operation = client.file_search_stores.import_file(store=store.name, source=source)
                return client.operations.wait(operation, timeout=60)

            assert run(ImportFileSource(uri=f"{web.url}/notes.txt")).error is None  # type: ignore[attr-defined]
            assert run(ImportFileSource(uri="file:///local.md")).error is None  # type: ignore[attr-defined]
            outside = run(ImportFileSource(uri="file:///../secret.txt"))
            assert outside.error.code == 7  # type: ignore[attr-defined]
            missing = run(ImportFileSource(uri=f"{web.url}/nothing"))
            assert missing.error.code == 5  # type: ignore[attr-defined]
            hits = client.file_search_stores.query(name=store.name, query="glaciers tides")
            names = {h.document.display_name for h in hits.relevant_chunks if h.document}
            assert names == {"notes.txt", "local.md"}
    finally:
        web.stop()


def test_cancelled_import_leaves_no_half_indexed_document(
    make_server: Callable[..., ThreadServer],
) -> None:
    from longops import Client

    words = ("tide", "reef", "kelp", "gull", "dune", "surf", "wave", "foam")
    text = " ".join(words[i % 8] + str(i % 997) for i in range(400_000))  # about 3 MB
    server = make_server()
    with Client(base_url=server.url) as client:
        store = client.file_search_stores.create()
        uploaded = client.files.upload(file=text.encode(), config={"mime_type": "text/plain"})
        for _ in range(3):
            operation = client.file_search_stores.import_file(
                store=store.name, source={"file_name": uploaded.name}
            )
            deadline = time.monotonic() + 30
            while (client.operations.get(operation).metadata or {}).get("state") == "PENDING":
                assert time.monotonic() < deadline
                time.sleep(0.001)
            client.operations.cancel(operation)  # mid-import, or just after it finished
            done = client.operations.wait(operation, timeout=60)
            documents = list(client.file_search_stores.documents.list(parent=store.name))
            if done.error is not None:
                assert done.error.code == 1
                assert documents == []
            else:
                assert [d.state for d in documents] == ["STATE_ACTIVE"]
                assert documents[0].size_bytes == len(text)
            for document in documents:
                client.file_search_stores.documents.delete(name=document.name, force=True)


async def test_official_sdk_async_flows(client: genai.Client, tmp_path: Path) -> None:
    aio = client.aio
    store = await aio.file_search_stores.create(config={"display_name": "async"})
    path = tmp_path / "notes.md"
    path.write_text("# Owls\n\nOwls hunt at night and fly silently.")
    uploaded = await aio.files.upload(file=str(path))
    operation = await aio.file_search_stores.import_file(
        file_search_store_name=store.name, file_name=uploaded.name
    )
    deadline = time.monotonic() + 60
    while not operation.done:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        operation = await aio.operations.get(operation)
    assert operation.error is None
    upload = await aio.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=str(path), config={"display_name": "again.md"}
    )
    while not upload.done:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        upload = await aio.operations.get(upload)
    assert upload.error is None
    pager = await aio.file_search_stores.documents.list(parent=store.name)
    names = {d.display_name async for d in pager}
    assert names == {"notes.md", "again.md"}
    await aio.file_search_stores.delete(name=store.name, config={"force": True})


def test_gs_uri_through_gcsfs_against_a_storage_emulator(
    make_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LONGOPS_GCS_ROOT=gs://, gs:// goes to Cloud Storage through gcsfs. The bucket
    here is the edge of the world, so a minimal emulator of the GCS JSON API stands in."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from longops import Client
    from longops.types import ImportFileSource
    from tests.support.servers import AppThread

    objects = {("bucket", "docs/moon.txt"): b"The moon raises tides twice a day."}
    seen: list[str] = []

    async def storage(request: Request) -> Response:
        seen.append(request.url.path)
        bucket, name = request.path_params["bucket"], request.path_params["name"]
        data = objects.get((bucket, name))
        if data is None:
            return JSONResponse({"error": {"code": 404, "message": "No such object"}}, 404)
        if request.query_params.get("alt") == "media":
            return Response(data, media_type="application/octet-stream")
        return JSONResponse(
            {"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(data))}
        )

    async def listing(request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        bucket = request.path_params["bucket"]
        items = [
            {"kind": "storage#object", "bucket": b, "name": n, "size": str(len(d))}
            for (b, n), d in objects.items()
            if b == bucket and n.startswith(prefix)
        ]
        return JSONResponse({"kind": "storage#objects", "items": items})

    emulator = AppThread(
        Starlette(
            routes=[
                Route("/storage/v1/b/{bucket}/o", listing),
                Route("/storage/v1/b/{bucket}/o/{name:path}", storage),
                Route("/download/storage/v1/b/{bucket}/o/{name:path}", storage),
            ]
        ),
        lifespan="off",
    ).start()
    monkeypatch.setenv("LONGOPS_GCS_ROOT", "gs://")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    server = make_server()
    try:
        with Client(base_url=server.url) as client:
            store = client.file_search_stores.create()
            done = client.operations.wait(
                client.file_search_stores.import_file(
                    store=store.name, source=ImportFileSource(gcs_uri="gs://bucket/docs/moon.txt")
                ),
                timeout=60,
            )
            assert done.error is None, done.error
            missing = client.operations.wait(
                client.file_search_stores.import_file(
                    store=store.name, source=ImportFileSource(gcs_uri="gs://bucket/nothing.txt")
                ),
                timeout=60,
            )
            assert missing.error is not None and missing.error.code == 5
            hits = client.file_search_stores.query(name=store.name, query="tides")
            assert [h.document.display_name for h in hits.relevant_chunks if h.document] == [
                "moon.txt"
            ]
        assert seen  # the bytes really came through the emulator
    finally:
        emulator.stop()


SHELF = {
    "hamlet.txt": "To be, or not to be, that is the question.",
    "tides.txt": "The moon pulls the oceans into tides.",
    "lunar.txt": "The moon, the moon, the full moon.",
    "ships.txt": "Lighthouses guide ships along dangerous coasts.",
    "contact.txt": "Write to bob@example.com: café prices are 3.14 euros (https://example.org/menu.html).",
}


def test_queries_find_the_same_chunks_best_first_on_either_store(server: ThreadServer) -> None:
    """Stop words count, words are stemmed, punctuation separates words and diacritics
    fold, as FTS5's `porter unicode61` does on SQLite (PostgreSQL's `english` dropped
    "the" and "to be", and kept "bob@example.com" or "3.14" as single tokens)."""
    from longops import Client

    with Client(api_key="KEY", base_url=server.url) as client:
        store = client.file_search_stores.create()
        for name, text in SHELF.items():
            operation = client.file_search_stores.upload_to_file_search_store(
                file_search_store_name=store.name,
                file=text.encode(),
                config={"display_name": name, "mime_type": "text/plain"},
            )
            assert client.operations.wait(operation, timeout=60).error is None

        def query(text: str) -> list[str]:
            hits = client.file_search_stores.query(
                name=store.name, query=text, results_count=10
            ).relevant_chunks
            scores = [h.chunk_relevance_score for h in hits]
            assert all(0 < s <= 1 for s in scores), scores
            assert scores == sorted(scores, reverse=True), scores
            return [h.document.display_name or "" for h in hits if h.document]

        the = query("the")
        assert the[0] == "lunar.txt" and set(the) == {"lunar.txt", "tides.txt", "hamlet.txt"}
        the_moon = query("the moon")
        assert the_moon[:2] == ["lunar.txt", "tides.txt"], the_moon
        assert set(the_moon) == {"lunar.txt", "tides.txt", "hamlet.txt"}
        assert query("moon") == ["lunar.txt", "tides.txt"]
        hamlet = query("to be or not")
        assert hamlet[0] == "hamlet.txt" and set(hamlet) == {"hamlet.txt", "contact.txt"}
        assert query("To BE") == ["hamlet.txt", "contact.txt"]
        assert query("lighthouse guiding") == ["ships.txt"]
        for word in ("example", "bob", "cafe", "CAFÉ", "3", "14", "menu", "html"):
            assert query(word) == ["contact.txt"], word
        assert query("zeppelin") == []
        assert query("_") == []


@pytest.mark.parametrize(
    "condition",
    [
        "1",
        '{"operation": "EQUAL", "stringValue": {}}',
        '{"operation": "EQUAL", "stringValue": "a\\u0000b"}',
        '{"operation": "EQUAL", "numericValue": [1]}',
        '{"operation": "EQUAL", "numericValue": true}',
        '{"operation": "LESS", "numericValue": 1' + "0" * 400 + "}",
    ],
    ids=lambda c: c[:60],
)
def test_malformed_metadata_filters_are_400s(server: ThreadServer, condition: str) -> None:
    headers = {"x-goog-api-key": "KEY", "content-type": "application/json"}
    store = httpx.post(f"{server.url}/v1beta/fileSearchStores", headers=headers, json={}).json()
    body = '{"query": "hello", "metadataFilters": [{"key": "a", "conditions": [%s]}]}'
    answer = httpx.post(
        f"{server.url}/v1beta/{store['name']}:query", headers=headers, content=body % condition
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
