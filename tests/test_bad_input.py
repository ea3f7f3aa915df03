"""Bad input over raw HTTP: the right 4xx, in Google's envelope, and nothing changed.

The default server here has no workers, so its operations never move by themselves and
"nothing changed" can be checked by comparing the whole listing before and after.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from longops.engine.worker import WorkerConfig
from longops.server import ServerConfig
from tests.support.servers import ThreadServer

SLEEP = "longops.sleep"
PATIENCE = 30.0
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
LEAKS = ("Traceback", "secret internal detail", 'File "', "RuntimeError")


pytestmark = pytest.mark.usefixtures("quiet_server")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """One server without workers for the module: nothing here may change it anyway, and each
    test checks that on the operations it can see."""
    path = tmp_path_factory.mktemp("bad-input") / "longops.db"
    server = ThreadServer(database_url=f"sqlite:///{path}", workers=0).start()
    yield server
    server.stop()


@pytest.fixture
def http(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/v1beta", timeout=PATIENCE) as client:
        yield client


@pytest.fixture
def op(http: httpx.Client) -> str:
    """One pending operation, so that there is something bad input could damage."""
    response = http.post(f"/kinds/{SLEEP}:start", json={"seconds": 1})
    assert response.status_code == 200
    name: str = response.json()["name"]
    return name


def assert_error(response: httpx.Response, code: int, status: str | None = None) -> dict[str, Any]:
    """`response` is Google's error envelope with HTTP `code`, and leaks nothing internal."""
    for leak in LEAKS:
        assert leak not in response.text, response.text
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "status"} <= set(error) <= {"code", "message", "status", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["status"], str) and error["status"].isupper()
    if status is not None:
        assert error["status"] == status
    return error


def field_violations(error: dict[str, Any]) -> list[str]:
    return [
        violation["field"]
        for detail in error.get("details", [])
        if detail.get("@type") == BAD_REQUEST
        for violation in detail["fieldViolations"]
    ]


def snapshot(http: httpx.Client, **headers: str) -> list[dict[str, Any]]:
    """Every operation the caller can see, exactly as served."""
    response = http.get("/operations", params={"pageSize": 1000}, headers=headers)
    assert response.status_code == 200, response.text
    operations: list[dict[str, Any]] = response.json().get("operations", [])
    return operations


def page_token(position: int, query: str) -> str:
    """A token as the server writes one: its format is documented in server/requests.py."""
    digest = hashlib.blake2s(query.encode(), digest_size=6).hexdigest()
    raw = orjson.dumps({"p": position, "q": digest})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- names and routes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "operations/BAD!",
        "operations/",
        "operations/ABCDEF",
        "operations/abcDef",
        "operations/abc_def",
        "operations/-abc",
        "operations/" + "a" * 65,
        "BAD!/operations/abc",
    ],
)
def test_malformed_operation_names(http: httpx.Client, op: str, name: str) -> None:
    before = snapshot(http)
    # Polled through its own resource: through another one it is simply not found.
    resource = name.rpartition("/operations/")[0] or "models/m"
    attempts = [
        http.get(f"/{name}"),
        http.delete(f"/{name}"),
        http.post(f"/{name}:cancel", json={}),
        http.post(f"/{name}:wait", json={"timeout": "0s"}),
        http.post(f"/{resource}:fetchPredictOperation", json={"operationName": name}),
    ]
    for response in attempts:
        error = assert_error(response, 400, "INVALID_ARGUMENT")
        assert field_violations(error) == ["name"]
    assert snapshot(http) == before


def test_malformed_parent(http: httpx.Client) -> None:
    assert_error(http.get("/BAD!/operations"), 400, "INVALID_ARGUMENT")
    assert_error(http.get("/models//operations"), 400, "INVALID_ARGUMENT")


def test_unknown_operations_are_not_found(http: httpx.Client, op: str) -> None:
    before = snapshot(http)
    unknown = "operations/" + "z" * 20
    same_id_other_parent = "models/other/" + op
    for name in (unknown, same_id_other_parent):
        for response in (
            http.get(f"/{name}"),
            http.delete(f"/{name}"),
            http.post(f"/{name}:cancel", json={}),
            http.post(f"/{name}:wait", json={"timeout": "0s"}),
            http.post("/models/other:fetchPredictOperation", json={"operationName": name}),
        ):
            error = assert_error(response, 404, "NOT_FOUND")
            assert name in error["message"]
    assert snapshot(http) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/operations"),
        ("GET", "/v1beta2/operations"),
        ("GET", "/nothing"),
        ("GET", "/v1beta/nothing/at/all"),
        ("POST", "/nothing"),
        ("POST", "/v2/kinds/longops.sleep:start"),
        ("DELETE", "/v1beta/nothing/longops.sleep"),
    ],
)
def test_unknown_route(server: ThreadServer, op: str, method: str, path: str) -> None:
    with httpx.Client(base_url=server.url) as raw:
        before = raw.get("/v1beta/operations").json()
        assert_error(raw.request(method, path), 404, "NOT_FOUND")
        assert raw.get("/v1beta/operations").json() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1beta/{op}"),
        ("PATCH", "/v1beta/{op}"),
        ("PUT", "/v1beta/operations"),
        ("POST", "/healthz"),
        ("DELETE", "/healthz"),
        ("GET", "/v1beta/kinds/longops.sleep:start"),
        ("DELETE", "/v1beta/kinds/longops.sleep"),  # GET lists the kind
    ],
)
def test_wrong_method(server: ThreadServer, op: str, method: str, path: str) -> None:
    with httpx.Client(base_url=server.url) as raw:
        before = raw.get("/v1beta/operations").json()
        assert_error(raw.request(method, path.format(op=op), json={}), 405)
        assert raw.get("/v1beta/operations").json() == before


# -- listing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "e30",  # {} without fields
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"p": "1", "q": "x"}').decode(),
        page_token(-1, "\x00None\x00"),
        page_token(5, "other tenant\x00None\x00"),
    ],
)
def test_bad_page_tokens(http: httpx.Client, token: str) -> None:
    error = assert_error(http.get("/operations", params={"pageToken": token}), 400)
    assert error["status"] == "INVALID_ARGUMENT"
    assert field_violations(error) == ["pageToken"]


def test_page_token_from_another_query_is_rejected(http: httpx.Client) -> None:
    for _ in range(3):
        assert http.post(f"/kinds/{SLEEP}:start").status_code == 200
    first = http.get("/operations", params={"pageSize": 1, "filter": "done=false"}).json()
    token = first["nextPageToken"]
    # The token continues its own query ...
    same = http.get(
        "/operations", params={"pageSize": 1, "filter": "done=false", "pageToken": token}
    )
    assert same.status_code == 200
    # ... and no other: another filter, no filter, another parent.
    for params in (
        {"filter": "done=true"},
        {"filter": 'kind="longops.sleep"'},
        {},
    ):
        response = http.get("/operations", params={"pageSize": 1, "pageToken": token, **params})
        assert_error(response, 400, "INVALID_ARGUMENT")
    response = http.get("/models/x/operations", params={"pageSize": 1, "pageToken": token})
    assert_error(response, 400, "INVALID_ARGUMENT")


def test_page_token_with_out_of_range_position_is_rejected(http: httpx.Client) -> None:
    """A token past SQLite's 64-bit integers is bad input, not an internal error.

    The token's digest is unkeyed, so anyone can write a token for any position.
    """
    for position in (2**63, 2**64 - 1):
        response = http.get(
            "/operations", params={"pageToken": page_token(position, "\x00None\x00")}
        )
        assert_error(response, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "size", ["-1", "abc", "1.5", "1e3", " 5", "0x10", "²"], ids=lambda s: repr(s)
)
def test_bad_page_size(http: httpx.Client, size: str) -> None:
    for key in ("pageSize", "page_size"):
        error = assert_error(http.get("/operations", params={key: size}), 400, "INVALID_ARGUMENT")
        assert field_violations(error) == ["pageSize"]


@pytest.mark.parametrize(
    "text",
    [
        "state=RUNNING",
        "done=maybe",
        "done",
        "kind",
        "done=true OR done=false",
        "name:operations/abc",
        "done=true AND",
        "NOT done=true",
    ],
)
def test_bad_filter_terms(http: httpx.Client, text: str) -> None:
    error = assert_error(http.get("/operations", params={"filter": text}), 400, "INVALID_ARGUMENT")
    assert field_violations(error) == ["filter"]


# -- bodies -----------------------------------------------------------------------------


def body_routes(op: str) -> list[str]:
    """Every route that reads a JSON body."""
    return [
        f"/kinds/{SLEEP}:start",
        f"/{op}:cancel",
        f"/{op}:wait",
        "/models/m:fetchPredictOperation",
    ]


@pytest.mark.parametrize(
    "content",
    [b'{"seconds":', b"{'seconds': 1}", b"not json", b'{"a": 1}}', b"\xff\xfe{}", b"[" * 5000],
    ids=["truncated", "single-quotes", "text", "trailing", "not-utf8", "too-deep"],
)
def test_invalid_json_body(http: httpx.Client, op: str, content: bytes) -> None:
    before = snapshot(http)
    for path in body_routes(op):
        response = http.post(path, content=content, headers={"content-type": "application/json"})
        assert_error(response, 400, "INVALID_ARGUMENT")
    assert snapshot(http) == before


@pytest.mark.parametrize("content", [b"[]", b'"text"', b"1", b"null", b"true", b"[{}]"])
def test_json_that_is_not_an_object(http: httpx.Client, op: str, content: bytes) -> None:
    before = snapshot(http)
    for path in body_routes(op):
        response = http.post(path, content=content, headers={"content-type": "application/json"})
        assert_error(response, 400, "INVALID_ARGUMENT")
    assert snapshot(http) == before


def test_oversized_bodies(http: httpx.Client, op: str) -> None:
    before = snapshot(http)
    payload = orjson.dumps({"result": {"blob": "x" * (1 << 20)}})
    assert len(payload) > 1 << 20

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for start in range(0, len(payload), 64 * 1024):
            yield payload[start : start + 64 * 1024]

    for path in body_routes(op):
        assert_error(http.post(path, content=payload), 413)
        assert_error(http.post(path, content=chunked()), 413)
    assert snapshot(http) == before

    # Just under the limit is fine.
    fits = orjson.dumps({"result": {"blob": "x" * ((1 << 20) - 100)}})
    assert len(fits) <= 1 << 20
    created = http.post(f"/kinds/{SLEEP}:start", content=fits)
    assert created.status_code == 200
    assert http.delete(f"/{created.json()['name']}").status_code == 200


def test_unknown_kind(http: httpx.Client, op: str) -> None:
    before = snapshot(http)
    for kind in ("no.such.kind", "longops.Sleep", "longops.sleep.extra"):
        error = assert_error(http.post(f"/kinds/{kind}:start", json={}), 404, "NOT_FOUND")
        assert kind in error["message"]
    assert snapshot(http) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seconds": -1}, "seconds"),
        ({"seconds": "soon"}, "seconds"),
        ({"seconds": 10**9}, "seconds"),
        ({"steps": 0}, "steps"),
        ({"failWith": {"code": 99, "message": "m"}}, "failWith.code"),
        ({"fail_with": {"code": 3, "message": ""}}, "failWith.message"),
        ({"failWith": "boom"}, "failWith"),
        ({"result": [1, 2]}, "result"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_kind_request(
    http: httpx.Client, op: str, body: dict[str, Any], field: str
) -> None:
    before = snapshot(http)
    error = assert_error(http.post(f"/kinds/{SLEEP}:start", json=body), 400, "INVALID_ARGUMENT")
    # The field is named as the caller spelled it (`fail_with` or `failWith`).
    spelled = [f.replace("_", "").lower() for f in field_violations(error)]
    assert field.lower() in spelled, error
    assert field.lower() in error["message"].replace("_", "").lower()
    assert snapshot(http) == before


@pytest.mark.parametrize(
    "blob_key", ["files/someone-elses", "../../etc/passwd", "search-uploads/x"]
)
def test_imports_name_no_blob_but_their_own_upload(
    http: httpx.Client, op: str, blob_key: str
) -> None:
    """`blobKey` is how the upload route hands its bytes to an import, which reads and
    then deletes them: a client that names any other blob gets a 400, and nothing runs."""
    store = http.post("/fileSearchStores", json={"displayName": "s"}).json()["name"]
    before = snapshot(http)
    for path, body in [
        (f"/{store}:importFile", {"blobKey": blob_key}),
        ("/kinds/upload_to_file_search_store:start", {"store": store, "blobKey": blob_key}),
    ]:
        error = assert_error(http.post(path, json=body), 400, "INVALID_ARGUMENT")
        assert "blobKey" in field_violations(error), error
    assert snapshot(http) == before


@pytest.mark.parametrize(
    "request_id", ["", "a" * 129, "has space", "tab\there", "ünïcödé", "new\nline"], ids=repr
)
def test_bad_request_id(http: httpx.Client, op: str, request_id: str) -> None:
    before = snapshot(http)
    for key in ("requestId", "request_id"):
        response = http.post(f"/kinds/{SLEEP}:start", params={key: request_id}, json={})
        error = assert_error(response, 400, "INVALID_ARGUMENT")
        assert field_violations(error) == ["requestId"]
    assert snapshot(http) == before


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({"timeout": "soon"}, None),
        ({"timeout": -1}, None),
        ({"timeout": "-1s"}, None),
        ({"timeout": True}, None),
        ({"timeout": "1e3"}, None),
        ({"timeout": {"seconds": 1}}, None),
        ({"timeout": [1]}, None),
        ({}, "xyz"),
        ({}, "-2s"),
    ],
)
def test_bad_wait_timeout(
    http: httpx.Client, op: str, body: dict[str, Any], query: str | None
) -> None:
    before = snapshot(http)
    params = {} if query is None else {"timeout": query}
    error = assert_error(http.post(f"/{op}:wait", json=body, params=params), 400)
    assert error["status"] == "INVALID_ARGUMENT"
    assert field_violations(error) == ["timeout"]
    assert snapshot(http) == before


def test_fetch_predict_operation_needs_an_operation_name(http: httpx.Client, op: str) -> None:
    for body in ({}, {"operationName": ""}, {"operationName": 5}, {"name": op}):
        response = http.post("/models/m:fetchPredictOperation", json=body)
        error = assert_error(response, 400, "INVALID_ARGUMENT")
        assert field_violations(error) == ["operationName"]


# -- API keys ---------------------------------------------------------------------------


@pytest.fixture
def keyed(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    config = ServerConfig(api_keys={"k1": "alice", "k2": "bob"})
    return make_server(config=config, workers=0, database_url=f"sqlite:///{tmp_path / 'keyed.db'}")


@pytest.fixture
def keyed_http(keyed: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{keyed.url}/v1beta", timeout=PATIENCE) as client:
        yield client


ALICE = {"x-goog-api-key": "k1"}
BOB = {"x-goog-api-key": "k2"}


def test_missing_api_key_is_permission_denied(
    keyed: ThreadServer, keyed_http: httpx.Client
) -> None:
    created = keyed_http.post(f"/kinds/{SLEEP}:start", headers=ALICE)
    name = created.json()["name"]
    before = snapshot(keyed_http, **ALICE)
    for response in (
        keyed_http.get("/operations"),
        keyed_http.get(f"/{name}"),
        keyed_http.post(f"/kinds/{SLEEP}:start", json={}),
        keyed_http.post(f"/{name}:cancel", json={}),
        keyed_http.post(f"/{name}:wait", json={"timeout": "0s"}),
        keyed_http.delete(f"/{name}"),
        keyed_http.post("/models/m:fetchPredictOperation", json={"operationName": name}),
        keyed_http.get(f"/{name}", headers={"x-goog-api-key": ""}),
    ):
        assert_error(response, 403, "PERMISSION_DENIED")
    assert snapshot(keyed_http, **ALICE) == before
    assert snapshot(keyed_http, **BOB) == []
    # Health checks need no key.
    assert httpx.get(f"{keyed.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("carrier", "code", "status"),
    [
        ({"headers": {"x-goog-api-key": "wrong"}}, 400, "INVALID_ARGUMENT"),
        ({"params": {"key": "wrong"}}, 400, "INVALID_ARGUMENT"),
        ({"headers": {"authorization": "Bearer wrong"}}, 401, "UNAUTHENTICATED"),
        ({"headers": {"authorization": "Basic azE6"}}, 401, "UNAUTHENTICATED"),
        ({"headers": {"authorization": "k1"}}, 401, "UNAUTHENTICATED"),
    ],
    ids=["header", "query", "bearer", "basic", "no-scheme"],
)
def test_wrong_api_key(
    keyed_http: httpx.Client, carrier: dict[str, Any], code: int, status: str
) -> None:
    before = snapshot(keyed_http, **ALICE)
    for method, path in (("GET", "/operations"), ("POST", f"/kinds/{SLEEP}:start")):
        response = keyed_http.request(
            method, path, json={} if method == "POST" else None, **carrier
        )
        error = assert_error(response, code, status)
        if code == 400:
            reasons = [d.get("reason") for d in error.get("details", [])]
            assert "API_KEY_INVALID" in reasons
        else:
            assert response.headers["www-authenticate"] == "Bearer"
    assert snapshot(keyed_http, **ALICE) == before
    assert snapshot(keyed_http, **BOB) == []


def test_right_key_works_through_every_carrier(keyed_http: httpx.Client) -> None:
    carriers: list[dict[str, Any]] = [
        {"headers": {"x-goog-api-key": "k1"}},
        {"params": {"key": "k1"}},
        {"headers": {"authorization": "Bearer k1"}},
        {"headers": {"Authorization": "bearer k1"}},
    ]
    names = []
    for carrier in carriers:
        created = keyed_http.post(f"/kinds/{SLEEP}:start", json={}, **carrier)
        assert created.status_code == 200, created.text
        names.append(created.json()["name"])
    for carrier in carriers:
        listed = keyed_http.get("/operations", **carrier)
        assert listed.status_code == 200
        assert [o["name"] for o in listed.json()["operations"]] == names[::-1]
        for name in names:
            assert keyed_http.get(f"/{name}", **carrier).status_code == 200


def test_other_tenants_operations_are_not_found(keyed_http: httpx.Client) -> None:
    name = keyed_http.post(
        f"/kinds/{SLEEP}:start", params={"requestId": "shared-id"}, headers=ALICE
    ).json()["name"]
    before = snapshot(keyed_http, **ALICE)

    for response in (
        keyed_http.get(f"/{name}", headers=BOB),
        keyed_http.get(f"/{name}", headers={"authorization": "Bearer k2"}),
        keyed_http.get(f"/{name}", params={"key": "k2"}),
        keyed_http.post(f"/{name}:cancel", json={}, headers=BOB),
        keyed_http.post(f"/{name}:wait", json={"timeout": "0.1s"}, headers=BOB),
        keyed_http.delete(f"/{name}", headers=BOB),
        keyed_http.post(
            "/models/m:fetchPredictOperation", json={"operationName": name}, headers=BOB
        ),
    ):
        error = assert_error(response, 404, "NOT_FOUND")
        assert name in error["message"]
    assert snapshot(keyed_http, **BOB) == []

    # Bob's request id is his own: the same id starts a new operation, not alice's.
    bobs = keyed_http.post(
        f"/kinds/{SLEEP}:start", params={"requestId": "shared-id"}, headers=BOB
    ).json()["name"]
    assert bobs != name
    assert [o["name"] for o in snapshot(keyed_http, **BOB)] == [bobs]
    # A page token is bound to its tenant too.
    keyed_http.post(f"/kinds/{SLEEP}:start", headers=ALICE)
    token = keyed_http.get("/operations", params={"pageSize": 1}, headers=ALICE).json()[
        "nextPageToken"
    ]
    response = keyed_http.get("/operations", params={"pageToken": token}, headers=BOB)
    assert_error(response, 400, "INVALID_ARGUMENT")

    # Nothing about alice's operation changed.
    after = [o for o in snapshot(keyed_http, **ALICE) if o["name"] == name]
    assert after == [o for o in before if o["name"] == name]
    assert after[0]["metadata"]["state"] == "PENDING"


# -- internal errors --------------------------------------------------------------------


def test_internal_errors_are_not_leaked(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    worker = WorkerConfig(concurrency=8, retry_delay=0.01, poll_interval=0.05, shutdown_grace=1)
    server = make_server(worker_config=worker, database_url=f"sqlite:///{tmp_path / 'flaky.db'}")
    with httpx.Client(base_url=f"{server.url}/v1beta", timeout=PATIENCE + 10) as client:
        name = client.post("/kinds/test.flaky:start", json={"failures": 5}).json()["name"]
        deadline = time.monotonic() + PATIENCE
        while True:
            waited = client.post(f"/{name}:wait", json={"timeout": "5s"})
            assert waited.status_code == 200
            if waited.json()["done"] or time.monotonic() > deadline:
                break
        operation = waited.json()
        assert operation["done"] is True
        assert operation["metadata"]["state"] == "FAILED"
        assert operation["metadata"]["attempt"] == 3
        assert operation["error"]["code"] == 13
        assert operation["error"]["message"] == "Internal error after 3 attempts."
        assert "response" not in operation
        for response in (
            waited,
            client.get(f"/{name}"),
            client.get("/operations"),
            client.post("/models/m:fetchPredictOperation", json={"operationName": name}),
        ):
            assert response.status_code == 200
            for leak in LEAKS:
                assert leak not in response.text
