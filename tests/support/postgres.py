"""The databases the tests use: SQLite files, and PostgreSQL through one URL setting
(`LONGOPS_TEST_POSTGRES_URL`) with a fresh schema per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "LONGOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _execute(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    for delay in (0.1, 0.3, 1.0, 3.0, None):  # other tests' processes may be closing theirs
        try:
            connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
            break
        except asyncpg.TooManyConnectionsError:
            if delay is None:
                raise
            await asyncio.sleep(delay)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def execute(sql: str) -> None:
    """Run one statement on the test database, from synchronous test code."""
    asyncio.run(_execute(sql))


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose tables live in a new schema, dropped afterwards; skips the
    test (which `CI=true` turns into a failure) when PostgreSQL can't be reached."""
    import asyncpg

    try:
        execute("SELECT 1")
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL unavailable at {POSTGRES_URL}: {exc}")
    schema = f"t_{uuid.uuid4().hex}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A database URL for `backend` ("sqlite": a file in `folder`; "postgres")."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'longops.db'}"
    else:
        with fresh_schema() as url:
            yield url
