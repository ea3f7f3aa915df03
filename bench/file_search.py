"""File search stores: import throughput and query latency, each beside a bare baseline.

    .venv/bin/python bench/file_search.py [--quick] [--rounds N] [--no-pin]

1. Import throughput. Generated English-like text (20 MB in 4 files; `--quick` 4 MB in
   2) and one generated PDF (500 pages; `--quick` 100) are uploaded through the
   resumable Files API (not timed), then imported one after another with
   `POST /v1beta/fileSearchStores/{id}:importFile` (whiteSpaceConfig 200 / 20) and
   `POST /v1beta/{operation}:wait` until done: the time from sending importFile to
   receiving the done operation. Baseline, in the same run on the same CPU: the bare
   pipeline in-process on the same bytes: `extract_text` + `chunk_text` + one sqlite3
   `executemany` transaction into the store's own `chunks` table, whose trigger fills
   the FTS5 index (the schema from `SearchIndex.open()`, WAL, synchronous=NORMAL, as
   the service runs it). Best of `--rounds` (2; `--quick` 1), fresh database each time.
2. Query latency with >= 100,000 chunks (`--quick` 20,000) in one store, built through
   the service (importFile, whiteSpaceConfig 50 / 5). 500 queries (`--quick` 200) of 1-3
   words drawn uniformly from the corpus vocabulary, plus 100 (`--quick` 50) drawn from
   the 100 most frequent words, sent one after another over one keep-alive connection
   (`RawHttpClient`) to `POST /v1beta/fileSearchStores/{id}:query` (resultsCount 10).
   Beside it, on the same database file in the same run: the bare FTS5 query in-process
   (MATCH + ORDER BY bm25 + LIMIT 10, the MATCH string built as the service builds it)
   and `TenantIndex.query` in-process (the service's exact SQL, no HTTP).

No numeric target: the script prints the figures and the longops/bare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from _common import (
    BENCH_DIR,
    PLACEMENT,
    RawHttpClient,
    Server,
    exit_on_sigterm,
    header,
    longops_command,
    parse_args,
    percentile,
    print_table,
    run_async,
    serve,
    server_cpu_cell,
)

from longops.engine.store.sqlite import SQLiteStore
from longops.kinds.file_search.chunking import chunk_text
from longops.kinds.file_search.extract import extract_text
from longops.kinds.file_search.index import SearchIndex

REPO = BENCH_DIR.parent
SEED = 20_260_301
WORKERS = 4
WAIT_BODY = b'{"timeout":"60s"}'
IMPORT_CHUNKING = (200, 20)
QUERY_CHUNKING = (50, 5)
QUERY_FILE_BYTES = 6_000_000
QUERY_BUILD_LIMIT_S = 60.0
RESULTS = 10
WARMUP_QUERIES = 50
COMMON_RANKS = 100
MB = 1e6


@dataclass(frozen=True, slots=True)
class Sizes:
    text_bytes: int
    text_files: int
    pdf_pages: int
    query_chunks: int
    queries: int
    common_queries: int
    rounds: int


FULL = Sizes(20_000_000, 4, 500, 100_000, 500, 100, 2)
QUICK = Sizes(4_000_000, 2, 100, 20_000, 200, 50, 1)


# -- generated documents -------------------------------------------------------


def _split(words: str) -> list[str]:
    return words.split()


_FUNCTION_WORDS = _split(
    "the of and to a in is that for it as was with be by on not he this are or his from at"
    " which but have an they you were her she there been one all we their has would when if"
    " so no will more can its out into than other some these also what only new after over"
    " such most may first then time year two between where them through before while"
)
_ONSETS = _split(
    "b c d f g h j k l m n p r s t v w y z br ch cl cr dr fl fr gl gr pl pr sh st th tr"
)
_VOWELS = _split("a e i o u ea ee ai ou io")
_CODAS = _split("n r s t l d ng st nt")
_VOCABULARY = 30_000
_BATCH_WORDS = 100_000


class Corpus:
    """English-like text: function words, then 30,000 pseudo-words, drawn Zipf-like
    (weight 1 / (rank + 2.7)); sentences of 6-22 words, paragraphs of 3-7 sentences."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        words = dict.fromkeys(_FUNCTION_WORDS)
        while len(words) < _VOCABULARY:
            words.setdefault(self._pseudo_word())
        self.vocabulary = list(words)
        self.cum_weights = list(
            itertools.accumulate(1 / (rank + 2.7) for rank in range(len(self.vocabulary)))
        )

    def _pseudo_word(self) -> str:
        rng = self.rng
        syllables = rng.choice((1, 1, 2, 2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        return word + rng.choice(_CODAS) if rng.random() < 0.5 else word

    def draw(self, count: int) -> list[str]:
        return self.rng.choices(self.vocabulary, cum_weights=self.cum_weights, k=count)

    def text(self, target_bytes: int) -> tuple[str, set[str]]:
        """About `target_bytes` of text (ASCII) and the distinct words in it."""
        rng = self.rng
        paragraphs: list[str] = []
        used: set[str] = set()
        size = 0
        while size < target_bytes:
            batch = self.draw(_BATCH_WORDS)
            at = 0
            while at < len(batch) - 7 * 22 and size < target_bytes:
                sentences = []
                for _ in range(rng.randint(3, 7)):
                    words = batch[at : at + rng.randint(6, 22)]
                    at += len(words)
                    sentences.append(" ".join([words[0].capitalize(), *words[1:]]) + ".")
                paragraph = " ".join(sentences)
                paragraphs.append(paragraph)
                size += len(paragraph) + 2
            used.update(batch[:at])
        return "\n\n".join(paragraphs), used

    def pdf(self, pages: int) -> bytes:
        """A `pages`-page PDF (tests' `make_pdf`), 40 lines of 12 words a page."""
        sys.path.insert(0, str(REPO))
        from tests.test_extract_chunking import make_pdf

        lines = 40 * pages
        words = iter(self.draw(12 * lines))
        texts = [
            "\n".join(" ".join(itertools.islice(words, 12)) for _ in range(40))
            for _ in range(pages)
        ]
        data: bytes = make_pdf(list(texts))
        return data


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    mime_type: str
    pages: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.path.stat().st_size


# -- CPU placement for the in-process baselines --------------------------------


@contextlib.contextmanager
def on_server_cpu() -> Iterator[None]:
    """Run the bare baseline on the CPU the server gets (the server is idle meanwhile)."""
    if PLACEMENT.server is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, PLACEMENT.server)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- the service ----------------------------------------------------------------


def server_command(database: Path, blobs: Path) -> Callable[[int], list[str]]:
    """`longops serve` as in the other benchmarks, with its blobs in the temporary folder."""
    base = longops_command(database, WORKERS)
    return lambda port: [*base(port), "--blobs", str(blobs)]


@contextlib.contextmanager
def service(work: Path, label: str) -> Iterator[tuple[Server, httpx.Client, Path]]:
    database = work / f"{label}.db"
    with (
        serve("longops", server_command(database, work / f"{label}-blobs")) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=120) as http,
    ):
        yield server, http, database


def _check(answer: httpx.Response) -> httpx.Response:
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.request.url}: HTTP {answer.status_code}: {answer.text}")
    return answer


def _ok(answer: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = _check(answer).json()
    return body


def create_store(http: httpx.Client, display_name: str) -> str:
    store = _ok(http.post("/v1beta/fileSearchStores", json={"displayName": display_name}))
    return str(store["name"]).removeprefix("fileSearchStores/")


def upload(http: httpx.Client, source: Source) -> str:
    """Resumable upload in one `upload, finalize` request; answers `files/{id}`."""
    data = source.path.read_bytes()
    start = http.post(
        "/upload/v1beta/files",
        json={"file": {"displayName": source.name}},
        headers={
            "x-goog-upload-protocol": "resumable",
            "x-goog-upload-command": "start",
            "x-goog-upload-header-content-length": str(len(data)),
            "x-goog-upload-header-content-type": source.mime_type,
        },
    )
    _check(start)
    done = http.post(
        start.headers["x-goog-upload-url"],
        content=data,
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
    )
    return str(_ok(done)["file"]["name"])


def import_and_wait(
    http: httpx.Client, store: str, file_name: str, chunking: tuple[int, int]
) -> dict[str, Any]:
    """importFile, then `:wait` until the operation is done; the done operation."""
    max_tokens, overlap = chunking
    config = {"whiteSpaceConfig": {"maxTokensPerChunk": max_tokens, "maxOverlapTokens": overlap}}
    operation = _ok(
        http.post(
            f"/v1beta/fileSearchStores/{store}:importFile",
            json={"fileName": file_name, "chunkingConfig": config},
        )
    )
    while not operation.get("done"):
        operation = _ok(http.post(f"/v1beta/{operation['name']}:wait", content=WAIT_BODY))
    if "error" in operation:
        raise RuntimeError(f"import of {file_name} failed: {operation['error']}")
    return operation


def count_chunks(database: Path, store: str | None = None) -> int:
    conn = sqlite3.connect(database)
    try:
        if store is None:
            (count,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
        else:
            sql = "SELECT count(*) FROM chunks WHERE store_id = ?"
            (count,) = conn.execute(sql, (store,)).fetchone()
    finally:
        conn.close()
    return int(count)


# -- 1. import throughput -------------------------------------------------------


@dataclass(slots=True)
class Imported:
    seconds: float = 0.0
    chunks: int = 0
    parts: dict[str, float] = field(default_factory=dict)
    """bare only: extract / chunk / index seconds."""
    server_cpu: float | None = None
    """longops only: server CPU seconds per wall second while importing."""


_INSERT_CHUNK = "INSERT INTO chunks (document_id, store_id, chunk_index, text) VALUES (?, ?, ?, ?)"


async def _create_schema(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    await SearchIndex.of(store.database).open()
    await store.close()


def bare_import(
    groups: Sequence[Sequence[Source]], database: Path, chunking: tuple[int, int]
) -> list[Imported]:
    """extract_text + chunk_text + executemany into the store's chunks/FTS5 tables."""
    run_async(_create_schema(database))  # the store's schema, WAL
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    results = []
    try:
        with on_server_cpu():
            for group in groups:
                result = Imported(parts={"extract": 0.0, "chunk": 0.0, "index": 0.0})
                for number, source in enumerate(group):
                    started = time.perf_counter()
                    extracted = extract_text(source.path.read_bytes(), source.name, None)
                    extracted_at = time.perf_counter()
                    chunks = chunk_text(extracted.text, *chunking)
                    chunked_at = time.perf_counter()
                    document = f"{source.name}-{number}"
                    conn.execute("BEGIN")
                    conn.executemany(
                        _INSERT_CHUNK,
                        ((document, "bare", c.index, c.text) for c in chunks),
                    )
                    conn.execute("COMMIT")
                    done_at = time.perf_counter()
                    result.parts["extract"] += extracted_at - started
                    result.parts["chunk"] += chunked_at - extracted_at
                    result.parts["index"] += done_at - chunked_at
                    result.seconds += done_at - started
                    result.chunks += len(chunks)
                results.append(result)
    finally:
        conn.close()
    return results


def service_import(
    groups: Sequence[Sequence[Source]], work: Path, label: str, chunking: tuple[int, int]
) -> list[Imported]:
    """Upload everything (not timed), then time importFile -> done, file after file."""
    results = []
    with service(work, label) as (server, http, database):
        store = create_store(http, "bench import")
        uploaded = [[upload(http, source) for source in group] for group in groups]
        for files in uploaded:
            result = Imported()
            before_chunks = count_chunks(database)
            cpu_before = server.cpu_seconds()
            for file_name in files:
                started = time.perf_counter()
                import_and_wait(http, store, file_name, chunking)
                result.seconds += time.perf_counter() - started
            result.server_cpu = (server.cpu_seconds() - cpu_before) / result.seconds
            result.chunks = count_chunks(database) - before_chunks
            results.append(result)
    return results


def best(results: Sequence[Imported]) -> Imported:
    return min(results, key=lambda r: r.seconds)


def import_section(corpus: Corpus, sizes: Sizes, work: Path) -> dict[str, float]:
    started = time.monotonic()
    per_file = sizes.text_bytes // sizes.text_files
    texts = []
    for number in range(sizes.text_files):
        path = work / f"corpus-{number + 1}.txt"
        path.write_text(corpus.text(per_file)[0], encoding="utf-8")
        texts.append(Source(path, "text/plain"))
    pdf_path = work / f"report-{sizes.pdf_pages}p.pdf"
    pdf_path.write_bytes(corpus.pdf(sizes.pdf_pages))
    pdf = [Source(pdf_path, "application/pdf", sizes.pdf_pages)]
    text_bytes = sum(s.size for s in texts)
    print(
        f"\ngenerated {text_bytes / MB:.1f} MB of text in {len(texts)} files and a"
        f" {sizes.pdf_pages}-page PDF ({pdf[0].size / MB:.1f} MB)"
        f" in {time.monotonic() - started:.1f} s"
    )
    groups = [texts, pdf]
    bare_rounds: list[list[Imported]] = []
    service_rounds: list[list[Imported]] = []
    for round_number in range(1, sizes.rounds + 1):
        print(f"  import round {round_number}/{sizes.rounds}: bare, then longops ...")
        sys.stdout.flush()
        database = work / f"bare-{round_number}.db"
        bare_rounds.append(bare_import(groups, database, IMPORT_CHUNKING))
        label = f"import-{round_number}"
        service_rounds.append(service_import(groups, work, label, IMPORT_CHUNKING))
        for leftover in [*work.glob(f"bare-{round_number}.db*"), *work.glob(f"{label}[.-]*")]:
            _remove(leftover)
    bare_text, bare_pdf = (best([r[i] for r in bare_rounds]) for i in range(2))
    ops_text, ops_pdf = (best([r[i] for r in service_rounds]) for i in range(2))
    _check_chunks("text", bare_text, ops_text)
    _check_chunks("PDF", bare_pdf, ops_pdf)

    pdf_bytes = pdf[0].size
    pages = sizes.pdf_pages
    rows = [
        _import_row("plain text", "bare", text_bytes, None, bare_text, bare_text),
        _import_row("plain text", "longops", text_bytes, None, ops_text, bare_text),
        _import_row("PDF", "bare", pdf_bytes, pages, bare_pdf, bare_pdf),
        _import_row("PDF", "longops", pdf_bytes, pages, ops_pdf, bare_pdf),
    ]
    print_table(
        f"import throughput (whiteSpaceConfig {IMPORT_CHUNKING[0]}/{IMPORT_CHUNKING[1]};"
        f" best of {sizes.rounds}; longops: importFile -> :wait done, upload excluded)",
        [
            "case",
            "side",
            "MB",
            "pages",
            "chunks",
            "seconds",
            "MB/s",
            "pages/s",
            "longops/bare",
            "srv CPU",
        ],
        rows,
    )
    for label, result in (("text", bare_text), ("PDF", bare_pdf)):
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in result.parts.items())
        print(f"  bare {label} breakdown: {parts}")
    return {
        "text_bare": text_bytes / MB / bare_text.seconds,
        "text_ops": text_bytes / MB / ops_text.seconds,
        "pdf_bare": pages / bare_pdf.seconds,
        "pdf_ops": pages / ops_pdf.seconds,
    }


def _import_row(
    case: str, side: str, size: int, pages: int | None, result: Imported, bare: Imported
) -> list[object]:
    return [
        case,
        side,
        size / MB,
        "-" if pages is None else pages,
        f"{result.chunks:,}",
        result.seconds,
        size / MB / result.seconds,
        "-" if pages is None else pages / result.seconds,
        bare.seconds / result.seconds,
        "-" if result.server_cpu is None else server_cpu_cell(result.server_cpu),
    ]


def _check_chunks(label: str, bare: Imported, ops: Imported) -> None:
    if bare.chunks != ops.chunks:
        print(
            f"  ! {label}: longops indexed {ops.chunks:,} chunks, the bare pipeline {bare.chunks:,}"
        )


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


# -- 2. query latency -----------------------------------------------------------

_WORDS = re.compile(r"\w+", re.UNICODE)  # as the :query route splits the query
_BARE_QUERY = (
    "SELECT c.chunk_index, c.text, bm25(chunks_fts)"
    " FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
    " WHERE chunks_fts MATCH ? AND c.store_id = ? ORDER BY bm25(chunks_fts) LIMIT ?"
)


def match_expression(query: str) -> str:
    """The FTS5 MATCH string `SQLiteText.search` builds (terms ORed, quoted)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in _WORDS.findall(query.lower()))


@dataclass(slots=True)
class Latencies:
    seconds: list[float]
    hits: list[int]
    server_cpu: float | None = None

    def ms(self, pct: float) -> float:
        return percentile(self.seconds, pct) * 1000

    @property
    def mean_ms(self) -> float:
        return sum(self.seconds) / len(self.seconds) * 1000

    @property
    def per_second(self) -> float:
        return len(self.seconds) / sum(self.seconds)


def time_bare(
    database: Path, store: str, queries: Sequence[str], warmup: Sequence[str]
) -> Latencies:
    conn = sqlite3.connect(database)
    try:
        with on_server_cpu():
            for query in warmup:
                conn.execute(_BARE_QUERY, (match_expression(query), store, RESULTS)).fetchall()
            seconds, hits = [], []
            for query in queries:
                started = time.perf_counter()
                rows = conn.execute(_BARE_QUERY, (match_expression(query), store, RESULTS))
                found = rows.fetchall()
                seconds.append(time.perf_counter() - started)
                hits.append(len(found))
    finally:
        conn.close()
    return Latencies(seconds, hits)


def time_store(
    database: Path, store_id: str, queries: Sequence[str], warmup: Sequence[str]
) -> Latencies:
    async def run() -> Latencies:
        store = SQLiteStore(database)
        await store.open()
        index = SearchIndex.of(store.database).tenant("")  # a server without API keys
        try:
            for query in warmup:
                await index.query(store_id, _WORDS.findall(query.lower()), [], RESULTS)
            seconds, hits = [], []
            for query in queries:
                started = time.perf_counter()
                terms = _WORDS.findall(query.lower())
                found = await index.query(store_id, terms, [], RESULTS)
                seconds.append(time.perf_counter() - started)
                hits.append(len(found))
            return Latencies(seconds, hits)
        finally:
            await store.close()

    with on_server_cpu():
        return run_async(run())


def time_http(
    server: Server, store: str, queries: Sequence[str], warmup: Sequence[str]
) -> Latencies:
    path = f"/v1beta/fileSearchStores/{store}:query"

    async def run() -> Latencies:
        client = RawHttpClient(server.port)
        await client.connect()
        try:
            for query in warmup:
                await client.request("POST", path, _query_body(query))
            seconds, hits = [], []
            cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
            for query in queries:
                body = _query_body(query)
                started = time.perf_counter()
                status, answer = await client.request("POST", path, body)
                seconds.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f":query {query!r}: HTTP {status}: {answer[:500]!r}")
                hits.append(len(orjson.loads(answer).get("relevantChunks", [])))
            cpu = (server.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
            return Latencies(seconds, hits, cpu)
        finally:
            await client.close()

    return run_async(run())


def _query_body(query: str) -> bytes:
    return orjson.dumps({"query": query, "resultsCount": RESULTS})


def make_queries(rng: random.Random, words: Sequence[str], count: int) -> list[str]:
    return [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(count)]


def matching_chunks(database: Path, queries: Sequence[str]) -> list[int]:
    """How many chunks each query matches (what BM25 has to rank), untimed."""
    conn = sqlite3.connect(database)
    try:
        sql = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
        return [conn.execute(sql, (match_expression(q),)).fetchone()[0] for q in queries]
    finally:
        conn.close()


def build_query_store(
    corpus: Corpus, sizes: Sizes, work: Path, http: httpx.Client, database: Path
) -> tuple[str, set[str]]:
    """Import generated text (50/5 chunks) until the store holds `query_chunks` chunks."""
    store = create_store(http, "bench query")
    vocabulary: set[str] = set()
    chunks = files = text_bytes = 0
    import_seconds = 0.0
    file_bytes = min(QUERY_FILE_BYTES, sizes.query_chunks * 300)
    while chunks < sizes.query_chunks:
        text, used = corpus.text(file_bytes)
        path = work / f"query-corpus-{files + 1}.txt"
        path.write_text(text, encoding="utf-8")
        source = Source(path, "text/plain")
        file_name = upload(http, source)
        started = time.perf_counter()
        import_and_wait(http, store, file_name, QUERY_CHUNKING)
        import_seconds += time.perf_counter() - started
        vocabulary |= used
        files += 1
        text_bytes += source.size
        path.unlink()
        chunks = count_chunks(database, store)
        if import_seconds > QUERY_BUILD_LIMIT_S:
            raise RuntimeError(f"building the query store took over {QUERY_BUILD_LIMIT_S:.0f} s")
    print(
        f"\nquery store: {chunks:,} chunks (whiteSpaceConfig {QUERY_CHUNKING[0]}/"
        f"{QUERY_CHUNKING[1]}) from {files} files, {text_bytes / MB:.1f} MB of text,"
        f" imported through the service in {import_seconds:.1f} s"
        f" ({text_bytes / MB / import_seconds:.1f} MB/s); database"
        f" {database.stat().st_size / MB:.0f} MB, {len(vocabulary):,} distinct words"
    )
    return store, vocabulary


def query_section(corpus: Corpus, sizes: Sizes, work: Path) -> dict[str, float]:
    rng = random.Random(SEED + 2)
    summary: dict[str, float] = {}
    with service(work, "query") as (server, http, database):
        store, vocabulary = build_query_store(corpus, sizes, work, http, database)
        words = sorted(vocabulary)
        common = [w for w in corpus.vocabulary[:COMMON_RANKS] if w in vocabulary]
        cases = [
            ("vocabulary", make_queries(rng, words, sizes.queries)),
            (f"top-{COMMON_RANKS} words", make_queries(rng, common, sizes.common_queries)),
        ]
        warmup = make_queries(rng, words, WARMUP_QUERIES)
        for label, queries in cases:
            print(f"  {len(queries)} queries ({label}): bare, store in-process, HTTP ...")
            sys.stdout.flush()
            matches = matching_chunks(database, queries)
            bare = time_bare(database, store, queries, warmup)
            in_process = time_store(database, store, queries, warmup)
            over_http = time_http(server, store, queries, warmup)
            rows = [
                _query_row("bare FTS5 SQL, in-process", bare, bare),
                _query_row("index.query, in-process", in_process, bare),
                _query_row("longops POST :query, HTTP", over_http, bare),
            ]
            matched = f"p50 {percentile(matches, 50):,.0f}, p99 {percentile(matches, 99):,.0f}"
            print_table(
                f"query latency, {label}: {len(queries)} queries of 1-3 words, sequential,"
                f" resultsCount {RESULTS}; chunks matched per query {matched}",
                [
                    "case",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "mean ms",
                    "queries/s",
                    "x bare p50",
                    "x bare p99",
                    "srv CPU",
                ],
                rows,
            )
            if not (bare.hits == in_process.hits == over_http.hits):
                print("  ! the three disagree on how many chunks some queries returned")
            summary[f"{label} bare p50"] = bare.ms(50)
            summary[f"{label} bare p99"] = bare.ms(99)
            summary[f"{label} http p50"] = over_http.ms(50)
            summary[f"{label} http p99"] = over_http.ms(99)
    return summary


def _query_row(label: str, result: Latencies, bare: Latencies) -> list[object]:
    return [
        label,
        result.ms(50),
        result.ms(90),
        result.ms(99),
        result.mean_ms,
        result.per_second,
        result.ms(50) / bare.ms(50),
        result.ms(99) / bare.ms(99),
        "-" if result.server_cpu is None else server_cpu_cell(result.server_cpu),
    ]


# -- main -------------------------------------------------------------------------


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="import rounds (best of)")
    timing, args = parse_args(__doc__.splitlines()[0], parser=parser)
    sizes = QUICK if timing.quick else FULL
    if args.rounds is not None:
        sizes = dataclasses.replace(sizes, rounds=max(1, args.rounds))
    header(f"file_search ({'quick' if timing.quick else 'full'} run)")
    started = time.monotonic()
    corpus = Corpus(SEED)
    with tempfile.TemporaryDirectory(prefix="bench-file-search-") as tmp:
        work = Path(tmp)
        imports = import_section(corpus, sizes, work)
        queries = query_section(corpus, sizes, work)
    print("\nsummary (no numeric target in the issue; figures only)")
    print(
        f"  import, plain text: longops {imports['text_ops']:.2f} MB/s, bare"
        f" {imports['text_bare']:.2f} MB/s -> longops/bare"
        f" {imports['text_ops'] / imports['text_bare']:.2f}"
    )
    print(
        f"  import, PDF: longops {imports['pdf_ops']:.0f} pages/s, bare"
        f" {imports['pdf_bare']:.0f} pages/s -> longops/bare"
        f" {imports['pdf_ops'] / imports['pdf_bare']:.2f}"
    )
    for label in ("vocabulary", f"top-{COMMON_RANKS} words"):
        http50, bare50 = queries[f"{label} http p50"], queries[f"{label} bare p50"]
        http99, bare99 = queries[f"{label} http p99"], queries[f"{label} bare p99"]
        print(
            f"  query ({label}): longops p50 {http50:.2f} ms / p99 {http99:.2f} ms, bare FTS5"
            f" p50 {bare50:.2f} ms / p99 {bare99:.2f} ms -> x{http50 / bare50:.1f} p50,"
            f" x{http99 / bare99:.1f} p99"
        )
    print(f"\nfile_search: done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
