"""SQLite: the embedded default, one file shared by any number of local processes.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from longops.engine.records import OperationRecord
from longops.engine.store.base import Change, StoreBusy, StoreUnavailable
from longops.engine.store.database import Body, Dialect, Migration, Notice, Row
from longops.engine.store.sql import SqlStore

T = TypeVar("T")
Future = asyncio.Future[Any]

SQLITE = Dialect(
    name="sqlite",
    numbered=False,
    json=lambda value: None if value is None else orjson.dumps(value),
    load=orjson.loads,
    # Far below SQLITE_MAX_VARIABLE_NUMBER (32,766 since 3.32, 999 before).
    max_list=500,
)

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
    # Version 3 made the file search tables; they are the file search kind's now
    # (longops.kinds.file_search.index), which adopts those a database already has.
    "",
    # File ids are unique per tenant, not across tenants: one namespace shared by all
    # told a tenant which names others had used. SQLite cannot drop a constraint, so the
    # table is rebuilt.
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
    """,
    # A per-request webhook (`webhookConfig`: uris, userMetadata), read only when the
    # operation ends (longops.engine.webhooks), so not among OPERATION_COLUMNS.
    """
    ALTER TABLE operations ADD COLUMN webhook BLOB;
    """,
    # Tenant quotas count a tenant's unfinished operations (longops.engine.quotas):
    # through (tenant, seq) that walked all of its rows; PostgreSQL has had this since
    # version 5 (operations_tenant_unfinished).
    """
    CREATE INDEX IF NOT EXISTS operations_tenant_unfinished ON operations (tenant, seq)
        WHERE state IN ('PENDING', 'RUNNING');
    """,
    # Priorities (higher is claimed first, equal ones in order): the pending rows'
    # index gives each kind's rows in the claim's order.
    """
    ALTER TABLE operations ADD COLUMN priority INTEGER NOT NULL DEFAULT 500;
    DROP INDEX operations_pending;
    CREATE INDEX operations_pending ON operations (kind, priority DESC, seq)
        WHERE state = 'PENDING';
    """,
    # Fair sharing and limits (longops.engine.limits): claims take equal priorities by
    # turn; a create finds its tenant's (and key's) last unfinished turn through
    # operations_turns (of unfinished rows, not pending ones, so that claims, which
    # take tenants' rows in turn from all over the table, need not move its entries),
    # and its priority's earliest pending one through operations_band;
    # limited claims count the running rows of a kind (and key) through
    # operations_running_kinds. Token buckets of rate limits live in rate_buckets.
    """
    ALTER TABLE operations ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE operations ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;
    DROP INDEX operations_pending;
    CREATE INDEX operations_pending ON operations (kind, priority DESC, turn, seq)
        WHERE state = 'PENDING';
    CREATE INDEX operations_band ON operations (priority, turn) WHERE state = 'PENDING';
    CREATE INDEX operations_turns ON operations (tenant, concurrency_key, priority, turn)
        WHERE end_time IS NULL;
    CREATE INDEX operations_running_kinds ON operations (kind, tenant, concurrency_key)
        WHERE state = 'RUNNING';
    CREATE TABLE rate_buckets (
        kind TEXT NOT NULL,
        per_key INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        concurrency_key TEXT NOT NULL,
        tokens REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (kind, per_key, tenant, concurrency_key)
    );
    """,
]


def _statements(script: str) -> list[str]:
    """`script`'s statements, for running one by one inside our transaction
    (`executescript` would commit); pieces are joined until complete, since triggers
    hold `;` of their own."""
    statements, statement = [], ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                statements.append(statement)
            statement = ""
    return statements


def _run(awaitable: Awaitable[T]) -> T:
    """Run a body to its end at once: on SQLite every statement completes inline, so a
    body that suspends is waiting on something else, which a transaction must not."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    steps.close()
    raise RuntimeError("a SQLite store body waited on something other than its statements")


class _Session:
    """Statements on the connection; `remember`/`forget` staged until the commit
    (`staged` is None for reads, which apply them at once)."""

    __slots__ = ("_conn", "_database", "_staged")

    def __init__(
        self,
        conn: sqlite3.Connection,
        database: SQLiteDatabase,
        staged: list[tuple[str | None, OperationRecord | None]] | None,
    ) -> None:
        self._conn = conn
        self._database = database
        self._staged = staged

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(SQLITE.sql(sql), args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = self._conn.execute(SQLITE.sql(sql), args).fetchone()
        return row

    async def execute(self, sql: str, *args: Any) -> int:
        count: int = self._conn.execute(SQLITE.sql(sql), args).rowcount
        if count < 0:  # Python's sqlite3 counts only statements that begin INSERT, UPDATE …
            (count,) = self._conn.execute("SELECT changes()").fetchone()
        return count

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(SQLITE.sql(sql), rows)

    async def announced(
        self, notice: Notice | None, write: str, returning: str, *args: Any
    ) -> Row | None:
        sql = SQLITE.sql(f"{write} RETURNING {returning}")
        row: Row | None = self._conn.execute(sql, args).fetchone()
        return row

    def tell(self, notice: Notice, id: str = "") -> None:
        """Nothing to send: other processes see `PRAGMA data_version` move."""

    def remember(self, record: OperationRecord) -> OperationRecord:
        if self._staged is None:
            self._database._remember(record)
        else:
            self._staged.append((record.id, record))
        return record

    def forget(self, id: str | None) -> None:
        if self._staged is None:
            self._database._forget(id)
        else:
            self._staged.append((id, None))


class SQLiteDatabase:
    """One connection, used from the event loop, with group commit and a read cache."""

    dialect = SQLITE
    caches = True

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
        self.cache_size = cache_size
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
        self._queue: list[tuple[Body[Any], Future]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteDatabase:
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
            await self._write_now(self._migrate_operations)
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

    @staticmethod
    def _migrate_operations(conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")

    async def migrate(self, component: str, steps: Sequence[Migration]) -> None:
        def migrate(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS longops_migrations"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM longops_migrations WHERE component = ?", (component,)
            ).fetchone()
            version = 0 if row is None else row[0]
            for step in steps[version:]:
                if step.unless is None or not conn.execute(step.unless).fetchone()[0]:
                    for statement in _statements(step.sql):
                        conn.execute(statement)
            conn.execute(
                "INSERT INTO longops_migrations (component, version) VALUES (?, ?)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, len(steps)),
            )

        await self._write_now(migrate)

    async def _write_now(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        """`fn` in a write transaction of its own (migrations: before any other write)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        conn = self.conn
        await self._retry(lambda: run(conn))

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

    # -- running bodies -----------------------------------------------------------

    async def read(self, body: Body[T]) -> T:
        conn = self.conn
        session = _Session(conn, self, None)
        try:  # the common case, without `_retry`'s machinery
            return _run(body(session))
        except sqlite3.OperationalError:
            return await self._retry(lambda: _run(body(session)))

    async def write(self, body: Body[T], *, durable: bool = True) -> T:
        """Run `body` in a write transaction shared with the other writes queued meanwhile.

        Group commit: the writes that callers on this loop issue in the same turn are
        committed together, each in its own savepoint (one failing rolls back only
        itself). A commit costs far more than the statements in it, so under load
        this multiplies write throughput; alone, a write waits one loop turn. Every
        write is durable as `synchronous` says: one commit serves all.
        """
        future: Future = asyncio.get_running_loop().create_future()
        self._queue.append((body, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        result: T = await future
        return result

    transaction = write  # every write body is one transaction already

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

    def _commit(self, batch: list[tuple[Body[Any], Future]]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        isolate = len(batch) > 1
        session = _Session(conn, self, self._staged)
        outcomes: list[tuple[Future, Any, Exception | None]] = []
        try:
            for body, future in batch:
                if future.cancelled():
                    continue
                if isolate:
                    conn.execute("SAVEPOINT write")
                staged = len(self._staged)
                try:
                    outcomes.append((future, _run(body(session)), None))
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

    # -- the read cache -------------------------------------------------------------

    def cached(self, id: str) -> OperationRecord | None:
        # Nobody polling (a busy loop, or no change feed running): check inline.
        if time.monotonic() - self._version_checked > self.max_staleness:
            try:
                self._check_version(self.conn)
            except sqlite3.OperationalError:
                return None  # the read that follows retries
        return self._cache.get(id)

    def progress_wanted(self) -> bool:
        return False  # nothing to tell: other processes see `PRAGMA data_version` move

    async def set_watching(self, watching: bool) -> None:
        pass

    def _apply_staged(self) -> None:
        for id, record in self._staged:
            if record is None:
                self._forget(id)
            else:
                self._remember(record)

    def _remember(self, record: OperationRecord) -> None:
        if record.id not in self._cache and len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[record.id] = record

    def _forget(self, id: str | None) -> None:
        if id is None:
            self._cache.clear()
        else:
            self._cache.pop(id, None)

    def _check_version(self, conn: sqlite3.Connection) -> int:
        """Empty the cache if another process committed since the last check."""
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen_version:
            self._seen_version = version
            self._cache.clear()
        self._version_checked = time.monotonic()
        return version

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
            current = await self._retry(functools.partial(self._check_version, self._conn))
            if current != last:
                last = current
                yield Change()


class SQLiteStore(SqlStore):
    """The store on a SQLite file."""

    database: SQLiteDatabase

    def __init__(self, path: str | Path, **options: Any) -> None:
        super().__init__(SQLiteDatabase(path, **options))

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        database = SQLiteDatabase.from_url(url)
        return cls(database.path, synchronous=database.synchronous)
