"""A webhook receiver for tests: a real HTTP server on an ephemeral port, in a thread,
that records every request and answers as it is told (statuses in turn, then 200;
"hang" holds a request unanswered until `release()`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

Answer = int | str
"""A status code, or "hang"."""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(
        self,
        answers: Sequence[Answer] = (),
        *,
        then: Answer = 200,
        retry_after: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.answers = list(answers)
        self.then = then
        self.retry_after = retry_after
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Received(self.path, headers, body, time.time()))
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.then
                if answer == "hang":
                    receiver._released.wait(60)
                    self.close_connection = True
                    return
                assert isinstance(answer, int)
                self.send_response(answer)
                if receiver.retry_after is not None and answer >= 400:
                    self.send_header("retry-after", receiver.retry_after)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let hanging requests go (unanswered: their connections are closed)."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.id for r in self.requests]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
