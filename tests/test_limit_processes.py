"""Deployment-wide limits through real worker processes on one database (a SQLite file,
PostgreSQL): a kind's concurrency limit holds across every process, with workers killed
along the way; a per-key limit holds per key while keys run side by side; a rate limit
holds over 30 s; a delayed start begins within 1 s of its time in `longops serve`.

The kinds (`tests.support.limited_kinds`) journal each attempt's start and end with the
time to one file. A journal's interval is inside the store's: a start is written after
the claim committed, an end before the outcome is. So more attempts open at once in the
journal than a limit means more RUNNING rows than the limit in the store.

An attempt whose worker was killed has no end: its row stays RUNNING (and counts
against the limit) until its lease is recovered, and the recovered operation, first in
claim order (it kept its turn), is the next one a claim with room takes. So the killed
attempt is counted as running until its operation's next attempt starts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from longops import Client
from longops.engine import Engine
from longops.engine.engine import EngineConfig
from longops.engine.records import OperationRecord, State
from longops.engine.store import open_store
from longops.kinds.builtin import default_registry
from tests.support.limited_kinds import Entry, journal
from tests.support.postgres import database
from tests.support.servers import Process, free_port, wait_healthy, worker_args, worker_ready
from tests.support.waiting import until, until_sync

KINDS = "tests.support.limited_kinds"
DELAYED = 12
"""Delayed starts in a row: a wake-up timer that fires early (uvloop keeps milliseconds)
found about one in six of them still ahead, which then waited for the 1 s poll."""


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    """The test's own engine on the workers' database: it creates the operations."""
    registry = default_registry()
    registry.load(KINDS)
    async with Engine(open_store(database_url), registry, EngineConfig()) as engine:
        yield engine


def _start_workers(
    spawn: Callable[..., Process], database_url: str, count: int, *extra: str
) -> list[Process]:
    """`count` worker processes of 4 slots each (more than any limit here), with the
    shortest lease, so a killed one's work is soon recovered."""
    args = worker_args(database_url, "--load", KINDS, "--workers", "4", "--lease", "1", *extra)
    return [spawn(*args) for _ in range(count)]


async def _ready(workers: Iterable[Process]) -> None:
    for worker in workers:
        await until(worker_ready(worker), what=f"worker {worker.pid} to run")


async def _all_succeed(engine: Engine, ops: Iterable[OperationRecord]) -> None:
    for op in ops:
        done = await engine.wait(op.id, op.tenant, 60)
        assert done is not None and done.state is State.SUCCEEDED, done


def _intervals(entries: list[Entry], now: float) -> list[tuple[float, float, Entry]]:
    """Each attempt's (start, end, its start entry); an attempt without an end (its worker
    was killed) lasts until its operation's next attempt starts, or `now`."""
    ends = {(e.id, e.attempt): e.time for e in entries if e.event == "end"}
    starts = [e for e in entries if e.event == "start"]
    intervals = []
    for start in starts:
        end = ends.get((start.id, start.attempt))
        if end is None:
            later = [s.time for s in starts if s.id == start.id and s.attempt > start.attempt]
            end = min(later, default=now)
        intervals.append((start.time, end, start))
    return intervals


def _most_at_once(intervals: Iterable[tuple[float, float, Entry]]) -> int:
    """The most intervals open at one instant; [start, end), so one that ends as another
    starts does not overlap it."""
    # At one instant, ends (0) sort before starts (1).
    events = sorted(p for start, end, _ in intervals for p in ((start, 1), (end, 0)))
    most = running = 0
    for _, starting in events:
        running += 1 if starting else -1
        most = max(most, running)
    return most


def _open(entries: list[Entry]) -> list[Entry]:
    """Starts without an end (yet)."""
    ended = {(e.id, e.attempt) for e in entries if e.event == "end"}
    return [e for e in entries if e.event == "start" and (e.id, e.attempt) not in ended]


async def _kill_one_running(
    log: Path, workers: list[Process], killed: dict[int, float], wait_for: int
) -> None:
    """Once `wait_for` attempts have started, SIGKILL the worker of an attempt that has
    just started (so it is surely mid-run), noting when it was dead."""
    alive = {w.pid: w for w in workers if w.pid not in killed}
    victim: list[Process] = []

    def running_fresh() -> bool:
        entries = journal(log)
        if sum(e.event == "start" for e in entries) < wait_for:
            return False
        fresh = [e for e in _open(entries) if e.pid in alive and e.time > time.time() - 0.1]
        victim.extend(alive[e.pid] for e in fresh[:1])
        return bool(victim)

    await until(running_fresh, what=f"an attempt to start after {wait_for}")
    victim[0].kill()
    killed[victim[0].pid] = time.time()


def _check_attempts(entries: list[Entry], killed: dict[int, float], ids: set[str]) -> None:
    """Every operation ran; no attempt started twice; an attempt without an end was a
    killed worker's, and its operation's next attempt started only after the kill."""
    assert {e.id for e in entries} == ids
    starts = Counter((e.id, e.attempt) for e in entries if e.event == "start")
    assert all(n == 1 for n in starts.values()), starts.most_common(3)
    for attempt in _open(entries):
        assert attempt.pid in killed, attempt
        later = [
            e.time
            for e in entries
            if e.event == "start" and e.id == attempt.id and e.attempt > attempt.attempt
        ]
        assert later and min(later) > killed[attempt.pid], (attempt, later)
    assert any(e.pid in killed for e in _open(entries)), "no worker was killed mid-attempt"


@pytest.mark.parametrize(
    ("database_url", "kind"),
    [("sqlite", "test.limited"), ("postgres", "test.limited"), ("sqlite", "test.timed")],
    indirect=["database_url"],
)
async def test_a_concurrency_limit_holds_across_processes_killed_along_the_way(
    engine: Engine,
    database_url: str,
    spawn: Callable[..., Process],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """4 worker processes on PostgreSQL, 2 on one SQLite file, a limit of 2 (declared on
    `test.limited`; the operator's, `LONGOPS_CONCURRENCY`, on `test.timed`): one worker
    is killed mid-attempt early on, later another (on PostgreSQL two), each replaced;
    every operation still succeeds, never more than 2 running."""
    log = tmp_path / "journal"
    if kind == "test.timed":
        monkeypatch.setenv("LONGOPS_CONCURRENCY", "test.timed=2")  # the workers inherit it
    count = 4 if database_url.startswith("postgresql") else 2
    ops = [await engine.create(kind, {"journal": str(log), "seconds": 0.4}) for _ in range(20)]
    workers = _start_workers(spawn, database_url, count)
    await _ready(workers)
    killed: dict[int, float] = {}

    await _kill_one_running(log, workers, killed, wait_for=3)
    workers += _start_workers(spawn, database_url, 1)
    await _kill_one_running(log, workers, killed, wait_for=10)
    if count == 4:
        await _kill_one_running(log, workers, killed, wait_for=10)
    workers += _start_workers(spawn, database_url, len(killed) - 1)
    await _all_succeed(engine, ops)

    entries = journal(log)
    _check_attempts(entries, killed, {op.id for op in ops})
    assert _most_at_once(_intervals(entries, time.time())) == 2


async def test_a_key_limit_holds_per_key_while_keys_run_side_by_side(
    engine: Engine, database_url: str, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    """`key_concurrency=1`: one at a time of each key, and each key (tenant's own: two
    tenants' "a" are two keys) runs beside the others."""
    log = tmp_path / "journal"
    keys = [("t1", "a"), ("t1", "b"), ("t2", "a")]
    ops = [
        await engine.create(
            "test.keyed", {"journal": str(log), "seconds": 0.3}, tenant=tenant, concurrency_key=key
        )
        for _ in range(4)
        for tenant, key in keys
    ]
    await _ready(_start_workers(spawn, database_url, 2))
    await _all_succeed(engine, ops)

    entries = journal(log)
    assert {e.attempt for e in entries} == {1}
    intervals = _intervals(entries, time.time())
    key_of = {op.id: (op.tenant, op.concurrency_key) for op in ops}
    for key in keys:
        assert _most_at_once(i for i in intervals if key_of[i[2].id] == key) == 1, key
    assert _most_at_once(intervals) == len(keys)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_rate_limit_holds_over_30_seconds(
    engine: Engine, database_url: str, spawn: Callable[..., Process], tmp_path: Path
) -> None:
    """`rate=20` over 3 worker processes on PostgreSQL, with more quick operations
    waiting than 31 s let start: over the 30 s after the first second (whose starts the
    full bucket adds to), 600 starts, within 10%."""
    log = tmp_path / "journal"
    for _ in range(700):
        await engine.create("test.rated", {"journal": str(log)})
    await _ready(_start_workers(spawn, database_url, 3))

    def starts() -> list[float]:
        return sorted(e.time for e in journal(log) if e.event == "start")

    await until(starts, what="the first start")
    first = starts()[0]
    # A little past the window, for starts journaled out of order by other processes.
    await until(lambda: starts()[-1] > first + 31.5, timeout=60, what="31 s of starts")
    counted = [t for t in starts() if first + 1 <= t < first + 31]
    assert 540 <= len(counted) <= 660, len(counted)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("apart", [False, True], ids=["in-serve", "worker-apart"])
def test_delayed_starts_begin_within_a_second_of_their_time(
    database_url: str, spawn: Callable[..., Process], tmp_path: Path, apart: bool
) -> None:
    """Through `longops serve` and the SDK, one after another: each wakes the server's
    workers at its time (they serve no limited kind, whose polls would find it sooner
    anyway). A worker in another process hears nothing of the time, and finds the
    operation by its poll (0.5 s; it was 1 s, which with the claim's own time came
    out just over a second late)."""
    log = tmp_path / "journal"
    port = free_port()
    workers = ["--no-workers"] if apart else ["--kinds", "test.timed"]
    spawn(
        "serve", "--port", str(port), "--database", database_url, "--load", KINDS,
        *workers, "--log-level", "warning",
    )  # fmt: skip
    if apart:
        worker = spawn(*worker_args(database_url, "--load", KINDS, "--kinds", "test.timed"))
        until_sync(worker_ready(worker), what="the worker")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    due = {}
    with Client(base_url=url) as client:
        for _ in range(DELAYED // 2 if apart else DELAYED):
            op = client.operations.start("test.timed", {"journal": str(log)}, schedule_delay=0.1)
            when = (op.metadata or {})["scheduleTime"]
            due[op.name.rsplit("/", 1)[-1]] = datetime.fromisoformat(when).timestamp()
            done = client.operations.wait(op, timeout=30)
            assert done.done and done.error is None
    late = {e.id: e.time - due[e.id] for e in journal(log) if e.event == "start"}
    assert late.keys() == due.keys()
    assert all(0 <= seconds < 1 for seconds in late.values()), late
