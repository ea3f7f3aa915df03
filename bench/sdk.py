"""The longops SDK against raw HTTP clients, on one `longops serve` (SQLite, no-op kind).

    .venv/bin/python bench/sdk.py [--quick] [--no-pin]

One server (`longops serve --workers 16 --load _noop_kind`, bench/_noop_kind.py's `bench.noop`
returns at once) on a fresh SQLite file; every client runs against it in the same run:

(a) async, N asyncio tasks (64, then 256) each looping start (`POST kinds/bench.noop:start`)
    then wait (`POST {name}:wait`), for a fixed time: operations/s of
    `client.aio.operations.start` + `.wait`, of a bare `aiohttp.ClientSession` sending the same
    two requests, of a raw `httpx.AsyncClient`, and of httpx over the `httpx-aiohttp`
    transport when that package is installed. Target: the SDK >= 0.8x bare aiohttp.
(b) sync, one client, one request after another: p50 of the longops SDK's
    `operations.get` and `start` + `wait`, raw `httpx.Client` GET of the same operation, and
    google-genai's `client.operations.get` (when installed).

The async cases take turns in three rounds (each a third of the time), so a drift of the
shared machine or of the server touches every client alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import orjson
from _common import (
    BENCH_DIR,
    Server,
    Timing,
    exit_on_sigterm,
    header,
    longops_command,
    parse_args,
    percentile,
    print_table,
    run_async,
    serve,
    server_cpu_cell,
    verdict,
)

from longops import Client

KIND = "bench.noop"
WORKERS = 16
TASKS = (64, 256)
TARGET_RATIO = 0.8
ROUNDS = 3
WAIT_BODY = b'{"timeout":"10s"}'
HEADERS = {"content-type": "application/json"}

# One start+wait round trip of a client, given its task's shared client object.
RoundTrip = Callable[[], Awaitable[bool]]


@dataclass(slots=True)
class Throughput:
    ops: int
    failures: int
    wall: float
    server_cpu: float

    @property
    def per_second(self) -> float:
        return self.ops / self.wall if self.wall else 0.0

    def add(self, other: Throughput) -> Throughput:
        """Both runs as one: their operations over their summed time."""
        wall = self.wall + other.wall
        cpu = (self.server_cpu * self.wall + other.server_cpu * other.wall) / wall
        return Throughput(self.ops + other.ops, self.failures + other.failures, wall, cpu)


async def _loop(round_trip: RoundTrip, stop: float, tally: list[int]) -> None:
    while time.monotonic() < stop:
        try:
            ok = await round_trip()
        except Exception:
            ok = False
        tally[0 if ok else 1] += 1


async def _drive(round_trip: RoundTrip, tasks: int, seconds: float) -> tuple[int, int]:
    tally = [0, 0]
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_loop(round_trip, stop, tally) for _ in range(tasks)))
    return tally[0], tally[1]


async def throughput(
    server: Server, round_trip: RoundTrip, tasks: int, timing: Timing
) -> Throughput:
    await _drive(round_trip, tasks, timing.warmup)
    cpu, wall = server.cpu_seconds(), time.monotonic()
    ops, failures = await _drive(round_trip, tasks, timing.duration)
    wall = time.monotonic() - wall
    return Throughput(ops, failures, wall, (server.cpu_seconds() - cpu) / wall)


# -- the async clients ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sdk_client(server: Server, tasks: int) -> AsyncIterator[RoundTrip]:
    client = Client(base_url=server.base_url, http_options={"max_connections": tasks})
    aio = client.aio

    async def round_trip() -> bool:
        operation = await aio.operations.start(KIND, {})
        done = await aio.operations.wait(operation, timeout=10)
        return done.done is True

    try:
        yield round_trip
    finally:
        await aio.aclose()
        client.close()


@contextlib.asynccontextmanager
async def aiohttp_client(server: Server, tasks: int) -> AsyncIterator[RoundTrip]:
    base = f"{server.base_url}/v1beta"
    connector = aiohttp.TCPConnector(limit=tasks)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def round_trip() -> bool:
            async with session.post(f"{base}/kinds/{KIND}:start", data=b"{}", headers=HEADERS) as r:
                name = orjson.loads(await r.read())["name"]
            async with session.post(f"{base}/{name}:wait", data=WAIT_BODY, headers=HEADERS) as r:
                return r.status == 200 and orjson.loads(await r.read()).get("done") is True

        yield round_trip


def _httpx_round_trip(http: httpx.AsyncClient) -> RoundTrip:
    async def round_trip() -> bool:
        started = await http.post(f"/kinds/{KIND}:start", content=b"{}", headers=HEADERS)
        name = orjson.loads(started.content)["name"]
        waited = await http.post(f"/{name}:wait", content=WAIT_BODY, headers=HEADERS)
        return waited.status_code == 200 and orjson.loads(waited.content).get("done") is True

    return round_trip


def _httpx_limits(tasks: int) -> httpx.Limits:
    return httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)


@contextlib.asynccontextmanager
async def httpx_client(server: Server, tasks: int) -> AsyncIterator[RoundTrip]:
    async with httpx.AsyncClient(
        base_url=f"{server.base_url}/v1beta", limits=_httpx_limits(tasks), trust_env=False
    ) as http:
        yield _httpx_round_trip(http)


@contextlib.asynccontextmanager
async def httpx_aiohttp_client(server: Server, tasks: int) -> AsyncIterator[RoundTrip]:
    from httpx_aiohttp import AiohttpTransport  # type: ignore[import-not-found]

    transport = AiohttpTransport(client=aiohttp.ClientSession(aiohttp.TCPConnector(limit=tasks)))
    async with httpx.AsyncClient(
        base_url=f"{server.base_url}/v1beta", transport=transport, trust_env=False
    ) as http:
        yield _httpx_round_trip(http)


ClientFactory = Callable[[Server, int], contextlib.AbstractAsyncContextManager[RoundTrip]]


def async_cases() -> list[tuple[str, ClientFactory]]:
    cases: list[tuple[str, ClientFactory]] = [
        ("bare aiohttp", aiohttp_client),
        ("longops client.aio", sdk_client),
        ("raw httpx.AsyncClient", httpx_client),
    ]
    if importlib.util.find_spec("httpx_aiohttp") is not None:
        cases.append(("httpx over httpx-aiohttp", httpx_aiohttp_client))
    return cases


async def measure_async(
    server: Server, factory: ClientFactory, tasks: int, timing: Timing
) -> Throughput:
    async with factory(server, tasks) as round_trip:
        return await throughput(server, round_trip, tasks, timing)


# -- the sync clients ----------------------------------------------------------------------


def p50s_ms(calls: dict[str, Callable[[], object]], count: int) -> list[tuple[str, float]]:
    """The p50 of each call, in milliseconds. Calls take turns, one each per round, so a
    server still busy with an earlier phase (or the machine's weather) slows them all
    alike rather than whichever was measured first."""
    for _ in range(max(10, count // 10)):
        for call in calls.values():
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return [(name, percentile(taken, 50) * 1000) for name, taken in seconds.items()]


def measure_sync(server: Server, count: int) -> list[tuple[str, float]]:
    calls: dict[str, Callable[[], object]] = {}
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(Client(base_url=server.base_url))
        operation = client.operations.start(KIND, {})
        client.operations.wait(operation, timeout=10)
        calls["longops operations.get"] = lambda: client.operations.get(operation)
        calls["longops start + wait"] = lambda: client.operations.wait(
            client.operations.start(KIND, {}), timeout=10
        )
        http = stack.enter_context(
            httpx.Client(base_url=f"{server.base_url}/v1beta", trust_env=False)
        )
        calls["raw httpx GET"] = lambda: http.get(f"/{operation.name}")
        if importlib.util.find_spec("google.genai") is not None:
            from google import genai
            from google.genai import types

            official = genai.Client(
                api_key="bench", http_options=types.HttpOptions(base_url=server.base_url)
            )
            wire = types.GenerateVideosOperation(name=operation.name)
            calls["google-genai operations.get"] = lambda: official.operations.get(wire)
        return p50s_ms(calls, count)


# -- the run -------------------------------------------------------------------------------


def report_async(results: dict[tuple[str, int], Throughput], names: Sequence[str]) -> bool:
    met = True
    rows = []
    for tasks in TASKS:
        bare = results[("bare aiohttp", tasks)].per_second
        for name in names:
            r = results[(name, tasks)]
            ratio = r.per_second / bare if bare else 0.0
            cpu = server_cpu_cell(r.server_cpu)
            rows.append([name, tasks, r.ops, r.per_second, f"{ratio:.2f}x", r.failures, cpu])
    headers = ["client", "tasks", "ops", "ops/s", "vs bare", "failed", "srv CPU"]
    print_table("(a) async: start + wait, operations/s", headers, rows)
    for tasks in TASKS:
        bare = results[("bare aiohttp", tasks)].per_second
        sdk = results[("longops client.aio", tasks)]
        ratio = sdk.per_second / bare if bare else 0.0
        met = verdict(f"longops async / bare aiohttp at {tasks} tasks", ratio, TARGET_RATIO) and met
        met = met and sdk.failures == 0
    return met


def report_sync(rows: list[tuple[str, float]]) -> None:
    by_name = dict(rows)
    raw = by_name["raw httpx GET"]
    table = [[name, ms, f"{ms / raw:.2f}x"] for name, ms in rows]
    print_table(
        "(b) sync: one request after another, p50", ["client", "p50 ms", "vs raw GET"], table
    )
    if "google-genai operations.get" in by_name:
        ratio = by_name["longops operations.get"] / by_name["google-genai operations.get"]
        print(f"  longops get p50 / google-genai get p50: {ratio:.2f}x")


def run(timing: Timing, count: int) -> bool:
    names = [name for name, _ in async_cases()]
    results = {(name, tasks): Throughput(0, 0, 0.0, 0.0) for name in names for tasks in TASKS}
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        command = longops_command(Path(tmp) / "sdk.db", workers=WORKERS)
        with serve("longops", lambda port: [*command(port), "--load", "_noop_kind"]) as server:
            # Rounds of every case in turn: the server is the bottleneck of every client
            # here, and its speed drifts as its database grows and the machine's load
            # moves, so one phase per client would compare a client with the weather.
            part = Timing(timing.duration / ROUNDS, timing.warmup / ROUNDS, timing.quick)
            for tasks in TASKS:
                for round in range(1, ROUNDS + 1):
                    print(f"  {tasks} tasks, round {round}/{ROUNDS} ...", flush=True)
                    for name, factory in async_cases():
                        measured = run_async(measure_async(server, factory, tasks, part))
                        results[(name, tasks)] = results[(name, tasks)].add(measured)
            print("  sync clients ...", flush=True)
            sync_rows = measure_sync(server, count)
    met = report_async(results, names)
    report_sync(sync_rows)
    return met


def main() -> None:
    exit_on_sigterm()
    timing, _ = parse_args(__doc__.splitlines()[0], full=6.0, quick=3.0)
    if timing.quick:
        timing = Timing(duration=timing.duration, warmup=0.5, quick=True)
    count = 300 if timing.quick else 1000
    # `--load _noop_kind` imports bench/_noop_kind.py in the server.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    header(
        f"sdk (async: {', '.join(map(str, TASKS))} tasks, {timing.duration:g} s each after"
        f" {timing.warmup:g} s; sync: {count} requests each)"
    )
    met = run(timing, count)
    print(
        f"\nsdk target (async SDK >= {TARGET_RATIO}x bare aiohttp): {'MET' if met else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
