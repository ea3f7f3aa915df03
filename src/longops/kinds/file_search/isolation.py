"""Extraction and chunking in a child process of their own, under a CPU and memory budget.

Parsing is pure Python: in a thread it would hold the GIL, and in `longops serve` the
workers share the API's process, so a large file would stall `/healthz` and every poll.
A hostile file can also cost far more than its size (a PDF of a few kilobytes that
inflates into millions of drawing operations takes minutes of CPU). So each document
is parsed and chunked in a child of multiprocessing's forkserver (a fresh interpreter,
started once per server process, with the parsers already imported; forking the server
itself, with its threads and sockets, would not be safe), under RLIMIT_CPU and
RLIMIT_AS. The child is killed when the import is cancelled or its wall-clock allowance
runs out, and ends by itself when the server does. The event loop never blocks on it:
the calls that do block (starting the child, which writes the document to it, and
reading its answer) run in threads, and the answer and the child's end are awaited with
`add_reader`.

Signals sent to the server's whole process group (Ctrl-C, a service manager's SIGTERM)
are the server's to handle: it lets running imports finish or hands them back. So a
child leaves the group as it starts (the server still kills it by pid), and one that
caught such a signal first, or whose forkserver died of one (the forkserver ignores
SIGINT, not SIGTERM), is retried rather than blamed. multiprocessing starts the
forkserver again on next use if it died.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import select
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess

from longops.kinds.file_search.chunking import TooManyChunks, chunk_text
from longops.kinds.file_search.extract import ExtractionError, extract_text

__all__ = ["Limits", "Prepared", "prepare"]

log = logging.getLogger("longops.file_search")

_context = multiprocessing.get_context("forkserver")
# What the forkserver imports once, so that each child starts in milliseconds: this
# module (its parsers with it) and the PDF library they import lazily; the CLI, which a
# child of `longops serve` imports again as its main module (multiprocessing re-runs the
# main script in every child, and Python 3.11's forkserver ignores "__main__" here), and
# what re-running it and starting a child import.
_context.set_forkserver_preload(
    [__name__, "pypdf", "longops.cli", "pkgutil", "multiprocessing.popen_forkserver"]
)

_LOST_FORKSERVER = 255
"""The exit code multiprocessing reports when the forkserver died before the child."""


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
    receiving, answering = _context.Pipe(duplex=False)
    job = Job(name, declared, max_tokens, overlap_tokens, limits)
    process = _context.Process(target=_parse, args=(answering, job, data), daemon=True)
    try:
        await _start(process, answering)
    except BaseException:
        receiving.close()
        raise
    try:
        async with asyncio.timeout(limits.wall_seconds):
            outcome = await _answer(receiving)
            code = await _exit_code(process)
    except TimeoutError:
        raise _too_long(limits) from None
    finally:
        if process.exitcode is None:  # cancelled, or out of time
            process.kill()
            await _exit_code(process)
        process.close()
    if outcome is None:  # the child died: killed by its CPU limit, or crashed
        if code in (_LOST_FORKSERVER, -signal.SIGTERM, -signal.SIGINT):
            raise RuntimeError("document extraction was interrupted")  # not the document's fault
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            raise _too_long(limits)
        log.warning("a document's extraction ended with exit code %s", code)
        raise ExtractionError("the document could not be extracted")
    if isinstance(outcome, str):
        raise ExtractionError(outcome)
    assert isinstance(outcome, Prepared)
    return outcome


def _too_long(limits: Limits) -> ExtractionError:
    return ExtractionError(
        f"the document took too long to extract (over {limits.cpu_seconds} s of CPU)"
    )


async def _start(process: ForkServerProcess, answering: Connection) -> None:
    """`process.start()`, in a thread: it blocks while it writes the job and the document
    to the child (and, the first time, while the forkserver starts). When cancelled, the
    child is killed as soon as it has started."""

    def start() -> None:
        try:
            process.start()
        finally:
            answering.close()  # the child has its own

    def kill(started: asyncio.Future[None]) -> None:
        if not started.cancelled() and started.exception() is None:
            process.kill()

    starting = asyncio.ensure_future(asyncio.to_thread(start))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        starting.add_done_callback(kill)
        raise


async def _answer(receiving: Connection) -> Prepared | str | None:
    """The child's answer, or None when it died before giving one. The answer can be
    large: it is read in a thread, which closes the connection when done."""
    try:
        await _readable(receiving.fileno())
    except BaseException:
        receiving.close()
        raise
    return await asyncio.to_thread(_receive, receiving)


def _receive(receiving: Connection) -> Prepared | str | None:
    """Run in a thread. The read blocks until the whole answer is in: uvloop (which
    `longops serve` runs on) leaves a descriptor it watched non-blocking, and a
    non-blocking read of an answer larger than the pipe's buffer fails half-way."""
    os.set_blocking(receiving.fileno(), True)
    with receiving:
        try:
            answer: Prepared | str = receiving.recv()
        except EOFError:
            return None
        return answer


async def _exit_code(process: ForkServerProcess) -> int:
    """How the child ended, once it has (-N: killed by signal N)."""
    await _readable(process.sentinel)
    os.set_blocking(process.sentinel, True)  # see `_receive`
    process.join()  # the forkserver has reported how it ended: this does not block
    code = process.exitcode
    assert code is not None
    return code


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def set_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, set_ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


# ----------------------------------------------------------------------- in the child


def _parse(answering: Connection, job: Job, data: bytes) -> None:
    """One document, in a child: extract, chunk, answer."""
    os.setpgid(0, 0)  # out of the server's process group: see the module's docstring
    _end_with_the_server()
    _limit(job.limits)
    outcome: Prepared | str
    try:
        limits = job.limits
        extracted = extract_text(data, job.name, job.declared, max_chars=limits.max_text_chars)
        chunks = chunk_text(
            extracted.text,
            job.max_tokens,
            job.overlap_tokens,
            max_chunks=limits.max_chunks,
            max_chars=limits.max_chunk_chars,
        )
        outcome = Prepared(extracted.mime_type, extracted.pages, [c.text for c in chunks])
    except (ExtractionError, TooManyChunks) as exc:
        outcome = str(exc)
    except MemoryError:
        outcome = "the document needs too much memory to extract; split it into smaller files"
    answering.send(outcome)


def _end_with_the_server() -> None:
    """A child out of the server's process group, and not its child but the
    forkserver's, would outlive a server that was killed: so it watches the pipe that
    multiprocessing keeps open from the server, and ends when that closes."""
    parent = multiprocessing.parent_process()
    assert parent is not None
    sentinel = parent.sentinel

    def watch() -> None:
        select.select([sentinel], [], [])
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit(limits: Limits) -> None:
    cpu = limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core
    if limits.memory_bytes is not None:
        with open("/proc/self/statm") as statm:  # pages of address space in use now
            in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        ceiling = in_use + limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
