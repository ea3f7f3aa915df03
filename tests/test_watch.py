"""`:watch` streams (server-sent events) through a real server and real clients: an
operation's progress and finish, resumption with Last-Event-ID, collection streams with
a filter, tenants, workers in other processes (SQLite and PostgreSQL), bad input and
shutdown."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from longops.errors import (
    ClientError,
    RequestTimeoutError,
    ServerUnreachableError,
    TransportError,
)
from longops.server import ServerConfig
from tests.support.cutting import CuttingProxy
from tests.support.postgres import fresh_schema
from tests.support.servers import (
    Process,
    ThreadServer,
    free_port,
    run_longops,
    worker_args,
    worker_ready,
)
from tests.support.stalling import StallingServer
from tests.support.twin import Twin
from tests.support.waiting import until_sync

KEYS = {"k-alice": "alice", "k-bob": "bob"}
ALICE = {"x-goog-api-key": "k-alice"}
BOB = {"x-goog-api-key": "k-bob"}
TIMEOUT = httpx.Timeout(30.0)
ONCE = {"attempts": 1}


@dataclass
class Event:
    event: str
    id: str
    data: dict[str, object]

    @property
    def percent(self) -> object:
        metadata = self.data["metadata"]
        assert isinstance(metadata, dict)
        return metadata.get("progressPercent")


class Reader:
    """An SSE parser over an httpx streaming response, as a browser's EventSource
    reads one: fields per line, an event per blank line, comments kept apart."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.iter_lines()

    def __iter__(self) -> Iterator[Event]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if fields:
                    yield Event(fields["event"], fields["id"], json.loads(fields["data"]))
                fields = {}
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")

    def next(self) -> Event:
        return next(iter(self))


@contextmanager
def watch(url: str, path: str, **kwargs: object) -> Iterator[Reader]:
    with httpx.stream("GET", f"{url}/v1beta/{path}", timeout=TIMEOUT, **kwargs) as response:  # type: ignore[arg-type]
        yield Reader(response)


def start(
    url: str, kind: str, body: dict[str, object], headers: dict[str, str] | None = None
) -> str:
    answer = httpx.post(f"{url}/v1beta/kinds/{kind}:start", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    name: str = answer.json()["name"]
    return name


@pytest.fixture
def keyed(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(config=ServerConfig(api_keys=KEYS, watch_keepalive_seconds=0.2))


def test_a_watch_streams_increasing_progress_then_done_and_closes(keyed: ThreadServer) -> None:
    name = start(keyed.url, "longops.sleep", {"seconds": 2, "steps": 4}, ALICE)
    with watch(keyed.url, f"{name}:watch", headers=ALICE) as reader:
        assert reader.response.status_code == 200
        assert reader.response.headers["content-type"].startswith("text/event-stream")
        events = list(reader)  # the server ends the stream after the done event
    assert all(e.event == "operation" and e.data["name"] == name for e in events)
    assert events[-1].data["done"] is True and "response" in events[-1].data
    assert not any(e.data.get("done") for e in events[:-1])
    percents = [e.percent for e in events]
    assert percents == sorted(percents)  # type: ignore[type-var]
    assert set(percents) >= {25, 50, 75, 100}, percents
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # The last event is exactly what GET answers.
    got = httpx.get(f"{keyed.url}/v1beta/{name}", headers=ALICE)
    assert events[-1].data == got.json()
    assert reader.comments, "keep-alive comments while the operation sleeps"
    hub = keyed.engine.hub
    until_sync(lambda: not hub.watching_any_changes(), what="the stream to stop listening")


def test_a_finished_operations_watch_sends_its_state_and_ends(keyed: ThreadServer) -> None:
    name = start(keyed.url, "longops.sleep", {}, ALICE)
    httpx.post(f"{keyed.url}/v1beta/{name}:wait", json={"timeout": "10s"}, headers=ALICE)
    with watch(keyed.url, f"{name}:watch", headers=ALICE) as reader:
        (event,) = list(reader)
    assert event.data["done"] is True
    # Resuming at that very position: nothing new, and it is done, so the stream ends.
    with watch(keyed.url, f"{name}:watch", headers={**ALICE, "Last-Event-ID": event.id}) as again:
        assert list(again) == []


def test_last_event_id_resumes_without_missing_a_change(keyed: ThreadServer) -> None:
    name = start(keyed.url, "longops.sleep", {"seconds": 2, "steps": 4}, ALICE)
    with watch(keyed.url, f"{name}:watch", headers=ALICE) as reader:
        first = reader.next()
    # Disconnected; the operation moves on meanwhile.
    until_sync(
        lambda: (
            httpx.get(f"{keyed.url}/v1beta/{name}", headers=ALICE).json()["metadata"]["updateTime"]
            != first.data["metadata"]["updateTime"]
        ),  # type: ignore[index]
        what="a change while disconnected",
    )
    headers = {**ALICE, "Last-Event-ID": first.id}
    with watch(keyed.url, f"{name}:watch", headers=headers) as reader:
        events = list(reader)
    assert events[0].id != first.id  # the state it missed, at once
    assert events[-1].data["done"] is True
    assert int(events[0].id) > int(first.id)


def test_a_collection_stream_shows_only_matching_operations_of_the_tenant(
    keyed: ThreadServer,
) -> None:
    with watch(keyed.url, 'operations:watch?filter=kind="test.record"', headers=ALICE) as reader:
        journal = str(Path(keyed.database_url.removeprefix("sqlite:///")).parent / "j")
        other_kind = start(keyed.url, "longops.sleep", {}, ALICE)
        bobs = start(keyed.url, "test.record", {"journal": journal}, BOB)
        mine = start(keyed.url, "test.record", {"journal": journal}, ALICE)
        seen: list[Event] = []
        for event in reader:
            seen.append(event)
            if event.data["name"] == mine and event.data["done"]:
                break
    names = {e.data["name"] for e in seen}
    assert names == {mine}, (names, other_kind, bobs)
    states = [e.data["metadata"]["state"] for e in seen]  # type: ignore[index]
    assert states[0] == "PENDING" and states[-1] == "SUCCEEDED"
    ids = [int(e.id) for e in seen]
    assert ids == sorted(ids)

    # A reconnect from the first event's position gets what changed since: the finish.
    headers = {**ALICE, "Last-Event-ID": seen[0].id}
    with watch(keyed.url, 'operations:watch?filter=kind="test.record"', headers=headers) as r:
        caught = r.next()
    assert caught.data["name"] == mine and caught.data["done"] is True


def test_another_tenants_operation_is_not_found(keyed: ThreadServer) -> None:
    name = start(keyed.url, "longops.sleep", {}, ALICE)
    answer = httpx.get(f"{keyed.url}/v1beta/{name}:watch", headers=BOB, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"
    assert httpx.get(f"{keyed.url}/v1beta/{name}:watch", timeout=10).status_code in (401, 403)
    assert not keyed.engine.hub.watching_any_changes()  # a refused watch leaves no listener


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("operations:watch?filter=state%3DRUNNING", "filter"),
        ("operations:watch?filter=done%3Dmaybe", "filter"),
        ("operations/a%00b:watch", None),
        ("operations/" + "a" * 5000 + ":watch", "name"),
        ("operations/NOT_AN_ID:watch", "name"),
        ("..%2Fx/operations:watch", "parent"),
    ],
)
def test_bad_watches_are_4xx_envelopes(keyed: ThreadServer, path: str, field: str | None) -> None:
    answer = httpx.get(f"{keyed.url}/v1beta/{path}", headers=ALICE, timeout=10)
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT", error
    if field is not None:
        assert field in answer.text


def test_a_bad_last_event_id_is_a_4xx(keyed: ThreadServer) -> None:
    name = start(keyed.url, "longops.sleep", {}, ALICE)
    for bad in ("x\x01", "9" * 5000, "-1"):
        answer = httpx.get(
            f"{keyed.url}/v1beta/{name}:watch",
            headers={**ALICE, "Last-Event-ID": bad},
            timeout=10,
        )
        assert answer.status_code == 400, answer.text


def test_server_shutdown_ends_streams_promptly(make_server: Callable[..., ThreadServer]) -> None:
    server = make_server(workers=0)  # the operation stays pending: the stream stays open
    name = start(server.url, "longops.sleep", {})
    ended = threading.Event()
    seen: list[Event] = []

    def read() -> None:
        with watch(server.url, f"{name}:watch") as reader:
            seen.extend(reader)
        ended.set()

    reading = threading.Thread(target=read)
    reading.start()
    until_sync(lambda: seen, what="the first event")
    server.stop()
    reading.join(timeout=30)
    assert ended.is_set()  # the stream ended cleanly, not cut off by the grace's end


def _progress_from_another_process(
    url: str, database_url: str, spawn: Callable[..., Process]
) -> None:
    worker = spawn(*worker_args(database_url))
    until_sync(worker_ready(worker), what="the worker to start")
    name = start(url, "longops.sleep", {"seconds": 2, "steps": 4})
    with watch(url, f"{name}:watch") as reader:
        events = list(reader)
    percents = [e.percent for e in events]
    assert events[-1].data["done"] is True
    assert [p for p in percents if p not in (0, 100)], percents  # progress, not just the end


def test_a_worker_in_another_process_is_heard_on_sqlite(
    make_server: Callable[..., ThreadServer], database_url: str, spawn: Callable[..., Process]
) -> None:
    server = make_server(workers=0)
    _progress_from_another_process(server.url, database_url, spawn)


def test_a_worker_in_another_process_is_heard_on_postgres(
    make_server: Callable[..., ThreadServer], spawn: Callable[..., Process]
) -> None:
    with fresh_schema() as url:
        server = make_server(workers=0, database_url=url)
        _progress_from_another_process(server.url, url, spawn)
        server.stop()


# -- the SDK: client.operations.watch and client.aio.operations.watch ---------------------


async def test_the_sdk_yields_each_state_until_done(
    keyed: ThreadServer, twin: Callable[..., Twin]
) -> None:
    api = twin(base_url=keyed.url, api_key="k-alice")
    started = await api.operations.start("longops.sleep", {"seconds": 1.5, "steps": 3})
    states = await api.collect(await api.operations.watch(started))
    assert all(type(s) is type(started) and s.name == started.name for s in states)
    assert states[-1].done and not any(s.done for s in states[:-1])
    percents = [(s.metadata or {})["progressPercent"] for s in states]
    assert percents == sorted(percents) and {33, 67, 100} <= set(percents), percents
    assert states[-1] == await api.operations.get(started.name)


async def test_the_sdk_resumes_a_dropped_stream_with_last_event_id(
    keyed: ThreadServer, twin: Callable[..., Twin]
) -> None:
    proxy = CuttingProxy(keyed.port, cuts=2)
    try:
        api = twin(base_url=proxy.url, api_key="k-alice")
        name = start(keyed.url, "longops.sleep", {"seconds": 1, "steps": 2}, ALICE)
        states = await api.collect(await api.operations.watch(name))
    finally:
        proxy.close()
    assert states[-1].done
    watches = [r for r in proxy.requests if b":watch" in r]
    assert len(watches) == 3, watches  # cut twice, then read to the end
    assert b"last-event-id" not in watches[0].lower()
    assert all(b"last-event-id: " in r.lower() for r in watches[1:])


async def test_the_sdk_raises_its_own_errors(
    keyed: ThreadServer, twin: Callable[..., Twin], stalling: StallingServer
) -> None:
    alice = twin(base_url=keyed.url, api_key="k-alice")
    bob = twin(base_url=keyed.url, api_key="k-bob")
    started = await alice.operations.start("longops.sleep", {})
    with pytest.raises(ClientError) as raised:
        await bob.collect(await bob.operations.watch(started))
    assert raised.value.code == 404
    closed = twin(base_url=f"http://127.0.0.1:{free_port()}", http_options={"retry": ONCE})
    with pytest.raises(ServerUnreachableError):
        await closed.collect(await closed.operations.watch(started))
    stalled = twin(base_url=stalling.url, http_options={"timeout": 0.5, "retry": ONCE})
    with pytest.raises(RequestTimeoutError):
        await stalled.collect(await stalled.operations.watch(started))


# -- the CLI: `longops ops wait` follows the stream ----------------------------------------


def test_ops_wait_shows_progress_and_exits_0(keyed: ThreadServer) -> None:
    """Its HTTP timeout (1 s here) bounds each read, not the whole wait: the operation
    takes longer, and the server's keep-alives (every 0.2 s here) keep the stream alive."""
    name = start(keyed.url, "longops.sleep", {"seconds": 4, "steps": 8}, ALICE)
    env = {"LONGOPS_BASE_URL": keyed.url, "LONGOPS_API_KEY": "k-alice"}
    waited = run_longops("ops", "wait", name, env={**env, "LONGOPS_HTTP_TIMEOUT": "1"})
    assert waited.returncode == 0, waited.stderr
    lines = waited.stderr.splitlines()  # off a terminal: one line per change
    assert f"{name} SUCCEEDED 100%" in lines
    running = [
        int(line.rsplit(" ", 1)[1].rstrip("%"))
        for line in lines
        if line.startswith(f"{name} RUNNING ")
    ]
    steps = [p for p in running if 0 < p < 100]
    assert len(steps) >= 2 and steps == sorted(steps), lines  # it starts in ~2 s here
    assert "SUCCEEDED" in waited.stdout

    gone = run_longops("ops", "wait", "operations/nosuchid", env=env)
    assert gone.returncode == 1
    assert gone.stderr.startswith("Error: 404 NOT_FOUND") and len(gone.stderr.splitlines()) == 1


async def test_the_sdk_gives_up_on_a_stream_that_keeps_dropping(
    keyed: ThreadServer, twin: Callable[..., Twin]
) -> None:
    proxy = CuttingProxy(keyed.port, cuts=100)
    try:
        api = twin(
            base_url=proxy.url, api_key="k-alice", http_options={"retry": {"initial_delay": 0.01}}
        )
        name = start(keyed.url, "longops.sleep", {"seconds": 30}, ALICE)
        with pytest.raises(TransportError) as raised:
            await api.collect(await api.operations.watch(name))
    finally:
        proxy.close()
    assert "6 times in a row" in str(raised.value) and raised.value.url.endswith(f"{name}:watch")
    assert not isinstance(raised.value, ServerUnreachableError)
    await twin(base_url=keyed.url, api_key="k-alice").operations.cancel(name)
