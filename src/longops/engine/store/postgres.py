"""PostgreSQL: for many processes on many machines sharing one database.

Every statement runs on a connection from an asyncpg pool; nothing is cached, so
`get` always reads the database (`max_staleness` is zero). A claim takes rows with
`FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each other.

Other processes learn of commits by LISTEN: a write that ends an operation
notifies `longops_done` of its id (and its row, when that fits in a notification),
a write that makes work claimable (create, release, retry) `longops_work` with an
empty payload, and a progress write `longops_progress` as a finish tells `longops_done`
(for watch streams); a process listens to what its role needs (API servers to the
first and third, workers to the second). With `?schema=NAME` the channels are
`longops_done:NAME` and so on, so deployments in other schemas don't wake each other.

Add `?schema=NAME` to the URL to keep the tables in a schema of their own (made
if missing); every pool connection then runs with that `search_path`.

Connections get lost: the database restarts, fails over, or an operator terminates
backends. Every body is retried on such errors for `retry_seconds`, then
`StoreUnavailable` is raised. Retrying is safe because every write is idempotent:
inserts carry their own ids, and worker writes are fenced by state and attempt, so a
repeated write whose first try did commit changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import orjson

from longops.engine.records import OperationRecord
from longops.engine.store import rows
from longops.engine.store.base import Change, StoreUnavailable
from longops.engine.store.database import Body, Dialect, Migration, Notice, Row
from longops.engine.store.rows import DONE_STATES, OPERATION_COLUMN_NAMES, OPERATION_COLUMNS
from longops.engine.store.sql import SqlStore

log = logging.getLogger("longops.store")

P = ParamSpec("P")
T = TypeVar("T")

DONE_CHANNEL, WORK_CHANNEL = "longops_done", "longops_work"
PROGRESS_CHANNEL = "longops_progress"
"""Progress of running operations, for watch streams (API servers listen with `done`)."""
# Any constant will do: it only has to be the same in every process migrating a database.
_MIGRATION_LOCK = 0x6C6F6E676F7073  # "longops"
_WATCHING_LOCKS = 0x6C6F7770  # "lowp": a shared advisory lock held while a process has watchers
_WATCHING_CHECK = 1.0
"""Seconds a process trusts what it last read of whether anyone watches."""
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

POSTGRES = Dialect(
    name="postgresql",
    numbered=True,
    json=lambda value: value,  # the connections' codec encodes it (`_init_connection`)
    load=lambda value: value,
    max_list=100_000,
    materialized="MATERIALIZED",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    for_share=" FOR SHARE",
    for_update=" FOR UPDATE",
    greatest="greatest",
    lock="SELECT pg_advisory_xact_lock(?::bigint)",
)

_MIGRATIONS: list[str] = [
    """
    CREATE TABLE operations (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        request_id TEXT,
        request JSONB NOT NULL,
        state TEXT NOT NULL,
        metadata JSONB NOT NULL,
        response JSONB,
        error JSONB,
        attempt INTEGER NOT NULL DEFAULT 0,
        releases INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        lease_owner TEXT,
        lease_expires DOUBLE PRECISION,
        not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL,
        start_time DOUBLE PRECISION,
        end_time DOUBLE PRECISION
    );
    CREATE UNIQUE INDEX operations_request_id ON operations (tenant, request_id)
        WHERE request_id IS NOT NULL;
    CREATE INDEX operations_pending ON operations (kind, seq) WHERE state = 'PENDING';
    CREATE INDEX operations_running ON operations (lease_expires) WHERE state = 'RUNNING';
    CREATE INDEX operations_owner ON operations (lease_owner) WHERE state = 'RUNNING';
    CREATE INDEX operations_tenant ON operations (tenant, seq);
    CREATE INDEX operations_ended ON operations (end_time) WHERE end_time IS NOT NULL;
    """,
    """
    CREATE TABLE files (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL,
        expire_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX files_tenant ON files (tenant, seq);
    CREATE INDEX files_expiry ON files (expire_time);
    """,
    # Versions 3 and 4 made the file search tables and their text search configuration;
    # they are the file search kind's now (longops.kinds.file_search.index), which
    # adopts those a database already has.
    "",
    "",
    # Indexes for tables of tens of millions of rows, nearly all of them done:
    # - claims walk the pending rows alone, oldest first, whatever kinds are served (an
    #   index on (kind, seq) cannot give seq order across several kinds, so the planner
    #   fell back to scanning the primary key past every done row: 200 ms at 1M rows);
    # - listing what is not done walks only the unfinished rows of the tenant;
    # - lease_expires is left unindexed so heartbeats, which only move it, stay HOT
    #   updates (running rows are few: recovery scans them through operations_owner).
    """
    CREATE INDEX operations_claimable ON operations (seq) WHERE state = 'PENDING';
    CREATE INDEX operations_tenant_unfinished ON operations (tenant, seq)
        WHERE state IN ('PENDING', 'RUNNING');
    DROP INDEX operations_running;
    ALTER TABLE operations SET (fillfactor = 90);
    """,
    # Claims walk operations_claimable since version 5; the (kind, seq) index of pending
    # rows served nothing but cost every create and claim an index entry.
    """
    DROP INDEX operations_pending;
    """,
    # File ids are unique per tenant, not across tenants: one namespace shared by all
    # told a tenant which names others had used. Documents and chunks an import left
    # File ids are unique per tenant, not across tenants: one namespace shared by all
    # told a tenant which names others had used.
    """
    ALTER TABLE files DROP CONSTRAINT files_id_key;
    ALTER TABLE files ADD CONSTRAINT files_tenant_id_key UNIQUE (tenant, id);
    """,
    # A per-request webhook (`webhookConfig`: uris, userMetadata), read only when the
    # operation ends (longops.engine.webhooks), so not among OPERATION_COLUMNS.
    """
    ALTER TABLE operations ADD COLUMN webhook JSONB;
    """,
    # Priorities (higher is claimed first, equal ones in order): claims walk the
    # pending rows in that order, whatever kinds are served.
    """
    ALTER TABLE operations ADD COLUMN priority INTEGER NOT NULL DEFAULT 500;
    DROP INDEX operations_claimable;
    CREATE INDEX operations_claimable ON operations (priority DESC, seq)
        WHERE state = 'PENDING';
    """,
    # Fair sharing and limits (longops.engine.limits): claims take equal priorities by
    # turn; a create finds its tenant's (and key's) last unfinished turn through
    # operations_turns (of unfinished rows, not pending ones, so that claims, which
    # take tenants' rows in turn from all over the table, need not move its entries),
    # and its priority's earliest pending one through operations_claimable;
    # limited claims count the running rows of a kind (and key) through
    # operations_running_kinds. Token buckets of rate limits live in rate_buckets.
    """
    ALTER TABLE operations ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE operations ADD COLUMN turn BIGINT NOT NULL DEFAULT 0;
    DROP INDEX operations_claimable;
    CREATE INDEX operations_claimable ON operations (priority DESC, turn, seq)
        WHERE state = 'PENDING';
    CREATE INDEX operations_turns ON operations (tenant, concurrency_key, priority, turn)
        WHERE end_time IS NULL;
    CREATE INDEX operations_running_kinds ON operations (kind, tenant, concurrency_key)
        WHERE state = 'RUNNING';
    CREATE TABLE rate_buckets (
        kind TEXT NOT NULL,
        per_key BOOLEAN NOT NULL,
        tenant TEXT NOT NULL,
        concurrency_key TEXT NOT NULL,
        tokens DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, per_key, tenant, concurrency_key)
    );
    """,
]

# Errors after which the same statement may well succeed on a new connection.
_TRANSIENT = (
    asyncpg.PostgresConnectionError,  # lost or refused connections (SQLSTATE class 08)
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, a shutting-down server
    asyncpg.exceptions.CannotConnectNowError,  # a server still starting up
    asyncpg.exceptions.TransactionRollbackError,  # deadlocks, serialization failures
    asyncpg.exceptions.TooManyConnectionsError,  # max_connections reached, for now
    # A connection the server closed while the pool handed it out: "connection is
    # closed", or a protocol left mid-operation.
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)


def _reconnecting(
    method: Callable[Concatenate[PostgresDatabase, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PostgresDatabase, P], Coroutine[Any, Any, T]]:
    """Retry `method` on transient errors (the pool replaces dead connections)."""

    @functools.wraps(method)
    async def retrying(self: PostgresDatabase, /, *args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.02
        while True:
            try:
                return await method(self, *args, **kwargs)
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"PostgreSQL is unreachable: {exc}") from exc
                log.warning("a store call failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    return retrying


async def _init_connection(conn: Any) -> None:
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(_conn: Any) -> None:
    """Connections are handed back to the pool as they are: this store never leaves
    session state behind (no SET, LISTEN, cursors or session locks), and asyncpg still
    rolls back a transaction left open. The default reset costs a round trip per call."""


def _count(status: str) -> int:
    """The row count of a command tag such as `DELETE 3` or `UPDATE 1` (0 for a tag
    without one, such as `CREATE INDEX`)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# What a finished operation's notification says: its id and, when that fits in a
# NOTIFY (under 8,000 bytes), the whole row, so a waiter elsewhere needs no read.
_FINISHED = (
    "CASE WHEN octet_length(j.row) < 7900 THEN written.id || ' ' || j.row ELSE written.id END"
)


class _Finished(Mapping[str, OperationRecord]):
    """The rows finished operations' notifications carried, decoded only when asked
    for: a process hears every finish, and waits for few of them."""

    def __init__(self, rows: dict[str, str]) -> None:
        self._rows = rows

    def __getitem__(self, id: str) -> OperationRecord:
        row = orjson.loads(self._rows[id])
        return rows.operation([row[name] for name in OPERATION_COLUMN_NAMES], POSTGRES.load)

    def __contains__(self, id: object) -> bool:  # Mapping's would decode the row
        return id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def _change(payloads: Sequence[tuple[bool, str]]) -> Change:
    """One change for a burst of notifications: work (empty payloads), finishes and
    progress (`True` first: an id, then maybe the row)."""
    found: dict[str, str] = {}
    done: set[str] = set()
    progressed: set[str] = set()
    for progress, payload in payloads:
        id, _, row = payload.partition(" ")
        if row:
            found[id] = row
        if id:
            (progressed if progress else done).add(id)
    return Change(
        done_ids=frozenset(done),
        work=any(not progress and not payload for progress, payload in payloads),
        records=_Finished(found),
        progress_ids=frozenset(progressed - done),
    )


def _channel(name: str, schema: str | None) -> str:
    """Channels are database-wide: stores in other schemas must not wake this one."""
    if schema is None:
        return name
    channel = f"{name}:{schema}"
    if len(channel.encode()) > 63:  # PostgreSQL's identifier limit
        channel = f"{name}:{hashlib.sha256(schema.encode()).hexdigest()[:24]}"
    return channel


class _Notifier:
    """Sends notifications after the writes they tell of have committed, several to a
    statement.

    Not in the write's own transaction: one that has NOTIFYed holds a database-wide
    lock until its commit is flushed to disk, so notifying writes would commit one at
    a time, one flush each, while a notification alone has nothing to flush. And not
    one statement each: whatever piles up while one is on its way goes out together
    in the next (identical ones, such as "new work", once), so a busy process sends
    far fewer than it writes, and listeners wake less often for more. The price is
    that a crash or a lost connection before the send loses notifications; that is
    logged, not raised (the writes stand), and listeners catch up on their own:
    workers claim every poll interval, and engines recheck parked waits.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._pending: dict[tuple[str, str], None] = {}
        self._sending: asyncio.Task[None] | None = None

    def send(self, channel: str, payload: str) -> None:
        self._pending[channel, payload] = None
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending:
            batch, self._pending = list(self._pending), {}
            try:
                await self._pool.execute(
                    "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
                    [channel for channel, _ in batch],
                    [payload for _, payload in batch],
                )
            except _TRANSIENT as exc:
                log.warning("lost %d notifications (%s); listeners catch up", len(batch), exc)
            except Exception:
                log.exception("lost %d notifications; listeners catch up", len(batch))

    async def flush(self) -> None:
        if self._sending is not None:
            await self._sending


class _Session:
    """Statements on `on` (the pool: each statement commits on its own; or one
    connection inside a transaction), with the notifications of what they wrote
    kept for the database to send once that has committed."""

    __slots__ = ("_database", "_on", "notices")

    def __init__(self, database: PostgresDatabase, on: Any) -> None:
        self._database = database
        self._on = on
        self.notices: list[tuple[str, str]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        found: list[Row] = await self._on.fetch(POSTGRES.sql(sql), *args)
        return found

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._on.fetchrow(POSTGRES.sql(sql), *args)
        return row

    async def execute(self, sql: str, *args: Any) -> int:
        return _count(await self._on.execute(POSTGRES.sql(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._on.executemany(POSTGRES.sql(sql), rows)

    async def announced(
        self, notice: Notice | None, write: str, returning: str, *args: Any
    ) -> Row | None:
        row = await self._on.fetchrow(self._database.announcing(notice, write, returning), *args)
        if row is None or notice is None:
            return row  # type: ignore[no-any-return]
        values = tuple(row)
        self.notices.append((values[-1], values[-2]))
        return values[:-2]

    def tell(self, notice: Notice, id: str = "") -> None:
        database = self._database
        if notice is Notice.WORK:
            self.notices.append((database.work_channel, ""))
        else:
            self.notices.append((database.done_channel, id))

    def remember(self, record: OperationRecord) -> OperationRecord:
        return record  # nothing is cached: every `get` reads the database

    def forget(self, id: str | None) -> None:
        pass


class PostgresDatabase:
    """An asyncpg pool (and a second one for leases), LISTEN for other processes' news."""

    dialect = POSTGRES
    caches = False
    max_staleness = 0.0

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        retry_seconds: float = 10.0,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"bad schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.retry_seconds = retry_seconds
        self._pool: Any = None
        self._lease_pool: Any = None
        self._notifier_or_none: _Notifier | None = None
        self.done_channel = _channel(DONE_CHANNEL, schema)
        self.work_channel = _channel(WORK_CHANNEL, schema)
        self.progress_channel = _channel(PROGRESS_CHANNEL, schema)
        self._listeners: set[Any] = set()
        self._announcing: dict[tuple[Notice | None, str, str], str] = {}
        # Watch streams: the connection holding this process's shared lock while it has
        # some, and what was last read of anyone holding one (True until read: safe).
        self._watching_key = _WATCHING_LOCKS + int(
            hashlib.sha256((schema or "").encode()).hexdigest()[:6], 16
        )
        self._watching_conn: Any = None
        self._watched = True
        self._watched_read = -_WATCHING_CHECK
        self._reading_watched: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresDatabase:
        """`postgresql://…` with longops's own options taken out of the query string:
        `schema`, and `pool_size` (connections per process, 10 by default)."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in {"schema", "pool_size"}}
        rest = [(k, v) for k, v in query if k not in ours]
        scheme = "postgresql" if parts.scheme in {"postgres", "postgresql"} else parts.scheme
        dsn = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
        try:
            max_size = int(ours.get("pool_size", 10))
        except ValueError:
            raise ValueError(f"pool_size must be a number, not {ours['pool_size']!r}") from None
        if max_size < 1:
            raise ValueError("pool_size must be at least 1")
        return cls(dsn, schema=ours.get("schema") or None, max_size=max_size)

    # -- connection ---------------------------------------------------------

    def _server_settings(self) -> dict[str, str]:
        # Settings given here override the URL's, so only default what the URL leaves out.
        given = dict(parse_qsl(urlsplit(self.dsn).query))
        defaults = {
            "application_name": "longops",
            # Shortest exact float text (PostgreSQL 12+), as notifications carry rows in JSON.
            "extra_float_digits": "1",
        }
        settings = {k: v for k, v in defaults.items() if k not in given}
        if self.schema is not None:
            settings["search_path"] = f'"{self.schema}"'
        return settings

    async def _create_pool(self, min_size: int, max_size: int, **settings: str) -> Any:
        return await asyncpg.create_pool(
            self.dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_keep_session,
            server_settings={**self._server_settings(), **settings},
        )

    @_reconnecting  # a database still starting up, or restarting with its pods
    async def open(self) -> None:
        pool = await self._create_pool(self.min_size, self.max_size)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await self._migrate_operations(conn)
            # Claims and lease renewals commit without waiting for the disk: losing
            # one in a database crash only sends its attempt round again (the
            # attempt's fenced writes bounce), and every later durable commit makes it
            # durable too. It halves the flushes of a busy worker. No connection is
            # opened until a worker claims.
            self._lease_pool = await self._create_pool(0, 2, synchronous_commit="off")
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._notifier_or_none = _Notifier(pool)

    async def _lock_schema(self, conn: Any) -> None:
        """One migrating process at a time per database, until the transaction ends."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if self.schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    async def _migrate_operations(self, conn: Any) -> None:
        await self._lock_schema(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS longops_schema (version INTEGER NOT NULL,"
            " applied_time TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM longops_schema")
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            if script:
                await conn.execute(script)
            await conn.execute("INSERT INTO longops_schema (version) VALUES ($1)", number)

    @_reconnecting
    async def migrate(self, component: str, steps: Sequence[Migration]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_schema(conn)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS longops_migrations"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            version = await conn.fetchval(
                "SELECT version FROM longops_migrations WHERE component = $1", component
            )
            for step in steps[version or 0 :]:
                if step.unless is None or not await conn.fetchval(step.unless):
                    await conn.execute(step.sql)
            await conn.execute(
                "INSERT INTO longops_migrations (component, version) VALUES ($1, $2)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                component,
                len(steps),
            )

    async def close(self) -> None:
        if self._notifier_or_none is not None:
            await self._notifier_or_none.flush()
            self._notifier_or_none = None
        for listener in list(self._listeners):
            await listener.close()
        self._listeners.clear()
        await self.set_watching(False)
        if self._reading_watched is not None:
            self._reading_watched.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._lease_pool is not None:
            pool, self._lease_pool = self._lease_pool, None
            await pool.close()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @property
    def lease_pool(self) -> Any:
        if self._lease_pool is None:
            raise RuntimeError("store is not open")
        return self._lease_pool

    @property
    def _notifier(self) -> _Notifier:
        if self._notifier_or_none is None:
            raise RuntimeError("store is not open")
        return self._notifier_or_none

    # -- running bodies -----------------------------------------------------------

    @_reconnecting
    async def read(self, body: Body[T]) -> T:
        return await body(_Session(self, self.pool))

    @_reconnecting
    async def write(self, body: Body[T], *, durable: bool = True) -> T:
        session = _Session(self, self.pool if durable else self.lease_pool)
        try:
            return await body(session)
        finally:  # what committed is told, whatever failed after it
            self._send(session.notices)

    @_reconnecting
    async def transaction(self, body: Body[T], *, durable: bool = True) -> T:
        async with (self.pool if durable else self.lease_pool).acquire() as conn:
            session = _Session(self, conn)
            async with conn.transaction():
                result = await body(session)
        self._send(session.notices)
        return result

    def _send(self, notices: Iterable[tuple[str, str]]) -> None:
        for channel, payload in notices:
            self._notifier.send(channel, payload)

    def announcing(self, notice: Notice | None, write: str, returning: str) -> str:
        """`write`, returning `returning` of the row it wrote and, as the last two
        columns, the payload and channel of its notification (see `_Notifier`)."""
        key = (notice, write, returning)
        sql = self._announcing.get(key)
        if sql is None:
            done, work = f"'{self.done_channel}'", f"'{self.work_channel}'"
            finished = f"CASE WHEN written.state IN {DONE_STATES}"
            payload, channel = {
                None: ("", ""),
                Notice.WORK: ("''", work),
                Notice.FINISHED: (_FINISHED, done),
                Notice.GONE: ("written.id", done),
                Notice.PROGRESS: (_FINISHED, f"'{self.progress_channel}'"),
                Notice.OUTCOME: (
                    f"{finished} THEN {_FINISHED} ELSE '' END",
                    f"{finished} THEN {done} ELSE {work} END",
                ),
            }[notice]
            if notice is None:
                sql = f"{write} RETURNING {returning}"
            else:
                as_json = ", LATERAL (SELECT row_to_json(written)::text AS row) j"
                sql = (
                    f"WITH written AS ({write} RETURNING {OPERATION_COLUMNS})"
                    f" SELECT {returning}, {payload}, {channel}"
                    f" FROM written{as_json if 'j.row' in payload else ''}"
                )
            sql = self._announcing[key] = POSTGRES.sql(sql)
        return sql

    def cached(self, id: str) -> OperationRecord | None:
        return None

    def progress_wanted(self) -> bool:
        """Whether any process on this database (schema) holds the watching lock, read at
        most every `_WATCHING_CHECK` seconds: a progress write notifies only then, so
        workers pay nothing for watch streams nobody opened."""
        if time.monotonic() - self._watched_read >= _WATCHING_CHECK and (
            self._reading_watched is None or self._reading_watched.done()
        ):
            self._watched_read = time.monotonic()
            self._reading_watched = asyncio.create_task(self._read_watched())
        return self._watched

    async def _read_watched(self) -> None:
        try:
            self._watched = bool(
                await self.pool.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND classid = 0 AND objid = $1 AND objsubid = 1)",
                    self._watching_key,
                )
            )
        except Exception as exc:  # keep notifying: a watcher missing progress is worse
            self._watched = True
            log.warning("could not read whether anyone watches (%s)", exc)

    async def set_watching(self, watching: bool) -> None:
        """Hold a shared advisory lock, on a connection of its own, while this process
        has watch streams (closing it lets go)."""
        if watching and self._watching_conn is None:
            conn = await asyncpg.connect(self.dsn, server_settings=self._server_settings())
            await conn.execute("SELECT pg_advisory_lock_shared($1)", self._watching_key)
            self._watching_conn = conn
            self._watched = True  # this process, at least
        elif not watching and self._watching_conn is not None:
            conn, self._watching_conn = self._watching_conn, None
            await conn.close()

    async def changes(self, *, work: bool = True, done: bool = True) -> AsyncIterator[Change]:
        """Notifications of new `work`, of operations `done`, or both, from a connection
        of its own.

        Starts with a change that names nothing (what was committed before listening
        is unknown), and raises `StoreUnavailable` when the connection is lost, so the
        caller can listen again and look for what it missed.
        """
        queue: asyncio.Queue[tuple[bool, str] | None] = asyncio.Queue()
        conn = await asyncpg.connect(self.dsn, server_settings=self._server_settings())
        self._listeners.add(conn)
        progress_channel = self.progress_channel

        def heard(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            queue.put_nowait((channel == progress_channel, payload))

        try:
            conn.add_termination_listener(lambda _conn: queue.put_nowait(None))
            for wanted, channel in (
                (work, self.work_channel),
                (done, self.done_channel),
                (done, progress_channel),  # whoever waits for finishes may watch progress
            ):
                if wanted:
                    await conn.add_listener(channel, heard)
            yield Change(done_ids=None)
            while True:
                payloads = [await queue.get()]
                while not queue.empty():  # fold a burst into one change
                    payloads.append(queue.get_nowait())
                if None in payloads:
                    raise StoreUnavailable("lost the PostgreSQL notification connection")
                yield _change([p for p in payloads if p is not None])
        finally:
            self._listeners.discard(conn)
            if not conn.is_closed():
                await conn.close()


class PostgresStore(SqlStore):
    """The store on a PostgreSQL database."""

    database: PostgresDatabase

    def __init__(self, dsn: str, **options: Any) -> None:
        super().__init__(PostgresDatabase(dsn, **options))

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        database = PostgresDatabase.from_url(url)
        return cls(database.dsn, schema=database.schema, max_size=database.max_size)
