"""The process that parses documents: `python -m longops.kinds.file_search.forker FD`.

Started once per server process by `isolation` (a fresh interpreter: it inherits none of
the server's sockets or threads), it imports the parsers, then forks one child per
document. Being single-threaded, it can fork safely, and quickly. For each job the
server passes two sockets: the child talks over the first (job, bytes in; the prepared
document out), and this process reports the child's exit status over the second. When
the server closes that second socket first (a cancel, a timeout), the child is killed.
When the server itself goes away, so does this process, and its children with it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import selectors
import signal
import socket
import sys
import traceback

from longops.kinds.file_search.chunking import TooManyChunks, chunk_text
from longops.kinds.file_search.extract import ExtractionError, extract_text
from longops.kinds.file_search.isolation import HEADER, STATUS, Job, Prepared


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the server went away")
        got += n
    return bytes(buffer)


def _receive(sock: socket.socket) -> bytes:
    (size,) = HEADER.unpack(_read_exactly(sock, HEADER.size))
    return _read_exactly(sock, size)


def _limit(job: Job) -> None:
    cpu = job.limits.cpu_seconds
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core
    if job.limits.memory_bytes is not None:
        with open("/proc/self/statm") as statm:  # pages of address space in use now
            in_use = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        ceiling = in_use + job.limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _prepare(sock: socket.socket) -> None:
    """One document, in a child: extract, chunk, answer."""
    job: Job = pickle.loads(_receive(sock))
    _limit(job)
    data = _receive(sock)
    outcome: Prepared | str
    try:
        limits = job.limits
        extracted = extract_text(data, job.name, job.declared, max_chars=limits.max_text_chars)
        del data
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
    answer = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(HEADER.pack(len(answer)) + answer)


def _fork(data: socket.socket, others: list[socket.socket]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        for other in others:
            other.close()
        _prepare(data)
    except EOFError:  # the import was cancelled before the child had its input
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def serve(control: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    watches: dict[int, socket.socket] = {}  # child pid: where its exit status goes
    while True:
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is control:
                message, fds, _, _ = socket.recv_fds(control, 1, 2)
                if not message:  # the server exited
                    for pid in watches:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return
                data, watch = (socket.socket(fileno=fd) for fd in fds)
                pid = _fork(data, [control, *watches.values()])
                data.close()
                watches[pid] = watch
                selector.register(watch, selectors.EVENT_READ, pid)
            else:  # the server gave up on this child
                selector.unregister(sock)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(key.data, signal.SIGKILL)
        while watches:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            watch = watches.pop(pid)
            with contextlib.suppress(OSError):
                watch.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(watch)
            watch.close()


if __name__ == "__main__":
    # Signals to the process group are the server's to handle: it lets running imports
    # finish or hands them back, and this process ends when the server has gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))
