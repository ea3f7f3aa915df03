"""Uploads with hostile tenants and hostile timing, through a real server on both
backends: a file name is its tenant's own, a record always describes the bytes served,
one finalize of a session wins, overlapping chunks are refused, and an oversized chunk
is refused before it is read."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longops.engine.store import StoreUnavailable
from longops.engine.uploads import GRACE_SECONDS
from longops.server import ServerConfig
from tests.support.postgres import database
from tests.support.servers import ThreadServer

KEYS = {"KEY_A": "team-a", "KEY_B": "team-b"}
A, B = {"x-goog-api-key": "KEY_A"}, {"x-goog-api-key": "KEY_B"}


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Servers (no workers) on one database of the backend and one blob folder."""
    started: list[ThreadServer] = []
    with database(request.param, tmp_path) as url:

        def start(**config: Any) -> ThreadServer:
            server = ThreadServer(
                database_url=url,
                workers=0,
                config=ServerConfig(api_keys=KEYS, **config),
                blobs=tmp_path / "blobs",
            ).start()
            started.append(server)
            return server

        yield start
        for server in started:
            server.stop()


@pytest.fixture
def server(make: Callable[..., ThreadServer]) -> ThreadServer:
    return make()


def start(server: ThreadServer, key: dict[str, str], name: str | None = None) -> httpx.Response:
    file: dict[str, str] = {"mimeType": "application/octet-stream"}
    if name is not None:
        file["name"] = name
    return httpx.post(
        f"{server.url}/upload/v1beta/files",
        headers={**key, "x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
        json={"file": file},
    )


def session(server: ThreadServer, key: dict[str, str], name: str | None = None) -> str:
    started = start(server, key, name)
    assert started.status_code == 200, started.text
    return started.headers["x-goog-upload-url"]


def send(url: str, data: bytes, offset: int, command: str = "upload") -> httpx.Response:
    return httpx.post(
        url,
        content=data,
        headers={"x-goog-upload-command": command, "x-goog-upload-offset": str(offset)},
        timeout=30,
    )


def upload(server: ThreadServer, key: dict[str, str], data: bytes, name: str | None = None) -> Any:
    final = send(session(server, key, name), data, 0, "upload, finalize")
    assert final.status_code == 200, final.text
    return final.json()["file"]


def served(server: ThreadServer, key: dict[str, str], name: str) -> bytes:
    """The file's bytes, checked against its record's size and SHA-256."""
    record = httpx.get(f"{server.url}/v1beta/{name}", headers=key)
    assert record.status_code == 200, record.text
    body = httpx.get(f"{server.url}/v1beta/{name}:download?alt=media", headers=key)
    assert body.status_code == 200
    assert int(record.json()["sizeBytes"]) == len(body.content)
    assert base64.b64decode(record.json()["sha256Hash"]) == hashlib.sha256(body.content).digest()
    return body.content


def file_blobs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "blobs" / "files").iterdir())


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together, so the requests overlap."""
    barrier = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_a_file_name_is_its_tenants_own(server: ThreadServer) -> None:
    """B learns nothing of A's names (no 409 on start, a 404 like any unknown name) and
    gets a file of its own under the same name; neither sees, lists or deletes the other's."""
    mine, theirs = os.urandom(1000), os.urandom(700)
    upload(server, A, mine, "files/quarterly-report")
    never = httpx.get(f"{server.url}/v1beta/files/never-used", headers=B).json()["error"]
    taken = httpx.get(f"{server.url}/v1beta/files/quarterly-report", headers=B).json()["error"]
    assert (taken["code"], taken["status"]) == (never["code"], never["status"])
    assert never["code"] == 404
    assert taken["message"] == never["message"].replace("never-used", "quarterly-report")

    assert start(server, B, "files/quarterly-report").status_code == 200
    upload(server, B, theirs, "files/quarterly-report")
    assert served(server, A, "files/quarterly-report") == mine
    assert served(server, B, "files/quarterly-report") == theirs
    listed = httpx.get(f"{server.url}/v1beta/files", headers=B).json()["files"]
    assert [(f["name"], f["sizeBytes"]) for f in listed] == [("files/quarterly-report", "700")]

    assert httpx.delete(f"{server.url}/v1beta/files/quarterly-report", headers=B).status_code == 200
    assert served(server, A, "files/quarterly-report") == mine
    again = start(server, A, "files/quarterly-report")  # A's name is still A's
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"


@pytest.mark.parametrize("first", ["b-finalizes-last", "b-finalizes-first"])
def test_sessions_of_two_tenants_for_one_name_keep_their_own_bytes(
    server: ThreadServer, first: str
) -> None:
    """B opens a session for A's future name; whichever finalizes first, each tenant's
    file serves its own bytes (they used to share `files/{name}`: one served the other's,
    truncated to its length)."""
    mine, theirs = os.urandom(5000), os.urandom(3000)
    b_session = session(server, B, "files/quarterly-report")
    assert send(b_session, theirs, 0).status_code == 200
    if first == "b-finalizes-first":
        assert send(b_session, b"", len(theirs), "finalize").status_code == 200
        upload(server, A, mine, "files/quarterly-report")
    else:
        upload(server, A, mine, "files/quarterly-report")
        assert send(b_session, b"", len(theirs), "finalize").status_code == 200
    assert served(server, A, "files/quarterly-report") == mine
    assert served(server, B, "files/quarterly-report") == theirs


def test_a_second_upload_of_a_name_is_refused_and_leaves_nothing(
    server: ThreadServer, tmp_path: Path
) -> None:
    """Two sessions of one tenant for one name: the first finalize makes the file, the
    second is a 409 whose bytes are removed, and retrying it cannot publish anything."""
    first, second = os.urandom(4000), os.urandom(9000)
    one = session(server, A, "files/twice")
    two = session(server, A, "files/twice")
    assert send(one, first, 0, "upload, finalize").status_code == 200
    refused = send(two, second, 0, "upload, finalize")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["message"] == "File files/twice already exists."
    assert refused.headers["x-goog-upload-status"] == "final"
    retried = send(two, b"", len(second), "finalize")
    assert retried.status_code == 404
    assert served(server, A, "files/twice") == first
    assert len(file_blobs(tmp_path)) == 1  # the loser's bytes are gone


def test_one_finalize_of_a_session_wins(server: ThreadServer, tmp_path: Path) -> None:
    """Finalizes of one session at once: one file, holding the bytes; every other request
    gets a 409 (being finalized) or a 404 (finalized), never a second file or an empty
    blob published over the first."""
    data = os.urandom(3 << 20)
    url = session(server, A)
    assert send(url, data, 0).status_code == 200
    answers = at_once([lambda: send(url, b"", len(data), "finalize") for _ in range(8)])
    codes = sorted(a.status_code for a in answers)
    assert codes[0] == 200 and set(codes[1:]) <= {404, 409}, [a.text for a in answers]
    assert codes.count(200) == 1
    name = next(a for a in answers if a.status_code == 200).json()["file"]["name"]
    assert served(server, A, name) == data
    listed = httpx.get(f"{server.url}/v1beta/files", headers=A).json()["files"]
    assert [f["name"] for f in listed] == [name]
    assert len(file_blobs(tmp_path)) == 1


def test_one_finalize_of_a_store_upload_wins(server: ThreadServer) -> None:
    """Finalizes of one upload into a file search store at once start one import (each
    used to publish the bytes, the later ones an empty blob, and start an import)."""
    store = httpx.post(f"{server.url}/v1beta/fileSearchStores", headers=A, json={}).json()
    started = httpx.post(
        f"{server.url}/upload/v1beta/{store['name']}:uploadToFileSearchStore",
        headers={**A, "x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
        json={"displayName": "notes.txt", "mimeType": "text/plain"},
    )
    url = started.headers["x-goog-upload-url"]
    data = b"field notes " * 1000
    assert send(url, data, 0).status_code == 200
    answers = at_once([lambda: send(url, b"", len(data), "finalize") for _ in range(8)])
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 1 and set(codes) <= {200, 404, 409}, [a.text for a in answers]
    operations = httpx.get(f"{server.url}/v1beta/operations", headers=A).json()["operations"]
    assert len(operations) == 1


def test_chunks_at_one_offset_land_once(server: ThreadServer) -> None:
    """Chunks sent at once at offset 0: one lands, the others are 400s naming the offset;
    the file holds the winner's bytes once (it sometimes held several: a race, which
    `test_blobs.py::test_appends_at_one_offset_land_once` drives closer)."""
    chunks = [os.urandom(2 << 20) for _ in range(6)]
    url = session(server, A)
    answers = at_once([lambda c=c: send(url, c, 0) for c in chunks])  # type: ignore[misc]
    won = [c for c, a in zip(chunks, answers, strict=True) if a.status_code == 200]
    assert len(won) == 1, [a.status_code for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert "x-goog-upload-offset 0" in error["message"]
            assert error["details"][0]["fieldViolations"][0]["field"] == "x-goog-upload-offset"
    query = httpx.post(url, headers={"x-goog-upload-command": "query"})
    assert query.headers["x-goog-upload-size-received"] == str(len(won[0]))
    final = send(url, b"", len(won[0]), "finalize")
    assert final.status_code == 200, final.text
    assert served(server, A, final.json()["file"]["name"]) == won[0]


def raw_request(server: ThreadServer, url: str, head: list[str], body: bytes) -> bytes:
    """Send a request's head and the start of its body on a socket; the server's answer
    (empty if none came within 10 s, as when it waits for the rest of the body)."""
    path = url.removeprefix(server.url)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", *head, "", ""]
        sock.sendall("\r\n".join(lines).encode() + body)
        answer = b""
        try:
            while not _complete(answer) and (received := sock.recv(65536)):
                answer += received
        except TimeoutError:
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return len(body) >= int(value)
    return True


def test_an_oversized_chunk_is_refused_by_its_length_before_it_is_read(
    make: Callable[..., ThreadServer],
) -> None:
    """A chunk announcing more than the limit is a 413 at once, with none of its bytes
    read (it used to be read whole into memory first)."""
    server = make(max_upload_bytes=1 << 20)
    url = session(server, A)
    head = ["x-goog-upload-command: upload", "x-goog-upload-offset: 0"]
    answer = raw_request(server, url, [*head, f"content-length: {400 << 20}"], b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"Files are limited to 1048576 bytes."' in answer


def test_a_chunk_without_a_length_is_refused_once_past_the_limit(
    make: Callable[..., ThreadServer],
) -> None:
    """Sent without a length, a chunk is streamed: a 413 as soon as it passes the limit,
    not after the whole body has arrived."""
    server = make(max_upload_bytes=1 << 20)
    url = session(server, A)
    piece = b"x" * (64 << 10)
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(20))  # 1.25 MiB
    head = ["x-goog-upload-command: upload", "x-goog-upload-offset: 0"]
    answer = raw_request(server, url, [*head, "transfer-encoding: chunked"], framed)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Within the limit, a chunk without a length is taken whole.
    small = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(4)) + b"0\r\n\r\n"
    other = session(server, A)
    answer = raw_request(server, other, [*head, "transfer-encoding: chunked"], small)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    query = httpx.post(other, headers={"x-goog-upload-command": "query"})
    assert query.headers["x-goog-upload-size-received"] == str(4 * len(piece))


def test_a_finalize_whose_outcome_is_unknown_is_settled_by_the_sweep(
    server: ThreadServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails while the file is recorded: the write may or may not have
    committed, so the published bytes are neither served as a file nor deleted, and
    the session stays claimed (a retry is 409, not an empty file). When the session is
    swept, the bytes go unless a file records them; the one that was recorded stays."""
    engine = server.engine
    add_file = engine.add_file

    async def lost(**file: Any) -> Any:
        if file["id"] == "committed":  # the write commits, then its answer is lost
            await add_file(**file)
        raise StoreUnavailable("the database went away mid-write")

    monkeypatch.setattr(engine, "add_file", lost)
    urls = [session(server, A, "files/lost"), session(server, A, "files/committed")]
    for url in urls:
        assert send(url, b"bytes", 0, "upload, finalize").status_code == 503
        retried = send(url, b"", 5, "finalize")
        assert retried.status_code == 409 and retried.json()["error"]["status"] == "ABORTED"
    assert len(file_blobs(tmp_path)) == 2  # published, outcome unknown: both kept for now

    monkeypatch.setattr(engine, "add_file", add_file)
    later = time.time() + engine.config.upload_ttl_seconds + GRACE_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert server.loop is not None
    swept = asyncio.run_coroutine_threadsafe(engine.purge_expired_uploads(), server.loop)
    assert swept.result(timeout=30) == 2
    monkeypatch.undo()
    assert served(server, A, "files/committed") == b"bytes"
    assert len(file_blobs(tmp_path)) == 1  # the unrecorded bytes are gone
    assert httpx.get(f"{server.url}/v1beta/files/lost", headers=A).status_code == 404
