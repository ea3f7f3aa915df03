"""A TCP proxy that cuts its first connections once an answer has begun to stream: how
tests drop a watch stream part-way, as a proxy's idle cut or a restart would."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; each of the first `cuts` connections is
    closed as soon as `marker` has come back from upstream. `requests` keeps what each
    connection sent first (its request line and headers)."""

    def __init__(self, upstream: int, *, cuts: int = 1, marker: bytes = b"\n\n") -> None:
        self.upstream = upstream
        self.cuts = cuts
        self.marker = marker
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            cut = len(self.requests) < self.cuts
            self.requests.append(b"")
            threading.Thread(
                target=self._relay, args=(client, len(self.requests) - 1, cut), daemon=True
            ).start()

    def _relay(self, client: socket.socket, index: int, cut: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))

        def forward() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    if not self.requests[index]:
                        self.requests[index] = data
                    upstream.sendall(data)

        threading.Thread(target=forward, daemon=True).start()
        seen = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)
                seen += data
                body = seen.partition(b"\r\n\r\n")[2]
                if cut and self.marker in body:
                    break
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.sock.close()
