"""PostgreSQL store: for many processes on many machines sharing one database.

Every statement runs on a connection from an asyncpg pool; nothing is cached, so
`get` always reads the database (`max_staleness` is zero). A claim takes rows with
`FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each other, and every
worker write is fenced by its attempt exactly as in the SQLite store.

Other processes learn of commits by LISTEN: a write that ends an operation
notifies `longops_done` of its id (and its row, when that fits in a notification),
a write that makes work claimable (create, release, retry) `longops_work` with an
empty payload; a process listens to what its role needs (API servers to the first,
workers to the second). With `?schema=NAME` the channels are `longops_done:NAME`
and `longops_work:NAME`, so deployments in other schemas don't wake each other.

Add `?schema=NAME` to the URL to keep the tables in a schema of their own (made
if missing); every pool connection then runs with that `search_path`.

Connections get lost: the database restarts, fails over, or an operator terminates
backends. Every method retries on such errors for `retry_seconds` and then raises
`StoreUnavailable`. Retrying is safe because every write is idempotent: inserts
carry their own ids, and worker writes are fenced by state and attempt, so a
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
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import orjson

from longops.engine.records import (
    ChunkHit,
    DocumentRecord,
    FileRecord,
    NewOperation,
    OperationRecord,
    SearchStoreRecord,
    State,
)
from longops.engine.store.base import Change, FileExists, LeaseState, StoreUnavailable

log = logging.getLogger("longops.store")

P = ParamSpec("P")
T = TypeVar("T")

DONE_CHANNEL, WORK_CHANNEL = "longops_done", "longops_work"
# Any constant will do: it only has to be the same in every process migrating a database.
_MIGRATION_LOCK = 0x6C6F6E676F7073  # "longops"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_MAX_SEQ = (1 << 63) - 1

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
    """
    CREATE TABLE search_stores (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        embedding_model TEXT,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX search_stores_tenant ON search_stores (tenant, seq);
    CREATE TABLE documents (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        store_id TEXT NOT NULL,
        source_key TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT,
        size_bytes BIGINT NOT NULL,
        custom_metadata JSONB NOT NULL,
        state TEXT NOT NULL,
        create_time DOUBLE PRECISION NOT NULL,
        update_time DOUBLE PRECISION NOT NULL,
        UNIQUE (store_id, source_key)
    );
    CREATE INDEX documents_store ON documents (store_id, seq);
    CREATE TABLE chunks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        document_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        text TEXT NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX chunks_document ON chunks (document_id);
    CREATE INDEX chunks_store ON chunks (store_id);
    CREATE INDEX chunks_tsv ON chunks USING GIN (tsv);
    """,
    # Chunks tokenised as SQLite's FTS5 `porter unicode61` does, so a query finds the same
    # chunks on both stores: stop words kept ("the", "to be"), the same Porter stemmer,
    # ASCII punctuation a separator (no email, URL, host, file, number or tag tokens that
    # would hide "example" in "bob@example.com" or "14" in "3.14") and, on UTF-8
    # databases, unicode61's diacritic folding (its table: a Latin letter with one
    # combining mark becomes the bare letter, plus a few case foldings). The dictionary,
    # configuration and `longops_fold` live in the store's schema; the generated column
    # holds their OIDs, and `query_chunks` names them through the same search_path.
    """
    CREATE TEXT SEARCH DICTIONARY longops_porter (TEMPLATE = snowball, Language = porter);
    CREATE TEXT SEARCH CONFIGURATION longops (COPY = english);
    ALTER TEXT SEARCH CONFIGURATION longops
        ALTER MAPPING FOR asciiword, word, numword, asciihword, hword, numhword,
            hword_asciipart, hword_part, hword_numpart
        WITH longops_porter;
    DO $migration$
    DECLARE
        -- Identity first (most characters are these), so translate() finds them quickly.
        keep text := ' ' || chr(10) || chr(9) || 'etaoinsrhldcumfpgwybvkxjqz'
            || '0123456789ETAOINSRHLDCUMFPGWYBVKXJQZ';
        punct text := '!"#$%&''()*+,-./:;<=>?@[]^_`{|}~' || chr(92);
        body text;
        guard text;
        latin_from text;
        latin_to text;
        marks text;
        special_from text;
        special_to text;
    BEGIN
        body := format('translate($1, %L, %L)', keep || punct, keep || repeat(' ', length(punct)));
        IF current_setting('server_encoding') = 'UTF8'
                AND current_setting('server_version_num')::int >= 130000 THEN
            SELECT string_agg(chr(c), '' ORDER BY c),
                   string_agg(lower(left(normalize(chr(c), NFD), 1)), '' ORDER BY c),
                   string_agg(DISTINCT right(normalize(chr(c), NFD), 1), '')
              INTO latin_from, latin_to, marks
              FROM (SELECT generate_series(192, 591) UNION ALL SELECT generate_series(7680, 7935))
                   AS s (c)
             WHERE normalize(chr(c), NFD) ~ ('^[A-Za-z][' || chr(768) || '-' || chr(879) || ']$');
            SELECT string_agg(chr(f), '' ORDER BY n), string_agg(chr(t), '' ORDER BY n)
              INTO special_from, special_to
              FROM unnest(
                    ARRAY[181, 383, 962, 976, 977, 981, 982, 1008, 1009, 1013, 7835, 8126, 8491],
                    ARRAY[956, 115, 963, 946, 952, 966, 960, 954, 961, 949, 115, 953, 97]
                   ) WITH ORDINALITY AS u (f, t, n);
            -- Text without any of those characters (most of it) takes the short translate.
            guard := '[' || chr(181) || '-' || chr(591) || chr(768) || '-' || chr(817)
                || chr(962) || '-' || chr(1013) || chr(7680) || '-' || chr(8126)
                || chr(8491) || ']';
            body := format(
                'CASE WHEN $1 ~ %L THEN translate($1, %L, %L) ELSE %s END',
                guard,
                keep || punct || latin_from || special_from || marks,
                keep || repeat(' ', length(punct)) || latin_to || special_to,
                body
            );
        END IF;
        EXECUTE format(
            'CREATE FUNCTION longops_fold(text) RETURNS text'
            ' LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
            'SELECT ' || body
        );
    END
    $migration$;
    DROP INDEX chunks_tsv;
    ALTER TABLE chunks DROP COLUMN tsv;
    ALTER TABLE chunks ADD COLUMN tsv TSVECTOR
        GENERATED ALWAYS AS (to_tsvector('longops', longops_fold(text))) STORED;
    CREATE INDEX chunks_tsv ON chunks USING GIN (tsv);
    """,
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
    # for a store deleted under it (possible before version 7) are removed.
    """
    ALTER TABLE files DROP CONSTRAINT files_id_key;
    ALTER TABLE files ADD CONSTRAINT files_tenant_id_key UNIQUE (tenant, id);
    DELETE FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM search_stores s WHERE s.id = c.store_id)
        OR NOT EXISTS (SELECT 1 FROM documents d WHERE d.id = c.document_id);
    DELETE FROM documents d
        WHERE NOT EXISTS (SELECT 1 FROM search_stores s WHERE s.id = d.store_id);
    """,
]

_COLUMNS = (
    "seq, id, name, kind, tenant, request_id, request, state, metadata, response, error,"
    " attempt, max_attempts, cancel_requested, create_time, update_time, start_time, end_time"
)
_COLUMN_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
_DONE_STATES = "('SUCCEEDED', 'FAILED', 'CANCELLED')"
_UNFINISHED_STATES = "('PENDING', 'RUNNING')"
_FILE_COLUMNS = (
    "id, tenant, display_name, mime_type, size_bytes, sha256, source, blob_key,"
    " create_time, expire_time, seq"
)
_STORE_COLUMNS = (
    "s.id, s.tenant, s.display_name, s.embedding_model, s.create_time, s.update_time,"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'ACTIVE'),"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'PENDING'),"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'FAILED'),"
    " (SELECT coalesce(sum(size_bytes), 0)::bigint FROM documents d WHERE d.store_id = s.id),"
    " s.seq"
)
_CHUNK_COUNT = "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
_DOCUMENT_COLUMNS = (
    "d.id, d.store_id, d.source_key, d.display_name, d.mime_type, d.size_bytes,"
    f" d.custom_metadata, d.state, d.create_time, d.update_time, {_CHUNK_COUNT}, d.seq"
)


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
    method: Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]:
    """Retry `method` on transient errors (the pool replaces dead connections)."""

    @functools.wraps(method)
    async def retrying(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.02
        while True:
            try:
                return await method(self, *args, **kwargs)
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"PostgreSQL is unreachable: {exc}") from exc
                log.warning("%s failed (%s); retrying", method.__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    return retrying


def _record(row: Any) -> OperationRecord:
    return OperationRecord(
        seq=row[0],
        id=row[1],
        name=row[2],
        kind=row[3],
        tenant=row[4],
        request_id=row[5],
        request=row[6],
        state=State(row[7]),
        metadata=row[8],
        response=row[9],
        error=row[10],
        attempt=row[11],
        max_attempts=row[12],
        cancel_requested=bool(row[13]),
        create_time=row[14],
        update_time=row[15],
        start_time=row[16],
        end_time=row[17],
    )


def _file(row: Any) -> FileRecord:
    return FileRecord(*tuple(row))


def _search_store(row: Any) -> SearchStoreRecord:
    return SearchStoreRecord(*tuple(row))


def _document(row: Any) -> DocumentRecord:
    return DocumentRecord(*tuple(row)[:12])


def _count(status: str) -> int:
    """The row count of a command tag such as `DELETE 3` or `UPDATE 1`."""
    return int(status.rsplit(" ", 1)[-1])


async def _init_connection(conn: Any) -> None:
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def _announcing(write: str, payload: str, channel: str, selected: str = "written.*") -> str:
    """`write`, returning `selected` of the row it wrote and, as the last two columns,
    the notification to send of it (see `_write_announced`): `payload`, an SQL
    expression over `written` (the row) and `j.row` (the row as JSON, see
    `_FINISHED`), and `channel`."""
    as_json = ", LATERAL (SELECT row_to_json(written)::text AS row) j" if "j.row" in payload else ""
    return (
        f"WITH written AS ({write} RETURNING {_COLUMNS})"
        f" SELECT {selected}, {payload}, {channel} FROM written{as_json}"
    )


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
        return _record([row[name] for name in _COLUMN_NAMES])

    def __contains__(self, id: object) -> bool:  # Mapping's would decode the row
        return id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def _change(payloads: Sequence[str]) -> Change:
    """One change for a burst of notifications: work (empty payloads), finishes (an id,
    then maybe the row)."""
    rows: dict[str, str] = {}
    done: set[str] = set()
    for payload in payloads:
        id, _, row = payload.partition(" ")
        if row:
            rows[id] = row
        if id:
            done.add(id)
    return Change(done_ids=frozenset(done), work="" in payloads, records=_Finished(rows))


def _channel(name: str, schema: str | None) -> str:
    """Channels are database-wide: stores in other schemas must not wake this one."""
    if schema is None:
        return name
    channel = f"{name}:{schema}"
    if len(channel.encode()) > 63:  # PostgreSQL's identifier limit
        channel = f"{name}:{hashlib.sha256(schema.encode()).hexdigest()[:24]}"
    return channel


async def _keep_session(_conn: Any) -> None:
    """Connections are handed back to the pool as they are: this store never leaves
    session state behind (no SET, LISTEN, cursors or session locks), and asyncpg still
    rolls back a transaction left open. The default reset costs a round trip per call."""


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


class PostgresStore:
    max_staleness: float = 0.0

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
        self.max_staleness = 0.0
        self._pool: Any = None
        self._lease_pool: Any = None
        self._notifier_or_none: _Notifier | None = None
        self.done_channel = _channel(DONE_CHANNEL, schema)
        self.work_channel = _channel(WORK_CHANNEL, schema)
        self._listeners: set[Any] = set()

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
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
                await self._migrate(conn)
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

    async def _migrate(self, conn: Any) -> None:
        # One migrating process at a time per database, released with the transaction.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if self.schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS longops_schema (version INTEGER NOT NULL,"
            " applied_time TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM longops_schema")
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO longops_schema (version) VALUES ($1)", number)

    async def close(self) -> None:
        if self._notifier_or_none is not None:
            await self._notifier_or_none.flush()
            self._notifier_or_none = None
        for listener in list(self._listeners):
            await listener.close()
        self._listeners.clear()
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
    def _notifier(self) -> _Notifier:
        if self._notifier_or_none is None:
            raise RuntimeError("store is not open")
        return self._notifier_or_none

    @property
    def _leases(self) -> Any:
        if self._lease_pool is None:
            raise RuntimeError("store is not open")
        return self._lease_pool

    # -- operations ---------------------------------------------------------

    @_reconnecting
    async def create(self, new: NewOperation, now: float) -> tuple[OperationRecord, bool]:
        row = await self._write_announced(
            _announcing(
                "INSERT INTO operations (id, name, kind, tenant, request_id, request, state,"
                " metadata, max_attempts, create_time, update_time)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'PENDING', $7::jsonb, $8, $9, $9)"
                " ON CONFLICT DO NOTHING",
                "''",
                "$10::text",
                "written.seq",
            ),
            new.id,
            new.name,
            new.kind,
            new.tenant,
            new.request_id,
            new.request,
            new.metadata,
            new.max_attempts,
            now,
            self.work_channel,
        )
        if row is not None:
            return new.stored(row[0], now), True
        # The same request id was used before, or this is a retry whose first try
        # committed (same operation id): either way, answer with what is stored.
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM operations WHERE id = $1 OR (tenant = $2 AND request_id = $3)",
            new.id,
            new.tenant,
            new.request_id,
        )
        assert row is not None
        record = _record(row)
        if record.id != new.id:
            return record, False
        if record.name != new.name:
            raise ValueError(f"operation id {new.id!r} is taken")
        return record, True

    @_reconnecting
    async def get(self, id: str) -> OperationRecord | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM operations WHERE id = $1", id)
        return None if row is None else _record(row)

    @_reconnecting
    async def list_operations(
        self,
        tenant: str,
        *,
        name_prefix: str | None,
        done: bool | None,
        kinds: Collection[str] | None,
        before_seq: int | None,
        limit: int,
    ) -> list[OperationRecord]:
        where = ["tenant = $1"]
        args: list[Any] = [tenant]
        if before_seq is not None:
            args.append(before_seq)
            where.append(f"seq < ${len(args)}")
        if name_prefix is not None:
            args += [len(name_prefix), name_prefix]
            where.append(f"substr(name, 1, ${len(args) - 1}) = ${len(args)}")
        if done is not None:
            # The same rows as NOT IN the done states, in the form the partial index has.
            where.append(f"state IN {_DONE_STATES if done else _UNFINISHED_STATES}")
        if kinds is not None:
            args.append(list(kinds))
            where.append(f"kind = ANY(${len(args)}::text[])")
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM operations WHERE {' AND '.join(where)}"
            f" ORDER BY seq DESC LIMIT ${len(args)}"
        )
        return [_record(r) for r in await self.pool.fetch(sql, *args)]

    @_reconnecting
    async def cancel(self, id: str, now: float, error: dict[str, Any]) -> OperationRecord | None:
        # Three steps, each atomic on its own: whatever a claim or a finish does between
        # them, the operation ends up cancelled, flagged for its worker, or already done.
        row = await self._write_announced(
            _announcing(
                "UPDATE operations SET state = 'CANCELLED', cancel_requested = TRUE,"
                " error = $1::jsonb, end_time = $2, update_time = $2"
                " WHERE id = $3 AND state = 'PENDING'",
                _FINISHED,
                "$4::text",
            ),
            error,
            now,
            id,
            self.done_channel,
        )
        if row is None:
            row = await self.pool.fetchrow(
                "UPDATE operations SET cancel_requested = TRUE, update_time = $1"
                f" WHERE id = $2 AND state = 'RUNNING' RETURNING {_COLUMNS}",
                now,
                id,
            )
        if row is None:
            row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM operations WHERE id = $1", id)
        return None if row is None else _record(row)

    @_reconnecting
    async def delete(self, id: str) -> bool:
        # Said on the done channel too (the id alone: "look it up"), so waits elsewhere
        # end, and nobody answers with a finished row it heard of before.
        row = await self._write_announced(
            _announcing(
                "DELETE FROM operations WHERE id = $1", "written.id", "$2::text", "written.id"
            ),
            id,
            self.done_channel,
        )
        return row is not None

    async def _change_one(
        self, sql: str, args: Sequence[Any], notify: bool = False
    ) -> tuple[State, bool] | None:
        """A fenced write of one row: its new state and cancel flag, None when nothing
        matched. (Only those: the worker needs no more, and decoding the JSON columns
        back would cost it more than the write.)"""
        if notify:
            done, work = f"${len(args) + 1}::text", f"${len(args) + 2}::text"
            sql = _announcing(
                sql,
                f"CASE WHEN written.state IN {_DONE_STATES} THEN {_FINISHED} ELSE '' END",
                f"CASE WHEN written.state IN {_DONE_STATES} THEN {done} ELSE {work} END",
                "written.id, written.state, written.cancel_requested",
            )
            row = await self._write_announced(sql, *args, self.done_channel, self.work_channel)
        else:
            row = await self.pool.fetchrow(f"{sql} RETURNING id, state, cancel_requested", *args)
        return None if row is None else (State(row[1]), bool(row[2]))

    async def _write_announced(self, sql: str, *args: Any) -> Any:
        """Run a write made by `_announcing`, then send the notification it returned
        (see `_Notifier` for why apart). The row, None when nothing was written."""
        row = await self.pool.fetchrow(sql, *args)
        if row is not None:
            self._notifier.send(row[-1], row[-2])
        return row

    @_reconnecting
    async def claim(
        self, kinds: Collection[str], owner: str, lease_seconds: float, limit: int, now: float
    ) -> list[OperationRecord]:
        if not kinds or limit <= 0:
            return []
        rows = await self._leases.fetch(
            # MATERIALIZED: a subquery left inline may be rescanned and take more than $5.
            "WITH picked AS MATERIALIZED (SELECT seq FROM operations WHERE state = 'PENDING'"
            " AND kind = ANY($4::text[]) AND not_before <= $3 ORDER BY seq LIMIT $5"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE operations SET state = 'RUNNING', attempt = attempt + 1, lease_owner = $1,"
            " lease_expires = $2, start_time = coalesce(start_time, $3), update_time = $3"
            " WHERE seq IN (SELECT seq FROM picked) AND state = 'PENDING'"
            f" RETURNING {_COLUMNS}",
            owner,
            now + lease_seconds,
            now,
            list(kinds),
            limit,
        )
        return sorted((_record(r) for r in rows), key=lambda r: r.seq)

    @_reconnecting
    async def heartbeat(self, owner: str, lease_seconds: float, now: float) -> list[LeaseState]:
        rows = await self._leases.fetch(
            "UPDATE operations SET lease_expires = $1 WHERE lease_owner = $2"
            " AND state = 'RUNNING' RETURNING id, attempt, cancel_requested",
            now + lease_seconds,
            owner,
        )
        return [LeaseState(r[0], r[1], bool(r[2])) for r in rows]

    @_reconnecting
    async def save_progress(
        self, id: str, attempt: int, metadata: dict[str, Any], now: float
    ) -> bool | None:
        changed = await self._change_one(
            "UPDATE operations SET metadata = $1::jsonb, update_time = $2"
            " WHERE id = $3 AND attempt = $4 AND state = 'RUNNING'",
            (metadata, now, id, attempt),
        )
        return None if changed is None else changed[1]  # cancel requested

    @_reconnecting
    async def finish(
        self,
        id: str,
        attempt: int,
        state: State,
        now: float,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> bool:
        changed = await self._change_one(
            "UPDATE operations SET state = $1, response = $2::jsonb, error = $3::jsonb,"
            " metadata = coalesce($4::jsonb, metadata), end_time = $5, update_time = $5,"
            " lease_owner = NULL, lease_expires = NULL"
            " WHERE id = $6 AND attempt = $7 AND state = 'RUNNING'",
            (state.value, response, error, metadata, now, id, attempt),
            notify=True,
        )
        return changed is not None

    @_reconnecting
    async def fail_attempt(
        self, id: str, attempt: int, now: float, not_before: float, final_error: dict[str, Any]
    ) -> State | None:
        changed = await self._change_one(
            """
            UPDATE operations SET
                state = CASE WHEN attempt - releases >= max_attempts
                             THEN 'FAILED' ELSE 'PENDING' END,
                error = CASE WHEN attempt - releases >= max_attempts THEN $1::jsonb END,
                end_time = CASE WHEN attempt - releases >= max_attempts
                                THEN $2::double precision END,
                lease_owner = NULL, lease_expires = NULL, not_before = $3,
                update_time = $2
            WHERE id = $4 AND attempt = $5 AND state = 'RUNNING'
            """,
            (final_error, now, not_before, id, attempt),
            notify=True,
        )
        return None if changed is None else changed[0]

    @_reconnecting
    async def release(self, id: str, attempt: int, now: float) -> bool:
        changed = await self._change_one(
            "UPDATE operations SET state = 'PENDING', releases = releases + 1,"
            " lease_owner = NULL, lease_expires = NULL, update_time = $1"
            " WHERE id = $2 AND attempt = $3 AND state = 'RUNNING'",
            (now, id, attempt),
            notify=True,
        )
        return changed is not None

    @_reconnecting
    async def lease_owners(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT lease_owner FROM operations WHERE state = 'RUNNING'"
        )
        return [r[0] for r in rows if r[0] is not None]

    @_reconnecting
    async def recover_expired(
        self,
        now: float,
        cancel_error: dict[str, Any],
        abandon_error: dict[str, Any],
        *,
        dead_owners: Collection[str] = (),
    ) -> list[tuple[str, State]]:
        rows = await self.pool.fetch(
            """
            UPDATE operations SET
                state = CASE WHEN cancel_requested THEN 'CANCELLED'
                             WHEN attempt - releases >= max_attempts THEN 'FAILED'
                             ELSE 'PENDING' END,
                error = CASE WHEN cancel_requested THEN $2::jsonb
                             WHEN attempt - releases >= max_attempts THEN $3::jsonb END,
                end_time = CASE WHEN cancel_requested OR attempt - releases >= max_attempts
                                THEN $1::double precision END,
                lease_owner = NULL, lease_expires = NULL, update_time = $1
            WHERE state = 'RUNNING'
                AND (lease_expires < $1 OR lease_owner = ANY($4::text[]))
            RETURNING id, state
            """,
            now,
            cancel_error,
            abandon_error,
            list(dead_owners),
        )
        result = [(r[0], State(r[1])) for r in rows]
        notifications = [(self.done_channel, id) for id, state in result if state.done]
        if any(not state.done for _, state in result):
            notifications.append((self.work_channel, ""))
        for channel, payload in notifications:
            self._notifier.send(channel, payload)
        return result

    @_reconnecting
    async def purge_done(self, ended_before: float, batch: int = 1000) -> int:
        total = 0
        while True:
            status: str = await self.pool.execute(
                "WITH picked AS MATERIALIZED (SELECT seq FROM operations"
                f" WHERE end_time < $1 AND state IN {_DONE_STATES} LIMIT $2"
                " FOR UPDATE SKIP LOCKED)"
                " DELETE FROM operations WHERE seq IN (SELECT seq FROM picked)",
                ended_before,
                batch,
            )
            count = _count(status)
            total += count
            if count < batch:
                return total

    @_reconnecting
    async def done_among(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        rows = await self.pool.fetch(
            f"SELECT id FROM operations WHERE id = ANY($1::text[]) AND state IN {_DONE_STATES}",
            list(ids),
        )
        return [r[0] for r in rows]

    async def changes(self, *, work: bool = True, done: bool = True) -> AsyncIterator[Change]:
        """Notifications of new `work`, of operations `done`, or both, from a connection
        of its own.

        Starts with a change that names nothing (what was committed before listening
        is unknown), and raises `StoreUnavailable` when the connection is lost, so the
        caller can listen again and look for what it missed.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        conn = await asyncpg.connect(self.dsn, server_settings=self._server_settings())
        self._listeners.add(conn)

        def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            queue.put_nowait(payload)

        try:
            conn.add_termination_listener(lambda _conn: queue.put_nowait(None))
            for wanted, channel in ((work, self.work_channel), (done, self.done_channel)):
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

    # -- files ----------------------------------------------------------------

    @_reconnecting
    async def create_file(self, file: FileRecord) -> FileRecord:
        """A retry after a lost connection may find the row its first try committed: the
        same blob key tells it from another upload's file of that id."""
        row = await self.pool.fetchrow(
            f"INSERT INTO files ({_FILE_COLUMNS.removesuffix(', seq')})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            f" ON CONFLICT (tenant, id) DO NOTHING RETURNING {_FILE_COLUMNS}",
            file.id, file.tenant, file.display_name, file.mime_type, file.size_bytes,
            file.sha256, file.source, file.blob_key, file.create_time, file.expire_time,
        )  # fmt: skip
        if row is None:
            existing = await self.get_file(file.id, file.tenant)
            if existing is None or existing.blob_key != file.blob_key:
                raise FileExists(file.id)
            return existing
        return _file(row)

    @_reconnecting
    async def get_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE tenant = $1 AND id = $2", tenant, id
        )
        return None if row is None else _file(row)

    @_reconnecting
    async def list_files(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[FileRecord]:
        rows = await self.pool.fetch(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE tenant = $1 AND seq < $2"
            " ORDER BY seq DESC LIMIT $3",
            tenant,
            _MAX_SEQ if before_seq is None else before_seq,
            limit,
        )
        return [_file(r) for r in rows]

    @_reconnecting
    async def delete_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self.pool.fetchrow(
            f"DELETE FROM files WHERE tenant = $1 AND id = $2 RETURNING {_FILE_COLUMNS}",
            tenant,
            id,
        )
        return None if row is None else _file(row)

    @_reconnecting
    async def purge_expired_files(self, now: float, batch: int = 1000) -> list[FileRecord]:
        rows = await self.pool.fetch(
            "WITH picked AS MATERIALIZED (SELECT seq FROM files WHERE expire_time < $1"
            " LIMIT $2 FOR UPDATE SKIP LOCKED)"
            f" DELETE FROM files WHERE seq IN (SELECT seq FROM picked) RETURNING {_FILE_COLUMNS}",
            now,
            batch,
        )
        return [_file(r) for r in rows]

    # -- file search ------------------------------------------------------------

    @_reconnecting
    async def create_search_store(self, store: SearchStoreRecord) -> SearchStoreRecord:
        await self.pool.execute(
            "INSERT INTO search_stores (id, tenant, display_name, embedding_model,"
            " create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (id) DO NOTHING",
            store.id,
            store.tenant,
            store.display_name,
            store.embedding_model,
            store.create_time,
            store.update_time,
        )
        created = await self.get_search_store(store.id)
        assert created is not None
        return created

    @_reconnecting
    async def get_search_store(self, id: str) -> SearchStoreRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_STORE_COLUMNS} FROM search_stores s WHERE s.id = $1", id
        )
        return None if row is None else _search_store(row)

    @_reconnecting
    async def list_search_stores(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[SearchStoreRecord]:
        rows = await self.pool.fetch(
            f"SELECT {_STORE_COLUMNS} FROM search_stores s WHERE s.tenant = $1 AND s.seq < $2"
            " ORDER BY s.seq DESC LIMIT $3",
            tenant,
            _MAX_SEQ if before_seq is None else before_seq,
            limit,
        )
        return [_search_store(r) for r in rows]

    @_reconnecting
    async def delete_search_store(self, id: str, *, force: bool) -> bool | None:
        """True when deleted, False when it holds documents and `force` is off, None if absent."""
        async with self.pool.acquire() as conn, conn.transaction():
            if (
                await conn.fetchval("SELECT 1 FROM search_stores WHERE id = $1 FOR UPDATE", id)
                is None
            ):
                return None
            if not force and await conn.fetchval(
                "SELECT 1 FROM documents WHERE store_id = $1 LIMIT 1", id
            ):
                return False
            await conn.execute("DELETE FROM chunks WHERE store_id = $1", id)
            await conn.execute("DELETE FROM documents WHERE store_id = $1", id)
            await conn.execute("DELETE FROM search_stores WHERE id = $1", id)
            return True

    @_reconnecting
    async def begin_document(self, document: DocumentRecord) -> DocumentRecord | None:
        """The store's document for `document.source_key`, made PENDING if it is new;
        None when the store is gone. The store's row is share-locked first: a delete
        (which locks it for update) waits for this to commit, then takes the document."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await self._lock_search_store(conn, document.store_id):
                return None
            await conn.execute(
                "INSERT INTO documents (id, store_id, source_key, display_name, mime_type,"
                " size_bytes, custom_metadata, state, create_time, update_time)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'PENDING', $8, $9)"
                " ON CONFLICT (store_id, source_key) DO NOTHING",
                document.id, document.store_id, document.source_key, document.display_name,
                document.mime_type, document.size_bytes, document.custom_metadata,
                document.create_time, document.update_time,
            )  # fmt: skip
            row = await conn.fetchrow(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d"
                " WHERE d.store_id = $1 AND d.source_key = $2",
                document.store_id,
                document.source_key,
            )
            return None if row is None else _document(row)

    @staticmethod
    async def _lock_search_store(conn: Any, id: str) -> bool:
        """Whether the store exists, share-locking its row until the transaction ends so
        that `delete_search_store` cannot run between a check and the writes after it."""
        found = await conn.fetchval("SELECT 1 FROM search_stores WHERE id = $1 FOR SHARE", id)
        return found is not None

    @_reconnecting
    async def index_document(
        self, document: DocumentRecord, chunks: Sequence[str], now: float
    ) -> DocumentRecord | None:
        """Replace the document's chunks and make it ACTIVE, all in one transaction, so a
        query sees the old version or the new one, never half of either. None when the
        document (or its store) was deleted meanwhile. Without the store's row lock, a
        delete between this update and the chunks' insert left the chunks behind."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await self._lock_search_store(conn, document.store_id):
                return None
            status: str = await conn.execute(
                "UPDATE documents SET state = 'ACTIVE', display_name = $1, mime_type = $2,"
                " size_bytes = $3, custom_metadata = $4::jsonb, update_time = $5"
                " WHERE id = $6 AND store_id = $7",
                document.display_name, document.mime_type, document.size_bytes,
                document.custom_metadata, now, document.id, document.store_id,
            )  # fmt: skip
            if not _count(status):
                return None
            await conn.execute("DELETE FROM chunks WHERE document_id = $1", document.id)
            await conn.execute(
                "INSERT INTO chunks (document_id, store_id, chunk_index, text)"
                " SELECT $1, $2, (x.i - 1)::int, x.t"
                " FROM unnest($3::text[]) WITH ORDINALITY AS x(t, i)",
                document.id,
                document.store_id,
                list(chunks),
            )
            row = await conn.fetchrow(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id = $1", document.id
            )
            return _document(row)

    @_reconnecting
    async def abandon_document(self, id: str) -> None:
        """Forget a document whose first import failed; an indexed one stays as it was."""
        await self.pool.execute("DELETE FROM documents WHERE id = $1 AND state = 'PENDING'", id)

    @_reconnecting
    async def get_document(self, id: str) -> DocumentRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id = $1", id
        )
        return None if row is None else _document(row)

    @_reconnecting
    async def list_documents(
        self, store_id: str, *, before_seq: int | None, limit: int
    ) -> list[DocumentRecord]:
        rows = await self.pool.fetch(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.store_id = $1 AND d.seq < $2"
            " ORDER BY d.seq DESC LIMIT $3",
            store_id,
            _MAX_SEQ if before_seq is None else before_seq,
            limit,
        )
        return [_document(r) for r in rows]

    @_reconnecting
    async def delete_document(self, id: str, *, force: bool) -> bool | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM documents WHERE id = $1 FOR UPDATE", id) is None:
                return None
            if not force and await conn.fetchval(
                "SELECT 1 FROM chunks WHERE document_id = $1 LIMIT 1", id
            ):
                return False
            await conn.execute("DELETE FROM chunks WHERE document_id = $1", id)
            await conn.execute("DELETE FROM documents WHERE id = $1", id)
            return True

    @_reconnecting
    async def query_chunks(
        self,
        store_id: str,
        terms: Sequence[str],
        filters: Sequence[tuple[str, str, Any]],
        limit: int,
    ) -> list[ChunkHit]:
        """Chunks matching any of `terms`, best first by `ts_rank`; `filters` are
        (key, operator, value) conditions every hit's document must meet."""
        if not terms:
            return []
        args: list[Any] = [store_id]
        parts = []
        # The configuration and fold the tsv column was made with (migration 4, in this
        # store's schema), so a term is tokenised exactly as the chunks were.
        for term in terms:
            args.append(term)
            parts.append(f"phraseto_tsquery('longops', longops_fold(${len(args)}::text))")
        where = ["c.tsv @@ q.query", "c.store_id = $1", "d.state = 'ACTIVE'"]
        for key, operator, value in filters:
            if operator not in _OPERATORS:
                raise ValueError(f"unknown metadata filter operator {operator!r}")
            op = "<>" if operator == "!=" else operator
            if isinstance(value, int | float):
                args += [key, float(value)]
                test = (
                    "CASE WHEN jsonb_typeof(m.value -> 'numericValue') = 'number'"
                    f" THEN (m.value -> 'numericValue')::double precision {op} ${len(args)}"
                    " ELSE FALSE END"
                )
            else:
                args += [key, str(value)]
                test = f"(m.value ->> 'stringValue') COLLATE \"C\" {op} ${len(args)}"
            where.append(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(d.custom_metadata) m"
                f" WHERE m.value ->> 'key' = ${len(args) - 1} AND {test})"
            )
        args.append(limit)
        # A hit doesn't need the document's chunk count (computing it per ranked row is slow).
        columns = _DOCUMENT_COLUMNS.replace(_CHUNK_COUNT, "0")
        # Normalisation 1 (rank / (1 + log length)) favours short chunks, as BM25 does on
        # SQLite; ts_rank has no IDF, so rare terms don't outweigh common ones here.
        sql = (
            f"SELECT {columns}, c.chunk_index, c.text, ts_rank(c.tsv, q.query, 1) AS rank"
            f" FROM (SELECT {' || '.join(parts)} AS query) q, chunks c"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE {' AND '.join(where)} ORDER BY rank DESC, c.id LIMIT ${len(args)}"
        )
        rows = await self.pool.fetch(sql, *args)
        hits = []
        for row in rows:
            strength = max(float(row[14]), 0.0)
            hits.append(ChunkHit(_document(row), row[12], row[13], strength / (1.0 + strength)))
        return hits
