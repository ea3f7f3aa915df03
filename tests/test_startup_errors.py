"""`serve`, `worker` and `db upgrade` on a SQLite file they can't use: exit 1 with one
line naming the file and the problem, never a traceback."""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from longops.engine.store import open_store
from tests.support.servers import free_port, run_longops

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def without_root_overrides() -> None:
    """Permissions don't bind root (as in most containers): before the command runs,
    drop the capabilities that let it ignore them, so a read-only file is one."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "databases"
    folder.mkdir()
    yield folder
    for path in folder.rglob("*"):  # let pytest clean up what was made read-only
        if path.is_dir():
            path.chmod(0o755)


def a_database(path: Path) -> Path:
    async def create() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(create())
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "random.db"
    path.write_bytes(os.urandom(8192))
    return path


def truncated(folder: Path) -> Path:
    path = a_database(folder / "truncated.db")
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path


def a_folder(folder: Path) -> Path:
    path = folder / "folder.db"
    path.mkdir()
    return path


def under_a_file(folder: Path) -> Path:
    (folder / "file").write_text("x")
    return folder / "file" / "longops.db"


def read_only_file(folder: Path) -> Path:
    path = a_database(folder / "read-only.db")
    path.chmod(0o444)
    return path


def in_an_unwritable_folder(folder: Path) -> Path:
    locked = folder / "locked"
    locked.mkdir(mode=0o555)
    return locked / "longops.db"


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "random bytes": (random_bytes, "file is not a database"),
    "truncated": (truncated, "database disk image is malformed"),
    "a folder": (a_folder, "it is a folder, not a file"),
    "under a file": (under_a_file, "cannot create its folder"),
    "read-only file": (read_only_file, "read-only"),
    "unwritable folder": (in_an_unwritable_folder, "is its folder there and writable?"),
}


def refused_in_one_line(command: list[str], path: Path, problem: str) -> None:
    as_root = os.geteuid() == 0
    result = run_longops(
        *command,
        "--database",
        f"sqlite:///{path}",
        preexec_fn=without_root_overrides if as_root else None,
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [f"Error: cannot use SQLite database {path}: {lines[0].split(': ', 2)[2]}"]
    assert problem in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", CASES)
def test_db_upgrade_names_the_file_and_the_problem(folder: Path, case: str) -> None:
    make, problem = CASES[case]
    refused_in_one_line(["db", "upgrade"], make(folder), problem)


@pytest.mark.parametrize("case", ["random bytes", "a folder"])
def test_serve_names_the_file_and_the_problem(folder: Path, case: str) -> None:
    make, problem = CASES[case]
    refused_in_one_line(["serve", "--port", str(free_port())], make(folder), problem)


def test_worker_names_the_file_and_the_problem(folder: Path) -> None:
    make, problem = CASES["truncated"]
    refused_in_one_line(["worker"], make(folder), problem)


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"LONGOPS_IMPORT_TIMEOUT": "soon"}, [], "LONGOPS_IMPORT_TIMEOUT"),
        ({"LONGOPS_IMPORT_MAX_CHUNKS": "-5"}, [], "LONGOPS_IMPORT_MAX_CHUNKS"),
        ({"LONGOPS_EGRESS_ALLOW": "10.0.0.0/99"}, [], "LONGOPS_EGRESS_ALLOW"),
        ({"LONGOPS_VIDEO_MODELS": "/no/such/models.json"}, [], "LONGOPS_VIDEO_MODELS"),
        ({"LONGOPS_VIDEO_FAULTS": "[not json"}, [], "LONGOPS_VIDEO_FAULTS"),
        ({}, ["--load", "no_such_module_here"], "--load"),
        ({}, ["--load", "json"], "--load"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    folder: Path, env: dict[str, str], args: list[str], named: str
) -> None:
    """A malformed setting stops `worker` (and `serve`, which reads the same ones) at
    once, in one line that names it: not a traceback, and not a server that starts."""
    database = f"sqlite:///{folder / 'longops.db'}"
    result = run_longops("worker", "--database", database, *args, env=env)
    assert result.returncode in (1, 2), result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
