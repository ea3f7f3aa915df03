from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from longops import Client
from tests.support.servers import Process, ThreadServer, subprocess_env
from tests.support.stalling import StallingServer
from tests.support.twin import Mode, Twin

for var in ("LONGOPS_BASE_URL", "LONGOPS_API_KEY", "LONGOPS_DATABASE_URL"):
    os.environ.pop(var, None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI a skipped test means a service the suite needs was missing: that is a failure."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; failing the run.", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'longops.db'}"


@pytest.fixture
def make_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Servers on the test's database; the second and later ones get a file of their own
    unless told otherwise, so one server's workers never take another's operations."""
    started: list[ThreadServer] = []

    def make(**kwargs: Any) -> ThreadServer:
        own = database_url if not started else f"sqlite:///{tmp_path / f'server-{len(started)}.db'}"
        kwargs.setdefault("database_url", own)
        kwargs.setdefault("blobs", tmp_path / f"blobs-{len(started)}")
        server = ThreadServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """`longops` commands as processes of their own, killed at teardown if still alive."""
    started: list[Process] = []

    def start(*args: str) -> Process:
        log = tmp_path / f"process-{len(started)}.log"
        process = Process(list(args), subprocess_env(), log).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def stalling() -> Iterator[StallingServer]:
    """A port where connections are taken and never answered."""
    server = StallingServer()
    yield server
    server.close()


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode


@pytest.fixture
async def twin(mode: Mode) -> AsyncIterator[Callable[..., Twin]]:
    """Build twins in this test's mode: `twin(base_url=..., **Client kwargs)`."""
    made: list[Twin] = []

    def make(*args: Any, **kwargs: Any) -> Twin:
        made.append(Twin(Client(*args, **kwargs), mode))
        return made[-1]

    yield make
    for t in made:
        await t.aclose()


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, server: ThreadServer) -> AsyncIterator[Twin]:
    mode: Mode = request.param
    twin = Twin(Client(base_url=server.url), mode)
    yield twin
    await twin.aclose()


@pytest.fixture
def quiet_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep server threads from formatting tracebacks while pytest reports a failure.

    On CPython 3.11 before 3.11.8, formatting a traceback parses source with `ast` (for the
    `^^^` markers), and two threads doing that at once can raise "SystemError: AST constructor
    recursion depth mismatch" in pytest's own failure report: an INTERNALERROR that ends the
    whole run. Tests using this expect only 4xx answers, so a 500 (the only path that logs a
    traceback) fails its test anyway, with the response body in the message.
    """
    for name in ("uvicorn.error", "longops.server", "longops.worker"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", True)
