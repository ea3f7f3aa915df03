"""Shared helpers for the benchmarks: server processes, wrk, a raw HTTP client, tables.

Everything here talks to 127.0.0.1 only, bounds every loop by count and time, and
stops every process it starts (try/finally, plus PR_SET_PDEATHSIG so a server dies
with the benchmark even when the benchmark itself is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
LONGOPS = str(Path(sys.executable).parent / "longops")
HOST = "127.0.0.1"
WRK = "/usr/bin/wrk"
LOG_LEVEL = "warning"

T = TypeVar("T")


# -- command line and process hygiene ------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """How long each measurement and its warm-up run, in seconds."""

    duration: float
    warmup: float
    quick: bool


def parse_args(
    description: str,
    full: float = 10.0,
    quick: float = 3.0,
    parser: argparse.ArgumentParser | None = None,
) -> tuple[Timing, argparse.Namespace]:
    """`--quick` and `--no-pin` (plus what `parser` declares): timings and the arguments.

    Unless `--no-pin`, also places this process (and so wrk, which it starts) on the
    CPUs the servers do not get; see `place_cpus`.
    """
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="shorter run, rougher figures")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place server and load freely"
    )
    args = parser.parse_args()
    place_cpus(not args.no_pin)
    if args.quick:
        return Timing(duration=quick, warmup=1.0, quick=True), args
    return Timing(duration=full, warmup=2.0, quick=False), args


@dataclass(slots=True)
class Placement:
    """The CPUs every server gets (None: not pinned); the load keeps the rest."""

    server: frozenset[int] | None = None
    load: frozenset[int] | None = None

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "not pinned (the scheduler places server and load)"
        return f"server on CPU {_cpus(self.server)}, wrk / client on CPU {_cpus(self.load)}"


PLACEMENT = Placement()


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def place_cpus(pin: bool) -> None:
    """Give the (single-process) servers the first CPU and the load generator the others.

    On a small machine this stops wrk's threads or the Python client from taking turns
    with the server on the same core, which otherwise swings results run to run.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        PLACEMENT.server = PLACEMENT.load = None
        return
    PLACEMENT.server, PLACEMENT.load = frozenset(cpus[:1]), frozenset(cpus[1:])
    os.sched_setaffinity(0, PLACEMENT.load)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the servers."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut cleanup short
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _server_child_setup() -> None:
    """In a server child, before exec: its CPUs, and SIGTERM when the benchmark exits."""
    if PLACEMENT.server is not None:
        os.sched_setaffinity(0, PLACEMENT.server)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    return time.process_time()


# -- servers -------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""No proxies from the environment: everything stays on 127.0.0.1."""


def _healthy(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        if _healthy(server.url("/healthz")):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} not healthy after {timeout:.0f} s:\n{server.log_tail()}")


@contextlib.contextmanager
def serve(
    name: str, command: Callable[[int], list[str]], timeout: float = 30.0
) -> Iterator[Server]:
    """Start `command(port)` on a free port, wait for /healthz, and always stop it."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    log_path = Path(log_name)
    server: Server | None = None
    try:
        with os.fdopen(fd, "wb") as log:
            proc = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_server_child_setup,
            )
        server = Server(name, proc, port, log_path)
        _wait_healthy(server, timeout)
        yield server
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            log_path.unlink(missing_ok=True)


def longops_command(database: Path, workers: int) -> Callable[[int], list[str]]:
    """`longops serve` exactly as a user runs it: one uvicorn process, access log off."""
    url = f"sqlite:///{database}"
    return lambda port: [
        LONGOPS,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--database",
        url,
        "--workers",
        str(workers),
        "--log-level",
        LOG_LEVEL,
    ]


def bare_command(get_body: Path | None = None) -> Callable[[int], list[str]]:
    """The bare Starlette app in bench/_bare_app.py, under the same uvicorn settings."""

    def command(port: int) -> list[str]:
        args = [PYTHON, str(BENCH_DIR / "_bare_app.py"), "--port", str(port)]
        if get_body is not None:
            args += ["--get-body", str(get_body)]
        return args

    return command


# -- wrk -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu: float
    """Server CPU seconds per wall second over the run (1.0 = one core busy)."""

    @property
    def ok(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str, server_cpu: float = 0.0) -> WrkResult:
    """Parse `wrk --latency` output; raises ValueError when a figure is missing."""
    percentiles = {p: float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None or len(percentiles) < 4:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS_MS[requests.group(3)] / 1000,
        requests_per_second=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p75_ms=percentiles["75"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        server_cpu=server_cpu,
    )


def run_wrk(
    server: Server,
    path: str,
    *,
    connections: int,
    duration: float,
    threads: int = 2,
    script: Path | None = None,
) -> WrkResult:
    """`wrk -tT -cC -dD --latency URL` (optionally `-s script`), with server CPU use."""
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(server.url(path))
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout, cpu)


def warm_and_measure(
    server: Server,
    path: str,
    *,
    connections: int,
    timing: Timing,
    script: Path | None = None,
) -> WrkResult:
    """A short wrk run to warm caches and connections, then the measured one."""
    print(f"  wrk -c{connections} {server.name} {path if script is None else script.name} ...")
    sys.stdout.flush()
    run_wrk(server, path, connections=connections, duration=timing.warmup, script=script)
    return run_wrk(server, path, connections=connections, duration=timing.duration, script=script)


_CYCLE_SCRIPT = """\
-- GET each path in turn; each wrk thread starts at its own offset in the list.
local paths = {}
for line in io.lines(%(file)s) do paths[#paths + 1] = line end
local n = #paths
local i = 0
local next_index = 0

function setup(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
end

function init(args)
  i = ((thread_index or 0) * math.floor(n / %(threads)d)) %% n
end

function request()
  i = i %% n + 1
  return wrk.format("GET", paths[i])
end
"""


def cycle_script(paths: Sequence[str], directory: Path, threads: int = 2) -> Path:
    """A wrk Lua script that cycles round-robin through `paths`.

    With two threads the second starts half way through the list, so the same id is
    asked for again only after a full cycle of distinct ids.
    """
    listing = directory / f"paths-{len(paths)}.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    script = directory / f"cycle-{len(paths)}.lua"
    quoted = '"' + str(listing).replace("\\", "\\\\").replace('"', '\\"') + '"'
    script.write_text(_CYCLE_SCRIPT % {"file": quoted, "threads": threads})
    return script


# -- a minimal HTTP/1.1 keep-alive client --------------------------------------


class HttpError(RuntimeError):
    pass


class HttpClient(Protocol):
    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]: ...


async def create_and_wait(
    client: HttpClient, kind: str, wait_body: bytes = b'{"timeout":"10s"}'
) -> tuple[float, bool]:
    """Start an operation of `kind`, then `:wait` for it: the seconds it took and whether
    it came back done. Transport errors propagate: the caller decides what they end."""
    started = time.perf_counter()
    status, body = await client.request("POST", f"/v1beta/kinds/{kind}:start", b"{}")
    if status != 200:
        return time.perf_counter() - started, False
    name = orjson.loads(body)["name"]
    status, body = await client.request("POST", f"/v1beta/{name}:wait", wait_body)
    done = status == 200 and orjson.loads(body).get("done") is True
    return time.perf_counter() - started, done


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection: request, then read a Content-Length body.

    Far cheaper per request than httpx (no URL objects, header models or pools), so
    a single Python process can drive a few thousand requests a second. Only what
    uvicorn sends back is handled: no chunked bodies, no pipelining.
    """

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
            self._reader = self._writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", timeout: float = 30.0
    ) -> tuple[int, bytes]:
        """Status and body; raises HttpError on a broken connection or after `timeout` s."""
        if self._reader is None or self._writer is None:
            raise HttpError("not connected")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(head.encode("ascii") + body)
                header = await self._reader.readuntil(b"\r\n\r\n")
                status, length = _parse_head(header)
                return status, await self._reader.readexactly(length)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: {exc!r}") from exc


def _parse_head(header: bytes) -> tuple[int, int]:
    lines = header.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise HttpError(f"response without Content-Length: {header!r}")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- figures -------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (need not be sorted)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        print(f"  {first}  {rest}")
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


BUSY_SERVER = 0.9
"""Below this CPU share (pinned) the server was not what limited the measurement."""


def server_cpu_cell(fraction: float) -> str:
    """`97%`, or `62%*` when low: see `note_low_cpu`."""
    return f"{fraction:.0%}" + ("*" if fraction < BUSY_SERVER else "")


def note_low_cpu(fractions: Iterable[float]) -> None:
    if any(f < BUSY_SERVER for f in fractions):
        print(
            f"  * server CPU < {BUSY_SERVER:.0%}: the server did not have its core to itself"
            " (another process ran there) or was not the bottleneck; such a row understates"
            " it. Rerun on a quiet machine."
        )


def wrk_row(label: str, connections: int, result: WrkResult) -> list[object]:
    return [
        label,
        connections,
        result.requests_per_second,
        result.p50_ms,
        result.p90_ms,
        result.p99_ms,
        server_cpu_cell(result.server_cpu),
        "ok" if result.ok else f"non2xx={result.non_2xx} sock={result.socket_errors}",
    ]


WRK_HEADERS = ["case", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "srv CPU", "errors"]


def verdict(
    label: str, value: float, target: float, *, at_least: bool = True, digits: int = 2
) -> bool:
    """Print `label: value (target >=/<= target) -> MET/NOT MET`; return whether it is met."""
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    shown = f"{value:,.{digits}f} (target {sign} {target:,.{digits}f})"
    print(f"  {label}: {shown} -> {'MET' if met else 'NOT MET'}")
    sys.stdout.flush()
    return met


def header(text: str) -> None:
    print(f"\n=== {text} ===")
    print(f"CPU placement: {PLACEMENT.describe()}; {os.cpu_count()} CPUs on this machine")
    sys.stdout.flush()
