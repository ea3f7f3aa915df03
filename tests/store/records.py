"""What the store tests write: operations, files, errors, and running operations."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from longops.engine import NewOperation, OperationRecord
from longops.engine.records import FileRecord
from longops.engine.store import Store

CANCELLED = {"code": 1, "message": "cancelled"}
ABANDONED = {"code": 10, "message": "abandoned"}
FINAL = {"code": 13, "message": "internal"}


def operation(
    kind: str = "k",
    tenant: str = "",
    request_id: str | None = None,
    *,
    name: str | None = None,
    max_attempts: int = 3,
    request: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> NewOperation:
    """A new operation with an id of its own."""
    id = uuid.uuid4().hex
    return NewOperation(
        id=id,
        name=name or f"operations/{id}",
        kind=kind,
        request={"x": 1} if request is None else request,
        tenant=tenant,
        request_id=request_id,
        max_attempts=max_attempts,
        metadata=metadata or {},
    )


async def listed(
    store: Store, tenant: str = "", *, limit: int = 100, **filters: Any
) -> list[OperationRecord]:
    """`list_operations` with every filter off but those given."""
    given = {"name_prefix": None, "done": None, "kinds": None, "before_seq": None, **filters}
    return await store.list_operations(tenant, limit=limit, **given)


async def running(
    store: Store,
    *,
    owner: str = "w",
    lease: float = 30.0,
    now: float = 2.0,
    max_attempts: int = 3,
) -> OperationRecord:
    """A new operation claimed by `owner` at `now` (attempt 1); of a kind of its own, so
    that no other operation of the test is claimed instead."""
    new = operation(kind=f"k-{uuid.uuid4().hex}", max_attempts=max_attempts)
    await store.create(new, 1.0)
    [claimed] = await store.claim([new.kind], owner, lease, 1, now)
    return claimed


async def settled(store: Store, id: str) -> OperationRecord:
    """The row as committed, once `store` has had time to see other connections' writes."""
    await asyncio.sleep(store.max_staleness)
    record = await store.get(id)
    assert record is not None
    return record


def file(
    id: str, tenant: str, blob_key: str, *, size: int = 3, expire_time: float = 1e12
) -> FileRecord:
    return FileRecord(id, tenant, None, "text/plain", size, "00" * 32, "UPLOADED", blob_key,
                      1.0, expire_time)  # fmt: skip
