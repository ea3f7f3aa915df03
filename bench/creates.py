"""Creates per second through the real store, beside a bare insert of the same rows.

    .venv/bin/python bench/creates.py [--quick] [--backends sqlite,postgres] [--database URL]

Each round makes a fresh database and times N `Store.create` calls (one tenant, the
default priority: nothing configured), C at a time, after 200 warm-up creates; then the
bare baseline in the same database: the same rows by a plain `INSERT` through the same
`Database`, without the create's idempotency answer or its fair-turn probes. The ratio
is what the store's create costs beyond writing the row. PostgreSQL runs in a fresh
schema, dropped after, and before any ANALYZE, as a new deployment taking its first
burst does (the plan a fresh table gets is what went wrong once: see git log of
`operations_turns`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

from longops.engine.records import NewOperation
from longops.engine.store import Store, open_store
from longops.engine.store.sql import SqlStore

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WARM = 200
BARE = (
    "INSERT INTO operations (id, name, kind, tenant, request, state, metadata, max_attempts,"
    " create_time, update_time) VALUES (?, ?, 'bench.noop', '', ?, 'PENDING', ?, 3, ?, ?)"
)


async def _lanes(n: int, conc: int, one: Callable[[str], Awaitable[object]]) -> float:
    ids = iter(secrets.token_hex(10) for _ in range(n))

    async def lane() -> None:
        for id in ids:
            await one(id)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(conc)))
    return n / (time.perf_counter() - start)


async def _round(url: str, n: int, conc: int) -> tuple[float, float]:
    store: Store = open_store(url)
    await store.open()
    assert isinstance(store, SqlStore)
    database, json = store.database, store.database.dialect.json
    try:

        async def create(id: str) -> None:
            new = NewOperation(id=id, name=f"operations/{id}", kind="bench.noop", request={})
            await store.create(new, time.time())

        async def bare(id: str) -> None:
            now = time.time()
            args = (f"b{id}", f"operations/b{id}", json({}), json({}), now, now)
            await database.write(lambda s: s.execute(BARE, *args))

        for _ in range(WARM):
            await create(secrets.token_hex(10))
        return await _lanes(n, conc, create), await _lanes(n, conc, bare)
    finally:
        await store.close()


async def _postgres_round(server: str, n: int, conc: int) -> tuple[float, float]:
    import asyncpg  # type: ignore[import-untyped]

    schema = f"bench_creates_{secrets.token_hex(6)}"
    try:
        return await _round(f"{server}?schema={schema}", n, conc)
    finally:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--database", default=POSTGRES, help="PostgreSQL server URL")
    args = parser.parse_args()
    n, rounds = (2000, 2) if args.quick else (5000, 5)
    print(f"{'backend':10} {'at once':>7} {'creates/s':>10} {'bare/s':>10} {'ratio':>6}")
    for backend in args.backends.split(","):
        for conc in (1, 16):
            ratios, rates, bares = [], [], []
            for _ in range(rounds):
                if backend == "sqlite":
                    with tempfile.TemporaryDirectory() as folder:
                        rate, bare = await _round(f"sqlite:///{folder}/c.db", n, conc)
                else:
                    rate, bare = await _postgres_round(args.database, n, conc)
                rates.append(rate)
                bares.append(bare)
                ratios.append(rate / bare)
            print(
                f"{backend:10} {conc:>7} {statistics.median(rates):>10,.0f}"
                f" {statistics.median(bares):>10,.0f} {statistics.median(ratios):>6.2f}"
                f"  (ratios {min(ratios):.2f}-{max(ratios):.2f})"
            )


if __name__ == "__main__":
    asyncio.run(main())
