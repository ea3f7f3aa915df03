"""Every PostgreSQL store statement at 1,000 and at 10,000,000 operations.

    .venv/bin/python bench/pg_large_table.py [--rows 10000000] [--url URL]

Each size gets a schema of its own (dropped at the end), filled with one
`INSERT … SELECT generate_series` shaped like a long-lived deployment: almost all
operations done, 10,000 pending, 200 running, 100 tenants plus one holding a
tenth of the rows, three kinds. Then each `PostgresStore` method the API and the
workers call in steady state is timed (p50/p99 over repeated calls, one
connection) on both tables, with `EXPLAIN` of the plan at the large size for the
ones that touch many rows. Target: every statement within 2x of its 1k figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from longops.engine.records import State
from longops.engine.store.postgres import PostgresStore
from longops.rpc import Code

URL = os.environ.get("LONGOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PENDING, RUNNING = 10_000, 200
CANCELLED = {"code": Code.CANCELLED, "message": "cancelled"}
ABANDONED = {"code": Code.ABORTED, "message": "abandoned"}

_FILL = """
INSERT INTO operations (id, name, kind, tenant, request, state, metadata, response,
    attempt, max_attempts, lease_owner, lease_expires, create_time, update_time,
    start_time, end_time)
SELECT 'op' || lpad(i::text, 18, '0'),
       'operations/op' || lpad(i::text, 18, '0'),
       (ARRAY['longops.sleep', 'generate_videos', 'import_file'])[1 + i % 3],
       CASE WHEN i % 10 = 0 THEN 'big' ELSE 'tenant' || (i % 100) END,
       '{"seconds": 1}'::jsonb,
       CASE WHEN i > $1 - $2 THEN 'PENDING'
            WHEN i > $1 - $2 - $3 THEN 'RUNNING'
            ELSE 'SUCCEEDED' END,
       '{"progressPercent": 100}'::jsonb,
       CASE WHEN i <= $1 - $2 - $3 THEN '{"ok": true}'::jsonb END,
       CASE WHEN i > $1 - $2 THEN 0 ELSE 1 END,
       3,
       CASE WHEN i > $1 - $2 - $3 AND i <= $1 - $2 THEN 'busy-worker' END,
       CASE WHEN i > $1 - $2 - $3 AND i <= $1 - $2 THEN 4e9 END,
       1.7e9 + i, 1.7e9 + i, 1.7e9 + i,
       CASE WHEN i <= $1 - $2 - $3 THEN 1.7e9 + i + 1 END
FROM generate_series(1, $1) AS i
"""


async def fill(url: str, rows: int) -> PostgresStore:
    store = PostgresStore.from_url(url)
    await store.open()
    started = time.perf_counter()
    async with store.database.pool.acquire() as conn:
        await conn.execute(_FILL, rows, PENDING, RUNNING)
        await conn.execute("VACUUM ANALYZE operations")
    print(f"  filled {rows:,} rows in {time.perf_counter() - started:.0f} s")
    return store


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    for _ in range(min(20, repeat)):
        await call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def measure(store: PostgresStore, rows: int) -> dict[str, tuple[float, float]]:
    rng = random.Random(7)
    done_ids = [f"op{rng.randint(1, rows - PENDING - RUNNING):018d}" for _ in range(1000)]
    ids = iter(done_ids * 100)
    now = time.time()
    figures: dict[str, tuple[float, float]] = {}

    async def claim_and_finish() -> None:
        [record] = await store.claim(["longops.sleep", "generate_videos", "import_file"],
                                     "bench", 30, 1, now)  # fmt: skip
        await store.finish(record.id, record.attempt, State.SUCCEEDED, now, response={})

    def listing(tenant: str, **kw: Any) -> Callable[[], Awaitable[Any]]:
        options: dict[str, Any] = {"name_prefix": None, "done": None, "kinds": None}
        options.update(kw)
        return lambda: store.list_operations(tenant, before_seq=None, limit=50, **options)

    checks: list[tuple[str, Callable[[], Awaitable[Any]], int]] = [
        ("get by id", lambda: store.get(next(ids)), 2000),
        ("claim + finish (batch of 1)", claim_and_finish, min(2000, PENDING // 2)),
        ("heartbeat (200 running elsewhere)", lambda: store.heartbeat("w", 30, now), 500),
        (
            "recover expired (none due)",
            lambda: store.recover_expired(now, CANCELLED, ABANDONED),
            500,
        ),
        ("list: tenant, newest 50", listing("tenant7"), 300),
        ("list: big tenant, not done", listing("big", done=False), 300),
        ("list: big tenant, one kind", listing("big", kinds=["import_file"]), 300),
        ("done_among 100 ids", lambda: store.done_among(done_ids[:100]), 300),
        ("purge done (none due)", lambda: store.purge_done(1.0), 300),
    ]
    for label, call, repeat in checks:
        figures[label] = await timed(call, repeat)
    return figures


PLANS = {
    "claim": "SELECT seq FROM operations WHERE state = 'PENDING' AND kind = ANY($1::text[])"
    " AND not_before <= $2 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED",
    "big tenant, not done": "SELECT seq FROM operations WHERE tenant = 'big' AND state IN"
    " ('PENDING', 'RUNNING') ORDER BY seq DESC LIMIT 50",
}


async def explain(store: PostgresStore) -> None:
    async with store.database.pool.acquire() as conn:
        for label, sql in PLANS.items():
            args: list[Any] = (
                [["longops.sleep", "generate_videos", "import_file"], time.time()]
                if "$1" in sql
                else []
            )
            plan = await conn.fetch(f"EXPLAIN (COSTS OFF) {sql}", *args)
            print(f"  plan, {label}: " + " / ".join(r[0].strip() for r in plan))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--url", default=URL)
    args = parser.parse_args()
    results: dict[int, dict[str, tuple[float, float]]] = {}
    for rows in (1_000 + PENDING + RUNNING, args.rows):
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        separator = "&" if "?" in args.url else "?"
        print(f"{rows:,} operations (schema {schema})")
        store = await fill(f"{args.url}{separator}schema={schema}", rows)
        try:
            results[rows] = await measure(store, rows)
            if rows == args.rows:
                await explain(store)
        finally:
            await store.close()
            conn = await asyncpg.connect(args.url)
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()
    small, large = results.values()
    width = max(len(label) for label in small)
    print(f"\n{'statement':<{width}}  {'p50 small':>10} {'p50 large':>10} {'ratio':>6}"
          f" {'p99 large':>10}")  # fmt: skip
    worst = 0.0
    for label, (p50, _) in small.items():
        big50, big99 = large[label]
        ratio = big50 / p50
        worst = max(worst, ratio)
        print(f"{label:<{width}}  {p50:>8.3f}ms {big50:>8.3f}ms {ratio:>6.2f} {big99:>8.3f}ms")
    print(f"\nworst p50 ratio {worst:.2f} (target <= 2.0): {'met' if worst <= 2 else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main())
