"""The store, written once: every statement and lifecycle rule, over a `Database`.

What an operation may do next is decided here, in SQL that runs unchanged on every
backend (see `database.py` for what a backend supplies):

- a claim takes the oldest claimable rows of the kinds served and leases them;
- every worker write is fenced: it matches only while its attempt holds the lease
  (`state = 'RUNNING' AND attempt = ?`), so a worker that lost the lease changes nothing;
- an expired lease (or one whose owner is known dead) sends the operation back to
  PENDING, or ends it: CANCELLED when a cancel was asked for, FAILED when it was
  the last attempt (`OUT_OF_ATTEMPTS`);
- a create is idempotent twice over: a tenant's repeated request id answers with the
  operation it made, and a retry of the same insert (same operation id) whose first
  try committed unseen answers with that operation as made now;
- listings are newest first and keyset-paged by sequence number.

Each of these is one statement, so it is atomic whatever runs beside it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from longops.engine import metrics
from longops.engine.limits import Key, Limit, Room
from longops.engine.records import FileRecord, NewOperation, OperationRecord, State
from longops.engine.store import rows
from longops.engine.store.base import Change, FileExists, LeaseState, TenantUsage
from longops.engine.store.database import Body, Database, Notice, Row, Session
from longops.engine.store.rows import (
    DONE_STATES,
    FILE_COLUMNS,
    MAX_SEQ,
    OPERATION_COLUMNS,
    OUT_OF_ATTEMPTS,
    UNFINISHED_STATES,
)

_FENCE = "id = ? AND attempt = ? AND state = 'RUNNING'"
"""A worker's write matches only while its attempt holds the lease."""
_RELEASE_LEASE = "lease_owner = NULL, lease_expires = NULL"
_LIMITS_LOCK = 0x6C6F6C6D  # "lolm": taken by every claim of limited kinds
_CANDIDATES = 4
"""A limited claim reads this many pending rows per free slot, as some may be over a
limit of their key."""
_MAX_EXCLUDED = 100
"""The most keys without room a limited claim leaves out of its pick by name."""


def _in_claim_order(claimed: list[OperationRecord]) -> list[OperationRecord]:
    return sorted(claimed, key=lambda r: (-r.priority, r.turn, r.seq))


def _fetching(sql: str, args: Sequence[Any]) -> Body[list[Row]]:
    """The body of a read that is one statement."""
    return lambda s: s.fetch(sql, *args)


class SqlStore:
    """`Store` over any `Database`; a backend subclasses it only to build its database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._dialect = database.dialect
        # A backend that caches operations wants the whole row back from a fenced write
        # (the next read of it is then answered from memory); one that doesn't, only
        # what the worker needs, which spares decoding the row's JSON.
        self._caching = database.caches
        self._fenced_columns = OPERATION_COLUMNS if self._caching else "state, cancel_requested"
        # A create's turn (see `OperationRecord.turn`): one past the last unfinished turn
        # of its tenant, key and priority, and no earlier than its priority's earliest
        # pending turn, so a tenant arriving behind another's backlog is next, not last.
        # (Unfinished rather than pending: a running row was claimed from the front, so
        # its turn is seldom past the earliest pending one, and claims leave that index
        # alone.)
        self._turn = (
            f"{self._dialect.greatest}(coalesce((SELECT turn + 1 FROM operations"
            " WHERE end_time IS NULL AND tenant = ? AND concurrency_key = ? AND priority = ?"
            " ORDER BY turn DESC LIMIT 1), 0), coalesce((SELECT turn FROM operations"
            " WHERE state = 'PENDING' AND priority = ? ORDER BY turn LIMIT 1), 0))"
        )

    @property
    def max_staleness(self) -> float:
        return self.database.max_staleness

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    def _record(self, row: Sequence[Any]) -> OperationRecord:
        return rows.operation(row, self._dialect.load)

    # -- operations ---------------------------------------------------------

    async def create(self, new: NewOperation, now: float) -> tuple[OperationRecord, bool]:
        json = self._dialect.json

        async def body(s: Session) -> tuple[OperationRecord, bool]:
            row = await s.announced(
                Notice.WORK,
                "INSERT INTO operations (id, name, kind, tenant, request_id, request, state,"
                " metadata, max_attempts, create_time, update_time, webhook, priority,"
                f" not_before, concurrency_key, turn) VALUES (?, ?, ?, ?, ?, ?, 'PENDING',"
                f" ?, ?, ?, ?, ?::jsonb, ?, ?, ?, {self._turn}) ON CONFLICT DO NOTHING",
                "seq, turn",
                new.id, new.name, new.kind, new.tenant, new.request_id, json(new.request),
                json(new.metadata), new.max_attempts, now, now, json(new.webhook),
                new.priority, new.not_before, new.concurrency_key,
                new.tenant, new.concurrency_key, new.priority, new.priority,
            )  # fmt: skip
            if row is not None:
                return s.remember(new.stored(row[0], row[1], now)), True
            # The tenant used this request id before, or this is a retry whose first try
            # committed (the same operation id): either way, answer with what is stored.
            row = await s.fetchrow(
                f"SELECT {OPERATION_COLUMNS} FROM operations"
                " WHERE id = ? OR (tenant = ? AND request_id = ?)",
                new.id,
                new.tenant,
                new.request_id,
            )
            assert row is not None, "a conflicting row is there"
            record = self._record(row)
            if record.id != new.id:
                return record, False
            if (record.tenant, record.name, record.request_id) != (
                new.tenant,
                new.name,
                new.request_id,
            ):  # another operation's id, perhaps another tenant's: never answer with it
                raise ValueError(f"operation id {new.id!r} is taken")
            return record, True

        return await self.database.write(body)

    async def get(self, id: str) -> OperationRecord | None:
        """The hottest read (every poll): answered from the database's cache when it has one."""
        cached = self.database.cached(id)
        if cached is not None:
            return cached

        async def body(s: Session) -> OperationRecord | None:
            row = await s.fetchrow(f"SELECT {OPERATION_COLUMNS} FROM operations WHERE id = ?", id)
            return None if row is None else s.remember(self._record(row))

        return await self.database.read(body)

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
        where = ["tenant = ?", "seq < ?"]
        args: list[Any] = [tenant, MAX_SEQ if before_seq is None else before_seq]
        if name_prefix is not None:
            where.append("substr(name, 1, ?) = ?")
            args += [len(name_prefix), name_prefix]
        if done is not None:
            # Not "NOT IN" the done states: the same rows, in the form a partial index has.
            where.append(f"state IN {DONE_STATES if done else UNFINISHED_STATES}")
        if kinds is not None:
            condition, values = self._dialect.any_of("kind", kinds)
            where.append(condition)
            args += values
        sql = (
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?"
        )
        found = await self.database.read(lambda s: s.fetch(sql, *args, limit))
        return [self._record(r) for r in found]

    async def cancel(self, id: str, now: float, error: dict[str, Any]) -> OperationRecord | None:
        """Three steps, each atomic on its own: whatever a claim or a finish does between
        them, the operation ends up cancelled, flagged for its worker, or already done."""

        async def body(s: Session) -> OperationRecord | None:
            row = await s.announced(
                Notice.FINISHED,
                "UPDATE operations SET state = 'CANCELLED', cancel_requested = TRUE,"
                " error = ?::jsonb, end_time = ?, update_time = ?"
                " WHERE id = ? AND state = 'PENDING'",
                OPERATION_COLUMNS,
                self._dialect.json(error),
                now,
                now,
                id,
            )
            if row is None:
                row = await s.fetchrow(
                    "UPDATE operations SET cancel_requested = TRUE, update_time = ?"
                    f" WHERE id = ? AND state = 'RUNNING' RETURNING {OPERATION_COLUMNS}",
                    now,
                    id,
                )
            if row is None:
                row = await s.fetchrow(
                    f"SELECT {OPERATION_COLUMNS} FROM operations WHERE id = ?", id
                )
            return None if row is None else s.remember(self._record(row))

        return await self.database.write(body)

    async def delete(self, id: str) -> bool:
        """Told to other processes as a finish (the id alone: "look it up"), so their
        waits end and nobody answers with a finished row heard of before."""

        async def body(s: Session) -> bool:
            s.forget(id)
            return await s.announced(
                Notice.GONE, "DELETE FROM operations WHERE id = ?", "id", id
            ) is not None  # fmt: skip

        return await self.database.write(body)

    async def claim(
        self,
        kinds: Collection[str],
        owner: str,
        lease_seconds: float,
        limit: int,
        now: float,
        limits: Mapping[str, Limit] | None = None,
    ) -> list[OperationRecord]:
        if not kinds or limit <= 0:
            return []
        limited = {k: v for k, v in (limits or {}).items() if v and k in kinds}
        if limited:
            return await self._claim_limited(kinds, limited, owner, lease_seconds, limit, now)
        served, kind_args = self._dialect.any_of("kind", kinds)
        sql = self._claim_sql(
            f"{served} AND not_before <= ?", f"LIMIT ?{self._dialect.skip_locked}"
        )
        args = (*kind_args, now, limit, owner, now + lease_seconds, now, now)

        async def body(s: Session) -> list[OperationRecord]:
            return [s.remember(self._record(row)) for row in await s.fetch(sql, *args)]

        return _in_claim_order(await self.database.write(body, durable=False))

    def _claim_sql(self, where: str, pick: str) -> str:
        """Lease the pending rows `where` says, in claim order, as many as `pick` says.

        The picked rows are computed once (a subquery left inline may be rescanned and
        take more than its limit), skipping rows other claimers hold; the state is
        checked again in case one changed since it was picked."""
        return (
            f"WITH picked AS {self._dialect.materialized} (SELECT seq FROM operations"
            f" WHERE state = 'PENDING' AND {where} ORDER BY priority DESC, turn, seq {pick})"
            " UPDATE operations SET state = 'RUNNING', attempt = attempt + 1,"
            " lease_owner = ?, lease_expires = ?, start_time = coalesce(start_time, ?),"
            " update_time = ?"
            " WHERE seq IN (SELECT seq FROM picked) AND state = 'PENDING'"
            f" RETURNING {OPERATION_COLUMNS}"
        )

    async def _claim_limited(
        self,
        kinds: Collection[str],
        limited: Mapping[str, Limit],
        owner: str,
        lease_seconds: float,
        limit: int,
        now: float,
    ) -> list[OperationRecord]:
        """A claim within concurrency and rate limits, in one transaction that claims of
        limited kinds take in turn (`Dialect.lock`): each counts what is running and
        what the buckets hold after the last one committed, so no two take the same
        room. Kinds with no room are left out of the pick; keys with none are left out
        as far as one statement's parameters allow, and read past as they come beyond."""
        dialect = self._dialect
        counted = [k for k, v in limited.items() if v.counts_running]
        rated = [k for k, v in limited.items() if v.rated]

        async def body(s: Session) -> list[OperationRecord]:
            if dialect.lock:
                await s.execute(dialect.lock, _LIMITS_LOCK)
            room = Room(limited, now)
            # What runs and what the buckets hold, read in one statement: every round
            # trip while the lock is held is one that every other limited claim waits.
            reads, read_args = [], []
            if counted:
                of_kinds, args = dialect.any_of("kind", counted)
                reads.append(
                    "SELECT kind, tenant, concurrency_key, count(*), NULL, NULL, NULL"
                    f" FROM operations WHERE state = 'RUNNING' AND {of_kinds}"
                    " GROUP BY kind, tenant, concurrency_key"
                )
                read_args += args
            if rated:
                of_rated, rated_args = dialect.any_of("kind", rated)
                reads.append(
                    "SELECT kind, tenant, concurrency_key, NULL, per_key, tokens, updated"
                    f" FROM rate_buckets WHERE {of_rated}"
                )
                read_args += rated_args
            stale, any_stale = now - room.horizon(), False
            for kind, tenant, key, running, per_key, tokens, updated in await s.fetch(
                " UNION ALL ".join(reads), *read_args
            ):
                if running is not None:
                    room.running(kind, tenant, key, running)
                else:
                    room.bucket(kind, bool(per_key), tenant, key, tokens, updated)
                    any_stale = any_stale or updated < stale
            if any_stale:
                # Buckets untouched for long enough are full (as `Room.bucket` read
                # them): they are not kept.
                await s.execute(
                    f"DELETE FROM rate_buckets WHERE {of_rated} AND updated < ?",
                    *rated_args,
                    stale,
                )
            chosen: list[int] = []
            blocked: dict[Key, None] = {}  # keys met without room, their kind with some
            after: Sequence[Any] = ()  # the last row read: (priority, turn, seq)
            page = limit * _CANDIDATES
            # Pages of candidates in claim order, until the claim is full or nothing is
            # left: a page may hold only work over a limit (a kind that filled up in
            # this claim, keys beyond those named), and what comes after it must still
            # be reached. Each page leaves out the kinds and keys found full so far.
            while open_kinds := [k for k in kinds if room.open(k)]:
                served, args = dialect.any_of("kind", open_kinds)
                where, args = [served, "not_before <= ?"], [*args, now]
                excluded = list(dict.fromkeys([*blocked, *room.full_keys()]))[:_MAX_EXCLUDED]
                for kind, tenant, key in excluded:
                    where.append("NOT (kind = ? AND tenant = ? AND concurrency_key = ?)")
                    args += [kind, tenant, key]
                if after:
                    where.append(
                        "(priority < ? OR (priority = ? AND (turn > ? OR (turn = ? AND seq > ?))))"
                    )
                    args += [after[0], after[0], after[1], after[1], after[2]]
                candidates = await s.fetch(
                    "SELECT priority, turn, seq, kind, tenant, concurrency_key FROM operations"
                    f" WHERE state = 'PENDING' AND {' AND '.join(where)}"
                    f" ORDER BY priority DESC, turn, seq LIMIT ?{dialect.skip_locked}",
                    *args, page,
                )  # fmt: skip
                for _, _, seq, kind, tenant, key in candidates:
                    if room.take(kind, tenant, key):
                        chosen.append(seq)
                        if len(chosen) == limit:
                            break
                    elif room.open(kind):
                        blocked[kind, tenant, key] = None
                if len(chosen) == limit or len(candidates) < page:
                    break
                after = candidates[-1]
            if not chosen:
                return []
            of_seqs, seq_args = dialect.any_of("seq", chosen, "bigint")
            claimed = await s.fetch(
                self._claim_sql(of_seqs, ""), *seq_args, owner, now + lease_seconds, now, now
            )
            spent = room.spent([(r[3], r[4], r[20]) for r in claimed if r[3] in limited])
            if spent:
                await s.executemany(
                    "INSERT INTO rate_buckets (kind, per_key, tenant, concurrency_key, tokens,"
                    " updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, per_key, tenant,"
                    " concurrency_key) DO UPDATE SET tokens = excluded.tokens,"
                    " updated = excluded.updated",
                    spent,
                )
            return [s.remember(self._record(row)) for row in claimed]

        return _in_claim_order(await self.database.transaction(body, durable=False))

    async def waiting(
        self, record: OperationRecord, limit: Limit, now: float, cap: int
    ) -> tuple[str, int]:
        """Why a pending operation waits, and how many of its kind are claimed before it
        (counted to `cap`): `scheduled` (its time has not come), `concurrency_limited`
        or `rate_limited` (its kind or key is at `limit`, as of now), else `queued`."""
        ahead_sql = (
            "SELECT count(*) FROM (SELECT 1 FROM operations WHERE state = 'PENDING'"
            " AND kind = ? AND not_before <= ? AND (priority > ? OR (priority = ? AND"
            " (turn < ? OR (turn = ? AND seq < ?)))) LIMIT ?) AS ahead"
        )

        async def body(s: Session) -> tuple[str, int]:
            counted = await s.fetchrow(
                ahead_sql, record.kind, now, record.priority, record.priority,
                record.turn, record.turn, record.seq, cap,
            )  # fmt: skip
            ahead = int(counted[0]) if counted else 0
            if record.not_before > now:
                return "scheduled", ahead
            room = Room({record.kind: limit}, now)
            if limit.counts_running:
                for tenant, key, running in await s.fetch(
                    "SELECT tenant, concurrency_key, count(*) FROM operations"
                    " WHERE state = 'RUNNING' AND kind = ? GROUP BY tenant, concurrency_key",
                    record.kind,
                ):
                    room.running(record.kind, tenant, key, running)
            if limit.rated:
                for per_key, tenant, key, tokens, updated in await s.fetch(
                    "SELECT per_key, tenant, concurrency_key, tokens, updated FROM rate_buckets"
                    " WHERE kind = ? AND (per_key = ? OR (tenant = ? AND concurrency_key = ?))",
                    record.kind, False, record.tenant, record.concurrency_key,
                ):  # fmt: skip
                    room.bucket(record.kind, bool(per_key), tenant, key, tokens, updated)
            why = room.why_not(record.kind, record.tenant, record.concurrency_key)
            return why or "queued", ahead

        return await self.database.read(body)

    async def heartbeat(self, owner: str, lease_seconds: float, now: float) -> list[LeaseState]:
        """Only the lease moves, which no record shows: nothing cached changes."""
        held = await self.database.write(
            lambda s: s.fetch(
                "UPDATE operations SET lease_expires = ? WHERE lease_owner = ?"
                " AND state = 'RUNNING' RETURNING id, attempt, cancel_requested",
                now + lease_seconds,
                owner,
            ),
            durable=False,
        )
        return [LeaseState(r[0], r[1], bool(r[2])) for r in held]

    async def _fenced(
        self, notice: Notice | None, write: str, *args: Any
    ) -> tuple[State, bool] | None:
        """A fenced write of one operation: its new state and cancel flag, None when the
        attempt no longer holds the lease."""

        async def body(s: Session) -> tuple[State, bool] | None:
            row = await s.announced(notice, write, self._fenced_columns, *args)
            if row is None:
                return None
            if self._caching:
                record = s.remember(self._record(row))
                return record.state, record.cancel_requested
            return State(row[0]), bool(row[1])

        return await self.database.write(body)

    async def save_progress(
        self, id: str, attempt: int, metadata: dict[str, Any], now: float
    ) -> bool | None:
        changed = await self._fenced(
            Notice.PROGRESS if self.database.progress_wanted() else None,  # for watchers
            f"UPDATE operations SET metadata = ?::jsonb, update_time = ? WHERE {_FENCE}",
            self._dialect.json(metadata),
            now,
            id,
            attempt,
        )
        return None if changed is None else changed[1]  # cancel requested

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
        json = self._dialect.json
        changed = await self._fenced(
            Notice.OUTCOME,
            "UPDATE operations SET state = ?, response = ?::jsonb, error = ?::jsonb,"
            " metadata = coalesce(?::jsonb, metadata), end_time = ?, update_time = ?,"
            f" {_RELEASE_LEASE} WHERE {_FENCE}",
            state.value, json(response), json(error), json(metadata), now, now, id, attempt,
        )  # fmt: skip
        return changed is not None

    async def fail_attempt(
        self, id: str, attempt: int, now: float, not_before: float, final_error: dict[str, Any]
    ) -> State | None:
        changed = await self._fenced(
            Notice.OUTCOME,
            f"UPDATE operations SET"
            f" state = CASE WHEN {OUT_OF_ATTEMPTS} THEN 'FAILED' ELSE 'PENDING' END,"
            f" error = CASE WHEN {OUT_OF_ATTEMPTS} THEN ?::jsonb END,"
            f" end_time = CASE WHEN {OUT_OF_ATTEMPTS} THEN ?::float8 END,"
            f" {_RELEASE_LEASE}, not_before = ?, update_time = ? WHERE {_FENCE}",
            self._dialect.json(final_error), now, not_before, now, id, attempt,
        )  # fmt: skip
        return None if changed is None else changed[0]

    async def release(self, id: str, attempt: int, now: float) -> bool:
        changed = await self._fenced(
            Notice.OUTCOME,
            "UPDATE operations SET state = 'PENDING', releases = releases + 1,"
            f" {_RELEASE_LEASE}, update_time = ? WHERE {_FENCE}",
            now,
            id,
            attempt,
        )
        return changed is not None

    async def recover_expired(
        self,
        now: float,
        cancel_error: dict[str, Any],
        abandon_error: dict[str, Any],
        *,
        dead_owners: Collection[str] = (),
    ) -> list[tuple[str, State]]:
        """Leases that expired, or whose owner is known to have died (`dead_owners`)."""
        json = self._dialect.json
        lost = "lease_expires < ?"
        args: list[Any] = [json(cancel_error), json(abandon_error), now, now, now]
        if dead_owners:
            condition, owners = self._dialect.any_of("lease_owner", dead_owners)
            lost = f"({lost} OR {condition})"
            args += owners
        sql = (
            "UPDATE operations SET"
            " state = CASE WHEN cancel_requested THEN 'CANCELLED'"
            f" WHEN {OUT_OF_ATTEMPTS} THEN 'FAILED' ELSE 'PENDING' END,"
            " error = CASE WHEN cancel_requested THEN ?::jsonb"
            f" WHEN {OUT_OF_ATTEMPTS} THEN ?::jsonb END,"
            f" end_time = CASE WHEN cancel_requested OR {OUT_OF_ATTEMPTS} THEN ?::float8 END,"
            f" {_RELEASE_LEASE}, update_time = ?"
            f" WHERE state = 'RUNNING' AND {lost} RETURNING id, state, kind, start_time"
        )

        async def body(s: Session) -> list[Row]:
            found = await s.fetch(sql, *args)
            for id, state, *_ in found:
                s.forget(id)
                if State(state).done:
                    s.tell(Notice.GONE, id)  # the id alone: listeners look it up
            if any(not State(r[1]).done for r in found):
                s.tell(Notice.WORK)
            return found

        found = await self.database.write(body)
        metrics.recovered([(r[2], State(r[1]), r[3]) for r in found], now)
        return [(r[0], State(r[1])) for r in found]

    async def lease_owners(self) -> list[str]:
        """Who holds leases now (to find owners known dead)."""
        found = await self.database.read(
            lambda s: s.fetch(
                "SELECT DISTINCT lease_owner FROM operations"
                " WHERE state = 'RUNNING' AND lease_owner IS NOT NULL"
            )
        )
        return [r[0] for r in found]

    async def count_unfinished(self) -> dict[tuple[str, State], int]:
        """One grouped count over the rows the partial indexes on PENDING and RUNNING hold."""
        found = await self.database.read(
            _fetching(
                "SELECT kind, state, count(*) FROM operations"
                f" WHERE state IN {UNFINISHED_STATES} GROUP BY kind, state",
                (),
            )
        )
        return {(r[0], State(r[1])): int(r[2]) for r in found}

    async def tenant_usage(
        self, tenant: str, *, unfinished_limit: int, creates_limit: int, request_id: str | None
    ) -> TenantUsage:
        """Each count reads at most its limit of index entries: the unfinished ones from
        the partial index of the tenant's PENDING and RUNNING rows, the newest creates
        from (tenant, seq) newest first; the request id through its unique index."""

        async def body(s: Session) -> TenantUsage:
            unfinished = 0
            if unfinished_limit > 0:
                row = await s.fetchrow(
                    "SELECT count(*) FROM (SELECT 1 FROM operations"
                    f" WHERE tenant = ? AND state IN {UNFINISHED_STATES} LIMIT ?) AS unfinished",
                    tenant,
                    unfinished_limit,
                )
                unfinished = int(row[0]) if row is not None else 0
            times: list[float] = []
            if creates_limit > 0:
                found = await s.fetch(
                    "SELECT create_time FROM operations WHERE tenant = ? ORDER BY seq DESC LIMIT ?",
                    tenant,
                    creates_limit,
                )
                times = [float(r[0]) for r in found]
            stored = False
            if request_id is not None:
                stored = (
                    await s.fetchrow(
                        "SELECT 1 FROM operations WHERE tenant = ? AND request_id = ?",
                        tenant,
                        request_id,
                    )
                    is not None
                )
            return TenantUsage(unfinished, times, stored)

        return await self.database.read(body)

    async def purge_done(self, ended_before: float, batch: int = 1000) -> int:
        dialect = self._dialect
        sql = (
            f"WITH picked AS {dialect.materialized} (SELECT seq FROM operations"
            f" WHERE end_time < ? AND state IN {DONE_STATES} LIMIT ?{dialect.skip_locked})"
            " DELETE FROM operations WHERE seq IN (SELECT seq FROM picked)"
        )

        async def body(s: Session) -> int:
            s.forget(None)
            return await s.execute(sql, ended_before, batch)

        total = 0
        while True:
            count = await self.database.write(body)
            total += count
            if count < batch:
                return total

    async def done_among(self, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        step = self._dialect.max_list
        for start in range(0, len(ids), step):
            condition, args = self._dialect.any_of("id", ids[start : start + step])
            sql = f"SELECT id FROM operations WHERE {condition} AND state IN {DONE_STATES}"
            found += [r[0] for r in await self.database.read(_fetching(sql, args))]
        return found

    async def changed_since(
        self, since: float, limit: int, *, tenant: str | None = None
    ) -> list[OperationRecord]:
        # Three scans each of which a partial or plain index serves (a row that changed
        # is unfinished, or ended since); an OR of them would scan the whole table.
        of_tenant = "" if tenant is None else " AND tenant = ?"
        sql = " UNION ALL ".join(
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE {where}{of_tenant}"
            for where in (
                "state = 'PENDING' AND update_time >= ?",
                "state = 'RUNNING' AND update_time >= ?",
                "end_time >= ?",
            )
        )
        args = [since] * 3 if tenant is None else [since, tenant] * 3
        found = await self.database.read(
            lambda s: s.fetch(f"{sql} ORDER BY update_time LIMIT ?", *args, limit)
        )
        return [self._record(r) for r in found]

    def changes(self, *, work: bool = True, done: bool = True) -> AsyncIterator[Change]:
        return self.database.changes(work=work, done=done)

    # -- files ----------------------------------------------------------------

    async def create_file(self, file: FileRecord) -> FileRecord:
        """A retry (after a lost connection, say) may find the row its first try
        committed: the same blob key tells it from another upload's file of that id."""

        async def body(s: Session) -> FileRecord:
            row = await s.fetchrow(
                f"INSERT INTO files ({FILE_COLUMNS.removesuffix(', seq')})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (tenant, id) DO NOTHING RETURNING {FILE_COLUMNS}",
                file.id, file.tenant, file.display_name, file.mime_type, file.size_bytes,
                file.sha256, file.source, file.blob_key, file.create_time, file.expire_time,
            )  # fmt: skip
            if row is None:
                row = await s.fetchrow(
                    f"SELECT {FILE_COLUMNS} FROM files WHERE tenant = ? AND id = ?",
                    file.tenant,
                    file.id,
                )
                if row is None or row[7] != file.blob_key:
                    raise FileExists(file.id)
            return rows.file(row)

        return await self.database.write(body)

    async def get_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self.database.read(
            lambda s: s.fetchrow(
                f"SELECT {FILE_COLUMNS} FROM files WHERE tenant = ? AND id = ?", tenant, id
            )
        )
        return None if row is None else rows.file(row)

    async def list_files(
        self, tenant: str, *, before_seq: int | None, limit: int
    ) -> list[FileRecord]:
        found = await self.database.read(
            lambda s: s.fetch(
                f"SELECT {FILE_COLUMNS} FROM files WHERE tenant = ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                tenant,
                MAX_SEQ if before_seq is None else before_seq,
                limit,
            )
        )
        return [rows.file(r) for r in found]

    async def delete_file(self, id: str, tenant: str) -> FileRecord | None:
        row = await self.database.write(
            lambda s: s.fetchrow(
                f"DELETE FROM files WHERE tenant = ? AND id = ? RETURNING {FILE_COLUMNS}",
                tenant,
                id,
            )
        )
        return None if row is None else rows.file(row)

    async def purge_expired_files(self, now: float, batch: int = 1000) -> list[FileRecord]:
        dialect = self._dialect
        found = await self.database.write(
            lambda s: s.fetch(
                f"WITH picked AS {dialect.materialized} (SELECT seq FROM files"
                f" WHERE expire_time < ? LIMIT ?{dialect.skip_locked})"
                " DELETE FROM files WHERE seq IN (SELECT seq FROM picked)"
                f" RETURNING {FILE_COLUMNS}",
                now,
                batch,
            )
        )
        return [rows.file(r) for r in found]


def _time_calls() -> None:
    """Every public store call is timed into `longops_store_seconds{call}` (by method
    name, so a method added later is timed too): at the method, not per statement, so
    a call costs one observation however many statements it runs."""
    for name, method in list(vars(SqlStore).items()):
        if inspect.iscoroutinefunction(method) and not name.startswith("_"):
            setattr(SqlStore, name, metrics.timed(name)(method))


_time_calls()
