"""PostgreSQL scale-out: API servers and worker processes sharing one database.

    .venv/bin/python bench/scale_out.py [--quick] [--database URL] [--worker-procs 1,2,4]
        [--concurrency 16] [--clients 64] [--api-servers 1] [--duration S]
        [--claim-jobs N] [--claim-batches 1,16] [--rounds N] [--waits N]

Everything runs in a fresh schema (`?schema=bench_<random>`) of the database, dropped
at the end; every connection carries `application_name=bench_<random>`, which is how
the script finds its own PostgreSQL backends (for their CPU use) among other people's.

(1) End to end: `longops serve --no-workers` (the API) plus N `longops worker
    --workers 16` processes, all on the schema, `--load _noop_kind`
    (bench/_noop_kind.py: `bench.noop` returns at once). Concurrent clients (one
    keep-alive HTTP connection each) loop `POST /v1beta/kinds/bench.noop:start` ->
    `POST /v1beta/{name}:wait`; operations/s = round trips done within the measured
    window / the window. Baselines in the same run: the same client against
    bench/_bare_app.py (the client + HTTP floor), and a bare asyncpg queue with the same
    commits per operation (insert, then NOTIFY; N worker processes that claim up to 16
    with SKIP LOCKED on a connection that doesn't wait for the disk, and complete, then
    NOTIFY; one statement each; the client waits for the done NOTIFY). Target: >= 1,000
    operations/s with 2 worker processes.
(2) Claims per second, one claimer: `PostgresStore.claim` + `finish` (a store as a worker
    opens it) against a bare asyncpg claim (the same SKIP LOCKED statement) + UPDATE to
    SUCCEEDED loop on one connection, on the same table pre-filled with N pending rows,
    claim batch 1 and 16; three more bare variants say where the difference goes.
    Target: longops / bare >= 0.5.
(3) Cross-process wait latency: a client blocks in `POST {name}:wait` on the API server
    (no workers) while a `longops worker` process completes the operation
    (`bench.pause`, 20 ms); measured from the operation's `endTime` (the worker's clock
    just before its finishing transaction) to the client's receipt of the answer.
    Baseline: bare asyncpg NOTIFY -> LISTEN between two connections (alone, and riding
    a committed UPDATE as a finish does). Target: p50 <= 10 ms.

Nothing is pinned: with N + 2 Python processes and PostgreSQL on a 2-core machine there
is no placement that gives each its own core. CPU use is reported per group instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import orjson
from _common import (
    BENCH_DIR,
    HOST,
    LONGOPS,
    PYTHON,
    HttpError,
    RawHttpClient,
    Server,
    bare_command,
    cpu_seconds,
    create_and_wait,
    exit_on_sigterm,
    percentile,
    print_table,
    run_async,
    serve,
    verdict,
)

from longops.engine.records import State
from longops.engine.store.postgres import WORK_CHANNEL, PostgresStore

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
LOAD = "_noop_kind"
NOOP = "bench.noop"
PAUSE = "bench.pause"
PAUSE_SECONDS = 0.02
WAIT_BODY = b'{"timeout":"10s"}'
TARGET_OPS = 1000.0
TARGET_OPS_PROCS = 2
TARGET_CLAIM_RATIO = 0.5
TARGET_WAIT_P50_MS = 10.0
MAX_OPS_PER_CLIENT = 1_000_000
READY_TIMEOUT = 30.0


# -- command line ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    database: str
    worker_procs: tuple[int, ...]
    concurrency: int
    clients: int
    api_servers: int
    duration: float
    warmup: float
    claim_jobs: int
    claim_batches: tuple[int, ...]
    rounds: int
    waits: int
    quick: bool


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def parse_settings() -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run, rougher figures")
    parser.add_argument(
        "--database", default=DEFAULT_DATABASE, help=f"PostgreSQL URL (default {DEFAULT_DATABASE})"
    )
    parser.add_argument(
        "--worker-procs", type=_counts, default=(1, 2, 4), help="(1) worker processes, e.g. 1,2,4"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="(1) `longops worker --workers` (default 16)"
    )
    parser.add_argument("--clients", type=int, default=64, help="(1) concurrent clients")
    parser.add_argument("--api-servers", type=int, default=1, help="(1) API server processes")
    parser.add_argument(
        "--duration", type=float, help="(1) seconds per measurement (default 8; --quick 3)"
    )
    parser.add_argument(
        "--claim-jobs", type=int, help="(2) pending rows per measurement (default 3000)"
    )
    parser.add_argument(
        "--claim-batches", type=_counts, default=(1, 16), help="(2) claim batch sizes"
    )
    parser.add_argument(
        "--rounds", type=int, help="(2) rounds, best of each case kept (default 2; --quick 1)"
    )
    parser.add_argument("--waits", type=int, help="(3) waits measured (default 200)")
    parser.add_argument("--bare-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker is not None:
        run_async(bare_worker(json.loads(args.bare_worker)))
        raise SystemExit(0)
    quick = bool(args.quick)
    return Settings(
        database=args.database,
        worker_procs=args.worker_procs,
        concurrency=args.concurrency,
        clients=args.clients,
        api_servers=args.api_servers,
        duration=args.duration or (3.0 if quick else 8.0),
        warmup=1.0 if quick else 2.0,
        claim_jobs=args.claim_jobs or (1000 if quick else 3000),
        claim_batches=args.claim_batches,
        rounds=args.rounds or (1 if quick else 2),
        waits=args.waits or (50 if quick else 200),
        quick=quick,
    )


# -- the database ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Database:
    """The run's schema and application name on the server at `base` (a URL)."""

    base: str
    schema: str
    app: str

    @classmethod
    def fresh(cls, base: str) -> Database:
        token = secrets.token_hex(6)
        return cls(base, f"bench_{token}", f"bench_{token}")

    def _with(self, **params: str) -> str:
        parts = urlsplit(self.base)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
        query += list(params.items())
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def url(self) -> str:
        """For `longops --database`: the schema and the application name."""
        return self._with(schema=self.schema, application_name=self.app)

    @property
    def dsn(self) -> str:
        """For asyncpg: the application name, no schema (asyncpg would not know it)."""
        parts = urlsplit(self._with(application_name=self.app))
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def bare_channel(self) -> str:
        return f"{self.app}_bare"

    async def connect(self) -> Any:
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})

    def store(self, **sizes: int) -> PostgresStore:
        return PostgresStore(self.dsn, schema=self.schema, **sizes)


async def create_schema(db: Database) -> str:
    """The store's own migrations make the schema; returns what its channel names end
    with (API servers listen for finishes, workers for work: one LISTEN each)."""
    store = db.store(min_size=1, max_size=1)
    await store.open()
    await store.close()
    return store.database.work_channel.removeprefix(WORK_CHANNEL)


async def drop_schema(db: Database) -> None:
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{db.schema}" CASCADE')
    finally:
        await conn.close()


async def listening(conn: Any, db: Database, channel: str) -> int:
    """How many of this run's connections LISTEN on `channel` (one per engine or bare worker)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND query LIKE 'LISTEN %' AND strpos(query, $2) > 0",
        db.app,
        channel,
    )
    return count


async def until_listening(conn: Any, db: Database, channel: str, expected: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / 0.05) + 1):
        if await listening(conn, db, channel) >= expected:
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"fewer than {expected} processes listening on {channel} after 30 s")


_FILL = """
INSERT INTO operations (id, name, kind, tenant, request, state, metadata, max_attempts,
                        create_time, update_time)
SELECT s.id, 'operations/' || s.id, $2, '', '{}'::jsonb, 'PENDING', '{}'::jsonb, 3, $3, $3
FROM (SELECT substr(md5(random()::text || g::text), 1, 20) AS id
      FROM generate_series(1, $1) AS g) AS s
"""


async def refill(conn: Any, pending: int) -> None:
    """An empty table, then `pending` PENDING no-op rows (as the API makes them), analysed."""
    await conn.execute("TRUNCATE operations")
    if pending:
        await conn.execute(_FILL, pending, NOOP, time.time())
    await conn.execute("ANALYZE operations")


# -- child processes -----------------------------------------------------------------


def _child_setup() -> None:
    """In a child, before exec: SIGTERM when the benchmark exits, however it exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(slots=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass(slots=True)
class Children:
    """Processes started by the benchmark; `stop` ends them (SIGTERM, then SIGKILL)."""

    log_dir: Path
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, command: Sequence[str]) -> Child:
        log_path = self.log_dir / f"{name}-{len(self.running)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
            )
        child = Child(name, proc, log_path)
        self.running.append(child)
        return child

    def check(self) -> None:
        for child in self.running:
            if child.proc.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited ({child.proc.returncode}):\n{child.log_tail()}"
                )

    def stop(self, children: Sequence[Child] | None = None, grace: float = 10.0) -> None:
        chosen = list(self.running if children is None else children)
        for child in chosen:
            if child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + grace
        for child in chosen:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(timeout=grace)
            self.running.remove(child)


@contextlib.contextmanager
def children(log_dir: Path) -> Iterator[Children]:
    group = Children(log_dir)
    try:
        yield group
    finally:
        group.stop()


def worker_command(db: Database, concurrency: int) -> list[str]:
    return [
        LONGOPS, "worker", "--database", db.url, "--load", LOAD,
        "--workers", str(concurrency), "--log-level", "warning",
    ]  # fmt: skip


def api_command(db: Database) -> Callable[[int], list[str]]:
    return lambda port: [
        LONGOPS, "serve", "--no-workers", "--host", HOST, "--port", str(port),
        "--database", db.url, "--load", LOAD, "--log-level", "warning",
    ]  # fmt: skip


def bare_worker_command(db: Database, batch: int) -> list[str]:
    config = {
        "dsn": db.dsn,
        "schema": db.schema,
        "channel": db.bare_channel,
        "batch": batch,
    }
    return [PYTHON, str(Path(__file__).resolve()), "--bare-worker", json.dumps(config)]


# -- CPU accounting --------------------------------------------------------------------

GROUPS = ("client", "api", "workers", "postgres")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already in user
    return total - fields[3] - fields[4], total


NOISY = 0.15
"""CPU share (of one core) used by processes outside the benchmark that makes a row suspect."""


def machine_busy(seconds: float) -> float:
    """Cores the whole machine kept busy over `seconds` (before anything is started)."""
    before = _machine_ticks()
    time.sleep(seconds)
    after = _machine_ticks()
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * (os.cpu_count() or 1) if total else 0.0


def note_other_load(phases: Sequence[Phase]) -> None:
    worst = max((p.cpu["other"] for p in phases), default=0.0)
    if worst > NOISY:
        print(
            f"  ! processes outside the benchmark used up to {worst:.0%} of a core during a"
            " measurement (`other`): those rows are understated; rerun on a quiet machine."
        )


async def postgres_pids(conn: Any, db: Database) -> list[int]:
    """This run's backends, and the server's own background processes (WAL writer, ...)."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
        " OR backend_type NOT IN ('client backend', 'autovacuum worker', 'parallel worker')",
        db.app,
    )
    return [r[0] for r in rows]


@dataclass(slots=True)
class Sample:
    at: float
    cpu: dict[str, dict[int, float]]
    machine: tuple[int, int]


def _cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


async def sample(conn: Any, db: Database, pids: dict[str, list[int]]) -> Sample:
    groups = dict(pids)
    groups["client"] = [os.getpid()]
    groups["postgres"] = await postgres_pids(conn, db)
    cpu: dict[str, dict[int, float]] = {}
    for group, members in groups.items():
        readings = {pid: _cpu_or_none(pid) for pid in members}
        cpu[group] = {pid: s for pid, s in readings.items() if s is not None}
    return Sample(time.monotonic(), cpu, _machine_ticks())


def cpu_shares(before: Sample, after: Sample) -> dict[str, float]:
    """Cores used by each group over the window; `machine` for all, `other` the rest."""
    wall = after.at - before.at
    shares: dict[str, float] = {}
    for group in GROUPS:
        start, end = before.cpu.get(group, {}), after.cpu.get(group, {})
        # A process that appeared in the window counts from zero; one that left, not at all.
        used = sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items())
        shares[group] = used / wall if wall > 0 else 0.0
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    shares["machine"] = busy / total * (os.cpu_count() or 1) if total else 0.0
    shares["other"] = max(0.0, shares["machine"] - sum(shares[g] for g in GROUPS))
    return shares


# -- (1) end to end ----------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    latencies: list[float]
    failures: int
    wall: float
    cpu: dict[str, float]
    reasons: Counter[str] = field(default_factory=Counter)
    stuck: int = 0
    """Operations still PENDING or RUNNING a second after the load stopped (a no-op
    takes milliseconds): work the workers lost track of."""
    warnings: list[tuple[int, str]] = field(default_factory=list)
    """What the API servers and workers logged at WARNING or above (count, line)."""

    @property
    def ops_per_second(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def ms(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000


Call = Callable[[], Awaitable[tuple[float, bool]]]
"""One round trip: its seconds, and whether the operation came back done."""
Recover = Callable[[], Awaitable[None]]
"""Make a client usable again after a broken connection."""


class Tally:
    """Round trips that ended within [start, stop]: latencies of the done ones, and why
    the others failed (failures after `stop` count too: a wait that timed out there)."""

    def __init__(self, start: float, stop: float) -> None:
        self.start = start
        self.stop = stop
        self.latencies: list[float] = []
        self.reasons: Counter[str] = Counter()

    @property
    def failures(self) -> int:
        return sum(self.reasons.values())

    def _failed(self, reason: str) -> None:
        if time.monotonic() >= self.start:
            self.reasons[reason] += 1

    async def loop(self, one: Call, recover: Recover) -> None:
        """Round trips back to back from now (warm-up included) until `stop`."""
        for _ in range(MAX_OPS_PER_CLIENT):
            if time.monotonic() >= self.stop:
                return
            try:
                seconds, ok = await one()
            except (HttpError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
                self._failed(f"{type(exc).__name__}: {str(exc)[:80]}")
                await recover()
                continue
            if not ok:
                self._failed("not done when :wait returned (10 s)")
            elif self.start <= time.monotonic() <= self.stop:
                self.latencies.append(seconds)


async def measure(
    conn: Any,
    db: Database,
    pids: dict[str, list[int]],
    settings: Settings,
    clients: Sequence[tuple[Call, Recover]],
) -> Phase:
    """Every client loops without a pause for `warmup + duration` seconds; what ends in
    the last `duration` seconds counts, and the CPU figures cover exactly that window.
    (No drain between warm-up and measurement: a straggler would leave the other
    connections idle long enough for uvicorn to close them.)"""
    start = time.monotonic() + settings.warmup
    tally = Tally(start, start + settings.duration)

    async def sample_at(moment: float) -> Sample:
        await asyncio.sleep(max(0.0, moment - time.monotonic()))
        return await sample(conn, db, pids)

    before = asyncio.create_task(sample_at(tally.start))
    after = asyncio.create_task(sample_at(tally.stop))
    await asyncio.gather(*(tally.loop(one, recover) for one, recover in clients))
    first, last = await before, await after
    return Phase(
        tally.latencies,
        tally.failures,
        last.at - first.at,
        cpu_shares(first, last),
        reasons=tally.reasons,
    )


async def reconnect(client: RawHttpClient) -> None:
    await client.close()
    await client.connect()


async def carry_on() -> None:
    """Nothing to mend (an asyncpg pool replaces a broken connection itself)."""


async def http_phase(
    conn: Any,
    db: Database,
    servers: Sequence[Server],
    pids: dict[str, list[int]],
    settings: Settings,
    kind: str,
) -> Phase:
    clients = [RawHttpClient(servers[i % len(servers)].port) for i in range(settings.clients)]
    try:
        for client in clients:
            await client.connect()
        calls: list[tuple[Call, Recover]] = [
            (partial(create_and_wait, c, kind, WAIT_BODY), partial(reconnect, c)) for c in clients
        ]
        return await measure(conn, db, pids, settings, calls)
    finally:
        for client in clients:
            await client.close()


# The bare queue: what longops does per operation, with nothing else. One statement per
# step, each its own transaction: durable inserts and completions, claims on a
# connection that doesn't wait for the disk, and each NOTIFY sent after the write it
# tells of has committed (as longops does; see `_announce` in the PostgreSQL store).
BARE_INSERT = """
INSERT INTO operations (id, name, kind, tenant, request, state, metadata, max_attempts,
                        create_time, update_time)
VALUES ($1, 'operations/' || $1, $2, '', '{}'::jsonb, 'PENDING', '{}'::jsonb, 3, $3, $3)
"""
BARE_NOTIFY = "SELECT pg_notify($1, $2)"
BARE_CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT seq FROM operations WHERE state = 'PENDING' AND kind = ANY($1::text[])
    ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE operations SET state = 'RUNNING', attempt = attempt + 1, lease_owner = $3,
    lease_expires = $4, start_time = coalesce(start_time, $5), update_time = $5
WHERE seq IN (SELECT seq FROM picked) AND state = 'PENDING'
RETURNING seq, id, attempt
"""
BARE_COMPLETE = """
UPDATE operations SET state = 'SUCCEEDED', end_time = $3, update_time = $3,
    lease_owner = NULL, lease_expires = NULL
WHERE seq = $1 AND attempt = $2 AND state = 'RUNNING'
"""
BARE_COMPLETE_NOTIFY = """
WITH finished AS (
    UPDATE operations SET state = 'SUCCEEDED', end_time = $3, update_time = $3,
        lease_owner = NULL, lease_expires = NULL
    WHERE seq = $1 AND attempt = $2 AND state = 'RUNNING'
    RETURNING id)
SELECT pg_notify($4, id) FROM finished
"""


async def bare_worker(config: dict[str, Any]) -> None:
    """A bare queue worker (a child process): claim up to `batch`, complete each, repeat;
    sleep on LISTEN when nothing is pending."""
    settings = {"search_path": config["schema"]}
    conn = await asyncpg.connect(config["dsn"], server_settings=settings)
    lax = {**settings, "synchronous_commit": "off"}
    claimer = await asyncpg.connect(config["dsn"], server_settings=lax)
    listener = await asyncpg.connect(config["dsn"], server_settings=settings)
    stopping = asyncio.Event()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: (stopping.set(), wake.set()))
    await listener.add_listener(config["channel"], lambda *_: wake.set())
    owner = f"bare:{os.getpid()}"
    try:
        while not stopping.is_set():
            wake.clear()
            now = time.time()
            rows = await claimer.fetch(BARE_CLAIM, [NOOP], config["batch"], owner, now + 30, now)
            for seq, id, attempt in rows:
                if await conn.execute(BARE_COMPLETE, seq, attempt, time.time()) == "UPDATE 1":
                    await conn.execute(BARE_NOTIFY, config["channel"], id)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
    finally:
        await listener.close()
        await claimer.close()
        await conn.close()


async def bare_queue_phase(
    conn: Any, db: Database, pids: dict[str, list[int]], settings: Settings
) -> Phase:
    """The bench process as the client: insert, NOTIFY, then wait for the done NOTIFY."""
    waiting: dict[str, asyncio.Future[None]] = {}

    def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        future = waiting.pop(payload, None)
        if future is not None and not future.done():
            future.set_result(None)

    pool = await asyncpg.create_pool(
        db.dsn, min_size=10, max_size=10, server_settings={"search_path": db.schema}
    )
    listener = await db.connect()
    try:
        await listener.add_listener(db.bare_channel, heard)

        async def one() -> tuple[float, bool]:
            started = time.perf_counter()
            id = secrets.token_hex(10)
            future = asyncio.get_running_loop().create_future()
            waiting[id] = future
            try:
                async with pool.acquire() as connection:
                    await connection.execute(BARE_INSERT, id, NOOP, time.time())
                    await connection.execute(BARE_NOTIFY, db.bare_channel, "")
                await asyncio.wait_for(future, 10.0)
            finally:
                waiting.pop(id, None)
            return time.perf_counter() - started, True

        return await measure(conn, db, pids, settings, [(one, carry_on)] * settings.clients)
    finally:
        await listener.close()
        await pool.close()


_NOISE = re.compile(r"operations/[a-z0-9]+|\b[a-z0-9]{20}\b|\b\d+(\.\d+)?\b")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def warnings_in(logs: Sequence[str]) -> list[tuple[int, str]]:
    """The distinct WARNING / ERROR lines of `logs` (ids and numbers masked), most first."""
    counts: Counter[str] = Counter()
    for text in logs:
        for line in text.splitlines():
            for level in (" WARNING ", " ERROR "):
                if level in line:
                    counts[_NOISE.sub("#", line[line.index(level) + 1 :])[:160]] += 1
    return [(n, line) for line, n in counts.most_common()]


async def unfinished(conn: Any, grace: float = 1.0) -> int:
    await asyncio.sleep(grace)
    count: int = await conn.fetchval(
        "SELECT count(*) FROM operations WHERE state IN ('PENDING', 'RUNNING')"
    )
    return count


@dataclass(slots=True)
class EndToEnd:
    http_floor: Phase
    bare: dict[int, Phase]
    longops: dict[int, Phase]


async def _end_to_end_async(
    settings: Settings,
    db: Database,
    channel: str,
    group: Children,
    servers: Sequence[Server],
    http_floor: Server,
) -> EndToEnd:
    conn = await db.connect()
    try:
        api = {"api": [s.proc.pid for s in servers]}
        print("  bare HTTP app ...", flush=True)
        floor = await http_phase(
            conn, db, [http_floor], {"api": [http_floor.proc.pid]}, settings, NOOP
        )
        bare: dict[int, Phase] = {}
        ops: dict[int, Phase] = {}
        for procs in settings.worker_procs:
            print(f"  {procs} worker process(es): bare queue ...", flush=True)
            await refill(conn, 0)
            workers = [
                group.start("bare-worker", bare_worker_command(db, settings.concurrency))
                for _ in range(procs)
            ]
            await until_listening(conn, db, db.bare_channel, procs)
            group.check()
            pids = {"workers": [w.proc.pid for w in workers]}
            bare[procs] = await bare_queue_phase(conn, db, pids, settings)
            bare[procs].stuck = await unfinished(conn)
            group.stop(workers)

            print(f"  {procs} worker process(es): longops ...", flush=True)
            await refill(conn, 0)
            workers = [
                group.start("worker", worker_command(db, settings.concurrency))
                for _ in range(procs)
            ]
            await until_listening(conn, db, channel, len(servers) + procs)
            group.check()
            pids = {**api, "workers": [w.proc.pid for w in workers]}
            api_logs = [len(_read(s.log_path)) for s in servers]
            ops[procs] = await http_phase(conn, db, servers, pids, settings, NOOP)
            ops[procs].stuck = await unfinished(conn)
            group.check()
            logs = [_read(w.log_path) for w in workers]
            logs += [_read(s.log_path)[n:] for s, n in zip(servers, api_logs, strict=True)]
            ops[procs].warnings = warnings_in(logs)
            group.stop(workers)
        return EndToEnd(floor, bare, ops)
    finally:
        await conn.close()


def _cpu_cells(cpu: dict[str, float]) -> list[str]:
    return [f"{cpu[g]:.0%}" for g in (*GROUPS, "other", "machine")]


def report_end_to_end(settings: Settings, result: EndToEnd) -> bool:
    headers = [
        "case", "worker procs", "ops", "seconds", "ops/s", "p50 ms", "p99 ms", "failed", "stuck",
        "client", "api", "workers", "postgres", "other", "machine",
    ]  # fmt: skip

    def row(label: str, procs: str, p: Phase) -> list[object]:
        figures = [len(p.latencies), p.wall, p.ops_per_second, p.ms(50), p.ms(99), p.failures]
        return [label, procs, *figures, p.stuck, *_cpu_cells(p.cpu)]

    rows = [row("bare HTTP app (client floor)", "-", result.http_floor)]
    for procs in settings.worker_procs:
        rows.append(row("bare asyncpg queue", str(procs), result.bare[procs]))
        rows.append(row("longops", str(procs), result.longops[procs]))
    title = (
        f"(1) end to end, create -> :wait done: {settings.clients} clients,"
        f" {settings.api_servers} API server(s), `longops worker --workers"
        f" {settings.concurrency}` x N; {settings.duration:g} s after {settings.warmup:g} s;"
        " CPU columns in cores (100% = one core)"
    )
    print_table(title, headers, rows)
    note_other_load([result.http_floor, *result.bare.values(), *result.longops.values()])
    if any(p.failures or p.stuck for p in result.longops.values()):
        print(
            "  ! longops: `failed` = waits that timed out (10 s) or broke, `stuck` = operations"
            " never finished: the workers lost them (see bench/README.md, scale_out.py)."
        )
    named = [("bare HTTP app", result.http_floor)]
    named += [(f"bare queue, {n} proc(s)", p) for n, p in result.bare.items()]
    named += [(f"longops, {n} proc(s)", p) for n, p in result.longops.items()]
    for name, phase in named:
        for reason, count in phase.reasons.most_common(3):
            print(f"  ! {name}, failed {count}x: {reason}")
    for procs, phase in result.longops.items():
        for count, line in phase.warnings[:5]:
            print(f"  ! {procs} proc(s), logged {count}x: {line}")
    for procs in settings.worker_procs:
        ops, bare = result.longops[procs], result.bare[procs]
        ratio = ops.ops_per_second / bare.ops_per_second if bare.ops_per_second else 0.0
        done = len(ops.latencies)
        per_op = "  ".join(f"{g} {ops.cpu[g] * ops.wall / done * 1000:.2f}" for g in GROUPS if done)
        total = sum(ops.cpu[g] for g in GROUPS) * ops.wall / done * 1000 if done else 0.0
        print(
            f"  {procs} proc(s): longops / bare queue {ratio:.2f};"
            f" longops CPU ms per operation: {per_op} = {total:.2f}"
        )
    met = False
    if TARGET_OPS_PROCS in result.longops:
        phase = result.longops[TARGET_OPS_PROCS]
        met = verdict(
            f"longops operations/s with {TARGET_OPS_PROCS} worker processes",
            phase.ops_per_second,
            TARGET_OPS,
            digits=0,
        )
        met = met and phase.failures == 0
    else:
        print(f"  (no run with {TARGET_OPS_PROCS} worker processes: target not judged)")
    return met


# -- (2) claims per second -------------------------------------------------------------------


@dataclass(slots=True)
class ClaimRun:
    jobs: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


async def bare_claims(
    conn: Any, batch: int, finish: str, channel: str, claimer: Any = None
) -> ClaimRun:
    """Claim `batch` at a time and complete each, until none is pending.

    `finish`: "update" (one UPDATE, autocommit), "notify" (UPDATE + NOTIFY in one
    statement), "after" (the UPDATE, then the NOTIFY as a transaction of its own, as
    longops does). `claimer`: a connection to claim on instead of `conn` (longops
    claims on connections that don't wait for the disk).
    """
    jobs = 0
    started = time.perf_counter()
    while True:
        now = time.time()
        rows = await (claimer or conn).fetch(BARE_CLAIM, [NOOP], batch, "bare", now + 30, now)
        if not rows:
            break
        for seq, id, attempt in rows:
            if finish == "notify":
                await conn.execute(BARE_COMPLETE_NOTIFY, seq, attempt, time.time(), channel)
            else:
                await conn.execute(BARE_COMPLETE, seq, attempt, time.time())
                if finish == "after":
                    await conn.execute(BARE_NOTIFY, channel, id)
            jobs += 1
    return ClaimRun(jobs, time.perf_counter() - started)


async def longops_claims(store: PostgresStore, batch: int) -> ClaimRun:
    """What a worker does for a no-op, minus the handler: claim, then finish each."""
    jobs = 0
    started = time.perf_counter()
    while True:
        records = await store.claim([NOOP], "bench", 30.0, batch, time.time())
        if not records:
            break
        for record in records:
            await store.finish(
                record.id,
                record.attempt,
                State.SUCCEEDED,
                time.time(),
                response=None,
                metadata={"progressPercent": 100},
            )
            jobs += 1
    return ClaimRun(jobs, time.perf_counter() - started)


@dataclass(slots=True)
class Claims:
    bare: dict[int, ClaimRun]
    longops: dict[int, ClaimRun]
    shapes: dict[str, ClaimRun]
    shape_batch: int


SHAPES = {
    "notify": ("bare, finish as UPDATE + NOTIFY in one statement", "notify", False),
    "lax": ("bare, claims not waiting for the disk (as longops)", "update", True),
    "after": ("  and each finish NOTIFYing after its commit (as longops)", "after", True),
}


def _best(runs: dict[Any, ClaimRun], key: Any, run: ClaimRun) -> None:
    if key not in runs or run.per_second > runs[key].per_second:
        runs[key] = run


async def claims_async(settings: Settings, db: Database) -> Claims:
    conn = await db.connect()
    # As a worker opens it: claims on its lease connection, finishes on its pool, and
    # their notifications sent beside them.
    store = db.store()
    await store.open()
    claimer = await asyncpg.connect(
        db.dsn, server_settings={"search_path": db.schema, "synchronous_commit": "off"}
    )
    try:
        # One unmeasured pass each, so connections, plans and caches are warm.
        await refill(conn, 200)
        await bare_claims(conn, 16, "update", db.bare_channel)
        await refill(conn, 200)
        await longops_claims(store, 16)
        bare: dict[int, ClaimRun] = {}
        ops: dict[int, ClaimRun] = {}
        shapes: dict[str, ClaimRun] = {}
        shape_batch = max(settings.claim_batches)
        for round in range(1, settings.rounds + 1):
            for batch in settings.claim_batches:
                print(f"  round {round}, batch {batch}: bare, then longops ...", flush=True)
                await refill(conn, settings.claim_jobs)
                _best(bare, batch, await bare_claims(conn, batch, "update", db.bare_channel))
                await refill(conn, settings.claim_jobs)
                _best(ops, batch, await longops_claims(store, batch))
            print(f"  round {round}, batch {shape_batch}: the bare variants ...", flush=True)
            for shape, (_, finish, lax) in SHAPES.items():
                await refill(conn, settings.claim_jobs)
                run = await bare_claims(
                    conn, shape_batch, finish, db.bare_channel, claimer if lax else None
                )
                _best(shapes, shape, run)
        await refill(conn, 0)
        return Claims(bare, ops, shapes, shape_batch)
    finally:
        await claimer.close()
        await store.close()
        await conn.close()


def report_claims(settings: Settings, claims: Claims) -> bool:
    headers = ["case", "batch", "jobs", "seconds", "jobs/s", "x bare"]
    rows: list[list[object]] = []
    met = True
    for batch in settings.claim_batches:
        bare, ops = claims.bare[batch], claims.longops[batch]
        rows.append(["bare asyncpg: claim, UPDATE", batch, bare.jobs, bare.seconds,
                     bare.per_second, 1.0])  # fmt: skip
        ratio = ops.per_second / bare.per_second if bare.per_second else 0.0
        rows.append(["longops: store.claim, store.finish", batch, ops.jobs, ops.seconds,
                     ops.per_second, ratio])  # fmt: skip
    base = claims.bare.get(claims.shape_batch)
    labels = {shape: label for shape, (label, _, _) in SHAPES.items()}
    for shape, run in claims.shapes.items():
        ratio = run.per_second / base.per_second if base and base.per_second else 0.0
        rows.append([labels[shape], claims.shape_batch, run.jobs, run.seconds,
                     run.per_second, ratio])  # fmt: skip
    title = (
        f"(2) claim + complete, one claimer, {settings.claim_jobs:,} pending no-op rows per"
        f" run, synchronous_commit on, best of {settings.rounds} (the last three rows only"
        " explain the gap)"
    )
    print_table(title, headers, rows)
    for batch in settings.claim_batches:
        bare, ops = claims.bare[batch], claims.longops[batch]
        ratio = ops.per_second / bare.per_second if bare.per_second else 0.0
        met = verdict(f"longops / bare jobs/s, batch {batch}", ratio, TARGET_CLAIM_RATIO) and met
    return met


# -- (3) cross-process wait latency -------------------------------------------------------------


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class Waits:
    notify_ms: list[float]
    update_notify_ms: list[float]
    longops_ms: list[float]
    not_blocked: int
    failures: int


async def notify_round_trips(db: Database, count: int, with_update: bool) -> list[float]:
    """t(listener heard it) - t(before the notifying statement), two connections, in ms.

    `with_update`: the notify rides in a transaction that also updates a row and commits,
    as a worker's finishing write does."""
    sender = await db.connect()
    listener = await db.connect()
    channel = f"{db.app}_rtt"
    heard_at: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    latencies: list[float] = []
    try:
        await listener.add_listener(
            channel, lambda _c, _p, _ch, payload: heard_at.put_nowait((payload, time.time()))
        )
        await refill(sender, 1)
        seq = await sender.fetchval("SELECT seq FROM operations LIMIT 1")
        for i in range(count + 10):
            payload = str(i)
            started = time.time()
            if with_update:
                async with sender.transaction():
                    await sender.execute(
                        "UPDATE operations SET update_time = $1 WHERE seq = $2", started, seq
                    )
                    await sender.execute("SELECT pg_notify($1, $2)", channel, payload)
            else:
                await sender.execute("SELECT pg_notify($1, $2)", channel, payload)
            got, at = await asyncio.wait_for(heard_at.get(), 5.0)
            assert got == payload
            if i >= 10:  # the first few warm the connections
                latencies.append((at - started) * 1000)
            await asyncio.sleep(PAUSE_SECONDS)
        return latencies
    finally:
        await listener.close()
        await sender.close()


async def longops_waits(server: Server, count: int) -> tuple[list[float], int, int]:
    """endTime -> answer received, for `count` waits that were blocked when the worker
    finished; plus how many were not blocked (answered from the store at once), and
    how many failed."""
    client = RawHttpClient(server.port)
    await client.connect()
    latencies: list[float] = []
    not_blocked = failures = 0
    body = orjson.dumps({"seconds": PAUSE_SECONDS})
    try:
        for i in range(count + 10):
            status, raw = await client.request("POST", f"/v1beta/kinds/{PAUSE}:start", body)
            if status != 200:
                failures += 1
                continue
            name = orjson.loads(raw)["name"]
            sent = time.time()
            status, raw = await client.request("POST", f"/v1beta/{name}:wait", WAIT_BODY)
            received = time.time()
            operation = orjson.loads(raw) if status == 200 else {}
            if not operation.get("done"):
                failures += 1
                continue
            ended = _epoch(operation["metadata"]["endTime"])
            if ended <= sent:
                not_blocked += 1
            elif i >= 10:
                latencies.append((received - ended) * 1000)
    finally:
        await client.close()
    return latencies, not_blocked, failures


async def waits_async(
    settings: Settings, db: Database, channel: str, group: Children, server: Server
) -> Waits:
    conn = await db.connect()
    try:
        await refill(conn, 0)
        notify = await notify_round_trips(db, settings.waits, with_update=False)
        update_notify = await notify_round_trips(db, settings.waits, with_update=True)
        await refill(conn, 0)
        worker = group.start("worker", worker_command(db, settings.concurrency))
        await until_listening(conn, db, channel, settings.api_servers + 1)
        group.check()
        latencies, not_blocked, failures = await longops_waits(server, settings.waits)
        group.stop([worker])
        return Waits(notify, update_notify, latencies, not_blocked, failures)
    finally:
        await conn.close()


def report_waits(settings: Settings, waits: Waits) -> bool:
    headers = ["case", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"]

    def row(label: str, values: list[float]) -> list[object]:
        figures = [percentile(values, p) for p in (50, 90, 99, 100)]
        return [label, len(values), *figures]

    rows = [
        row("bare: NOTIFY -> LISTEN callback", waits.notify_ms),
        row("bare: UPDATE + NOTIFY committed -> LISTEN", waits.update_notify_ms),
        row("longops: worker's endTime -> :wait answer", waits.longops_ms),
    ]
    title = (
        f"(3) cross-process wait: client blocked in :wait on the API server, `{PAUSE}`"
        f" ({PAUSE_SECONDS * 1000:g} ms) completed by a `longops worker` process; one at a time"
    )
    print_table(title, headers, rows)
    if waits.not_blocked or waits.failures:
        print(f"  ! {waits.not_blocked} waits not blocked (left out), {waits.failures} failed")
    p50 = percentile(waits.longops_ms, 50)
    extra = p50 - percentile(waits.update_notify_ms, 50)
    print(f"  longops p50 - bare UPDATE + NOTIFY p50: {extra:.2f} ms")
    met = verdict("longops cross-process wait p50 ms", p50, TARGET_WAIT_P50_MS, at_least=False)
    return met and waits.failures == 0


# -- main -----------------------------------------------------------------------------------------


async def server_facts(db: Database) -> str:
    conn = await asyncpg.connect(db.dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
        fsync = await conn.fetchval("SHOW fsync")
        autovacuum = await conn.fetchval("SHOW autovacuum")
    finally:
        await conn.close()
    return (
        f"PostgreSQL {version}, synchronous_commit={sync}, fsync={fsync}, autovacuum={autovacuum}"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    exit_on_sigterm()
    # Not the default handler, so asyncio.Runner leaves it alone: Ctrl-C raises at once
    # instead of cancelling the running task (which a task may swallow and carry on).
    signal.signal(signal.SIGINT, _interrupt)
    settings = parse_settings()
    # The workers and API servers import bench/_noop_kind.py (`--load _noop_kind`).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    db = Database.fresh(settings.database)
    print(f"\n=== scale_out ({'quick' if settings.quick else 'full'} run) ===")
    print(f"schema {db.schema}; {run_async(server_facts(db))}")
    print(f"not pinned: {os.cpu_count()} CPUs shared by the client, API, workers and PostgreSQL")
    busy = machine_busy(1.0)
    print(f"machine busy before the run (other processes): {busy:.0%} of one core")
    if busy > NOISY:
        print("  ! the machine is not quiet: every figure below is understated; rerun when idle")
    sys.stdout.flush()
    started = time.monotonic()
    results: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as tmp:
        try:
            channel = run_async(create_schema(db))
            with children(Path(tmp)) as group, contextlib.ExitStack() as stack:
                servers = [
                    stack.enter_context(serve(f"api{i}", api_command(db)))
                    for i in range(settings.api_servers)
                ]
                floor = stack.enter_context(serve("bare", bare_command()))

                print("\n(1) end to end ...", flush=True)
                e2e = run_async(_end_to_end_async(settings, db, channel, group, servers, floor))
                results.append(report_end_to_end(settings, e2e))

                print("\n(2) claims per second ...", flush=True)
                claims = run_async(claims_async(settings, db))
                results.append(report_claims(settings, claims))

                print("\n(3) cross-process wait ...", flush=True)
                waits = run_async(waits_async(settings, db, channel, group, servers[0]))
                results.append(report_waits(settings, waits))
        finally:
            with contextlib.suppress(Exception):
                run_async(drop_schema(db))
    names = ("end-to-end ops/s", "claim ratio", "wait p50")
    summary = ", ".join(
        f"{n} {'MET' if m else 'NOT MET'}" for n, m in zip(names, results, strict=True)
    )
    print(f"\nscale-out targets: {summary}  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: child processes stopped, schema dropped", file=sys.stderr)
        raise SystemExit(130) from None
