"""Flow control through a real server: priorities order the claims of waiting operations
(higher first, equal ones first in, first out), a delayed start stays PENDING until its
time and may be cancelled meanwhile, and hostile values are refused naming the field.

The server runs one worker slot, held by a first operation while the others are created,
so the order in which the rest start (the `test.record` journal) is the claim order.
`longops worker --kinds` runs as a process of its own on the server's database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from longops import Client
from longops.engine.worker import WorkerConfig
from tests.support.kinds import journal
from tests.support.servers import (
    Process,
    ThreadServer,
    run_longops,
    worker_args,
    worker_ready,
)
from tests.support.waiting import until_sync

START = "/v1beta/kinds/test.record:start"


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(worker_config=WorkerConfig(concurrency=1))


@pytest.fixture
def client(server: ThreadServer) -> Iterator[Client]:
    with Client("unused", base_url=server.url) as client:
        yield client


def _state(client: Client, name: str) -> str:
    metadata = client.operations.get(name).metadata or {}
    return str(metadata["state"])


def _started(path: Path) -> list[str]:
    return [id for event, id, _, _ in journal(path) if event == "start"]


def test_a_later_high_priority_operation_is_claimed_before_earlier_low_ones(
    client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    blocker = client.operations.start("test.record", {"journal": str(path), "seconds": 0.5})
    until_sync(lambda: _state(client, blocker.name) == "RUNNING", what="the blocker runs")
    quick = {"journal": str(path)}
    low = [client.operations.start("test.record", quick, priority=0) for _ in range(2)]
    middle = client.operations.start("test.record", quick)
    high = client.operations.start("test.record", quick, priority=1000)
    assert (low[0].metadata or {})["priority"] == 0
    assert (middle.metadata or {})["priority"] == 500
    assert (high.metadata or {})["priority"] == 1000
    for operation in [*low, middle, high]:
        assert client.operations.wait(operation, timeout=30).done
    ids = [op.name.rsplit("/", 1)[-1] for op in (blocker, high, middle, *low)]
    assert _started(path) == ids
    shown = client.operations.get(high.name).metadata or {}
    assert shown["priority"] == 1000 and "scheduleTime" not in shown


def test_a_delayed_start_waits_pending_until_its_time(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "journal"
    later = client.operations.start("test.record", {"journal": str(path)}, schedule_delay=1.5)
    now = client.operations.start("test.record", {"journal": str(path)})
    metadata = later.metadata or {}
    assert metadata["state"] == "PENDING" and "scheduleTime" in metadata
    scheduled = datetime.fromisoformat(metadata["scheduleTime"])
    assert client.operations.wait(now, timeout=30).done
    # The one created after it ran first; the delayed one was still waiting then.
    assert _state(client, later.name) == "PENDING"
    done = client.operations.wait(later, timeout=30)
    assert done.done and done.error is None
    assert datetime.fromisoformat((done.metadata or {})["startTime"]) >= scheduled
    assert "scheduleTime" not in (done.metadata or {})
    assert _started(path) == [op.name.rsplit("/", 1)[-1] for op in (now, later)]


def test_a_schedule_time_in_the_past_starts_at_once(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "journal"
    when = datetime.now(UTC) - timedelta(days=400)
    operation = client.operations.start("test.record", {"journal": str(path)}, schedule_time=when)
    assert "scheduleTime" not in (operation.metadata or {})
    assert client.operations.wait(operation, timeout=30).error is None


def test_a_scheduled_operation_may_be_cancelled_while_it_waits(
    client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    when = datetime.now(UTC) + timedelta(hours=1)
    operation = client.operations.start("test.record", {"journal": str(path)}, schedule_time=when)
    shown = datetime.fromisoformat((operation.metadata or {})["scheduleTime"])
    assert abs((shown - when).total_seconds()) < 0.001
    client.operations.cancel(operation)
    cancelled = client.operations.get(operation.name)
    assert cancelled.done and (cancelled.metadata or {})["state"] == "CANCELLED"
    assert _started(path) == []


FAR = (datetime.now(UTC) + timedelta(days=31)).isoformat()
HOSTILE: list[tuple[dict[str, Any], str | None]] = [
    ({"priority": -1}, "priority"),
    ({"priority": 1001}, "priority"),
    ({"priority": 10**18}, "priority"),
    ({"priority": 1e300}, "priority"),
    ({"priority": "HUGE"}, None),
    ({"priority": "5"}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": 2.5}, "priority"),
    ({"priority": None, "scheduleTime": "tomorrow"}, "scheduleTime"),
    ({"scheduleTime": "2030-01-01T00:00:00Z\x00"}, "scheduleTime"),
    ({"scheduleTime": "2030-13-01T00:00:00Z"}, "scheduleTime"),
    ({"scheduleTime": "2030-01-01T00:00:00"}, "scheduleTime"),
    ({"scheduleTime": FAR}, "scheduleTime"),
    ({"scheduleTime": 1893456000}, "scheduleTime"),
    ({"scheduleDelay": "1" * 10000 + "s"}, "scheduleDelay"),
    ({"scheduleDelay": "HUGE"}, None),
    ({"scheduleDelay": 10**18}, "scheduleDelay"),
    ({"scheduleDelay": 1e300}, "scheduleDelay"),
    ({"scheduleDelay": "-5s"}, "scheduleDelay"),
    ({"scheduleDelay": "2592001s"}, "scheduleDelay"),
    ({"scheduleDelay": "30s\x00"}, "scheduleDelay"),
    ({"scheduleDelay": True}, "scheduleDelay"),
    ({"scheduleDelay": "1s", "scheduleTime": "2030-01-01T00:00:00Z"}, "scheduleDelay"),
    ({"schedule_delay": "1s", "scheduleDelay": "1s"}, "schedule_delay"),
]


"""Bodies and the field their 400 names; None where the JSON parser refuses a number of
10,000 digits (any field's) before a field is read."""


@pytest.mark.parametrize(("fields", "field"), HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_flow_values_are_refused_naming_the_field(
    server: ThreadServer, tmp_path: Path, fields: dict[str, Any], field: str | None
) -> None:
    body = {"journal": str(tmp_path / "journal"), **fields}
    # A 10,000-digit number, which Python's json would not write.
    text = json.dumps(body).replace('"HUGE"', "9" * 10000)
    answer = httpx.post(
        f"{server.url}{START}",
        content=text,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    if field is not None:
        assert error["details"][0]["fieldViolations"][0]["field"] == field
    listed = httpx.get(f"{server.url}/v1beta/operations", timeout=30).json()
    assert listed.get("operations", []) == []


def test_a_worker_with_kinds_serves_only_those(
    make_server: Callable[..., ThreadServer],
    spawn: Callable[..., Process],
    database_url: str,
    tmp_path: Path,
) -> None:
    api = make_server(workers=0)
    with Client("unused", base_url=api.url) as client:
        other = client.operations.start("test.flaky", {"failures": 0})
        served = client.operations.start("test.record", {"journal": str(tmp_path / "j")})
        worker = spawn(*worker_args(database_url, "--kinds", "test.record,test.record"))
        until_sync(worker_ready(worker), what="the worker runs")
        assert "kinds: test.record\n" in worker.log.read_text()
        assert client.operations.wait(served, timeout=30).error is None
        # Created first, so a worker serving test.flaky would have claimed it first.
        assert _state(client, other.name) == "PENDING"
        assert worker.terminate() == 0


def test_unknown_kinds_are_a_usage_error(database_url: str) -> None:
    for command in ("worker", "serve"):
        answer = run_longops(command, "--database", database_url, "--kinds", "nope,longops.sleep")
        assert answer.returncode == 2, answer.stderr
        errors = [line for line in answer.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "'nope' is not registered" in errors[0], answer.stderr
