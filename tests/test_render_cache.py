"""The render cache behind GET on an operation: it hits on every backend while an
operation is unchanged, and never serves a changed one stale."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from longops.engine import Engine, OperationRecord, Registry, State
from longops.engine.records import NewOperation
from longops.engine.store import open_store
from longops.kinds.sleep import sleep
from longops.server.render import RenderCache, render_operation
from tests.support.postgres import database

SLEEP = "longops.sleep"


def registry() -> Registry:
    kinds = Registry()
    kinds.add(sleep)
    return kinds


def fresh(record: OperationRecord) -> bytes:
    """What the cache must answer: the record rendered now."""
    return orjson.dumps(render_operation(record, registry().get(record.kind)))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(url: str) -> AsyncIterator[Engine]:
    async with Engine(open_store(url), registry()) as engine:
        yield engine


async def test_an_unchanged_operation_is_rendered_once(engine: Engine) -> None:
    """Two reads of an unchanged operation: the second answer is the first one's bytes
    (a render would make new ones), on PostgreSQL too, whose every read decodes a new
    record object."""
    created = await engine.create(SLEEP, {"seconds": 60})
    cache = RenderCache(engine.registry)
    first, second = await engine.get(created.id, ""), await engine.get(created.id, "")
    assert first is not None and second is not None
    body = cache.body(first)
    assert cache.body(second) is body
    assert body == fresh(second)


async def test_an_operation_changed_in_the_store_is_rendered_again(engine: Engine) -> None:
    created = await engine.create(SLEEP, {"seconds": 60})
    cache = RenderCache(engine.registry)
    before = await engine.get(created.id, "")
    assert before is not None
    shown = cache.body(before)
    await engine.cancel(created.id, "")
    after = await engine.get(created.id, "")
    assert after is not None and after.state is State.CANCELLED
    assert cache.body(after) == fresh(after) != shown


# A value unlike the current one, for each type a record's field holds; fields that are
# None get one by name (a new such field fails here until it is given one).
_INSTEAD_OF_NONE: dict[str, Any] = {
    "request_id": "another",
    "response": {"changed": True},
    "error": {"code": 13, "message": "changed"},
    "start_time": 1_700_000_001.5,
    "end_time": 1_700_000_002.5,
}


def changed(name: str, value: Any) -> Any:
    if value is None:
        return _INSTEAD_OF_NONE[name]
    if isinstance(value, State):
        return State.RUNNING if value is not State.RUNNING else State.SUCCEEDED
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        return {**value, "changed": True}
    raise AssertionError(f"no changed value for {name} = {value!r}")


def records() -> list[OperationRecord]:
    """An operation in each state a render shows differently."""
    now = time.time()
    pending = NewOperation(
        id="op1", name="operations/op1", kind=SLEEP, request={"seconds": 60}
    ).stored(1, 0, now)
    running = dataclasses.replace(
        pending, state=State.RUNNING, attempt=1, start_time=now, metadata={"progressPercent": 40}
    )
    return [
        pending,
        running,
        dataclasses.replace(
            running, state=State.SUCCEEDED, response={"sleptSeconds": 60.0}, end_time=now + 60
        ),
        dataclasses.replace(
            running, state=State.FAILED, error={"code": 9, "message": "no"}, end_time=now + 1
        ),
    ]


@pytest.mark.parametrize("record", records(), ids=lambda r: r.state.value)
@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(OperationRecord)])
def test_a_change_to_any_field_is_never_served_stale(record: OperationRecord, field: str) -> None:
    """Each field changed alone, its `update_time` kept (two writes within one clock
    tick): whatever the render shows of it is shown."""
    cache = RenderCache(registry())
    cache.body(record)
    variant = dataclasses.replace(record, **{field: changed(field, getattr(record, field))})
    assert cache.body(variant) == fresh(variant)
    assert cache.body(record) == fresh(record)
