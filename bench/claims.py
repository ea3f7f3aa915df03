"""Claims per second with priorities, fair turns and limits, beside none configured.

    .venv/bin/python bench/claims.py [--quick] [--backends sqlite,postgres]
        [--claimers 1,4] [--batch 16] [--rounds N] [--duration S] [--database URL]
        [--no-binding]

What is measured is the claim path of the store as workers drive it: C claimer
processes, each with its own store (`open_store(url)`, as a worker process opens it),
each looping `Store.claim(kinds, owner, 30, batch, now, limits)` then `Store.finish`
of every operation claimed (SUCCEEDED, as a worker leaves a no-op), for a fixed time,
on a backlog of PENDING rows big enough not to run dry. Claims/s = operations claimed
and finished in the window / the window. Separate processes rather than tasks in one
process, because that is how a deployment claims (one worker process per machine or
container), and because the limited claim's cost on PostgreSQL is its serialization:
claims of limited kinds take one advisory lock in turn, so with several claimers the
time a claim holds it bounds them all; tasks sharing one interpreter would measure
that interpreter instead. No HTTP and no handler: a worker's own per-operation work
(tasks, context, metrics) is the same whatever the limits, so it would only dilute
the difference.

Three configurations, measured alternately in every round (the order flipping each
round), each on a freshly filled table of the same size:

- `plain` (the baseline): nothing configured, one tenant, the default priority, no
  limits: the claim is one statement;
- `tenants`: still nothing configured, but 4 tenants' operations interleaved: fair
  turns are always on, so this is what a multi-tenant deployment that sets nothing
  pays for them;
- `mixed`: 4 tenants x 4 concurrency keys, priorities 300/500/700, no limits: the
  claim order alone;
- `limited`: the same mix, and the kind limited by all four limits, each generous enough
  never to bind (concurrency and key_concurrency 100,000, far above the claimers x batch
  that can run at once; rate and key_rate 1,000,000/s): the cost of the machinery (the
  lock, counting what runs, reading and writing the token buckets). **Target:
  limited / plain >= 0.8 on both backends.**

The backlog's rows are written in bulk as creates would leave them (their `turn`
is what `Store.create` computes for rows created in that order with none claimed yet:
the row's index among the pending rows of its tenant, key and priority), each row's
tenant, key and priority drawn at random, so the groups are interleaved row by row.

Where `tenants` and `mixed` lose to `plain` on SQLite, it is the claim order's page
locality, not the limits: `plain` claims 16 rows that sit side by side in the table and
its indexes, while taking tenants and keys in turn claims rows spread over the whole
backlog, so each claim dirties several times as many pages (measured: ~14 WAL frames
per 16-row claim for `plain`, ~60 for `mixed` and `limited` alike: the table's pages
and the entries of the per-tenant and per-group indexes). `limited / mixed` is the
cost of the limits machinery alone; it is printed too.

Then (unless `--no-binding`), once, limits that bind, to show they hold: a rate of
`BINDING_RATE`/s on the kind (claims/s must come out at the rate: at most the rate x
the window plus one burst of one second), and a concurrency of 2 (claimers that find
no room poll every 0.1 s, as a worker with limited kinds does).

Absolute figures on this shared 2-core machine move by tens of percent from run to run
(other people's test runs share the cores and the PostgreSQL server); the ratios of
figures taken seconds apart in the same round are far steadier, so each ratio is the
median of the rounds' ratios, printed with its spread (min-max). PostgreSQL runs in a
fresh schema (`?schema=bench_claims_<random>`) dropped at the end; SQLite on a file in
a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import exit_on_sigterm, print_table, run_async, verdict

from longops.engine.limits import Limit
from longops.engine.records import DEFAULT_PRIORITY, State
from longops.engine.store import open_store
from longops.engine.store.base import Store
from longops.engine.store.database import Session

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
KIND = "bench.claim"
TARGET_RATIO = 0.8
TENANTS = 4
KEYS = 4
PRIORITIES = (300, DEFAULT_PRIORITY, 700)
GENEROUS = Limit(concurrency=100_000, key_concurrency=100_000, rate=1e6, key_rate=1e6)
BINDING_RATE = 100.0
BINDING_CONCURRENCY = 2
LIMITED_POLL = 0.1
"""What a worker with limited kinds waits after a claim that found no room."""
LEASE_SECONDS = 30.0
MIN_BACKLOG = 2000
WARM_BACKLOG = 20_000
BACKLOG_MARGIN = 1.5
"""A window's backlog: this many times what the fastest run so far would take in it."""


@dataclass(frozen=True, slots=True)
class Shape:
    """Who the backlog's operations belong to: each row draws its tenant, key and
    priority at random from these."""

    tenants: int = 1
    keys: int = 0
    priorities: tuple[int, ...] = (DEFAULT_PRIORITY,)


ONE = Shape()
TENANTED = Shape(tenants=TENANTS)
MIX = Shape(tenants=TENANTS, keys=KEYS, priorities=PRIORITIES)


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    shape: Shape
    limit: Limit | None

    @property
    def limits(self) -> dict[str, Limit] | None:
        return None if self.limit is None else {KIND: self.limit}


PLAIN = Config("plain", ONE, limit=None)
TENANTS_ONLY = Config("tenants", TENANTED, limit=None)
MIXED = Config("mixed", MIX, limit=None)
LIMITED = Config("limited", MIX, limit=GENEROUS)
CONFIGS = (PLAIN, TENANTS_ONLY, MIXED, LIMITED)
BINDING = (
    Config(f"rate {BINDING_RATE:g}/s", MIX, limit=Limit(rate=BINDING_RATE)),
    Config(f"concurrency {BINDING_CONCURRENCY}", MIX, limit=Limit(concurrency=BINDING_CONCURRENCY)),
)


# -- command line ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    backends: tuple[str, ...]
    claimers: tuple[int, ...]
    batch: int
    rounds: int
    duration: float
    database: str
    binding: bool


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each must be at least 1")
    return values


def _backends(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(","))
    if not values or any(v not in {"sqlite", "postgres"} for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected sqlite and/or postgres")
    return values


def parse_settings() -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter run, rougher figures")
    parser.add_argument("--backends", type=_backends, default=("sqlite", "postgres"))
    parser.add_argument("--claimers", type=_ints, default=(1, 4), help="claimer processes")
    parser.add_argument("--batch", type=int, default=16, help="most claimed per claim")
    parser.add_argument("--rounds", type=int, help="rounds of all configs (default 5, quick 3)")
    parser.add_argument("--duration", type=float, help="seconds each (default 5, quick 2)")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL server URL")
    parser.add_argument("--no-binding", action="store_true", help="skip the binding limits")
    args = parser.parse_args()
    return Settings(
        backends=args.backends,
        claimers=args.claimers,
        batch=args.batch,
        rounds=args.rounds or (3 if args.quick else 5),
        duration=args.duration or (2.0 if args.quick else 5.0),
        database=args.database,
        binding=not args.no_binding,
    )


# -- the claimer processes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One claimer's orders: claim and finish from `start` until `stop` (wall clock)."""

    config: Config
    batch: int
    start: float
    stop: float


@dataclass(slots=True)
class Result:
    jobs: int = 0
    claims: int = 0
    empty: int = 0
    claim_seconds: float = 0.0
    finish_seconds: float = 0.0
    end: float = 0.0
    last: float = 0.0
    """When its last operation finished."""
    cpu: float = 0.0


async def _claim_for(store: Store, owner: str, run: Run) -> Result:
    result = Result()
    limits, kinds = run.config.limits, [KIND]
    await asyncio.sleep(max(0.0, run.start - time.time()))
    cpu = time.process_time()
    while (now := time.time()) < run.stop:
        records = await store.claim(kinds, owner, LEASE_SECONDS, run.batch, now, limits)
        claimed = time.time()
        result.claims += 1
        result.claim_seconds += claimed - now
        if not records:
            result.empty += 1
            if limits is None:
                break  # the backlog ran dry: the window ends here
            await asyncio.sleep(LIMITED_POLL)
            continue
        for record in records:
            await store.finish(
                record.id,
                record.attempt,
                State.SUCCEEDED,
                time.time(),
                response=None,
                metadata={"progressPercent": 100},
            )
            result.jobs += 1
        result.last = time.time()
        result.finish_seconds += result.last - claimed
    result.end = min(time.time(), run.stop)
    result.cpu = time.process_time() - cpu
    return result


async def _claimer(conn: Connection, url: str, owner: str) -> None:
    store = open_store(url)
    await store.open()
    try:
        conn.send("ready")
        while True:
            run: Run | None = await asyncio.to_thread(conn.recv)
            if run is None:
                return
            conn.send(await _claim_for(store, owner, run))
    finally:
        await store.close()


def claimer_main(conn: Connection, url: str, owner: str) -> None:
    """A claimer process: open a store, then run each `Run` it is sent until None."""
    try:
        run_async(_claimer(conn, url, owner))
    finally:
        conn.close()


@dataclass(slots=True)
class Claimers:
    """C claimer processes on one database, kept for the whole benchmark."""

    processes: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    pipes: list[Connection] = field(default_factory=list)

    @classmethod
    def start(cls, url: str, count: int) -> Claimers:
        context = multiprocessing.get_context("spawn")
        claimers = cls()
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=claimer_main, args=(theirs, url, f"bench-{index}"), daemon=True
            )
            process.start()
            theirs.close()
            claimers.processes.append(process)
            claimers.pipes.append(ours)
        for pipe in claimers.pipes:
            if not pipe.poll(60) or pipe.recv() != "ready":
                raise RuntimeError("a claimer process did not start")
        return claimers

    def run(self, config: Config, count: int, batch: int, duration: float) -> list[Result]:
        start = time.time() + 0.2
        run = Run(config, batch, start, start + duration)
        for pipe in self.pipes[:count]:
            pipe.send(run)
        results = []
        for pipe in self.pipes[:count]:
            if not pipe.poll(duration + 120):
                raise RuntimeError("a claimer process did not answer")
            results.append(pipe.recv())
        return results

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)


# -- the backlog ----------------------------------------------------------------------


_INSERT = (
    "INSERT INTO operations (id, name, kind, tenant, request_id, request, state, metadata,"
    " max_attempts, create_time, update_time, webhook, priority, not_before,"
    " concurrency_key, turn) VALUES (?, ?, ?, ?, NULL, ?, 'PENDING', ?, 3, ?, ?, NULL, ?,"
    " 0, ?, ?)"
)


def backlog_rows(count: int, shape: Shape, json: Any) -> list[tuple[Any, ...]]:
    """`count` pending rows as creates in this order would leave them (see the module
    docstring on `turn`)."""
    rng = random.Random(count)
    turns: dict[tuple[str, str, int], int] = {}
    now = time.time()
    rows = []
    for _ in range(count):
        group = (
            f"tenant-{rng.randrange(shape.tenants)}" if shape.tenants > 1 else "",
            f"key-{rng.randrange(shape.keys)}" if shape.keys else "",
            rng.choice(shape.priorities),
        )
        turn = turns.get(group, 0)
        turns[group] = turn + 1
        id = secrets.token_hex(10)
        tenant, key, priority = group
        rows.append(
            (id, f"operations/{id}", KIND, tenant, json({}), json({}), now, now,
             priority, key, turn)
        )  # fmt: skip
    return rows


async def refill(store: Store, backend: str, count: int, shape: Shape) -> None:
    """An empty table (and no buckets), then `count` pending rows."""
    database = store.database
    json = database.dialect.json

    async def empty(s: Session) -> None:
        s.forget(None)
        if backend == "postgres":
            await s.execute("TRUNCATE operations, rate_buckets")
        else:
            await s.execute("DELETE FROM operations")
            await s.execute("DELETE FROM rate_buckets")

    await database.write(empty)
    rows = backlog_rows(count, shape, json)
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]

        async def insert(s: Session, chunk: list[tuple[Any, ...]] = chunk) -> None:
            await s.executemany(_INSERT, chunk)

        await database.write(insert)
    await database.write(lambda s: s.execute("ANALYZE"))


# -- measuring --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    jobs: int
    seconds: float
    claims: int
    empty: int
    claim_ms: float
    """Mean wall time of one claim call."""
    cpu: float
    """Claimer CPU seconds per claimed-and-finished operation, in ms."""
    drained: bool

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def figure(results: Sequence[Result], start: float, backlog: int) -> Figure:
    """The claimers' results together; a run that took the whole backlog is measured
    up to its last finish."""
    jobs = sum(r.jobs for r in results)
    claims = sum(r.claims for r in results)
    drained = jobs >= backlog
    seconds = max(r.last if drained else r.end for r in results) - start
    return Figure(
        jobs=jobs,
        seconds=seconds,
        claims=claims,
        empty=sum(r.empty for r in results),
        claim_ms=1000 * sum(r.claim_seconds for r in results) / claims if claims else 0.0,
        cpu=1000 * sum(r.cpu for r in results) / jobs if jobs else 0.0,
        drained=drained,
    )


async def measure(
    store: Store,
    backend: str,
    claimers: Claimers,
    count: int,
    config: Config,
    settings: Settings,
    backlog: int,
) -> Figure:
    await refill(store, backend, backlog, config.shape)
    start = time.time()
    results = await asyncio.to_thread(
        claimers.run, config, count, settings.batch, settings.duration
    )
    return figure(results, start + 0.2, backlog)


@dataclass(slots=True)
class Series:
    figures: dict[str, list[Figure]] = field(default_factory=dict)

    def add(self, config: Config, result: Figure) -> None:
        self.figures.setdefault(config.name, []).append(result)

    def ratios(self, name: str) -> list[float]:
        return [
            f.per_second / b.per_second
            for f, b in zip(self.figures[name], self.figures[PLAIN.name], strict=True)
            if b.per_second
        ]


async def bench_backend(
    backend: str, url: str, settings: Settings
) -> tuple[dict[int, Series], dict[str, Figure]]:
    store = open_store(url)
    await store.open()
    claimers = Claimers.start(url, max(settings.claimers))
    series = {count: Series() for count in settings.claimers}
    binding: dict[str, Figure] = {}
    try:
        # An unmeasured pass of each, so connections, plans and caches are warm, and
        # the fastest tells how big a backlog must be not to run dry in a window.
        best = 0.0
        for config in CONFIGS:
            warm = await measure(store, backend, claimers, max(settings.claimers), config,
                                 settings, WARM_BACKLOG)  # fmt: skip
            best = max(best, warm.per_second)
        for round in range(1, settings.rounds + 1):
            order = CONFIGS if round % 2 else CONFIGS[::-1]
            for count in settings.claimers:
                s = series[count]
                backlog = max(MIN_BACKLOG, int(best * settings.duration * BACKLOG_MARGIN))
                cells = []
                for config in order:
                    result = await measure(
                        store, backend, claimers, count, config, settings, backlog
                    )
                    s.add(config, result)
                    best = max(best, result.per_second)
                    cells.append(
                        f"{config.name} {result.per_second:,.0f}/s"
                        + (" (ran dry)" if result.drained else "")
                    )
                print(f"  {backend} round {round}, {count} claimer(s): " + ", ".join(cells))
                sys.stdout.flush()
        if settings.binding:
            count = max(settings.claimers)
            backlog = max(MIN_BACKLOG, int(best * settings.duration * BACKLOG_MARGIN))
            for config in BINDING:
                binding[config.name] = await measure(
                    store, backend, claimers, count, config, settings, backlog
                )
        await refill(store, backend, 0, ONE)
        return series, binding
    finally:
        claimers.stop()
        await store.close()


async def drop_schema(base: str, schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# -- report -----------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f}"


def report(
    settings: Settings,
    results: dict[str, tuple[dict[int, Series], dict[str, Figure]]],
) -> bool:
    headers = ["backend", "claimers", "config", "claims/s", "spread", "claim ms", "cpu ms/op",
               "x plain", "ratio spread"]  # fmt: skip
    rows: list[list[object]] = []
    met = True
    for backend, (series, _) in results.items():
        for count, s in series.items():
            for config in CONFIGS:
                figures = s.figures[config.name]
                rates = [f.per_second for f in figures]
                ratios = s.ratios(config.name)
                rows.append([
                    backend, count, config.name, _median(rates), _spread(rates, 0),
                    _median([f.claim_ms for f in figures]), _median([f.cpu for f in figures]),
                    _median(ratios), _spread(ratios),
                ])  # fmt: skip
    print_table(
        f"Claims/s, claim + finish, batch {settings.batch}, {settings.duration:g} s each,"
        f" medians of {settings.rounds} rounds (x plain: median of the rounds' ratios)",
        headers,
        rows,
    )
    print(
        "  claim ms: mean wall time of one Store.claim; cpu ms/op: claimer-process CPU per"
        " operation claimed and finished (the database server's is not in it)"
    )
    if any(f.drained for _, (series, _) in results.items() for s in series.values()
           for figures in s.figures.values() for f in figures):  # fmt: skip
        print("  (a run that ran dry is measured up to the moment it did)")
    binding_rows: list[list[object]] = []
    for backend, (_, binding) in results.items():
        for name, f in binding.items():
            binding_rows.append([backend, max(settings.claimers), name, f.jobs, f.seconds,
                                 f.per_second, f.claims, f.empty])  # fmt: skip
    if binding_rows:
        print_table(
            "Binding limits (once): claims/s under a limit that binds",
            ["backend", "claimers", "limit", "jobs", "seconds", "claims/s", "claim calls",
             "found no room"],
            binding_rows,
        )  # fmt: skip
        bound = BINDING_RATE * (settings.duration + 1)
        for backend, (_, binding) in results.items():
            rated = binding.get(BINDING[0].name)
            if rated is not None:
                print(
                    f"  {backend}: {rated.jobs} started under rate {BINDING_RATE:g}/s in"
                    f" {settings.duration:g} s (at most {bound:g}: the window's plus one"
                    " second's burst) -> " + ("HOLDS" if rated.jobs <= bound else "EXCEEDED")
                )
                met = met and rated.jobs <= bound
    print()
    for backend, (series, _) in results.items():
        for count, s in series.items():
            machinery = [
                f.per_second / m.per_second
                for f, m in zip(s.figures[LIMITED.name], s.figures[MIXED.name], strict=True)
                if m.per_second
            ]
            print(
                f"  {backend}, {count} claimer(s): limited / mixed (the limits alone):"
                f" {_median(machinery):.2f} ({_spread(machinery)})"
            )
    for backend, (series, _) in results.items():
        for count, s in series.items():
            ratio = _median(s.ratios(LIMITED.name))
            met = verdict(f"{backend}, {count} claimer(s): limited / plain", ratio,
                          TARGET_RATIO) and met  # fmt: skip
    return met


async def main_async(settings: Settings) -> bool:
    results: dict[str, tuple[dict[int, Series], dict[str, Figure]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as folder:
        for backend in settings.backends:
            print(f"\n=== {backend} ===")
            sys.stdout.flush()
            if backend == "sqlite":
                url = f"sqlite:///{Path(folder) / 'claims.db'}"
                results[backend] = await bench_backend(backend, url, settings)
            else:
                schema = f"bench_claims_{secrets.token_hex(6)}"
                separator = "&" if "?" in settings.database else "?"
                try:
                    url = f"{settings.database}{separator}schema={schema}"
                    results[backend] = await bench_backend(backend, url, settings)
                finally:
                    await drop_schema(settings.database, schema)
    return report(settings, results)


def main() -> None:
    exit_on_sigterm()
    settings = parse_settings()
    print(
        f"claims: backends {','.join(settings.backends)}, claimers"
        f" {','.join(map(str, settings.claimers))}, batch {settings.batch},"
        f" {settings.rounds} rounds of {settings.duration:g} s"
    )
    met = run_async(main_async(settings))
    print(f"\nclaims target (limited / plain >= {TARGET_RATIO}): {'MET' if met else 'NOT MET'}")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
