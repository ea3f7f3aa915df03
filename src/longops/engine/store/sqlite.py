"""SQLite store: the embedded default, one file shared by any number of local processes.

Statements run inline on the event loop: a primary-key read or a short write
transaction takes tens of microseconds, far less than a hop to a thread pool.
The only thing that could block is another process holding the write lock, so
`busy_timeout` is zero and a locked database is retried with `asyncio.sleep`,
keeping the loop free while we wait.

WAL with `synchronous=NORMAL` survives a killed process with every committed
transaction; add `?synchronous=full` to the URL to survive power loss as well.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

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
from longops.engine.store.base import (
    Change,
    FileExists,
    LeaseState,
    StoreBusy,
    StoreUnavailable,
)

T = TypeVar("T")
Future = asyncio.Future[Any]
Record = OperationRecord | None
Write = Callable[[sqlite3.Connection], T]

_MIGRATIONS: list[str] = [
    """
    CREATE TABLE operations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        request_id TEXT,
        request BLOB NOT NULL,
        state TEXT NOT NULL,
        metadata BLOB NOT NULL,
        response BLOB,
        error BLOB,
        attempt INTEGER NOT NULL DEFAULT 0,
        releases INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires REAL,
        not_before REAL NOT NULL DEFAULT 0,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL,
        start_time REAL,
        end_time REAL
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
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        create_time REAL NOT NULL,
        expire_time REAL NOT NULL
    );
    CREATE INDEX files_tenant ON files (tenant, seq);
    CREATE INDEX files_expiry ON files (expire_time);
    """,
    """
    CREATE TABLE search_stores (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        display_name TEXT,
        embedding_model TEXT,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL
    );
    CREATE INDEX search_stores_tenant ON search_stores (tenant, seq);
    CREATE TABLE documents (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        store_id TEXT NOT NULL,
        source_key TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT,
        size_bytes INTEGER NOT NULL,
        custom_metadata TEXT NOT NULL,
        state TEXT NOT NULL,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL,
        UNIQUE (store_id, source_key)
    );
    CREATE INDEX documents_store ON documents (store_id, seq);
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX chunks_document ON chunks (document_id);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER chunks_indexed AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER chunks_unindexed AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
    # File ids are unique per tenant, not across tenants: one namespace shared by all
    # told a tenant which names others had used. SQLite cannot drop a constraint, so the
    # table is rebuilt. Documents and chunks an import left for a store deleted under it
    # (possible before version 4) are removed.
    """
    CREATE TABLE files_by_tenant (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        display_name TEXT,
        mime_type TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        create_time REAL NOT NULL,
        expire_time REAL NOT NULL,
        UNIQUE (tenant, id)
    );
    INSERT INTO files_by_tenant SELECT * FROM files;
    DROP TABLE files;
    ALTER TABLE files_by_tenant RENAME TO files;
    CREATE INDEX files_tenant ON files (tenant, seq);
    CREATE INDEX files_expiry ON files (expire_time);
    DELETE FROM chunks WHERE store_id NOT IN (SELECT id FROM search_stores)
        OR document_id NOT IN (SELECT id FROM documents);
    DELETE FROM documents WHERE store_id NOT IN (SELECT id FROM search_stores);
    """,
]

_STORE_COLUMNS = (
    "s.id, s.tenant, s.display_name, s.embedding_model, s.create_time, s.update_time,"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'ACTIVE'),"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'PENDING'),"
    " (SELECT count(*) FROM documents d WHERE d.store_id = s.id AND d.state = 'FAILED'),"
    " (SELECT coalesce(sum(size_bytes), 0) FROM documents d WHERE d.store_id = s.id),"
    " s.seq"
)
_DOCUMENT_COLUMNS = (
    "d.id, d.store_id, d.source_key, d.display_name, d.mime_type, d.size_bytes,"
    " d.custom_metadata, d.state, d.create_time, d.update_time,"
    " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), d.seq"
)


def _search_store(row: tuple[Any, ...]) -> SearchStoreRecord:
    return SearchStoreRecord(*row)


def _document(row: tuple[Any, ...]) -> DocumentRecord:
    values = list(row)
    values[6] = orjson.loads(values[6])
    return DocumentRecord(*values)


_FILE_COLUMNS = (
    "id, tenant, display_name, mime_type, size_bytes, sha256, source, blob_key,"
    " create_time, expire_time, seq"
)


def _file(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(*row)


_COLUMNS = (
    "seq, id, name, kind, tenant, request_id, request, state, metadata, response, error,"
    " attempt, max_attempts, cancel_requested, create_time, update_time, start_time, end_time"
)
_DONE_STATES = "('SUCCEEDED', 'FAILED', 'CANCELLED')"


def _json(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _fetch_all(sql: str, args: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Any]]:
    return lambda conn: conn.execute(sql, args).fetchall()


def _record(row: tuple[Any, ...]) -> OperationRecord:
    return OperationRecord(
        seq=row[0],
        id=row[1],
        name=row[2],
        kind=row[3],
        tenant=row[4],
        request_id=row[5],
        request=orjson.loads(row[6]),
        state=State(row[7]),
        metadata=orjson.loads(row[8]),
        response=None if row[9] is None else orjson.loads(row[9]),
        error=None if row[10] is None else orjson.loads(row[10]),
        attempt=row[11],
        max_attempts=row[12],
        cancel_requested=bool(row[13]),
        create_time=row[14],
        update_time=row[15],
        start_time=row[16],
        end_time=row[17],
    )


class SQLiteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_wait: float = 30.0,
        change_poll_interval: float = 0.01,
        cache_size: int = 10_000,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.busy_wait = busy_wait
        self.change_poll_interval = change_poll_interval
        self.max_staleness = 2 * change_poll_interval
        self._conn: sqlite3.Connection | None = None
        # Read cache for `get`. This connection's own writes keep it exact: each
        # stages the rows it returns, applied once committed. Other processes' commits
        # move `PRAGMA data_version`, polled every `change_poll_interval`, which empties
        # the cache: their changes show within that interval (read-your-writes holds
        # for everything written through this process). Checking the pragma on every
        # read instead took a quarter of a GET's time (it locks the WAL index).
        self._cache: dict[str, OperationRecord] = {}
        self._staged: list[tuple[str | None, OperationRecord | None]] = []
        self._seen_version = -1
        self._version_checked = 0.0
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], Future]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.cache_size = cache_size

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        parts = urlsplit(url)
        path = parts.path
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :].split("?", 1)[0]
        if not path:
            raise ValueError(f"no file in SQLite URL {url!r}")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if options.get("synchronous", "normal").upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"bad synchronous setting in {url!r}")
        return cls(path, synchronous=options.get("synchronous", "normal"))

    # -- connection ---------------------------------------------------------

    async def open(self) -> None:
        """Open (creating it if need be) and migrate the file.

        A file that can't be used (not a database, damaged, read-only, a folder, in a
        folder that can't be made or written) raises `StoreUnavailable` with one line
        naming the file and the problem, for the command line to print as it is.
        """
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn = conn
            conn.execute("PRAGMA busy_timeout = 0")
            await self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            await self._write(self._migrate)
            self._check_version(conn)
            # SQLite opens a file it may not write read-only, and says so only at the
            # first write: a server would start, then fail every request that writes.
            if self.path != ":memory:" and not os.access(self.path, os.W_OK):
                raise sqlite3.OperationalError("the file is read-only")
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            if await asyncio.to_thread(Path(self.path).is_dir):
                problem = "it is a folder, not a file"
            elif isinstance(exc, OSError):
                folder = Path(self.path).parent
                problem = f"cannot create its folder {folder} ({exc.strerror or exc})"
            elif "unable to open" in str(exc):
                problem = "cannot open or create it (is its folder there and writable?)"
            else:
                problem = str(exc)  # "file is not a database", "... malformed", "readonly"
            raise StoreUnavailable(f"cannot use SQLite database {self.path}: {problem}") from None

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            # Statement by statement inside our transaction (executescript would commit);
            # pieces are joined until complete, since triggers hold `;` of their own.
            statement = ""
            for piece in script.split(";"):
                statement += piece + ";"
                if sqlite3.complete_statement(statement):
                    if statement.strip(" \n;"):
                        conn.execute(statement)
                    statement = ""
            conn.execute(f"PRAGMA user_version = {number}")

    async def _retry(self, fn: Callable[[], T]) -> T:
        """Run `fn`, sleeping (not blocking the loop) while another process holds a lock."""
        deadline = time.monotonic() + self.busy_wait
        delay = 0.0005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() > deadline:
                    raise StoreBusy(f"SQLite database {self.path} stayed locked") from exc
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a write transaction shared with the other writes queued meanwhile.

        Group commit: the writes that callers on this loop issue in the same turn are
        committed together, each in its own savepoint (one failing rolls back only
        itself). A commit costs far more than the statements in it, so under load
        this multiplies write throughput; alone, a write waits one loop turn.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        result: T = await future
        return result

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let this turn's other writers join the batch
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._retry(functools.partial(self._commit, batch))
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._flusher = None

    def _commit(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Future]]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        isolate = len(batch) > 1
        outcomes: list[tuple[Future, Any, Exception | None]] = []
        try:
            for fn, future in batch:
                if future.cancelled():
                    continue
                if isolate:
                    conn.execute("SAVEPOINT write")
                staged = len(self._staged)
                try:
                    outcomes.append((future, fn(conn), None))
                except Exception as exc:
                    if not isolate:
                        raise
                    conn.execute("ROLLBACK TO write")
                    del self._staged[staged:]
                    outcomes.append((future, None, exc))
                if isolate:
                    conn.execute("RELEASE write")
            conn.execute("COMMIT")
            self._apply_staged()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._staged.clear()
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _stage(self, record: OperationRecord) -> OperationRecord:
        """Cache `record` once the running transaction commits."""
        self._staged.append((record.id, record))
        return record

    def _stage_forget(self, id: str | None) -> None:
        """Drop `id` (None: everything) from the cache once the transaction commits."""
        self._staged.append((id, None))

    def _apply_staged(self) -> None:
        for id, record in self._staged:
            if id is None:
                self._cache.clear()
            elif record is None:
                self._cache.pop(id, None)
            else:
                self._remember(record)

    def _remember(self, record: OperationRecord) -> None:
        if record.id not in self._cache and len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[record.id] = record

    def _check_version(self, conn: sqlite3.Connection) -> int:
        """Empty the cache if another process committed since the last check."""
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen_version:
            self._seen_version = version
            self._cache.clear()
        self._version_checked = time.monotonic()
        return version

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        return await self._retry(lambda: fn(conn))

    # -- operations ---------------------------------------------------------

    async def create(self, new: NewOperation, now: float) -> tuple[OperationRecord, bool]:
        def tx(conn: sqlite3.Connection) -> tuple[OperationRecord, bool]:
            if new.request_id is not None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM operations WHERE tenant = ? AND request_id = ?",
                    (new.tenant, new.request_id),
                ).fetchone()
                if row is not None:
                    return _record(row), False
            row = conn.execute(
                "INSERT INTO operations (id, name, kind, tenant, request_id, request, state,"
                " metadata, max_attempts, create_time, update_time)"
                " VALUES (?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?) RETURNING seq",
                (
                    new.id,
                    new.name,
                    new.kind,
                    new.tenant,
                    new.request_id,
                    orjson.dumps(new.request),
                    orjson.dumps(new.metadata),
                    new.max_attempts,
                    now,
                    now,
                ),
            ).fetchone()
            return self._stage(new.stored(row[0], now)), True

        return await self._write(tx)

    async def get(self, id: str) -> OperationRecord | None:
        """Polling makes this the hottest read; see the cache note in `__init__`."""

        def read(conn: sqlite3.Connection) -> OperationRecord | None:
            # Nobody polling (a busy loop, or no change feed running): check inline.
            if time.monotonic() - self._version_checked > self.max_staleness:
                self._check_version(conn)
            cached = self._cache.get(id)
            if cached is not None:
                return cached
            row = conn.execute(f"SELECT {_COLUMNS} FROM operations WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            record = _record(row)
            self._remember(record)
            return record

        try:  # the common case, without `_retry`'s machinery
            return read(self.conn)
        except sqlite3.OperationalError:
            return await self._read(read)

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
        where = ["tenant = ?"]
        args: list[Any] = [tenant]
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        if name_prefix is not None:
            where.append("substr(name, 1, ?) = ?")
            args += [len(name_prefix), name_prefix]
        if done is not None:
            where.append(f"state {'IN' if done else 'NOT IN'} {_DONE_STATES}")
        if kinds is not None:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args += list(kinds)
        sql = (
            f"SELECT {_COLUMNS} FROM operations WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [_record(r) for r in rows]

    async def cancel(self, id: str, now: float, error: dict[str, Any]) -> OperationRecord | None:
        def tx(conn: sqlite3.Connection) -> OperationRecord | None:
            row = conn.execute(
                "UPDATE operations SET state = 'CANCELLED', cancel_requested = 1, error = ?,"
                " end_time = ?, update_time = ? WHERE id = ? AND state = 'PENDING'"
                f" RETURNING {_COLUMNS}",
                (orjson.dumps(error), now, now, id),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "UPDATE operations SET cancel_requested = 1, update_time = ?"
                    f" WHERE id = ? AND state = 'RUNNING' RETURNING {_COLUMNS}",
                    (now, id),
                ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM operations WHERE id = ?", (id,)
                ).fetchone()
            return None if row is None else self._stage(_record(row))

        return await self._write(tx)

    async def delete(self, id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            self._stage_forget(id)
            return conn.execute("DELETE FROM operations WHERE id = ?", (id,)).rowcount > 0

        return await self._write(tx)

    def _change_one(self, sql: str, args: Sequence[Any] | dict[str, Any]) -> Write[Record]:
        """A write of one row that returns (and caches) it, or None when nothing matched."""

        def tx(conn: sqlite3.Connection) -> OperationRecord | None:
            row = conn.execute(f"{sql} RETURNING {_COLUMNS}", args).fetchone()
            return None if row is None else self._stage(_record(row))

        return tx

    async def claim(
        self, kinds: Collection[str], owner: str, lease_seconds: float, limit: int, now: float
    ) -> list[OperationRecord]:
        if not kinds or limit <= 0:
            return []
        marks = ",".join("?" * len(kinds))
        sql = (
            "UPDATE operations SET state = 'RUNNING', attempt = attempt + 1, lease_owner = ?,"
            " lease_expires = ?, start_time = coalesce(start_time, ?), update_time = ?"
            " WHERE seq IN (SELECT seq FROM operations WHERE state = 'PENDING'"
            f" AND kind IN ({marks}) AND not_before <= ? ORDER BY seq LIMIT ?)"
            f" RETURNING {_COLUMNS}"
        )
        args = (owner, now + lease_seconds, now, now, *kinds, now, limit)

        def tx(conn: sqlite3.Connection) -> list[OperationRecord]:
            return [self._stage(_record(row)) for row in conn.execute(sql, args).fetchall()]

        return sorted(await self._write(tx), key=lambda r: r.seq)

    async def heartbeat(self, owner: str, lease_seconds: float, now: float) -> list[LeaseState]:
        # Only the lease moves, which no record shows: nothing to restage.
        rows = await self._write(
            lambda c: c.execute(
                "UPDATE operations SET lease_expires = ? WHERE lease_owner = ?"
                " AND state = 'RUNNING' RETURNING id, attempt, cancel_requested",
                (now + lease_seconds, owner),
            ).fetchall()
        )
        return [LeaseState(r[0], r[1], bool(r[2])) for r in rows]

    async def save_progress(
        self, id: str, attempt: int, metadata: dict[str, Any], now: float
    ) -> bool | None:
        record = await self._write(
            self._change_one(
                "UPDATE operations SET metadata = ?, update_time = ?"
                " WHERE id = ? AND attempt = ? AND state = 'RUNNING'",
                (orjson.dumps(metadata), now, id, attempt),
            )
        )
        return None if record is None else record.cancel_requested

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
        record = await self._write(
            self._change_one(
                "UPDATE operations SET state = ?, response = ?, error = ?,"
                " metadata = coalesce(?, metadata), end_time = ?, update_time = ?,"
                " lease_owner = NULL, lease_expires = NULL"
                " WHERE id = ? AND attempt = ? AND state = 'RUNNING'",
                (
                    state.value,
                    _json(response),
                    _json(error),
                    _json(metadata),
                    now,
                    now,
                    id,
                    attempt,
                ),
            )
        )
        return record is not None

    async def fail_attempt(
        self, id: str, attempt: int, now: float, not_before: float, final_error: dict[str, Any]
    ) -> State | None:
        record = await self._write(
            self._change_one(
                """
                UPDATE operations SET
                    state = CASE WHEN attempt - releases >= max_attempts
                                 THEN 'FAILED' ELSE 'PENDING' END,
                    error = CASE WHEN attempt - releases >= max_attempts THEN :error END,
                    end_time = CASE WHEN attempt - releases >= max_attempts THEN :now END,
                    lease_owner = NULL, lease_expires = NULL, not_before = :not_before,
                    update_time = :now
                WHERE id = :id AND attempt = :attempt AND state = 'RUNNING'
                """,
                {
                    "error": orjson.dumps(final_error),
                    "now": now,
                    "not_before": not_before,
                    "id": id,
                    "attempt": attempt,
                },
            )
        )
        return None if record is None else record.state

    async def release(self, id: str, attempt: int, now: float) -> bool:
        record = await self._write(
            self._change_one(
                "UPDATE operations SET state = 'PENDING', releases = releases + 1,"
                " lease_owner = NULL, lease_expires = NULL, update_time = ?"
                " WHERE id = ? AND attempt = ? AND state = 'RUNNING'",
                (now, id, attempt),
            )
        )
        return record is not None

    async def lease_owners(self) -> list[str]:
        rows = await self._read(
            _fetch_all("SELECT DISTINCT lease_owner FROM operations WHERE state = 'RUNNING'", ())
        )
        return [r[0] for r in rows if r[0] is not None]

    async def recover_expired(
        self,
        now: float,
        cancel_error: dict[str, Any],
        abandon_error: dict[str, Any],
        *,
        dead_owners: Collection[str] = (),
    ) -> list[tuple[str, State]]:
        dead = {f"dead{i}": owner for i, owner in enumerate(dead_owners)}
        of_dead = f" OR lease_owner IN ({', '.join(':' + k for k in dead)})" if dead else ""

        def tx(conn: sqlite3.Connection) -> list[tuple[str, State]]:
            rows = conn.execute(
                f"""
                UPDATE operations SET
                    state = CASE WHEN cancel_requested THEN 'CANCELLED'
                                 WHEN attempt - releases >= max_attempts THEN 'FAILED'
                                 ELSE 'PENDING' END,
                    error = CASE WHEN cancel_requested THEN :cancel
                                 WHEN attempt - releases >= max_attempts THEN :abandon END,
                    end_time = CASE WHEN cancel_requested OR attempt - releases >= max_attempts
                                    THEN :now END,
                    lease_owner = NULL, lease_expires = NULL, update_time = :now
                WHERE state = 'RUNNING' AND (lease_expires < :now{of_dead})
                RETURNING id, state
                """,
                {
                    "now": now,
                    "cancel": orjson.dumps(cancel_error),
                    "abandon": orjson.dumps(abandon_error),
                    **dead,
                },
            ).fetchall()
            for id, _ in rows:
                self._stage_forget(id)
            return [(id, State(state)) for id, state in rows]

        return await self._write(tx)

    async def purge_done(self, ended_before: float, batch: int = 1000) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            self._stage_forget(None)
            count: int = conn.execute(
                "DELETE FROM operations WHERE seq IN (SELECT seq FROM operations"
                f" WHERE end_time < ? AND state IN {_DONE_STATES} LIMIT ?)",
                (ended_before, batch),
            ).rowcount
            return count

        total = 0
        while True:
            count = await self._write(tx)
            total += count
            if count < batch:
                return total

    # -- files ----------------------------------------------------------------

    async def create_file(self, file: FileRecord) -> FileRecord:
        def tx(conn: sqlite3.Connection) -> FileRecord:
            row = conn.execute(
                f"INSERT INTO files ({_FILE_COLUMNS.removesuffix(', seq')})"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (tenant, id) DO NOTHING RETURNING {_FILE_COLUMNS}",
                (
                    file.id, file.tenant, file.display_name, file.mime_type, file.size_bytes,
                    file.sha256, file.source, file.blob_key, file.create_time, file.expire_time,
                ),
            ).fetchone()  # fmt: skip
            if row is None:  # the tenant's id is taken: by this very file (a repeat) or not
                row = conn.execute(
                    f"SELECT {_FILE_COLUMNS} FROM files WHERE tenant = ? AND id = ?",
                    (file.tenant, file.id),
                ).fetchone()
                if row[7] != file.blob_key:
                    raise FileExists(file.id)
            return _file(row)

        return await self._write(tx)

    async def get_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE tenant = ? AND id = ?", (tenant, id)
            ).fetchone()
        )
        return None if row is None else _file(row)

    async def list_files(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[FileRecord]:
        rows = await self._read(
            _fetch_all(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE tenant = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                (tenant, (1 << 63) - 1 if before_seq is None else before_seq, limit),
            )
        )
        return [_file(r) for r in rows]

    async def delete_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self._write(
            lambda c: c.execute(
                f"DELETE FROM files WHERE tenant = ? AND id = ? RETURNING {_FILE_COLUMNS}",
                (tenant, id),
            ).fetchone()
        )
        return None if row is None else _file(row)

    async def purge_expired_files(self, now: float, batch: int = 1000) -> list[FileRecord]:
        rows = await self._write(
            _fetch_all(
                "DELETE FROM files WHERE seq IN (SELECT seq FROM files WHERE expire_time < ?"
                f" LIMIT ?) RETURNING {_FILE_COLUMNS}",
                (now, batch),
            )
        )
        return [_file(r) for r in rows]

    # -- file search ------------------------------------------------------------

    async def create_search_store(self, store: SearchStoreRecord) -> SearchStoreRecord:
        await self._write(
            lambda c: c.execute(
                "INSERT INTO search_stores (id, tenant, display_name, embedding_model,"
                " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    store.id,
                    store.tenant,
                    store.display_name,
                    store.embedding_model,
                    store.create_time,
                    store.update_time,
                ),
            )
        )
        created = await self.get_search_store(store.id)
        assert created is not None
        return created

    async def get_search_store(self, id: str) -> SearchStoreRecord | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_STORE_COLUMNS} FROM search_stores s WHERE s.id = ?", (id,)
            ).fetchone()
        )
        return None if row is None else _search_store(row)

    async def list_search_stores(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[SearchStoreRecord]:
        rows = await self._read(
            _fetch_all(
                f"SELECT {_STORE_COLUMNS} FROM search_stores s WHERE s.tenant = ? AND s.seq < ?"
                " ORDER BY s.seq DESC LIMIT ?",
                (tenant, (1 << 63) - 1 if before_seq is None else before_seq, limit),
            )
        )
        return [_search_store(r) for r in rows]

    async def delete_search_store(self, id: str, *, force: bool) -> bool | None:
        """True when deleted, False when it holds documents and `force` is off, None if absent."""

        def tx(conn: sqlite3.Connection) -> bool | None:
            if conn.execute("SELECT 1 FROM search_stores WHERE id = ?", (id,)).fetchone() is None:
                return None
            if (
                not force
                and conn.execute(
                    "SELECT 1 FROM documents WHERE store_id = ? LIMIT 1", (id,)
                ).fetchone()
            ):
                return False
            conn.execute("DELETE FROM chunks WHERE store_id = ?", (id,))
            conn.execute("DELETE FROM documents WHERE store_id = ?", (id,))
            conn.execute("DELETE FROM search_stores WHERE id = ?", (id,))
            return True

        return await self._write(tx)

    async def begin_document(self, document: DocumentRecord) -> DocumentRecord | None:
        """The store's document for `document.source_key`, made PENDING if it is new;
        None when the store is gone. Writes are serialised, so a store deleted after
        this takes the document with it."""

        def tx(conn: sqlite3.Connection) -> DocumentRecord | None:
            store = (document.store_id,)
            if conn.execute("SELECT 1 FROM search_stores WHERE id = ?", store).fetchone() is None:
                return None
            conn.execute(
                "INSERT INTO documents (id, store_id, source_key, display_name, mime_type,"
                " size_bytes, custom_metadata, state, create_time, update_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?)"
                " ON CONFLICT (store_id, source_key) DO NOTHING",
                (
                    document.id, document.store_id, document.source_key, document.display_name,
                    document.mime_type, document.size_bytes,
                    orjson.dumps(document.custom_metadata).decode(),
                    document.create_time, document.update_time,
                ),
            )  # fmt: skip
            row = conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d"
                " WHERE d.store_id = ? AND d.source_key = ?",
                (document.store_id, document.source_key),
            ).fetchone()
            return None if row is None else _document(row)

        return await self._write(tx)

    async def index_document(
        self, document: DocumentRecord, chunks: Sequence[str], now: float
    ) -> DocumentRecord | None:
        """Replace the document's chunks and make it ACTIVE, all in one transaction, so a
        query sees the old version or the new one, never half of either. None when the
        document (or its store) was deleted meanwhile."""

        def tx(conn: sqlite3.Connection) -> DocumentRecord | None:
            updated = conn.execute(
                "UPDATE documents SET state = 'ACTIVE', display_name = ?, mime_type = ?,"
                " size_bytes = ?, custom_metadata = ?, update_time = ? WHERE id = ?"
                " AND EXISTS (SELECT 1 FROM search_stores WHERE id = documents.store_id)",
                (
                    document.display_name, document.mime_type, document.size_bytes,
                    orjson.dumps(document.custom_metadata).decode(), now, document.id,
                ),
            ).rowcount  # fmt: skip
            if not updated:
                return None
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (document.id,))
            conn.executemany(
                "INSERT INTO chunks (document_id, store_id, chunk_index, text) VALUES (?, ?, ?, ?)",
                ((document.id, document.store_id, i, text) for i, text in enumerate(chunks)),
            )
            row = conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id = ?", (document.id,)
            ).fetchone()
            return _document(row)

        return await self._write(tx)

    async def abandon_document(self, id: str) -> None:
        """Forget a document whose first import failed; an indexed one stays as it was."""
        await self._write(
            lambda c: c.execute("DELETE FROM documents WHERE id = ? AND state = 'PENDING'", (id,))
        )

    async def get_document(self, id: str) -> DocumentRecord | None:
        row = await self._read(
            lambda c: c.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.id = ?", (id,)
            ).fetchone()
        )
        return None if row is None else _document(row)

    async def list_documents(
        self, store_id: str, *, before_seq: int | None, limit: int
    ) -> list[DocumentRecord]:
        rows = await self._read(
            _fetch_all(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents d WHERE d.store_id = ? AND d.seq < ?"
                " ORDER BY d.seq DESC LIMIT ?",
                (store_id, (1 << 63) - 1 if before_seq is None else before_seq, limit),
            )
        )
        return [_document(r) for r in rows]

    async def delete_document(self, id: str, *, force: bool) -> bool | None:
        def tx(conn: sqlite3.Connection) -> bool | None:
            if conn.execute("SELECT 1 FROM documents WHERE id = ?", (id,)).fetchone() is None:
                return None
            if (
                not force
                and conn.execute(
                    "SELECT 1 FROM chunks WHERE document_id = ? LIMIT 1", (id,)
                ).fetchone()
            ):
                return False
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (id,))
            conn.execute("DELETE FROM documents WHERE id = ?", (id,))
            return True

        return await self._write(tx)

    async def query_chunks(
        self,
        store_id: str,
        terms: Sequence[str],
        filters: Sequence[tuple[str, str, Any]],
        limit: int,
    ) -> list[ChunkHit]:
        """Chunks matching any of `terms`, best first by BM25; `filters` are
        (key, operator, value) conditions every hit's document must meet."""
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where, args = (
            ["chunks_fts MATCH ?", "c.store_id = ?", "d.state = 'ACTIVE'"],
            [
                match,
                store_id,
            ],
        )
        for key, operator, value in filters:
            column = "numericValue" if isinstance(value, int | float) else "stringValue"
            where.append(
                "EXISTS (SELECT 1 FROM json_each(d.custom_metadata) m"
                " WHERE json_extract(m.value, '$.key') = ?"
                f" AND json_extract(m.value, '$.{column}') {operator} ?)"
            )
            args += [key, value]
        # Not _DOCUMENT_COLUMNS: its chunk count would be computed for every ranked row
        # (18.9 ms instead of 0.11 ms on a 27,000-chunk document); a hit doesn't need it.
        columns = _DOCUMENT_COLUMNS.replace(
            "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id)", "0"
        )
        sql = (
            f"SELECT {columns}, c.chunk_index, c.text, bm25(chunks_fts)"
            " FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE {' AND '.join(where)} ORDER BY bm25(chunks_fts) LIMIT ?"
        )
        rows = await self._read(_fetch_all(sql, (*args, limit)))
        hits = []
        for row in rows:
            strength = max(-row[-1], 0.0)
            hits.append(
                ChunkHit(_document(row[:12]), row[12], row[13], strength / (1.0 + strength))
            )
        return hits

    async def done_among(self, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            sql = (
                f"SELECT id FROM operations WHERE id IN ({','.join('?' * len(chunk))})"
                f" AND state IN {_DONE_STATES}"
            )
            rows = await self._read(_fetch_all(sql, chunk))
            found += [r[0] for r in rows]
        return found

    async def changes(self, *, work: bool = True, done: bool = True) -> AsyncIterator[Change]:
        """Poll `PRAGMA data_version`, which moves only when another connection commits
        (whatever it committed: `work` and `done` can't narrow it).

        SQLite has no notification channel between processes; one cheap pragma per
        interval per process is the price, and it cannot say which operations changed.
        """
        last = self._check_version(self.conn)
        while True:
            await asyncio.sleep(self.change_poll_interval)
            if self._conn is None:
                return
            current = await self._read(self._check_version)
            if current != last:
                last = current
                yield Change()
