"""End to end on SQLite: create a no-op operation, then `:wait` for it to be done.

    .venv/bin/python bench/end_to_end.py [--quick] [--client raw|httpx] [--clients 64] [--no-pin]

longops runs as `longops serve --workers 16` (API and workers in one process) on a
fresh SQLite file; each operation is `longops.sleep` with `{}` (no work at all). One
round trip is `POST /v1beta/kinds/longops.sleep:start` then `POST /v1beta/{name}:wait`
with `{"timeout":"10s"}`, answered once the operation is done.

(a) one client, round trips one after another: p50/p99. Target: p50 <= 3 ms.
(b) many concurrent clients (asyncio tasks, one keep-alive connection each) for a
    fixed time: operations/s. Target: >= 2,000 operations/s.

The bare baseline, in the same run, is the same client doing the same two requests
against bench/_bare_app.py, whose create and wait answer fixed JSON at once: the
client + HTTP floor. Client and server CPU use are printed, because on 2 cores the
Python client competes with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import (
    HttpClient,
    HttpError,
    RawHttpClient,
    Server,
    Timing,
    bare_command,
    create_and_wait,
    exit_on_sigterm,
    header,
    longops_command,
    note_low_cpu,
    own_cpu_seconds,
    parse_args,
    percentile,
    print_table,
    run_async,
    serve,
    server_cpu_cell,
    verdict,
)

KIND = "longops.sleep"
WAIT_BODY = b'{"timeout":"10s"}'
TARGET_P50_MS = 3.0
TARGET_OPS = 2000.0
WORKERS = 16
MAX_OPS_PER_CLIENT = 200_000
SEQUENTIAL_TIME_LIMIT = 60.0


class HttpxClient:
    """httpx.AsyncClient behind the same one-method interface as RawHttpClient."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        response = await self._client.request(method, path, content=body)
        return response.status_code, response.content


@contextlib.asynccontextmanager
async def open_clients(kind: str, port: int, count: int) -> AsyncIterator[list[HttpClient]]:
    """`count` clients: raw ones with a connection each, or one pooled httpx client shared."""
    if kind == "httpx":
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=30.0, trust_env=False
        ) as shared:
            yield [HttpxClient(shared) for _ in range(count)]
        return
    raw = [RawHttpClient(port) for _ in range(count)]
    try:
        for client in raw:
            await client.connect()
        yield list(raw)
    finally:
        for client in raw:
            await client.close()


TRANSPORT_ERRORS = (HttpError, httpx.HTTPError)


@dataclass(slots=True)
class Phase:
    latencies: list[float]
    failures: int
    wall: float
    client_cpu: float
    server_cpu: float

    @property
    def ops_per_second(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def ms(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000


class Tally:
    """Latencies of the round trips that came back done, and a count of the others."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0

    async def run(self, client: HttpClient, count: int, stop: float) -> None:
        """Up to `count` round trips until monotonic time `stop` or a broken connection."""
        for _ in range(count):
            if time.monotonic() >= stop:
                return
            try:
                seconds, ok = await create_and_wait(client, KIND, WAIT_BODY)
            except TRANSPORT_ERRORS:
                self.failures += 1
                return
            if ok:
                self.latencies.append(seconds)
            else:
                self.failures += 1


async def _sequential(client: HttpClient, count: int) -> Tally:
    tally = Tally()
    await tally.run(client, count, time.monotonic() + SEQUENTIAL_TIME_LIMIT)
    return tally


async def _concurrent(clients: Sequence[HttpClient], seconds: float) -> Tally:
    tally = Tally()
    stop = time.monotonic() + seconds
    await asyncio.gather(*(tally.run(c, MAX_OPS_PER_CLIENT, stop) for c in clients))
    return tally


async def measured(server: Server, work: Coroutine[Any, Any, Tally]) -> Phase:
    """Await `work` (not started yet) and note wall time and both processes' CPU over it."""
    cpu, server_cpu, wall = own_cpu_seconds(), server.cpu_seconds(), time.monotonic()
    tally = await work
    wall = time.monotonic() - wall
    return Phase(
        tally.latencies,
        tally.failures,
        wall,
        (own_cpu_seconds() - cpu) / wall,
        (server.cpu_seconds() - server_cpu) / wall,
    )


async def latency_phase(server: Server, kind: str, count: int, warmup: int) -> Phase:
    async with open_clients(kind, server.port, 1) as (client,):
        await _sequential(client, warmup)
        return await measured(server, _sequential(client, count))


async def throughput_phase(server: Server, kind: str, clients: int, timing: Timing) -> Phase:
    async with open_clients(kind, server.port, clients) as pool:
        await _concurrent(pool, timing.warmup)
        return await measured(server, _concurrent(pool, timing.duration))


def _cpu(fraction: float) -> str:
    return f"{fraction:.0%}"


def _latency_row(label: str, p: Phase) -> list[object]:
    cpu = [_cpu(p.client_cpu), _cpu(p.server_cpu)]
    return [label, len(p.latencies), p.ms(50), p.ms(90), p.ms(99), p.failures, *cpu]


def _throughput_row(label: str, p: Phase, clients: int, saturated: bool) -> list[object]:
    """`saturated`: the server should be the bottleneck here, so flag a low CPU share."""
    server_cpu = server_cpu_cell(p.server_cpu) if saturated else _cpu(p.server_cpu)
    cpu = [_cpu(p.client_cpu), server_cpu]
    figures = [len(p.latencies), p.wall, p.ops_per_second, p.ms(50), p.ms(99), p.failures]
    return [label, clients, *figures, *cpu]


CPU_HEADERS = ["client CPU", "srv CPU"]


def report_latency(bare: Phase, ops: Phase) -> bool:
    rows = [_latency_row("bare", bare), _latency_row("longops", ops)]
    headers = ["server", "round trips", "p50 ms", "p90 ms", "p99 ms", "failed", *CPU_HEADERS]
    print_table("(a) one client, create -> wait, sequential", headers, rows)
    print(f"  longops p50 / bare p50: {ops.ms(50) / bare.ms(50):.2f}x")
    print(f"  longops' own share of p50 (longops - bare): {ops.ms(50) - bare.ms(50):.2f} ms")
    met = verdict("longops round trip p50 ms", ops.ms(50), TARGET_P50_MS, at_least=False)
    return met and ops.failures == 0


def report_throughput(bare: Phase, ops: Phase, clients: int) -> bool:
    rows = [
        _throughput_row("bare", bare, clients, saturated=False),
        _throughput_row("longops", ops, clients, saturated=True),
    ]
    headers = ["server", "clients", "ops", "seconds", "ops/s", "p50 ms", "p99 ms", "failed"]
    title = "(b) concurrent clients, create -> wait, operations completed"
    print_table(title, [*headers, *CPU_HEADERS], rows)
    note_low_cpu([ops.server_cpu])
    print(f"  longops ops/s / bare ops/s: {ops.ops_per_second / bare.ops_per_second:.2f}")
    if bare.client_cpu > 0.85:
        print(
            f"  note: the client used {bare.client_cpu:.0%} of a core against the bare app:"
            " the bare figure is (close to) client-bound, a floor of this client, not of HTTP."
        )
    met = verdict("longops operations/s", ops.ops_per_second, TARGET_OPS, digits=0)
    return met and ops.failures == 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="HTTP client (default raw)"
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients in (b)")
    return parser


@dataclass(frozen=True, slots=True)
class Results:
    bare_latency: Phase
    ops_latency: Phase
    bare_throughput: Phase
    ops_throughput: Phase


def run(args: argparse.Namespace, timing: Timing, count: int, warmup: int) -> Results:
    """Both servers up at once; each phase on the bare app, then at once on longops."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        database = Path(tmp) / "e2e.db"
        with (
            serve("longops", longops_command(database, workers=WORKERS)) as ops,
            serve("bare", bare_command()) as bare,
        ):
            print("  (a) bare, then longops ...", flush=True)
            bare_latency = run_async(latency_phase(bare, args.client, count, warmup))
            ops_latency = run_async(latency_phase(ops, args.client, count, warmup))
            print("  (b) bare, then longops ...", flush=True)
            bare_many = run_async(throughput_phase(bare, args.client, args.clients, timing))
            ops_many = run_async(throughput_phase(ops, args.client, args.clients, timing))
    return Results(bare_latency, ops_latency, bare_many, ops_many)


def main() -> None:
    exit_on_sigterm()
    timing, args = parse_args("", parser=_arguments())
    count, warmup = (300, 30) if timing.quick else (1000, 100)
    header(
        f"end_to_end ({args.client} client; (a) {count} round trips;"
        f" (b) {args.clients} clients for {timing.duration:g} s after {timing.warmup:g} s)"
    )
    results = run(args, timing, count, warmup)
    met = report_latency(results.bare_latency, results.ops_latency)
    met = report_throughput(results.bare_throughput, results.ops_throughput, args.clients) and met
    print(
        f"\nend-to-end targets (p50 <= {TARGET_P50_MS:g} ms, >= {TARGET_OPS:,.0f} ops/s): "
        f"{'MET' if met else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
