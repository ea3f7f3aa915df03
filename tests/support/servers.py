"""Real longops servers for tests: in a thread (fast, inspectable) or as processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import uvloop
from starlette.types import ASGIApp

from longops.engine import Engine
from longops.engine.blobs import LocalBlobs
from longops.engine.engine import EngineConfig
from longops.engine.store import open_store
from longops.engine.worker import WorkerConfig
from longops.kinds.builtin import default_registry
from longops.kinds.videos.settings import VideoSettings
from longops.server import ServerConfig, create_app
from longops.server.serving import Limits, server

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AppThread:
    """uvicorn serving an ASGI app on an ephemeral port, in a background thread."""

    def __init__(self, app: ASGIApp, *, lifespan: str = "on", limits: Limits | None = None) -> None:
        # proto IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections (as it does
        # for uvicorn's own sockets); without it every answer waits ~40 ms on a delayed ACK.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = server(
            app, limits or Limits(shutdown_timeout=5), log_level="warning", lifespan=lifespan
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # uvloop, as `longops serve` runs (uvicorn's "auto"): it differs from asyncio's own
        # loop in ways code can trip on (descriptors it watched are left non-blocking).
        self.loop = uvloop.new_event_loop()
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


class ThreadServer(AppThread):
    """A longops app (API and, unless `workers=0`, in-process workers) in a thread."""

    def __init__(
        self,
        database_url: str,
        config: ServerConfig | None = None,
        workers: int = 1,
        worker_config: WorkerConfig | None = None,
        load: Sequence[str] = ("tests.support.kinds",),
        videos: VideoSettings | None = None,
        public_url: str | None = None,
        blobs: Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.database_url = database_url
        registry = default_registry(videos or VideoSettings())
        for module in load:
            registry.load(module)
        if blobs is None:  # beside a SQLite database, so they are cleaned up with it
            blobs = Path(database_url.removeprefix("sqlite:///")).parent / "blobs"
        self.engine = Engine(
            open_store(database_url),
            registry,
            EngineConfig(),
            LocalBlobs(blobs),
        )
        app = create_app(
            self.engine,
            config or ServerConfig(),
            workers=workers,
            worker_config=worker_config or WorkerConfig(concurrency=8),
        )
        super().__init__(app, limits=limits)
        # Its own address unless told otherwise, so that the links it gives work.
        self.engine.config.public_url = public_url or self.url


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass
class Process:
    """A `longops` command running as its own process, killed at teardown if still alive."""

    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    cwd: Path = REPO

    def start(self) -> Process:
        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "longops", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run_longops(
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A `longops` command run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "longops", *args],
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        preexec_fn=preexec_fn,
    )


def worker_args(database_url: str, *extra: str) -> list[str]:
    return ["worker", "--database", database_url, "--load", "tests.support.kinds", *extra]


def worker_ready(process: Process) -> Callable[[], bool]:
    """True once a `longops worker` process has logged that it runs."""
    return lambda: "worker " in process.log.read_text()


def wait_healthy(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")
