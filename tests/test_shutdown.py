"""SIGTERM on `longops serve` with requests open: they are answered at once, in Google's
envelope, and the process is gone within its grace."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import orjson

from longops import Client
from longops.server.serving import Limits
from tests.support.servers import Process, ThreadServer, free_port, wait_healthy
from tests.support.waiting import until_sync

GRACE = 1.0


def test_sigterm_answers_open_waits_at_once_and_exits_within_the_grace(
    spawn: Callable[..., Process], database_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = spawn(
        "serve", "--port", str(port), "--database", database_url, "--workers", "2",
        "--shutdown-grace", str(GRACE), "--max-wait", "60",
    )  # fmt: skip
    wait_healthy(url)
    with Client(base_url=url) as client:
        running = client.operations.start("longops.sleep", {"seconds": 60})
        until_sync(
            lambda: (client.operations.get(running).metadata or {}).get("state") == "RUNNING",
            what="the operation to run",
        )
    answers: list[httpx.Response] = []

    def wait() -> None:
        answers.append(
            httpx.post(f"{url}/v1beta/{running.name}:wait", json={"timeout": "60s"}, timeout=30)
        )

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.5)  # the wait is parked on the server
    assert waiting.is_alive()

    signalled = time.monotonic()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    waiting.join(timeout=30)
    answered = time.monotonic() - signalled
    # uvicorn re-raises the SIGTERM it handled as the process's exit status.
    assert server.proc.wait(30) in (0, -signal.SIGTERM)
    exited = time.monotonic() - signalled

    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["name"] == running.name and not answer.json().get("done")
    # Generous bounds that still tell the fix from the old behaviour: the wait was cut
    # after 5 s, and the workers' grace began only then (exit after ~7 s).
    assert answered < 3.0
    assert exited < GRACE + 3.0
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def test_a_request_still_open_when_the_grace_ends_gets_a_503_envelope(
    make_server: Callable[..., ThreadServer],
) -> None:
    """Here a body that is still arriving: uvicorn cancels it at the end of the grace."""
    server = make_server(workers=0, limits=Limits(shutdown_timeout=1))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1beta/operations/x:wait HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"timeout"'
        )
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = answer.read()
        stopping.join(timeout=30)
    assert answer.status == 503, body
    assert answer.getheader("content-type") == "application/json"
    assert orjson.loads(body)["error"]["status"] == "UNAVAILABLE"
