"""Extraction and chunking in a child process of their own, under a CPU and memory budget.

Parsing is pure Python: in a thread it would hold the GIL, and in `longops serve` the
workers share the API's process, so a large file would stall `/healthz` and every poll.
A hostile file can also cost far more than its size (a PDF of a few kilobytes that
inflates into millions of drawing operations takes minutes of CPU). So each document
is parsed and chunked in a child forked by `forker` (a clean process, started once per
server process, with the parsers already imported; forking the server itself, with its
threads and sockets, would not be safe), under RLIMIT_CPU and RLIMIT_AS. The child is
killed when the import is cancelled or its wall-clock allowance runs out; the server
only waits on sockets.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

from longops.kinds.file_search.extract import ExtractionError

__all__ = ["Limits", "Prepared", "prepare"]

log = logging.getLogger("longops.file_search")

HEADER = struct.Struct("!Q")
"""Every message between the server and a child: its length, then its bytes."""
STATUS = struct.Struct("!i")
"""The forker's report of how a child ended."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What parsing one document may cost."""

    max_text_chars: int
    max_chunks: int
    max_chunk_chars: int
    """All chunks together: a large overlap repeats the text in every chunk."""
    cpu_seconds: int
    memory_bytes: int | None
    """Address space the child may add to what it starts with; None: no limit."""

    @property
    def wall_seconds(self) -> float:
        """A child that waits instead of computing (it should never) is stopped too."""
        return 2.0 * self.cpu_seconds + 5.0


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to index."""

    mime_type: str
    pages: int | None
    chunks: list[str]


@dataclass(frozen=True, slots=True)
class Job:
    name: str | None
    declared: str | None
    max_tokens: int
    overlap_tokens: int
    limits: Limits


class _Forker:
    """This process's `forker` (started on first use, again if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # every server thread's event loop shares it
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def start_job(self) -> tuple[socket.socket, socket.socket]:
        """A new child's sockets: its input and output, and its exit status."""
        data, data_child = socket.socketpair()
        watch, watch_child = socket.socketpair()
        try:
            with self._lock:
                for attempt in range(2):
                    control = self._running()
                    try:
                        socket.send_fds(
                            control, [b"j"], [data_child.fileno(), watch_child.fileno()]
                        )
                        break
                    except OSError:
                        if attempt:
                            raise
                        self._process = None  # it died: start another
            return data, watch
        except BaseException:
            data.close()
            watch.close()
            raise
        finally:
            data_child.close()
            watch_child.close()

    def _running(self) -> socket.socket:
        if self._process is not None and self._process.poll() is None:
            assert self._control is not None
            return self._control
        if self._control is not None:
            self._control.close()
        control, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "longops.kinds.file_search.forker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        self._control = control
        return control


_forker = _Forker()


async def prepare(
    data: bytes,
    name: str | None,
    declared: str | None,
    max_tokens: int,
    overlap_tokens: int,
    limits: Limits,
) -> Prepared:
    """`data` extracted and chunked in a child process; raises `ExtractionError` (its
    message is for users) for anything the document itself is to blame for."""
    loop = asyncio.get_running_loop()
    # Sending to the forker blocks only when it has to be started (the first time).
    sock, watch = await loop.run_in_executor(None, _forker.start_job)
    try:
        job = Job(name, declared, max_tokens, overlap_tokens, limits)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            async with asyncio.timeout(limits.wall_seconds):
                answer = await _exchange(reader, writer, pickle.dumps(job), data)
        except TimeoutError:
            raise _too_long(limits) from None
        finally:
            writer.close()
        if answer is None:  # the child died: killed by its CPU limit, or crashed
            code = await _exit_code(watch)
            if code is None:  # the forker itself went away: not the document's fault
                raise RuntimeError("document extraction was interrupted")
            if code in (-signal.SIGXCPU, -signal.SIGKILL):
                raise _too_long(limits)
            log.warning("a document's extraction ended with exit code %s", code)
            raise ExtractionError("the document could not be extracted")
    finally:
        watch.close()  # the forker kills the child, if it still runs
    outcome = pickle.loads(answer)
    if isinstance(outcome, str):
        raise ExtractionError(outcome)
    assert isinstance(outcome, Prepared)
    return outcome


def _too_long(limits: Limits) -> ExtractionError:
    return ExtractionError(
        f"the document took too long to extract (over {limits.cpu_seconds} s of CPU)"
    )


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, job: bytes, data: bytes
) -> bytes | None:
    """The child's answer, or None when it died before giving one."""
    try:
        for message in (job, data):
            writer.write(HEADER.pack(len(message)))
            writer.write(message)
        await writer.drain()
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        return await reader.readexactly(size)
    except (OSError, asyncio.IncompleteReadError):
        return None


async def _exit_code(watch: socket.socket) -> int | None:
    """How the child ended, as the forker reports it (-N: killed by signal N)."""
    reader, writer = await asyncio.open_unix_connection(sock=watch)
    try:
        async with asyncio.timeout(10):
            (code,) = STATUS.unpack(await reader.readexactly(STATUS.size))
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    result: int = code
    return result
