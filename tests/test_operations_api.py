"""The operations API end to end: a real server, real SQLite, real HTTP.

SDK-driven tests take the `api` twin, so each runs once through the sync client and once
through the async one; wire-format checks use raw httpx.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from longops import Client
from longops.engine.worker import WorkerConfig
from longops.errors import ClientError
from longops.types import GenerateVideosOperation, Operation, OperationError
from tests.support.servers import ThreadServer
from tests.support.twin import Twin

SLEEP = "longops.sleep"
# Long enough never to finish during a test; 300 steps so a cancel lands between two of them.
LONG = {"seconds": 30, "steps": 300}
# Waits are generous: they end as soon as the condition holds, and only a broken server
# ever runs into them.
PATIENCE = 30.0
CAMEL_KEY = re.compile(r"^(@type|[a-z][A-Za-z0-9]*)$")


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    # Overrides conftest's: a short shutdown grace, so teardown never sits on a long sleep.
    return make_server(worker_config=WorkerConfig(concurrency=8, shutdown_grace=1.0))


@pytest.fixture
def idle_server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    """A server without workers (operations stay PENDING), on a database of its own.

    Its own file matters: a second server on `server`'s database would have its
    operations claimed by `server`'s worker.
    """
    return make_server(workers=0, database_url=f"sqlite:///{tmp_path / 'idle.db'}")


@pytest.fixture
async def idle(api: Twin, idle_server: ThreadServer) -> AsyncIterator[Twin]:
    """A twin for `idle_server`, in the same mode (sync or async) as `api`."""
    twin = Twin(Client(base_url=idle_server.url), api.mode)
    yield twin
    await twin.aclose()


# -- helpers -------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout: float = PATIENCE
) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def running(twin: Twin, op: Operation) -> Operation:
    """The operation once a worker runs it and has reported progress."""

    async def check() -> Operation | None:
        current = await twin.operations.get(op)
        meta = current.metadata or {}
        return current if meta["state"] == "RUNNING" and "progressPercent" in meta else None

    result: Operation = await eventually(check, f"{op.name} to run")
    return result


async def next_page(twin: Twin, pager: Any) -> list[Operation]:
    """Fetch the pager's next page, with the sync pager off the event loop."""
    if twin.mode == "sync":
        page: list[Operation] = await asyncio.to_thread(pager.next_page)
    else:
        page = await pager.next_page()
    return page


async def list_names(twin: Twin, **kwargs: Any) -> list[str]:
    pager = await twin.operations.list(**kwargs)
    return [op.name for op in await twin.collect(pager)]


async def seed(server: ThreadServer, parent: str, request: dict[str, Any] | None = None) -> str:
    """Create an operation under `parent` through the server's own engine, on its own loop.

    No route creates operations under a parent yet (kinds are started as `operations/{id}`),
    but names like `models/{m}/operations/{id}` are what the Gemini and Vertex flows poll.
    """
    assert server.loop is not None
    future = asyncio.run_coroutine_threadsafe(
        server.engine.create(SLEEP, request or {}, parent=parent), server.loop
    )
    record = await asyncio.wrap_future(future)
    return record.name


def short_name(name: str) -> str:
    return "operations/" + name.rpartition("/")[2]


def timestamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def assert_camel_case(value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert CAMEL_KEY.match(key), f"{path}.{key} is not camelCase"
            assert_camel_case(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_camel_case(item, f"{path}[{i}]")


# -- get -----------------------------------------------------------------------------------


async def test_get_by_full_and_short_name_and_by_operation(api: Twin) -> None:
    started = await api.operations.start(SLEEP, {"result": {"answer": 42}})
    assert type(started) is Operation
    assert re.fullmatch(r"operations/[a-z0-9]+", started.name)
    done = await api.operations.wait(started, timeout=PATIENCE)
    assert done.done

    by_name = await api.operations.get(started.name)
    by_short = await api.operations.get(short_name(started.name))
    by_object = await api.operations.get(started)
    for op in (by_name, by_short, by_object):
        assert op.name == started.name
        assert op.done is True
        assert op.response["result"] == {"answer": 42}
    assert type(by_object) is Operation
    # The object passed in is not modified; a refreshed one of the same class comes back.
    assert started.done is False

    as_video = await api.operations.get(GenerateVideosOperation(name=started.name))
    assert type(as_video) is GenerateVideosOperation
    assert as_video.done is True


async def test_get_named_operation_by_full_and_short_name(api: Twin, server: ThreadServer) -> None:
    name = await seed(server, "models/veo-test")
    assert name.startswith("models/veo-test/operations/")

    full = await api.operations.get(name)
    short = await api.operations.get(short_name(name))
    assert full.name == short.name == name
    assert type(full) is GenerateVideosOperation  # the name says it is a model operation

    # The same id under another parent is not this operation.
    with pytest.raises(ClientError) as info:
        await api.operations.get(f"models/other/operations/{name.rpartition('/')[2]}")
    assert info.value.code == 404


async def test_metadata_through_the_lifecycle(api: Twin, idle: Twin) -> None:
    pending = await idle.operations.start(SLEEP, {"seconds": 1})
    meta = pending.metadata
    assert meta is not None
    assert meta["@type"] == "type.googleapis.com/longops.v1.SleepMetadata"
    assert meta["state"] == "PENDING"
    assert meta["attempt"] == 0
    assert timestamp(meta["createTime"]) <= timestamp(meta["updateTime"])
    assert "startTime" not in meta and "endTime" not in meta
    assert not pending.done

    op = await running(api, await api.operations.start(SLEEP, LONG))
    meta = op.metadata
    assert meta is not None
    assert meta["state"] == "RUNNING"
    assert meta["attempt"] == 1
    assert 0 <= meta["progressPercent"] <= 100
    assert timestamp(meta["createTime"]) <= timestamp(meta["startTime"])
    assert "endTime" not in meta
    await api.operations.cancel(op)
    await api.operations.wait(op, timeout=PATIENCE)

    done = await api.operations.wait(
        await api.operations.start(SLEEP, {"seconds": 0.05, "steps": 2}), timeout=PATIENCE
    )
    meta = done.metadata
    assert meta is not None
    assert done.done
    assert meta["@type"] == "type.googleapis.com/longops.v1.SleepMetadata"
    assert meta["state"] == "SUCCEEDED"
    assert meta["attempt"] == 1
    assert meta["progressPercent"] == 100
    created, started = timestamp(meta["createTime"]), timestamp(meta["startTime"])
    ended, updated = timestamp(meta["endTime"]), timestamp(meta["updateTime"])
    assert created <= started <= ended <= updated


async def test_done_operation_has_response_and_no_error(api: Twin, server: ThreadServer) -> None:
    op = await api.operations.start(SLEEP, {"seconds": 0.01, "result": {"k": "v"}})
    done = await api.operations.wait(op, timeout=PATIENCE)
    assert done.done is True
    assert done.error is None
    assert done.response == {
        "@type": "type.googleapis.com/longops.v1.SleepResponse",
        "sleptSeconds": 0.01,
        "result": {"k": "v"},
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        wire = (await http.get(f"/v1beta/{op.name}")).json()
    assert "response" in wire and "error" not in wire


async def test_failed_operation_has_error_and_no_response(api: Twin, server: ThreadServer) -> None:
    op = await api.operations.start(SLEEP, {"failWith": {"code": 9, "message": "not today"}})
    done = await api.operations.wait(op, timeout=PATIENCE)
    assert done.done is True
    assert done.response is None
    assert isinstance(done.error, OperationError)
    assert (done.error.code, done.error.message) == (9, "not today")
    assert done.metadata is not None and done.metadata["state"] == "FAILED"
    async with httpx.AsyncClient(base_url=server.url) as http:
        wire = (await http.get(f"/v1beta/{op.name}")).json()
    assert wire["error"] == {"code": 9, "message": "not today"}
    assert "response" not in wire


async def test_missing_operation_is_not_found(api: Twin) -> None:
    missing = "operations/" + "a" * 20
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "get": lambda: api.operations.get(missing),
        "wait": lambda: api.operations.wait(missing, timeout=1),
        "cancel": lambda: api.operations.cancel(missing),
        "delete": lambda: api.operations.delete(missing),
    }
    for call, send in calls.items():
        with pytest.raises(ClientError) as info:
            await send()
        assert info.value.code == 404, call
        assert info.value.status == "NOT_FOUND", call
        assert missing in (info.value.message or ""), call


# -- wait ----------------------------------------------------------------------------------


async def test_wait_returns_once_the_operation_is_done(api: Twin) -> None:
    op = await api.operations.start(SLEEP, {"seconds": 0.3, "steps": 3})
    done = await api.operations.wait(op, timeout=PATIENCE)
    assert done.done is True
    assert done.response is not None and done.response["sleptSeconds"] == 0.3


async def test_wait_timeout_returns_the_operation_not_done(api: Twin) -> None:
    op = await api.operations.start(SLEEP, LONG)
    try:
        waited = await api.operations.wait(op, timeout=0.5)
        assert waited.name == op.name
        assert not waited.done
        assert waited.error is None and waited.response is None
    finally:
        await api.operations.cancel(op)


async def test_wait_wakes_when_a_pending_operation_is_cancelled(idle: Twin) -> None:
    op = await idle.operations.start(SLEEP)
    waiter = asyncio.create_task(idle.operations.wait(op, timeout=PATIENCE))
    await asyncio.sleep(0.2)  # let the wait reach the server; correctness does not depend on it
    await idle.operations.cancel(op)
    done = await asyncio.wait_for(waiter, PATIENCE)
    assert done.done is True
    assert done.error is not None and done.error.code == 1


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_pending_operation(idle: Twin) -> None:
    op = await idle.operations.start(SLEEP)
    assert not op.done
    await idle.operations.cancel(op)
    cancelled = await idle.operations.get(op)
    assert cancelled.done is True
    assert cancelled.error is not None and cancelled.error.code == 1
    assert cancelled.response is None
    assert cancelled.metadata is not None
    assert cancelled.metadata["state"] == "CANCELLED"
    assert cancelled.metadata["attempt"] == 0  # it never ran
    assert "endTime" in cancelled.metadata


async def test_cancel_running_operation(api: Twin) -> None:
    op = await running(api, await api.operations.start(SLEEP, LONG))
    await api.operations.cancel(op)
    cancelled = await api.operations.wait(op, timeout=PATIENCE)
    assert cancelled.done is True
    assert cancelled.error is not None and cancelled.error.code == 1
    assert cancelled.response is None
    assert cancelled.metadata is not None and cancelled.metadata["state"] == "CANCELLED"


async def test_cancelling_a_done_operation_changes_nothing(api: Twin, server: ThreadServer) -> None:
    succeeded = await api.operations.wait(await api.operations.start(SLEEP), timeout=PATIENCE)
    failed = await api.operations.wait(
        await api.operations.start(SLEEP, {"failWith": {"code": 5, "message": "gone"}}),
        timeout=PATIENCE,
    )
    cancelled = await api.operations.start(SLEEP, LONG)
    await api.operations.cancel(cancelled)
    await api.operations.wait(cancelled, timeout=PATIENCE)

    async with httpx.AsyncClient(base_url=server.url) as http:
        for op in (succeeded, failed, cancelled):
            before = (await http.get(f"/v1beta/{op.name}")).json()
            assert before["done"] is True
            await api.operations.cancel(op)
            await api.operations.cancel(op)
            after = (await http.get(f"/v1beta/{op.name}")).json()
            assert after == before


# -- delete --------------------------------------------------------------------------------


async def test_delete_then_get_is_not_found(api: Twin, idle: Twin) -> None:
    done = await api.operations.wait(await api.operations.start(SLEEP), timeout=PATIENCE)
    active = await running(api, await api.operations.start(SLEEP, LONG))
    pending = await idle.operations.start(SLEEP)

    for twin, op in ((api, done), (api, active), (idle, pending)):
        await twin.operations.delete(op)
        with pytest.raises(ClientError) as info:
            await twin.operations.get(op)
        assert info.value.code == 404
        assert op.name not in await list_names(twin)
        with pytest.raises(ClientError) as info:
            await twin.operations.delete(op)
        assert info.value.code == 404


async def test_delete_wakes_a_waiter_with_not_found(api: Twin) -> None:
    op = await api.operations.start(SLEEP, LONG)
    waiter = asyncio.create_task(api.operations.wait(op, timeout=PATIENCE))
    await asyncio.sleep(0.2)  # let the wait reach the server; correctness does not depend on it
    await api.operations.delete(op)
    with pytest.raises(ClientError) as info:
        await asyncio.wait_for(waiter, PATIENCE)
    assert info.value.code == 404


# -- create --------------------------------------------------------------------------------


async def test_create_with_the_same_request_id_is_idempotent(idle: Twin) -> None:
    first = await idle.operations.start(SLEEP, {"seconds": 1}, request_id="same")
    second = await idle.operations.start(SLEEP, {"seconds": 1}, request_id="same")
    assert second.name == first.name
    assert await list_names(idle) == [first.name]

    other = await idle.operations.start(SLEEP, {"seconds": 1}, request_id="other")
    assert other.name != first.name
    assert await list_names(idle) == [other.name, first.name]

    # Concurrent creates with one request id still make one operation.
    racing = await asyncio.gather(
        *(idle.operations.start(SLEEP, request_id="racing") for _ in range(10))
    )
    assert len({op.name for op in racing}) == 1
    assert await list_names(idle) == [racing[0].name, other.name, first.name]


# -- list ----------------------------------------------------------------------------------


async def test_list_pages_return_every_operation_once_newest_first(idle: Twin) -> None:
    names = [(await idle.operations.start(SLEEP)).name for _ in range(7)]

    pager = await idle.operations.list(page_size=3)
    pages = [[op.name for op in pager.page]]
    while pager.next_page_token is not None:
        pages.append([op.name for op in await next_page(idle, pager)])
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [name for page in pages for name in page] == names[::-1]

    assert await list_names(idle, page_size=2) == names[::-1]
    assert await list_names(idle) == names[::-1]


async def test_list_filters_by_done_and_kind(idle: Twin, tmp_path: Path) -> None:
    sleeps = [(await idle.operations.start(SLEEP)).name for _ in range(4)]
    record = {"journal": str(tmp_path / "journal")}
    records = [(await idle.operations.start("test.record", record)).name for _ in range(2)]
    for name in (sleeps[0], sleeps[2], records[1]):
        await idle.operations.cancel(name)
    everything = (sleeps + records)[::-1]

    assert await list_names(idle) == everything
    assert await list_names(idle, done=True) == [records[1], sleeps[2], sleeps[0]]
    assert await list_names(idle, done=False) == [records[0], sleeps[3], sleeps[1]]
    assert await list_names(idle, kind=SLEEP) == sleeps[::-1]
    assert await list_names(idle, kind="test.record") == records[::-1]
    assert await list_names(idle, kind=SLEEP, done=False) == [sleeps[3], sleeps[1]]
    assert await list_names(idle, kind=SLEEP, done=True, page_size=1) == [sleeps[2], sleeps[0]]
    assert await list_names(idle, kind="no.such.kind") == []
    assert await list_names(idle, filter='kind="test.record" AND done=true') == [records[1]]
    # Terms are ANDed: two different kinds match nothing, the same one twice is that kind.
    assert await list_names(idle, filter=f'kind="{SLEEP}" AND kind="test.record"') == []
    assert (
        await list_names(idle, filter='kind="test.record" AND kind="test.record"')
        == (records[::-1])
    )


async def test_list_under_a_parent(api: Twin, server: ThreadServer) -> None:
    plain = (await api.operations.start(SLEEP)).name
    async with httpx.AsyncClient(base_url=server.url) as http:
        everything = await http.get("/v1beta/operations")
        under_model = await http.get("/v1beta/models/x/operations")
    assert everything.status_code == under_model.status_code == 200
    assert [op["name"] for op in everything.json()["operations"]] == [plain]
    assert under_model.json().get("operations", []) == []
    assert "nextPageToken" not in under_model.json()

    in_x = await seed(server, "models/x")
    in_y = await seed(server, "models/y")
    assert await list_names(api, parent="models/x") == [in_x]
    assert await list_names(api, parent="models/y") == [in_y]
    assert await list_names(api, parent="models/z") == []
    assert await list_names(api) == [in_y, in_x, plain]


async def test_pagination_is_stable_while_operations_are_created(
    idle: Twin, idle_server: ThreadServer
) -> None:
    existing = [(await idle.operations.start(SLEEP)).name for _ in range(23)]
    created_during: list[str] = []
    stop = asyncio.Event()
    progressed = asyncio.Event()

    async def keep_creating() -> None:
        async with httpx.AsyncClient(base_url=idle_server.url) as http:
            while not stop.is_set():
                response = await http.post(f"/v1beta/kinds/{SLEEP}:start")
                assert response.status_code == 200
                created_during.append(response.json()["name"])
                progressed.set()

    creator = asyncio.create_task(keep_creating())
    try:
        pager = await idle.operations.list(page_size=5)
        seen = [op.name for op in pager.page]
        pages = 1
        while pager.next_page_token is not None:
            # At least one create lands between any two pages.
            progressed.clear()
            await asyncio.wait_for(progressed.wait(), PATIENCE)
            seen += [op.name for op in await next_page(idle, pager)]
            pages += 1
    finally:
        stop.set()
        await creator

    assert pages >= 5
    assert len(created_during) >= pages - 1
    assert len(seen) == len(set(seen)), "an operation was listed twice"
    assert set(existing) <= set(seen), "an operation that existed was skipped"
    assert set(seen) <= set(existing) | set(created_during)
    assert [name for name in seen if name in set(existing)] == existing[::-1]


# -- the raw wire ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1beta1", "v1alpha"])
async def test_routes_answer_under_every_api_version(server: ThreadServer, version: str) -> None:
    async with httpx.AsyncClient(base_url=f"{server.url}/{version}") as http:
        started = await http.post(f"/kinds/{SLEEP}:start", json={"seconds": 0.01})
        assert started.status_code == 200
        name = started.json()["name"]

        waited = await http.post(f"/{name}:wait", json={"timeout": f"{PATIENCE}s"})
        assert waited.status_code == 200 and waited.json()["done"] is True
        got = await http.get(f"/{name}")
        assert got.status_code == 200 and got.json()["name"] == name
        listed = await http.get("/operations")
        assert listed.status_code == 200
        assert [op["name"] for op in listed.json()["operations"]] == [name]
        cancelled = await http.post(f"/{name}:cancel", json={})
        assert (cancelled.status_code, cancelled.json()) == (200, {})
        fetched = await http.post(
            "/publishers/google/models/veo:fetchPredictOperation", json={"operationName": name}
        )
        assert fetched.status_code == 200 and fetched.json()["name"] == name
        deleted = await http.delete(f"/{name}")
        assert (deleted.status_code, deleted.json()) == (200, {})
        assert (await http.get(f"/{name}")).status_code == 404


async def test_fetch_predict_operation(server: ThreadServer) -> None:
    async with httpx.AsyncClient(base_url=f"{server.url}/v1beta1") as http:
        name = (await http.post(f"/kinds/{SLEEP}:start")).json()["name"]
        model = "projects/p/locations/us-central1/publishers/google/models/veo-3.0"

        # The generic form: any `operations/{id}` name, whatever the resource.
        for resource in (model, "publishers/google/models/veo-3.0", "models/anything"):
            fetched = await http.post(
                f"/{resource}:fetchPredictOperation", json={"operationName": name}
            )
            assert fetched.status_code == 200
            assert fetched.json()["name"] == name

        unknown = await http.post(
            f"/{model}:fetchPredictOperation", json={"operationName": "operations/" + "b" * 20}
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["status"] == "NOT_FOUND"

        # A Vertex model operation, polled as the official SDK polls it.
        vertex = await seed(server, model)
        fetched = await http.post(f"/{model}:fetchPredictOperation", json={"operationName": vertex})
        assert fetched.status_code == 200 and fetched.json()["name"] == vertex
        # ... but not through another model's resource.
        elsewhere = await http.post(
            "/projects/p/locations/us-central1/publishers/google/models/other"
            ":fetchPredictOperation",
            json={"operationName": vertex},
        )
        assert elsewhere.status_code == 404


async def test_every_success_is_http_200_in_camel_case(server: ThreadServer) -> None:
    async with httpx.AsyncClient(base_url=f"{server.url}/v1beta") as http:
        answers: list[httpx.Response] = []

        async def call(method: str, path: str, **kwargs: Any) -> Any:
            response = await http.request(method, path, **kwargs)
            assert response.status_code == 200, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            answers.append(response)
            return response.json()

        body = {"seconds": 0.01, "steps": 2, "result": {"someValue": [1, {"innerKey": True}]}}
        name = (await call("POST", f"/kinds/{SLEEP}:start", json=body))["name"]
        failed = (
            await call(
                "POST", f"/kinds/{SLEEP}:start", json={"failWith": {"code": 3, "message": "m"}}
            )
        )["name"]
        await call("POST", f"/{name}:wait", json={"timeout": "30s"})
        await call("POST", f"/{failed}:wait", params={"timeout": "30s"})
        await call("GET", f"/{name}")
        await call("GET", f"/{failed}")
        await call("GET", "/operations", params={"pageSize": 1})
        await call(
            "POST",
            "/models/m:fetchPredictOperation",
            json={"operationName": name},
        )
        assert await call("POST", f"/{name}:cancel", json={}) == {}
        assert await call("POST", f"/{failed}:cancel") == {}  # an empty body is `{}`
        assert await call("DELETE", f"/{name}") == {}
        listed = await call("GET", "/operations")
        assert [op["name"] for op in listed["operations"]] == [failed]

    for response in answers:
        assert_camel_case(response.json())
    done = answers[2].json()
    assert done["response"]["sleptSeconds"] == 0.01
    assert {"createTime", "updateTime", "startTime", "endTime", "progressPercent"} <= set(
        done["metadata"]
    )


async def test_requests_accept_snake_and_camel_case(server: ThreadServer) -> None:
    async with httpx.AsyncClient(base_url=f"{server.url}/v1beta") as http:

        async def start(body: dict[str, Any], **params: str) -> str:
            response = await http.post(f"/kinds/{SLEEP}:start", json=body, params=params)
            assert response.status_code == 200, response.text
            name: str = response.json()["name"]
            return name

        async def wait(name: str) -> dict[str, Any]:
            response = await http.post(f"/{name}:wait", json={"timeout": "30s"})
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        snake = await wait(await start({"fail_with": {"code": 7, "message": "snake"}}))
        camel = await wait(await start({"failWith": {"code": 8, "message": "camel"}}))
        assert snake["error"] == {"code": 7, "message": "snake"}
        assert camel["error"] == {"code": 8, "message": "camel"}

        first = await start({}, request_id="r-1")
        assert await start({}, requestId="r-1") == first
        assert await start({}, request_id="r-1") == first

        snake_wait = await http.post(f"/{first}:wait", json={"timeout": "30s"})
        query_wait = await http.post(f"/{first}:wait", params={"timeout": "30s"})
        assert snake_wait.status_code == query_wait.status_code == 200

        for size_key, token_key in (("pageSize", "pageToken"), ("page_size", "page_token")):
            names: list[str] = []
            page = (await http.get("/operations", params={size_key: 2})).json()
            while True:
                assert len(page["operations"]) <= 2
                names += [op["name"] for op in page["operations"]]
                if "nextPageToken" not in page:
                    break
                params = {size_key: 2, token_key: page["nextPageToken"]}
                page = (await http.get("/operations", params=params)).json()
            assert len(names) == len(set(names)) == 3


async def test_ids_are_unguessable(idle_server: ThreadServer) -> None:
    async with httpx.AsyncClient(base_url=f"{idle_server.url}/v1beta") as http:
        ids = []
        for _ in range(200):
            response = await http.post(f"/kinds/{SLEEP}:start")
            assert response.status_code == 200
            name = response.json()["name"]
            assert name.startswith("operations/")
            ids.append(name.removeprefix("operations/"))
    assert len(set(ids)) == 200
    for id in ids:
        assert re.fullmatch(r"[a-z0-9]{16,}", id), id


async def test_healthz(server: ThreadServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
