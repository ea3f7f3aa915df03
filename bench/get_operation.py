"""GET-operation throughput and latency: longops beside a bare Starlette/uvicorn endpoint.

    .venv/bin/python bench/get_operation.py [--quick] [--rounds N] [--no-pin]

longops runs as `longops serve --workers 0` (API only) on a fresh SQLite file. wrk
polls (1) one operation, (2) 200 distinct operations round-robin, at 16 and 64
connections; the bare app in bench/_bare_app.py answers the same paths with the same
JSON body, in the same run. Target: longops req/s >= 0.7 x bare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    WRK_HEADERS,
    Server,
    Timing,
    WrkResult,
    bare_command,
    cycle_script,
    exit_on_sigterm,
    header,
    longops_command,
    note_low_cpu,
    parse_args,
    print_table,
    serve,
    verdict,
    warm_and_measure,
    wrk_row,
)

TARGET_RATIO = 0.7
CONNECTIONS = (16, 64)
DISTINCT = 200
START = "/v1beta/kinds/longops.sleep:start"


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    path: str
    connections: int
    script: Path | None


def _client(server: Server) -> httpx.Client:
    """No proxies from the environment: everything stays on 127.0.0.1."""
    return httpx.Client(base_url=server.base_url, timeout=10.0, trust_env=False)


def create_operations(server: Server, count: int) -> list[str]:
    """Create `count` no-op operations through the API; their GET paths."""
    paths = []
    with _client(server) as client:
        for _ in range(count):
            response = client.post(START, content=b"{}")
            response.raise_for_status()
            paths.append(f"/v1beta/{response.json()['name']}")
    return paths


def get_body(server: Server, path: str) -> bytes:
    with _client(server) as client:
        return client.get(path).raise_for_status().content


Pair = tuple[WrkResult, WrkResult]
"""(bare, longops), measured one right after the other."""
Results = dict[Case, list[Pair]]


def measure_pairs(
    bare: Server, ops: Server, cases: list[Case], timing: Timing, rounds: int
) -> Results:
    """Each case on the bare app, then at once on longops, so both see the same machine."""
    results: Results = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            results[case].append((measure(bare, case, timing), measure(ops, case, timing)))
    return results


def measure(server: Server, case: Case, timing: Timing) -> WrkResult:
    return warm_and_measure(
        server, case.path, connections=case.connections, timing=timing, script=case.script
    )


def single_cases(path: str) -> list[Case]:
    return [Case(f"1 op, c{c}", path, c, None) for c in CONNECTIONS]


def spread_cases(paths: list[str], script: Path) -> list[Case]:
    """wrk's URL is only the connection target here: the script picks each path."""
    return [Case(f"{len(paths)} ops round-robin, c{c}", paths[0], c, script) for c in CONNECTIONS]


def run(work: Path, timing: Timing, rounds: int) -> tuple[Results, int]:
    """Both servers up, idle but for the one wrk drives; returns results and the body size."""
    with serve("longops", longops_command(work / "get.db", workers=0)) as ops:
        (one_path,) = create_operations(ops, 1)
        body = get_body(ops, one_path)
        (work / "get-body.json").write_bytes(body)
        with serve("bare", bare_command(work / "get-body.json")) as bare:
            results = measure_pairs(bare, ops, single_cases(one_path), timing, rounds)
            many = [one_path, *create_operations(ops, DISTINCT - 1)]
            spread = spread_cases(many, cycle_script(many, work))
            results |= measure_pairs(bare, ops, spread, timing, rounds)
    return results, len(body)


def ratio(pair: Pair) -> float:
    bare, ops = pair
    return ops.requests_per_second / bare.requests_per_second


def report(results: Results) -> None:
    rows = []
    for case, pairs in results.items():
        for number, (bare, ops) in enumerate(pairs, start=1):
            suffix = f" #{number}" if len(pairs) > 1 else ""
            rows.append(wrk_row(f"bare     {case.label}{suffix}", case.connections, bare))
            rows.append(wrk_row(f"longops  {case.label}{suffix}", case.connections, ops))
    print_table("GET operation (wrk -t2 --latency)", WRK_HEADERS, rows)
    note_low_cpu(r.server_cpu for pairs in results.values() for pair in pairs for r in pair)
    print("\nlongops / bare, requests per second (median over rounds):")
    met = True
    for case, pairs in results.items():
        p50 = statistics.median(ops.p50_ms / bare.p50_ms for bare, ops in pairs)
        print(f"  ({case.label}: longops p50 is {p50:.2f}x the bare p50)")
        median = statistics.median(map(ratio, pairs))
        met &= verdict(f"req/s ratio, {case.label}", median, TARGET_RATIO)
        met &= all(bare.ok and ops.ok for bare, ops in pairs)
    print(f"\nGET operation target (>= {TARGET_RATIO} of bare everywhere): {_word(met)}")


def _word(met: bool) -> str:
    return "MET" if met else "NOT MET"


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=1, choices=range(1, 6), help="repeat every pair (median)"
    )
    timing, args = parse_args("", parser=parser)
    header(
        f"get_operation ({timing.duration:g} s per measurement, {timing.warmup:g} s warm-up,"
        f" {args.rounds} round(s))"
    )
    with tempfile.TemporaryDirectory(prefix="bench-get-") as tmp:
        results, body_size = run(Path(tmp), timing, args.rounds)
    print(f"GET body: {body_size} bytes from longops and from the bare app (the same JSON)")
    report(results)


if __name__ == "__main__":
    main()
