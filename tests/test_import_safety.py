"""Imports are safe with hostile input: they cannot reach the server's own network, and
every fetch, extraction and chunking is bounded (time, CPU, text, chunks), with parsing
kept off the API's event loop. Through a real server with in-process workers, as
`longops serve` runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from longops import Client
from longops.types import ImportFileSource
from tests.support.pdf import assemble_pdf
from tests.support.servers import Process, ThreadServer, free_port, wait_healthy
from tests.support.waiting import until_sync
from tests.support.web import drip, redirect, serving, text


@pytest.fixture
def start(
    make_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[ThreadServer, Client, str]]]:
    """A server configured by environment variables (`LONGOPS_...`), a client, a store."""
    clients: list[Client] = []

    def make(**env: str) -> tuple[ThreadServer, Client, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        server = make_server(workers=2)
        client = Client(base_url=server.url)
        clients.append(client)
        store = client.file_search_stores.create()
        assert store.name is not None
        return server, client, store.name

    yield make
    for client in clients:
        client.close()


def run(client: Client, store: str, source: dict[str, Any], **config: Any) -> Any:
    operation = client.file_search_stores.import_file(
        store=store, source=ImportFileSource(**source), config=config or None
    )
    done = client.operations.wait(operation, timeout=60)
    assert done.done
    return done


def documents(client: Client, store: str) -> list[Any]:
    return list(client.file_search_stores.documents.list(parent=store))


# ----------------------------------------------------------------------------- egress


def test_imports_cannot_read_the_servers_own_network(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    server, client, store = start()
    port = server.url.rsplit(":", 1)[1]
    with serving("127.0.0.1", {"/admin": text(b"internal secrets")}) as internal:
        for uri in (
            f"{server.url}/healthz",  # the server itself
            f"http://localhost:{port}/healthz",
            f"{internal.url}/admin",  # any local service
        ):
            done = run(client, store, {"uri": uri})
            assert (done.error.code, done.error.message) == (5, f"Could not fetch {uri}.")
    assert internal.hits == []
    assert documents(client, store) == []


def test_open_and_closed_ports_fail_alike(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    """Otherwise imports are a port scanner."""
    server, client, store = start()
    closed = f"http://127.0.0.1:{free_port()}/"
    opened = f"{server.url}/"
    for uri in (opened, closed):
        error = run(client, store, {"uri": uri}).error
        assert (error.code, error.message.replace(uri, "URI")) == (5, "Could not fetch URI.")


def test_allowed_hosts_import_but_their_redirects_to_refused_ones_do_not(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    with serving("127.0.0.1", {"/secret": text(b"internal secrets")}) as private:
        routes = {
            "/notes.txt": text(b"Glaciers carve valleys into a U shape."),
            "/hop": redirect(f"{private.url}/secret"),
        }
        with serving("127.0.0.2", routes) as allowed:
            _, client, store = start(LONGOPS_EGRESS_ALLOW="127.0.0.2/32")
            assert run(client, store, {"uri": f"{allowed.url}/notes.txt"}).error is None
            hop = run(client, store, {"uri": f"{allowed.url}/hop"})
    assert (hop.error.code, hop.error.message) == (5, f"Could not fetch {allowed.url}/hop.")
    assert private.hits == []
    assert [d.display_name for d in documents(client, store)] == ["notes.txt"]


# ------------------------------------------------------------------------ bounded work


def test_a_fetch_has_a_total_deadline_not_only_one_per_read(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    stop = threading.Event()
    try:
        with serving("127.0.0.2", {"/drip": drip(0.2, stop)}) as web:
            _, client, store = start(LONGOPS_EGRESS_ALLOW="127.0.0.2", LONGOPS_IMPORT_TIMEOUT="1")
            began = time.monotonic()
            done = run(client, store, {"uri": f"{web.url}/drip"})
            assert time.monotonic() - began < 20  # the drip alone would go on for ever
    finally:
        stop.set()
    assert done.error.code == 4
    assert done.error.message == f"Fetching {web.url}/drip took over 1 s."


def _upload(client: Client, data: bytes, mime: str) -> str:
    uploaded = client.files.upload(file=data, config={"mime_type": mime})
    assert uploaded.name is not None
    return uploaded.name


def test_text_that_expands_past_the_cap_is_refused_while_it_is_built(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    """A CSV repeats its header on every row, JSON its paths on every leaf: a small file
    can make a hundred times its size in text."""
    _, client, store = start(LONGOPS_IMPORT_MAX_TEXT="1000000")
    header = ",".join(f"a rather long column heading number {i}" for i in range(40))
    csv = (header + "\n" + "\n".join(",".join("x" * 40) for _ in range(600))).encode()
    json = ('{"' + "k" * 100 + '": [' + ",".join(["0"] * 20_000) + "]}").encode()
    for data, mime in ((csv, "text/csv"), (json, "application/json")):
        assert len(data) < 100_000
        done = run(client, store, {"file_name": _upload(client, data, mime)})
        assert done.error.code == 3, done.error
        assert "more than 1000000 characters of text" in done.error.message
    assert documents(client, store) == []


def test_chunking_that_repeats_the_text_in_every_chunk_is_refused(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    """Overlap 2047 of 2048: every chunk advances one word. 59 KB would make ~8,000
    chunks and a third of a gigabyte of database."""
    _, client, store = start()
    words = " ".join(f"w{i % 1000}" for i in range(12_000)).encode()  # 59 KB
    name = _upload(client, words, "text/plain")
    overlapped = {"white_space_config": {"max_tokens_per_chunk": 2048, "max_overlap_tokens": 2047}}
    done = run(client, store, {"file_name": name}, chunking_config=overlapped)
    assert done.error.code == 3
    assert "use a smaller overlap" in done.error.message
    assert run(client, store, {"file_name": name}).error is None  # default chunks are fine


def test_documents_that_make_too_many_chunks_are_refused(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    _, client, store = start(LONGOPS_IMPORT_MAX_CHUNKS="10")
    name = _upload(client, " ".join(["word"] * 3000).encode(), "text/plain")
    done = run(client, store, {"file_name": name})
    assert (done.error.code, done.error.message) == (
        3,
        "the document makes more than 10 chunks; use larger chunks (maxTokensPerChunk) "
        "or split the file",
    )


def flate_bomb_pdf(operations: int, pages: int = 1) -> bytes:
    """A PDF of a few kilobytes whose pages (they share one content stream) each inflate
    into `operations` text drawings."""
    stream = zlib.compress(b"BT /F1 1 Tf (a) Tj ET\n" * operations, 9)
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    )
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        *[page] * pages,
    ]
    return assemble_pdf(objects)


def test_a_pdf_that_costs_minutes_of_cpu_is_stopped_at_its_budget(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    _, client, store = start(LONGOPS_IMPORT_CPU_SECONDS="1")
    bomb = flate_bomb_pdf(2_000_000)  # about 8 s of CPU here, before pypdf gives up on it
    assert len(bomb) < 200_000
    began = time.monotonic()
    done = run(client, store, {"file_name": _upload(client, bomb, "application/pdf")})
    assert time.monotonic() - began < 30
    assert (done.error.code, done.error.message) == (
        3,
        "the document took too long to extract (over 1 s of CPU)",
    )


def _descendants() -> dict[int, int]:
    """Every process below this one (the test's own, where servers run in threads): pid
    to parent pid."""
    found: dict[int, int] = {}
    pending = [os.getpid()]
    while pending:
        parent = pending.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(pid) for pid in children.read_text().split()]
            except OSError:  # ended meanwhile
                continue
            found.update(dict.fromkeys(pids, parent))
            pending += pids
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # not a zombie


def test_a_cancelled_import_kills_its_parsing_child(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    """Otherwise a hostile file keeps a CPU busy for its whole budget after its import
    was cancelled, and enough of them keep every CPU busy."""
    _, client, store = start(LONGOPS_IMPORT_CPU_SECONDS="300")
    name = _upload(client, flate_bomb_pdf(200_000, pages=4), "application/pdf")  # ~45 s of CPU
    before = _descendants()
    operation = client.file_search_stores.import_file(store=store, source={"file_name": name})

    def parsers() -> list[int]:  # the forkserver is this process's child; parsers its
        return [
            pid
            for pid, parent in _descendants().items()
            if parent != os.getpid() and pid not in before and _running(pid)
        ]

    until_sync(parsers, timeout=30, what="the import's parsing child")
    (child,) = parsers()
    client.operations.cancel(operation)
    until_sync(lambda: not _running(child), timeout=5, what="the parsing child to be killed")
    done = client.operations.wait(operation, timeout=30)
    assert done.error is not None and done.error.code == 1  # CANCELLED
    assert parsers() == []


def test_the_api_stays_responsive_while_a_large_file_is_parsed(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    """Parsing is pure Python (and `json.loads` of 30 MB holds the GIL for seconds in
    one call): in a worker thread of the API's own process it stalls every request."""
    server, client, store = start()
    name = _upload(client, b"[" + b"0," * 15_000_000 + b"0]", "application/json")
    operation = client.file_search_stores.import_file(store=store, source={"file_name": name})
    slowest = 0.0
    with httpx.Client(base_url=server.url, timeout=30) as probe:
        while not client.operations.get(operation).done:
            began = time.monotonic()
            assert probe.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.02)
    assert slowest < 1.0  # a stalled loop answers after seconds
    done = client.operations.get(operation)
    assert done.error is not None and "characters of text" in done.error.message


def test_longops_serve_imports_a_document_whose_chunks_exceed_a_pipe_buffer(
    spawn: Callable[..., Process], database_url: str, tmp_path: Path
) -> None:
    """As a user runs it: `longops serve` is on uvloop, which leaves the descriptors it
    watched non-blocking, and the parsed answer (megabytes of chunks) failed half-way
    through its read, INTERNAL after three attempts. Thread servers run plain asyncio."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spawn(
        "serve", "--port", str(port), "--database", database_url, "--workers", "1",
        "--blobs", str(tmp_path / "blobs"),
    )  # fmt: skip
    wait_healthy(url)
    words = " ".join(f"word{i % 5000}" for i in range(300_000))
    with Client(base_url=url) as client:
        store = client.file_search_stores.create(config={"display_name": "big"}).name
        assert store is not None
        name = _upload(client, words.encode(), "text/plain")
        operation = client.file_search_stores.import_file(store=store, source={"file_name": name})
        done = client.operations.wait(operation, timeout=60)
    assert done.done and done.error is None, done.error
    assert len(words) > 4 << 20 >> 2  # well past a 64 KiB pipe buffer


# ------------------------------------------------------------------ clear failures


def test_an_import_of_an_upload_that_does_not_exist_is_not_found_at_once(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    _, client, store = start()
    operation = client.operations.start(
        "import_file",
        {"store": store.removeprefix("fileSearchStores/"), "blobKey": f"search-uploads/{'a' * 32}"},
    )
    done = client.operations.wait(operation, timeout=60)
    assert done.error is not None and done.metadata is not None
    assert (done.error.code, done.error.message) == (
        5,
        "The uploaded file was not found; upload it again.",
    )
    assert done.metadata["attempt"] == 1  # not retried into INTERNAL


def test_failures_carry_no_python_reprs(
    start: Callable[..., tuple[ThreadServer, Client, str]],
) -> None:
    _, client, store = start(LONGOPS_EGRESS_ALLOW="127.0.0.1")
    invalid = run(client, store, {"uri": "http://[::1/"}).error
    assert (invalid.code, invalid.message) == (3, "Invalid uri http://[::1/.")  # not INTERNAL
    messages = [
        run(client, store, {"uri": f"http://127.0.0.1:{free_port()}/"}).error.message,
        invalid.message,
        run(
            client,
            store,
            {"file_name": _upload(client, b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")},
        ).error.message,
    ]
    for message in messages:
        assert not re.search(r"<[\w.]+ object at 0x|Error\(|\\x", message), message


def test_a_script_embedding_longops_parses_without_a_main_guard(tmp_path: Path) -> None:
    """Parsing children come from a fresh interpreter, not from the embedding program:
    a child that re-ran the program's main script (multiprocessing's forkserver does)
    made a script without `if __name__ == "__main__"` fail, and cost every child."""
    script = tmp_path / "embed.py"
    script.write_text(
        "import asyncio\n"
        "from longops.kinds.file_search.importer import DEFAULT_LIMITS\n"
        "from longops.kinds.file_search.isolation import prepare\n"
        "done = asyncio.run(prepare(b'hello world', 'a.txt', None, 200, 20, DEFAULT_LIMITS))\n"
        "print('chunks', done.chunks)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "chunks ['hello world']"
