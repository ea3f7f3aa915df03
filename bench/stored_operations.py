"""GET latency with 1,000 vs 1,000,000 stored operations (SQLite).

    .venv/bin/python bench/stored_operations.py [--quick] [--no-pin]

Databases are filled directly (the schema from `SQLiteStore.open()`, then big
`executemany` transactions of done SUCCEEDED rows shaped like those the workers
write), then each is served by `longops serve --workers 0` and wrk GETs a sample of
existing ids round-robin at 16 connections.

1. 1,000 ids sampled from each of a 1,000-row and a 1,000,000-row database: both
   samples fit the store's 10,000-entry read cache, so this is the steady polling
   cost. Target: the 1M figure within 20% of the 1k one (p50 latency and req/s).
2. The read cache defeated: 20,000 ids of the 1M database (round-robin with a FIFO
   cache of 10,000 misses every time) against the cached 1k case above, and against
   20,000 ids of a 20,000-row database (also all misses) to isolate index depth.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import (
    WRK_HEADERS,
    Timing,
    WrkResult,
    cycle_script,
    exit_on_sigterm,
    header,
    longops_command,
    note_low_cpu,
    parse_args,
    print_table,
    run_async,
    serve,
    verdict,
    warm_and_measure,
    wrk_row,
)

from longops.engine.store.sqlite import SQLiteStore

CONNECTIONS = 16
TOLERANCE = 1.20
SMALL, MIDDLE, LARGE = 1_000, 20_000, 1_000_000
BATCH = 100_000
SEED = 20_260_101
ID_LENGTH = 20
_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"
_TO_ALPHABET = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))

_INSERT = (
    "INSERT INTO operations (id, name, kind, tenant, request_id, request, state, metadata,"
    " response, error, attempt, max_attempts, create_time, update_time, start_time, end_time)"
    " VALUES (?, ?, 'longops.sleep', '', NULL, ?, 'SUCCEEDED', ?, ?, NULL, 1, 3, ?, ?, ?, ?)"
)
# What a worker stores for `longops.sleep` with `{}` (see worker.py / kinds/sleep.py).
_REQUEST = b"{}"
_METADATA = b'{"progressPercent":100,"step":1}'
_RESPONSE = b'{"sleptSeconds":0.0}'


@dataclass(frozen=True, slots=True)
class Database:
    path: Path
    ids: list[str]
    seconds: float

    @property
    def rows(self) -> int:
        return len(self.ids)


def random_ids(count: int, rng: random.Random) -> list[str]:
    """`count` ids like `new_token_id()`'s: 20 lowercase alphanumerics (modulo bias aside)."""
    raw = rng.randbytes(count * ID_LENGTH).translate(_TO_ALPHABET).decode("ascii")
    ids = [raw[i : i + ID_LENGTH] for i in range(0, len(raw), ID_LENGTH)]
    if len(set(ids)) != count:
        raise RuntimeError("duplicate random id; pick another seed")
    return ids


def _params(ids: list[str], now: float) -> Iterator[tuple[object, ...]]:
    """One INSERT's parameters per id; timestamps a millisecond apart, all before `now`."""
    first = now - 60 - len(ids) * 0.001
    for index, id in enumerate(ids):
        created = first + index * 0.001
        started, ended = created + 0.0005, created + 0.001
        times = (created, ended, started, ended)  # create, update, start, end
        yield (id, f"operations/{id}", _REQUEST, _METADATA, _RESPONSE, *times)


async def _create_schema(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()


def build_database(path: Path, rows: int, rng: random.Random) -> Database:
    """The store's own schema, then `rows` done operations in big transactions."""
    started = time.monotonic()
    run_async(_create_schema(path))
    ids = random_ids(rows, rng)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        params = _params(ids, time.time())
        for _ in range(0, rows, BATCH):
            conn.execute("BEGIN")
            conn.executemany(_INSERT, itertools.islice(params, BATCH))
            conn.execute("COMMIT")
        (count,) = conn.execute("SELECT count(*) FROM operations").fetchone()
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    if count != rows:
        raise RuntimeError(f"{path}: {count} rows, expected {rows}")
    return Database(path, ids, time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    database: Database
    sample: list[str]


def measure(case: Case, work: Path, timing: Timing) -> WrkResult:
    paths = [f"/v1beta/operations/{id}" for id in case.sample]
    script = cycle_script(paths, work)
    with serve("longops", longops_command(case.database.path, workers=0)) as server:
        return warm_and_measure(
            server, paths[0], connections=CONNECTIONS, timing=timing, script=script
        )


def build_all(work: Path, large_rows: int) -> tuple[Database, Database, Database]:
    rng = random.Random(SEED)
    databases = tuple(
        build_database(work / f"ops-{rows}.db", rows, rng) for rows in (SMALL, MIDDLE, large_rows)
    )
    rows = [
        [f"{db.rows:,} rows", db.seconds, f"{db.path.stat().st_size / 1e6:,.1f} MB"]
        for db in databases
    ]
    print_table("databases (filled directly, SUCCEEDED no-op rows)", ["db", "fill s", "size"], rows)
    small, middle, large = databases
    return small, middle, large


def ratio_report(title: str, base: WrkResult, other: WrkResult, check: bool) -> bool:
    p50, p99 = other.p50_ms / base.p50_ms, other.p99_ms / base.p99_ms
    rps = other.requests_per_second / base.requests_per_second
    print(f"\n{title}")
    print(f"  req/s ratio {rps:.2f}, p50 ratio {p50:.2f}, p99 ratio {p99:.2f}")
    if not check:
        return True
    met = verdict("p50 latency ratio", p50, TOLERANCE, at_least=False)
    met = verdict("req/s ratio", rps, 1 / TOLERANCE, at_least=True) and met
    return met and base.ok and other.ok


def main() -> None:
    exit_on_sigterm()
    timing, _ = parse_args(__doc__.splitlines()[0])
    header(f"stored_operations ({timing.duration:g} s per measurement, c{CONNECTIONS})")
    rng = random.Random(SEED + 1)
    with tempfile.TemporaryDirectory(prefix="bench-stored-") as tmp:
        work = Path(tmp)
        small, middle, large = build_all(work, LARGE)
        cases = [
            Case("1k rows, all 1,000 ids (cached)", small, rng.sample(small.ids, 1_000)),
            Case("1M rows, 1,000 random ids (cached)", large, rng.sample(large.ids, 1_000)),
            Case("1M rows, 20,000 random ids (cache misses)", large, rng.sample(large.ids, 20_000)),
            Case("20k rows, all 20,000 ids (cache misses)", middle, rng.sample(middle.ids, 20_000)),
        ]
        results = [measure(case, work, timing) for case in cases]
    print_table(
        f"GET operation by stored-operation count (wrk -t2 -c{CONNECTIONS} --latency)",
        WRK_HEADERS,
        [wrk_row(c.label, CONNECTIONS, r) for c, r in zip(cases, results, strict=True)],
    )
    note_low_cpu(r.server_cpu for r in results)
    cached_small, cached_large, missing_large, missing_middle = results
    met = ratio_report(
        "1M rows vs 1k rows, 1,000 ids each (target: within 20%)", cached_small, cached_large, True
    )
    ratio_report(
        "1M rows / 20,000 ids (misses) vs 1k rows / 1,000 ids (cached): cache + index depth",
        cached_small,
        missing_large,
        False,
    )
    ratio_report(
        "1M rows vs 20k rows, 20,000 ids each, all misses: index depth and db size alone",
        missing_middle,
        missing_large,
        False,
    )
    print(f"\nstored-operations target (1M within 20% of 1k): {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
