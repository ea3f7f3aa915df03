"""google.rpc codes on the wire: a kind's refusal answers with its code's HTTP status and
name, errors without a code get the one their HTTP status stands for, and `longops.rpc`
stays importable from the SDK's side without the engine or the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import REPO, ThreadServer

pytestmark = pytest.mark.usefixtures("quiet_server")

# google.rpc.Code's documented HTTP mapping, written out here rather than read from
# longops.rpc, so that a wrong entry there fails.
DOCUMENTED = [
    (1, 499, "CANCELLED"),
    (2, 500, "UNKNOWN"),
    (3, 400, "INVALID_ARGUMENT"),
    (4, 504, "DEADLINE_EXCEEDED"),
    (5, 404, "NOT_FOUND"),
    (6, 409, "ALREADY_EXISTS"),
    (7, 403, "PERMISSION_DENIED"),
    (8, 429, "RESOURCE_EXHAUSTED"),
    (9, 400, "FAILED_PRECONDITION"),
    (10, 409, "ABORTED"),
    (11, 400, "OUT_OF_RANGE"),
    (12, 501, "UNIMPLEMENTED"),
    (13, 500, "INTERNAL"),
    (14, 503, "UNAVAILABLE"),
    (15, 500, "DATA_LOSS"),
    (16, 401, "UNAUTHENTICATED"),
]


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    path = tmp_path_factory.mktemp("rpc-codes") / "longops.db"
    server = ThreadServer(
        database_url=f"sqlite:///{path}", workers=0, load=("tests.support.refusing",)
    ).start()
    with httpx.Client(base_url=f"{server.url}/v1beta", timeout=30) as client:
        yield client
    server.stop()


def refused(http: httpx.Client, code: int) -> httpx.Response:
    return http.post("/kinds/test.refuse:start", json={"code": code})


@pytest.mark.parametrize(("code", "http_status", "name"), DOCUMENTED)
def test_a_refusal_answers_with_its_codes_status_and_name(
    http: httpx.Client, code: int, http_status: int, name: str
) -> None:
    response = refused(http, code)
    assert response.status_code == http_status
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (http_status, name)
    assert error["message"] == f"refused with code {code}"


@pytest.mark.parametrize("code", [0, 17, -1, 99])
def test_a_refusal_with_no_error_code_is_invalid_argument(http: httpx.Client, code: int) -> None:
    """OK, or a number google.rpc does not define: still the client's request refused,
    never a 200 or a 500."""
    response = refused(http, code)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("method", "path", "http_status", "name"),
    [
        ("GET", "/operations/nope", 404, "NOT_FOUND"),
        ("PUT", "/operations", 405, "UNIMPLEMENTED"),
        ("POST", "/kinds/test.refuse:start", 400, "INVALID_ARGUMENT"),  # not JSON
    ],
)
def test_an_error_without_a_code_gets_the_one_its_status_stands_for(
    http: httpx.Client, method: str, path: str, http_status: int, name: str
) -> None:
    response = http.request(method, path, content=b"{")
    assert response.status_code == http_status
    assert response.json()["error"]["status"] == name


def test_the_codes_import_neither_engine_nor_server(tmp_path: Path) -> None:
    """The SDK and the server both read `longops.rpc`: it must not pull in a layer the
    SDK may not depend on."""
    probe = (
        "import sys, longops.rpc\n"
        "layers = ('longops.engine', 'longops.server')\n"
        "print(sorted(m for m in sys.modules if m.startswith(layers)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"
