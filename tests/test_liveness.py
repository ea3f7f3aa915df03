"""Lease owners this host can prove dead: real child processes, killed for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from longops.engine import liveness
from longops.engine.liveness import dead_here, owner_identity
from tests.support.servers import subprocess_env
from tests.support.waiting import until_sync

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")

FIELDS = ("host", "pid", "token", "start", "boot", "pidns")
Child = tuple[subprocess.Popen[str], str]


@pytest.fixture
def child() -> Iterator[Callable[..., Child]]:
    """A Python child that prints its owner identity, then runs `then` (sleeps a minute)."""
    started: list[subprocess.Popen[str]] = []

    def start(then: str = "import time; time.sleep(60)") -> Child:
        code = "from longops.engine.liveness import owner_identity\n"
        code += f"print(owner_identity(), flush=True)\n{then}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=subprocess_env()
        )
        started.append(proc)
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


def fields(owner: str) -> dict[str, str]:
    return dict(zip(FIELDS, owner.rsplit(":", 5), strict=True))


def forged(owner: str, **changes: str) -> str:
    """`owner` with some of its fields replaced."""
    return ":".join({**fields(owner), **changes}.values())


def killed(child: Callable[..., Child]) -> str:
    """The identity of a child killed with SIGKILL and reaped."""
    proc, owner = child()
    proc.kill()
    proc.wait(10)
    return owner


def test_an_owner_records_its_host_boot_namespace_pid_and_start(
    child: Callable[..., Child],
) -> None:
    proc, owner = child()
    with open(f"/proc/{proc.pid}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    token = fields(owner)["token"]
    assert fields(owner) == {
        "host": socket.gethostname(),
        "pid": str(proc.pid),
        "token": token,
        "start": start,
        "boot": boot,
        "pidns": os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]"),
    }
    assert len(token) == 8 and token != fields(owner_identity())["token"]


def test_a_killed_process_is_dead_before_and_after_it_is_reaped(
    child: Callable[..., Child],
) -> None:
    proc, owner = child()
    assert not dead_here(owner)
    os.kill(proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, still unreaped: a zombie
    assert dead_here(owner)
    proc.wait(10)
    assert dead_here(owner)


def test_live_processes_are_never_dead(child: Callable[..., Child]) -> None:
    assert not dead_here(owner_identity())  # this very process
    _, sleeping = child()
    assert not dead_here(sleeping)
    assert not dead_here(forged(sleeping, token="another"))  # a token is no proof of anything


def test_a_process_whose_main_thread_ended_lives_on_in_its_other_threads(
    child: Callable[..., Child],
) -> None:
    """Its leader shows as a zombie in /proc while another thread still runs its code."""
    proc, owner = child(
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)"
    )

    def leader_ended() -> bool:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"

    until_sync(leader_ended, what="the main thread to end")
    assert not dead_here(owner)


def test_a_reused_pid_is_told_by_its_start_time(child: Callable[..., Child]) -> None:
    """The owner's pid now belongs to a process started at another time (modelled by
    forging the owner's start time: a live process stands in for the pid's new one)."""
    _, owner = child()
    start = int(fields(owner)["start"])
    assert dead_here(forged(owner, start=str(start - 1)))
    assert dead_here(forged(owner, start=str(start + 1)))


def test_no_proof_from_another_host_boot_or_namespace(child: Callable[..., Child]) -> None:
    owner = killed(child)
    assert dead_here(owner)
    assert not dead_here(forged(owner, host="elsewhere"))
    assert not dead_here(forged(owner, boot="00000000-0000-0000-0000-000000000000"))
    assert not dead_here(forged(owner, pidns="4026531835"))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda o: o.rsplit(":", 3)[0],  # host:pid:token, as owners were named before
        lambda o: forged(o, pid="0"),  # kill(0, 0) would ask about our own process group
        lambda o: forged(o, pid="-1"),
        lambda o: forged(o, pid="99999999999"),  # beyond any pid_max (and C's int)
        lambda o: forged(o, start="soon"),
        lambda o: forged(o, boot="not-a-boot-id"),
        lambda o: forged(o, pidns="pid:[4026531836]"),
        lambda o: o + ":extra",
        lambda o: o + "\n",
        lambda o: "",
        lambda o: "::::::",
    ],
)
def test_unreadable_owners_are_not_dead(
    child: Callable[..., Child], mangle: Callable[[str], str]
) -> None:
    owner = killed(child)
    assert dead_here(owner)
    assert not dead_here(mangle(owner))


def test_without_proc_owners_are_named_as_before_and_never_dead(
    child: Callable[..., Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = killed(child)
    monkeypatch.setattr(liveness, "_this_host", lambda: None)  # as on macOS
    assert not dead_here(owner)
    host, pid, token = owner_identity().split(":")
    assert (host, pid, len(token)) == (socket.gethostname(), str(os.getpid()), 8)
