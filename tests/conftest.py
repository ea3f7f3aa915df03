from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from longops import Client
from tests.support.servers import ThreadServer
from tests.support.twin import Mode, Twin

for var in ("LONGOPS_BASE_URL", "LONGOPS_API_KEY", "LONGOPS_DATABASE_URL"):
    os.environ.pop(var, None)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'longops.db'}"


@pytest.fixture
def make_server(database_url: str) -> Iterator[Callable[..., ThreadServer]]:
    started: list[ThreadServer] = []

    def make(**kwargs: Any) -> ThreadServer:
        kwargs.setdefault("database_url", database_url)
        server = ThreadServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server()


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, server: ThreadServer) -> AsyncIterator[Twin]:
    mode: Mode = request.param
    twin = Twin(Client(base_url=server.url), mode)
    yield twin
    await twin.aclose()
