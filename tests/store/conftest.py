"""Fixtures of the store conformance suite: one fresh database per test and backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from longops.engine.store import Store, open_store
from tests.store.backends import BACKENDS
from tests.support.postgres import database


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with database(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Open stores on the test's database, each standing for a process of its own;
    all closed after the test."""
    opened: list[Store] = []

    async def make() -> Store:
        store = open_store(store_url)
        opened.append(store)
        await store.open()
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(stores: Callable[[], Awaitable[Store]]) -> Store:
    return await stores()


@pytest.fixture
async def other(stores: Callable[[], Awaitable[Store]], store: Store) -> Store:
    """A second store on `store`'s database: another process's view of it."""
    return await stores()
