"""A server that hangs: it accepts connections and never answers."""

from __future__ import annotations

import contextlib
import socket
import threading


class StallingServer:
    """Accepts every connection and never answers: a server that hangs. `accepted` counts the
    connections it took."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self._held.append(conn)
            self.accepted += 1

    def close(self) -> None:
        # shutdown, unlike close, wakes the accept() blocked in the thread (Linux).
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._held.clear()
