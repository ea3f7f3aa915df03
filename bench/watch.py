"""Watch streams at scale: server memory per open `:watch`, and how fast a finish reaches them.

    .venv/bin/python bench/watch.py [--quick] [--watchers 10000] [--waiters 100] [--no-pin]
                                    [--postgres postgresql://…]

longops runs as `longops serve --workers 16 --max-connections 25000` on a fresh SQLite
file. The script raises its own open-file limit to the hard limit (inherited by the
server it starts), then:

(1) one operation: a `longops.sleep` of an hour, RUNNING; N aiohttp connections each
    hold `GET /v1beta/{name}:watch`, and W more hold `POST /v1beta/{name}:wait` on it.
    Server RSS (VmRSS) before and with the streams open gives the memory per watcher.
    Then the operation is cancelled: its worker ends it (a worker's finish, as any
    other), and every stream's done event and every wait's answer is timed from the
    operation's `endTime` (the server's clock: this host's) to its arrival.
(2) many operations: N pending operations (the server's 16 slots busy with hour-long
    ones), one stream each; RSS as above; then 100 of them are cancelled (a finish in
    the API process), each timed as in (1) beside W waits on the same 100.

(3) with `--postgres URL`: what progress notices cost a progress write on PostgreSQL.
    `SqlStore.save_progress` (which tells `longops_progress` of the row, for streams
    in other processes, while some process holds the watching lock) with nobody
    watching and with a watcher, beside the same fenced UPDATE alone, in rounds (10)
    of 500 writes each to 50 running operations, taking turns, p50 and p99.

The baseline, in the same run, is `:wait`: the same finish, heard by the same server,
answered through the mechanism that existed before watch streams. The client runs
in this process, so latencies include its own work of reading N streams on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from _common import (
    LONGOPS,
    Server,
    exit_on_sigterm,
    header,
    own_cpu_seconds,
    parse_args,
    percentile,
    print_table,
    run_async,
    serve,
)

KIND = "longops.sleep"
HOUR = {"seconds": 3600}
WORKERS = 16


def _rss_mib(server: Server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _raise_open_files() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _command(database: Path) -> Any:
    return lambda port: [
        LONGOPS, "serve", "--host", "127.0.0.1", "--port", str(port),
        "--database", f"sqlite:///{database}", "--workers", str(WORKERS),
        "--max-connections", "25000", "--log-level", "warning",
    ]  # fmt: skip


def _end_time(operation: dict[str, Any]) -> float:
    return datetime.fromisoformat(operation["metadata"]["endTime"]).timestamp()


class Watcher:
    """One open stream: ready once its first event came, done with the arrival time."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.finished = asyncio.Event()
        self.arrived: float | None = None
        self.done: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            assert response.status == 200, await response.text()
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                self.ready.set()
                if b'"done":true' in line:
                    self.arrived = time.time()
                    self.done = orjson.loads(line[6:])
                    self.finished.set()
                    return


async def _wait(session: aiohttp.ClientSession, url: str, out: list[float]) -> None:
    async with session.post(url, json={"timeout": "600s"}) as response:
        body = await response.json()
        arrived = time.time()
    if body.get("done"):
        out.append(arrived - _end_time(body))


async def _open(session: aiohttp.ClientSession, urls: list[str]) -> list[Watcher]:
    """Open a stream per url, a few hundred at a time (the accept queue is finite)."""
    watchers = [Watcher() for _ in urls]
    for start in range(0, len(urls), 250):
        batch = range(start, min(start + 250, len(urls)))
        for i in batch:
            watchers[i].task = asyncio.create_task(watchers[i].run(session, urls[i]))
        ready = asyncio.gather(*(watchers[i].ready.wait() for i in batch))
        await asyncio.wait_for(ready, 60)
    return watchers


def _latencies(watchers: list[Watcher]) -> list[float]:
    return [w.arrived - _end_time(w.done) for w in watchers if w.arrived and w.done]


async def _settle(server: Server) -> float:
    """RSS once it stops moving (the allocator returns little, but takes a moment)."""
    await asyncio.sleep(1.0)
    return _rss_mib(server)


async def measure(server: Server, watchers_n: int, waiters_n: int) -> list[list[object]]:
    base = server.url("/v1beta")
    # Below the server's 5 s keep-alive, so no request goes out on a connection it closes;
    # streams on connections of their own, never reused.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
    rows: list[list[object]] = []
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as streams,
    ):

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(f"{base}/{path}", json=body) as response:
                data: dict[str, Any] = await response.json()
                return data

        # A few requests first, so the "before" figure is of a server that has served.
        for _ in range(50):
            await post(f"kinds/{KIND}:start", {})
        before = await _settle(server)

        # (1) one operation
        op = await post(f"kinds/{KIND}:start", HOUR)
        name = op["name"]
        for _ in range(600):  # until a worker has claimed it
            if (await post(f"{name}:wait", {"timeout": "0s"}))["metadata"]["state"] == "RUNNING":
                break
            await asyncio.sleep(0.05)
        watchers = await _open(streams, [f"{base}/{name}:watch"] * watchers_n)
        opened = await _settle(server)
        waits: list[float] = []
        waiting = [asyncio.create_task(_wait(session, f"{base}/{name}:wait", waits))]
        waiting += [
            asyncio.create_task(_wait(session, f"{base}/{name}:wait", waits))
            for _ in range(waiters_n - 1)
        ]
        await asyncio.sleep(1.0)  # the waits are parked
        cpu = _Cpu(server)
        await post(f"{name}:cancel", {})
        await asyncio.gather(*waiting)
        await asyncio.wait_for(asyncio.gather(*(w.finished.wait() for w in watchers)), 120)
        rows += _rows(
            "one operation", watchers_n, before, opened, _latencies(watchers), waits, cpu.spent()
        )
        await asyncio.sleep(1.0)  # the streams are closed
        after_one = await _settle(server)

        # (2) many operations: keep the worker slots busy, then N pending ones
        for _ in range(WORKERS):
            await post(f"kinds/{KIND}:start", HOUR)
        names = [
            (await post(f"kinds/{KIND}:start", {}))["name"] for _ in range(watchers_n)
        ]  # pending: the slots are taken
        watchers = await _open(streams, [f"{base}/{n}:watch" for n in names])
        opened_many = await _settle(server)
        cancelled = names[:100]
        waits = []
        waiting = [
            asyncio.create_task(_wait(session, f"{base}/{cancelled[i % 100]}:wait", waits))
            for i in range(waiters_n)
        ]
        await asyncio.sleep(1.0)
        cpu = _Cpu(server)
        await asyncio.gather(*(post(f"{n}:cancel", {}) for n in cancelled))
        await asyncio.gather(*waiting)
        await asyncio.wait_for(asyncio.gather(*(w.finished.wait() for w in watchers[:100])), 120)
        heard = _latencies(watchers[:100])
        rows += _rows(
            "many operations", watchers_n, after_one, opened_many, heard, waits, cpu.spent()
        )
        for watcher in watchers:  # the streams of operations still pending
            if watcher.task is not None:
                watcher.task.cancel()
        await asyncio.gather(*(w.task for w in watchers if w.task), return_exceptions=True)
    return rows


class _Cpu:
    """CPU seconds the server and this client spend from now on, beside the wall time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.start = (server.cpu_seconds(), own_cpu_seconds(), time.monotonic())

    def spent(self) -> str:
        server, client, wall = self.start
        return (
            f"{self.server.cpu_seconds() - server:.2f} / {own_cpu_seconds() - client:.2f}"
            f" / {time.monotonic() - wall:.2f}"
        )


def _rows(
    case: str,
    n: int,
    before: float,
    opened: float,
    watch: list[float],
    waits: list[float],
    cpu: str,
) -> list[list[object]]:
    per = (opened - before) * 1024 / n
    return [
        [
            case,
            f"{n:,} streams",
            f"{before:.0f} -> {opened:.0f}",
            f"{per:.1f}",
            f"{len(watch):,}",
            f"{percentile(watch, 50) * 1000:.1f}",
            f"{percentile(watch, 99) * 1000:.1f}",
            f"{max(watch) * 1000:.1f}",
            cpu,
        ],
        [
            "",
            f"{len(waits):,} :wait",
            "",
            "",
            f"{len(waits):,}",
            f"{percentile(waits, 50) * 1000:.1f}",
            f"{percentile(waits, 99) * 1000:.1f}",
            f"{max(waits) * 1000:.1f}",
            "",
        ],
    ]


async def progress_writes(url: str, rounds: int) -> list[list[object]]:
    """save_progress with its notice, and the same write without one, taking turns."""
    from longops.engine.records import NewOperation
    from longops.engine.store import open_store
    from longops.engine.store.sql import _FENCE

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    store: Any = open_store(f"{url}{'&' if '?' in url else '?'}schema={schema}")
    await store.open()
    try:
        for i in range(50):
            await store.create(NewOperation(f"p{i}", f"operations/p{i}", "k", {}), time.time())
        claimed = await store.claim(["k"], "bench", 3600, 50, time.time())
        json = store.database.dialect.json
        sql = f"UPDATE operations SET metadata = ?::jsonb, update_time = ? WHERE {_FENCE}"

        async def progress(record: Any, step: int) -> None:
            await store.save_progress(record.id, 1, {"progressPercent": step % 100}, time.time())

        async def silent(record: Any, step: int) -> None:
            meta = json({"progressPercent": step % 100})
            await store._fenced(None, sql, meta, time.time(), record.id, 1)

        database = store.database
        timings: dict[str, list[float]] = {"none": [], "unwatched": [], "watched": []}
        for turn in range(rounds):  # each goes first in turn
            cases = ["none", "unwatched", "watched"]
            for label in cases[turn % 3 :] + cases[: turn % 3]:
                await database.set_watching(label == "watched")  # a watcher somewhere
                await database._read_watched()
                assert database.progress_wanted() == (label == "watched")
                write = silent if label == "none" else progress
                for step in range(500):
                    began = time.perf_counter()
                    await write(claimed[step % len(claimed)], step)
                    timings[label].append(time.perf_counter() - began)
                await database._notifier.flush()
    finally:
        await store.database.pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()
    none = percentile(timings["none"], 50)
    labels = {
        "none": "the UPDATE alone",
        "unwatched": "save_progress, nobody watching",
        "watched": "save_progress, a watcher somewhere (notice)",
    }
    return [
        [
            labels[label],
            f"{len(values):,}",
            percentile(values, 50) * 1e3,
            percentile(values, 99) * 1e3,
            f"{percentile(values, 50) / none:.2f}x",
        ]
        for label, values in timings.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=None, help="streams per case (10,000)")
    parser.add_argument("--waiters", type=int, default=100, help=":wait calls beside them")
    parser.add_argument("--postgres", help="also time progress writes on this database")
    _, args = parse_args(__doc__.splitlines()[0], parser=parser)
    watchers = args.watchers or (1000 if args.quick else 10_000)
    exit_on_sigterm()
    limit = _raise_open_files()
    if 2 * watchers + 1000 > limit * 2:
        raise SystemExit(f"the open-file limit ({limit}) is too low for {watchers} streams")
    header(f"watch streams ({watchers:,} per case, {args.waiters} :wait beside them)")
    with (
        tempfile.TemporaryDirectory() as folder,
        serve("longops", _command(Path(folder) / "watch.db")) as server,
    ):
        rows = run_async(measure(server, watchers, args.waiters))
    print_table(
        "server RSS with the streams open, and a finish -> its event (ms, endTime -> arrival)",
        [
            "case",
            "connections",
            "RSS MiB",
            "KiB each",
            "heard",
            "p50",
            "p99",
            "max",
            "CPU s: server / client / wall",
        ],
        rows,
    )
    if args.postgres:
        print_table(
            "PostgreSQL progress writes (ms)",
            ["write", "count", "p50", "p99", "p50 / alone"],
            run_async(progress_writes(args.postgres, 2 if args.quick else 10)),
        )


if __name__ == "__main__":
    main()
