"""A small real web server for import tests, on any loopback address (Linux routes all
of 127.0.0.0/8 to lo, so 127.0.0.2 can stand for an allowed host and 127.0.0.1 for a
refused one)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


def text(body: bytes, content_type: str = "text/plain") -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return send


def redirect(location: str) -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return send


def drip(interval: float, stop: threading.Event) -> Route:
    """One byte every `interval` seconds until `stop` is set: no read ever times out."""

    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        while not stop.wait(interval):
            try:
                handler.wfile.write(b"a")
                handler.wfile.flush()
            except OSError:
                return

    return send


class Web:
    def __init__(self, host: str, routes: dict[str, Route]) -> None:
        self.hits: list[str] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.hits.append(self.path)
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@contextmanager
def serving(host: str, routes: dict[str, Route]) -> Iterator[Web]:
    web = Web(host, routes)
    web.thread.start()
    try:
        yield web
    finally:
        web.server.shutdown()
        web.server.server_close()
