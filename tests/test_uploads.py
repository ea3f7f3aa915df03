"""Resumable uploads through the longops SDK, the official SDK, and raw HTTP."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from longops.engine.uploads import GRACE_SECONDS
from longops.engine.worker import WorkerConfig
from longops.server import ServerConfig
from tests.support.servers import ThreadServer
from tests.support.twin import Twin
from tests.support.waiting import until_sync

NINE_MIB = os.urandom(9 << 20)  # two chunks of the SDKs' 8 MiB


@pytest.mark.parametrize(
    "payload", [b"hello uploads\n", b"", NINE_MIB], ids=["small", "empty", "9MiB"]
)
async def test_upload_download_round_trip(api: Twin, payload: bytes, tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(payload)
    file = await api.files.upload(file=path, config={"mime_type": "text/plain"})
    assert file.name is not None and file.name.startswith("files/")
    assert (file.size_bytes, file.mime_type, file.source) == (
        len(payload),
        "text/plain",
        "UPLOADED",
    )
    assert file.display_name == "data.txt"
    assert file.sha256_hash is not None
    assert await api.files.download(file=file.name) == payload
    assert (await api.files.get(name=file.name)).size_bytes == len(payload)


async def test_upload_from_bytes_with_a_chosen_name(api: Twin) -> None:
    file = await api.files.upload(
        file=b'{"a": 1}', config={"name": "files/my-doc-1", "mime_type": "application/json"}
    )
    assert file.name == "files/my-doc-1"
    with pytest.raises(Exception) as info:
        await api.files.upload(
            file=b"x", config={"name": "files/my-doc-1", "mime_type": "text/plain"}
        )
    assert getattr(info.value, "code", None) == 409


def official(server: ThreadServer) -> genai.Client:
    return genai.Client(api_key="KEY", http_options=genai_types.HttpOptions(base_url=server.url))


@pytest.mark.parametrize("size", [100, 9 << 20])
def test_official_sdk_upload(
    make_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    for var in [v for v in os.environ if v.startswith(("GOOGLE_", "GEMINI_"))]:
        monkeypatch.delenv(var)
    server = make_server(config=ServerConfig(api_keys={"KEY": "t"}), workers=0)
    data = NINE_MIB[:size]
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    client = official(server)
    uploaded = client.files.upload(file=str(path))
    assert uploaded.size_bytes == size and uploaded.state.name == "ACTIVE"
    assert uploaded.name in {f.name for f in client.files.list()}
    got = httpx.get(
        f"{server.url}/v1beta/{uploaded.name}:download?alt=media", headers={"x-goog-api-key": "KEY"}
    )
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    client.files.delete(name=uploaded.name)
    with pytest.raises(genai_errors.ClientError) as info:
        client.files.get(name=uploaded.name)
    assert info.value.code == 404


def test_upload_protocol_errors(server: ThreadServer) -> None:
    start = httpx.post(
        f"{server.url}/upload/v1beta/files",
        headers={
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": "6",
            "x-goog-upload-header-content-type": "text/plain",
        },
    )
    assert start.status_code == 200 and start.headers["x-goog-upload-status"] == "active"
    url = start.headers["x-goog-upload-url"]
    wrong = httpx.post(
        url,
        content=b"abc",
        headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "3"},
    )
    assert wrong.status_code == 400 and wrong.headers["x-goog-upload-status"] == "final"
    first = httpx.post(
        url,
        content=b"abc",
        headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"},
    )
    assert first.headers["x-goog-upload-status"] == "active"
    query = httpx.post(url, headers={"x-goog-upload-command": "query"})
    assert query.headers["x-goog-upload-size-received"] == "3"
    short = httpx.post(
        url,
        content=b"d",
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "3"},
    )
    assert short.status_code == 400 and "announced" in short.json()["error"]["message"]
    unknown = httpx.post(
        f"{server.url}/upload/v1beta/files?upload_id={'a' * 32}",
        content=b"x",
        headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"},
    )
    assert unknown.status_code == 404 and unknown.headers["x-goog-upload-status"] == "final"
    no_protocol = httpx.post(f"{server.url}/upload/v1beta/files", json={})
    assert no_protocol.status_code == 400
    huge = "9" * 4301  # past the digits `int` converts
    too_long = httpx.post(
        url,
        content=b"d",
        headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": huge},
    )
    assert too_long.status_code == 400 and too_long.headers["x-goog-upload-status"] == "final"
    start_headers = {"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"}
    for headers, body in [
        ({**start_headers, "x-goog-upload-header-content-length": huge}, {}),
        (start_headers, {"file": {"displayName": {"a": 1}}}),
    ]:
        bad = httpx.post(f"{server.url}/upload/v1beta/files", headers=headers, json=body)
        assert bad.status_code == 400, bad.text


def test_abandoned_upload_sessions_expire_and_are_swept(
    make_server: Callable[..., ThreadServer],
) -> None:
    """A session answers 404 once a week has passed since it opened; an hour after that
    the workers' maintenance removes it and its bytes. Live sessions are left alone."""
    server = make_server(worker_config=WorkerConfig(concurrency=1, purge_interval=0.1))
    uploads, blobs = server.engine.uploads, server.engine.blobs
    live = httpx.post(
        f"{server.url}/upload/v1beta/files",
        headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
    ).headers["x-goog-upload-url"]
    chunk = {"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"}
    assert httpx.post(live, content=b"abc", headers=chunk).status_code == 200
    opened_long_ago = time.time() - uploads.ttl_seconds
    expired = uploads.open({"target": "file"}, opened_long_ago - 60)
    abandoned = uploads.open({"target": "file"}, opened_long_ago - 2 * GRACE_SECONDS)
    for session in (expired, abandoned):
        blobs.append(uploads.part(session), b"abc", 0)
        late = httpx.post(
            f"{server.url}/upload/v1beta/files?upload_id={session}", content=b"d", headers=chunk
        )
        assert late.status_code == 404 and "expired" in late.json()["error"]["message"]

    until_sync(lambda: blobs.current_size(uploads.part(abandoned)) == 0, what="the sweep")
    until_sync(lambda: f"uploads/{abandoned}.json" not in blobs.keys("uploads"))
    assert f"uploads/{expired}.json" in blobs.keys("uploads")  # within the grace period
    assert blobs.current_size(uploads.part(expired)) == 3
    done = httpx.post(
        live,
        content=b"def",
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "3"},
    )
    assert done.status_code == 200 and done.json()["file"]["sizeBytes"] == "6"


def test_downloads_answer_byte_ranges(server: ThreadServer) -> None:
    """Video players seek with Range requests; over two chunks of the blob store's reads."""
    from longops import Client

    payload = os.urandom(3 << 20)
    with Client(base_url=server.url) as client:
        file = client.files.upload(file=payload, config={"mime_type": "video/mp4"})
    url = f"{server.url}/v1beta/{file.name}:download?alt=media"

    def get(range: str | None) -> httpx.Response:
        return httpx.get(url, headers={"range": range} if range else {})

    whole = get(None)
    assert whole.status_code == 200 and whole.content == payload
    assert whole.headers["accept-ranges"] == "bytes"
    cases = {
        "bytes=0-9": (0, 10),
        "bytes=1048570-2097160": (1048570, 2097161),
        f"bytes={len(payload) - 5}-": (len(payload) - 5, len(payload)),
        "bytes=-7": (len(payload) - 7, len(payload)),
        f"bytes=10-{len(payload) * 2}": (10, len(payload)),
    }
    for header, (start, end) in cases.items():
        part = get(header)
        assert part.status_code == 206, header
        assert part.content == payload[start:end], header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{len(payload)}"
        assert part.headers["content-length"] == str(end - start)
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"):
        assert get(ignored).status_code == 200 and get(ignored).content == payload
    beyond = get(f"bytes={len(payload)}-")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(payload)}"
    assert beyond.json()["error"]["status"] == "OUT_OF_RANGE"


def test_a_store_upload_rejected_at_finalize_ends_its_session(server: ThreadServer) -> None:
    """The import's request is checked once the bytes are in; if it is refused, the bytes
    are dropped and the session ends, so a retried finalize cannot import nothing."""
    store = httpx.post(f"{server.url}/v1beta/fileSearchStores", json={}).json()["name"]
    start = httpx.post(
        f"{server.url}/upload/v1beta/{store}:uploadToFileSearchStore",
        headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
        json={"customMetadata": [{"key": ""}]},
    )
    url = start.headers["x-goog-upload-url"]
    finalize = {"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"}
    refused = httpx.post(url, content=b"some text", headers=finalize)
    assert refused.status_code == 400 and refused.headers["x-goog-upload-status"] == "final"
    again = httpx.post(url, content=b"some text", headers=finalize)
    assert again.status_code == 404, again.text
