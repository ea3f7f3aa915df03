"""Lease owners that say who they are, so a crashed one can be told dead at once.

A lease bounds how long a crashed worker's operations wait: nobody else knows it
crashed until its lease runs out (30 s by default). But a process on the same host
can often *prove* the owner dead: the owner's pid is gone, or now belongs to another
process. So an owner records, besides a random token:

    host:pid:token:start:boot:pidns

- `host`, the host name (for people reading it; it may contain colons, so the other
  fields are read from the right);
- `pid`, and `start`, the process's start time in clock ticks after boot (field 22
  of /proc/<pid>/stat): a pid reused by a later process has another start time;
- `boot`, /proc/sys/kernel/random/boot_id: pids and start times mean nothing after a
  reboot, and another machine (or a VM) has another boot id;
- `pidns`, the inode of the pid namespace: two containers on one kernel share its
  boot id but not their pids.

Where /proc is missing (macOS, Windows) or does not show this process, the owner is
`host:pid:token` as before, which `dead_here` never judges: the lease still bounds
recovery, as it does for owners on other hosts.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass

from longops.engine.ids import new_token_id

# pid: at most 7 digits, as pid_max is at most 2**22 (and a larger one would overflow kill).
_OWNER = re.compile(
    r"(?P<host>.*):(?P<pid>[1-9][0-9]{0,6}):(?P<token>[0-9a-z]+):(?P<start>[0-9]{1,20})"
    r":(?P<boot>[0-9a-f-]{36}):(?P<pidns>[0-9]{1,20})",
    re.ASCII | re.DOTALL,
)


@dataclass(slots=True, frozen=True)
class _Stat:
    state: str
    threads: int
    start: int


def _stat(pid: int) -> _Stat:
    """Fields of /proc/<pid>/stat; raises OSError or ValueError when unreadable.

    The command name (field 2) is in parentheses and may hold spaces and parentheses
    itself, so the fields are counted after its last closing parenthesis.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read().decode("ascii", "replace")
    fields = text[text.rindex(")") + 2 :].split()  # fields 3 onwards
    return _Stat(state=fields[0], threads=int(fields[17]), start=int(fields[19]))


@functools.cache
def _this_host() -> tuple[str, str] | None:
    """(boot id, pid namespace inode) of this process, or None without a /proc that
    shows it (its /proc/self must be this very process, not one of another namespace).
    Neither changes while the process lives: entering a pid namespace moves only
    the children made afterwards."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
        if int(os.readlink("/proc/self")) != os.getpid():
            return None
    except (OSError, ValueError):
        return None
    match = re.fullmatch(r"pid:\[([0-9]+)\]", namespace)
    if match is None or re.fullmatch(r"[0-9a-f-]{36}", boot) is None:
        return None
    return boot, match[1]


def owner_identity() -> str:
    """A new lease owner name for this process (a fresh token each call, so two workers
    in one process hold leases apart)."""
    host, pid, token = socket.gethostname(), os.getpid(), new_token_id(8)
    here = _this_host()
    try:
        start = _stat(pid).start if here is not None else None
    except (OSError, ValueError, IndexError):
        start = None
    if here is None or start is None:
        return f"{host}:{pid}:{token}"
    boot, namespace = here
    return f"{host}:{pid}:{token}:{start}:{boot}:{namespace}"


def dead_here(owner: str) -> bool:
    """True only when `owner` is provably dead: it ran on this host, in this boot and
    pid namespace, and its pid is gone, belongs to a process started at another time,
    or is a zombie with no thread left. False whenever that can't be proven (an owner
    of another host, an old-style or unreadable name, a /proc that hides processes of
    other users), so a live owner never loses its leases this way."""
    match = _OWNER.fullmatch(owner)
    here = _this_host()
    if match is None or here is None:
        return False
    if match["host"] != socket.gethostname() or (match["boot"], match["pidns"]) != here:
        return False
    pid = int(match["pid"])
    try:
        stat = _stat(pid)
    except FileNotFoundError:
        # /proc mounted with hidepid hides other users' processes as if they were gone:
        # only the kernel's own answer to a signal-less kill proves the pid unused.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    except (OSError, ValueError, IndexError):
        return False
    if stat.start != int(match["start"]):
        return True  # the pid was reused
    # Killed but not yet reaped by its parent: nothing of it runs. A leader whose
    # own thread ended shows as a zombie too while its other threads run on.
    return stat.state in ("Z", "X") and stat.threads <= 1
