"""The narrow interface a database backend gives the store: a dialect and an executor.

`SqlStore` (and any component keeping tables of its own, such as the file search
index) writes every statement once, with `?` placeholders, and runs it through a
`Database`. A backend is the two things that truly differ:

- a `Dialect`: how placeholders are numbered and typed, how JSON travels, how "any
  of these values" is written, the clauses that lock or skip rows, how many values one
  statement may carry;
- a `Database`: how statements run (a connection pool, or one connection with group
  commit), what is retried, how other processes hear of commits, how migrations are
  applied, and whether recently written operations can be answered from memory.

Placeholders may carry a PostgreSQL cast (`?::jsonb`, `?::float8`, `?::text[]`),
which a dialect without casts drops: one statement text serves every backend.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from longops.engine.records import OperationRecord
    from longops.engine.store.base import Change

T = TypeVar("T")
Row = Sequence[Any]

_PLACEHOLDER = re.compile(r"\?(::\w+(?:\[\])?)?")


class Notice(enum.StrEnum):
    """What a write tells other processes once it has committed (see `Session.announced`)."""

    WORK = "work"
    """Operations may have become claimable (a create, a release, a retry)."""
    FINISHED = "finished"
    """The row written is done: its id, and the row itself where the backend can carry it."""
    GONE = "gone"
    """The row was deleted: its id alone."""
    OUTCOME = "outcome"
    """A worker's write: FINISHED when the row is now done, WORK when it is pending again."""
    PROGRESS = "progress"
    """A running row's progress moved: its id, and the row where the backend can carry it
    (for watch streams in other processes)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL text and values that differ between backends; nothing here runs anything."""

    name: str
    numbered: bool
    """Placeholders are `$1, $2, …` (with their casts) rather than `?`."""
    json: Callable[[Any], Any]
    """A Python value as a JSON parameter (None stays NULL)."""
    load: Callable[[Any], Any]
    """A JSON column's value as Python (None stays None)."""
    max_list: int
    """The most values `any_of` may put in one statement."""
    materialized: str = ""
    """Written after `AS` in a CTE that must be computed once (`MATERIALIZED`)."""
    skip_locked: str = ""
    """Appended to a SELECT picking rows to change, so concurrent pickers skip each other's."""
    for_share: str = ""
    """Appended to a SELECT of a row that must not be deleted before the transaction ends."""
    for_update: str = ""
    """Appended to a SELECT of a row this transaction is about to change or delete."""
    greatest: str = "max"
    """The function giving the largest of its arguments (SQLite's two-argument `max`)."""
    lock: str = ""
    """A statement taking a lock (its one parameter a number) held to the end of the
    transaction, so that transactions counting the same rows take turns; empty where
    write transactions take turns anyway (SQLite)."""
    _compiled: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, text: str) -> str:
        """`text` with its placeholders in this dialect's form (cached: statements repeat)."""
        compiled = self._compiled.get(text)
        if compiled is None:
            if self.numbered:
                numbers = iter(range(1, text.count("?") + 1))
                compiled = _PLACEHOLDER.sub(lambda m: f"${next(numbers)}{m[1] or ''}", text)
            else:
                compiled = _PLACEHOLDER.sub("?", text)
            self._compiled[text] = compiled
        return compiled

    def any_of(
        self, column: str, values: Collection[Any], type: str = "text"
    ) -> tuple[str, list[Any]]:
        """A condition true when `column` is one of `values` (of SQL `type`), and its
        parameters."""
        if self.numbered:
            return f"{column} = ANY(?::{type}[])", [list(values)]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)


class Session(Protocol):
    """Where a body's statements run: one transaction, or (see `Database.write`) a
    sequence of statements each atomic on its own."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def announced(
        self, notice: Notice | None, write: str, returning: str, *args: Any
    ) -> Row | None:
        """Run `write` (an INSERT, UPDATE or DELETE of at most one operation, without
        RETURNING), return its `returning` columns, and tell other processes of it (see
        `tell`) once it has committed. On PostgreSQL the notification is made by the
        statement itself, from the row it wrote, which the caller need not decode."""

    def tell(self, notice: Notice, id: str = "") -> None:
        """Once committed, tell other processes of `notice` (of operation `id`). PostgreSQL
        notifies them; SQLite has no channel (its readers see the data version move)."""

    def remember(self, record: OperationRecord) -> OperationRecord:
        """Once committed, `record` is what `Database.cached` answers for its id."""

    def forget(self, id: str | None) -> None:
        """Once committed, nothing is cached for `id` (None: for any id)."""


Body = Callable[[Session], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a component's schema: `sql` runs unless `unless` (a query) returns a
    true first column, which lets a step adopt what an older layout already made."""

    sql: str
    unless: str | None = None


class Database(Protocol):
    dialect: Dialect
    max_staleness: float
    """The longest `cached` may lag behind commits made by other processes."""
    caches: bool
    """Whether `Session.remember` keeps anything (then writes return whole rows to keep)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, body: Body[T]) -> T:
        """Run `body`'s reads (SQLite: at once, on the loop; PostgreSQL: on a pooled connection)."""

    async def write(self, body: Body[T], *, durable: bool = True) -> T:
        """Run `body`'s writes. Each statement is atomic; on SQLite the whole body is one
        transaction (shared with other writes of the same loop turn), on PostgreSQL the
        statements commit one by one, which saves the round trips of BEGIN and COMMIT.
        Bodies that need all or nothing use `transaction`. `durable=False` (claims and
        lease renewals) may commit without waiting for the disk."""

    async def transaction(self, body: Body[T], *, durable: bool = True) -> T:
        """Run `body` in one transaction: all of it commits, or none (`durable` as for
        `write`)."""

    async def migrate(self, component: str, steps: Sequence[Migration]) -> None:
        """Apply the steps of `component`'s schema not applied yet, once across processes."""

    def cached(self, id: str) -> OperationRecord | None:
        """A recent copy of the operation, or None: the store must read it."""

    def progress_wanted(self) -> bool:
        """Whether a progress write should tell other processes (`Notice.PROGRESS`): some
        process may have watch streams. Answered from memory (it may lag a second)."""

    async def set_watching(self, watching: bool) -> None:
        """Say whether this process has watch streams, for `progress_wanted` elsewhere."""

    def changes(self, *, work: bool, done: bool) -> AsyncIterator[Change]:
        """Commits made by other processes (see `Store.changes`)."""
