"""Every user mistake and start-up problem of the `longops` command is one `Error:` line,
no traceback, and the exit code its --help documents (0 done, 1 failed, 2 usage, 3 timed
out, 4 no server answered)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import (
    REPO,
    Process,
    free_port,
    run_longops,
    subprocess_env,
    wait_healthy,
)
from tests.support.stalling import StallingServer


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The command's single `Error:` line, after checking its exit code and that no
    traceback came with it."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_help_documents_the_exit_codes() -> None:
    for command in ([], ["ops"]):
        shown = run_longops(*command, "--help")
        assert shown.returncode == 0
        text = " ".join(shown.stdout.split())
        for code in ("0 done", "1 the server refused", "2 a usage mistake", "3 `ops wait", "4 no"):
            assert code in text, code


def test_version() -> None:
    from longops import __version__

    shown = run_longops("--version")
    assert shown.returncode == 0 and shown.stdout == f"longops {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["ops", "list"],
        ["ops", "get", "abc"],
        ["ops", "start", "longops.sleep", "{}"],
        ["kinds"],
        ["models"],
    ],
)
def test_a_port_with_nothing_listening(args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(run_longops(*args, "--base-url", url), 4)
    assert url in line and "Connection refused" in line
    assert "--base-url" in line and "LONGOPS_BASE_URL" in line


def test_a_server_that_never_answers(stalling: StallingServer) -> None:
    started = time.monotonic()
    result = run_longops(
        "ops", "list", "--base-url", stalling.url, env={"LONGOPS_HTTP_TIMEOUT": "0.3"}
    )
    line = one_error_line(result, 4)
    assert stalling.url in line and "0.3 s" in line and "LONGOPS_HTTP_TIMEOUT" in line
    assert time.monotonic() - started < 30  # the setting, not the SDK's 60 s, bounded it


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_an_http_timeout_that_is_not_seconds(value: str) -> None:
    result = run_longops("ops", "list", env={"LONGOPS_HTTP_TIMEOUT": value})
    assert "LONGOPS_HTTP_TIMEOUT" in one_error_line(result, 2)


def test_an_unknown_host() -> None:
    line = one_error_line(
        run_longops("ops", "list", "--base-url", "http://no-such-host.invalid"), 4
    )
    assert "http://no-such-host.invalid" in line and "LONGOPS_BASE_URL" in line


def test_a_base_url_without_a_scheme() -> None:
    result = run_longops("ops", "list", env={"LONGOPS_BASE_URL": "127.0.0.1:8000"})
    line = one_error_line(result, 2)
    assert "'127.0.0.1:8000'" in line and "http://" in line and "LONGOPS_BASE_URL" in line


@pytest.fixture
def database(tmp_path: Path) -> list[str]:
    return ["--database", f"sqlite:///{tmp_path / 'longops.db'}"]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bogus_log_level(command: str, database: list[str]) -> None:
    line = one_error_line(run_longops(command, *database, "--log-level", "bogus"), 2)
    assert "--log-level" in line and "'bogus'" in line and "debug" in line


def test_log_levels_are_read_in_any_case(tmp_path: Path, database: list[str]) -> None:
    """`--log-level DEBUG` passes the check: the worker goes on to what it is given
    next, a module that is not there."""
    result = run_longops("worker", *database, "--log-level", "DEBUG", "--load", "nowhere_x")
    assert "--log-level" not in one_error_line(result, 2)


@pytest.mark.parametrize("port", ["74640", "0", "-1", "65536"])
def test_a_port_outside_the_range(port: str, database: list[str]) -> None:
    line = one_error_line(run_longops("serve", *database, "--port", port), 2)
    assert "--port" in line and f"{port} is not a TCP port" in line and "1-65535" in line


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("examples/hash_file.py", "PYTHONPATH=examples ... --load hash_file"),
        ("hash_file.py", "PYTHONPATH=. ... --load hash_file"),
        ("/abs/dir/kinds.py", "PYTHONPATH=/abs/dir ... --load kinds"),
        ("a..b", "dotted module name"),
    ],
)
def test_load_given_a_file_path(name: str, hint: str, database: list[str]) -> None:
    line = one_error_line(run_longops("worker", *database, "--load", name), 2)
    assert f"'{name}' is not a module name" in line
    assert "dotted module name" in line and "PYTHONPATH" in line and hint in line


def test_load_given_a_module_not_on_the_path(database: list[str]) -> None:
    """hash_file is in examples/, which is not on the path: say how to put it there."""
    line = one_error_line(run_longops("serve", *database, "--load", "hash_file"), 2)
    assert "no module named 'hash_file'" in line and "PYTHONPATH" in line


@pytest.fixture
def modules(tmp_path: Path) -> dict[str, str]:
    """A folder of broken kind modules, on PYTHONPATH."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "raises_here.py").write_text("x = 1\nraise RuntimeError('no config for me')\n")
    (folder / "bad_syntax.py").write_text("def f(:\n")
    (folder / "missing_dep.py").write_text("import not_installed_anywhere_x\n")
    return {"PYTHONPATH": f"{folder}{os.pathsep}{REPO}"}


@pytest.mark.parametrize(
    ("module", "code", "said"),
    [
        ("raises_here", 1, "RuntimeError: no config for me ("),
        ("bad_syntax", 1, "SyntaxError"),
        ("missing_dep", 2, "not_installed_anywhere_x"),
    ],
)
def test_load_given_a_module_that_fails_to_import(
    module: str, code: int, said: str, modules: dict[str, str], database: list[str]
) -> None:
    result = run_longops("worker", *database, "--load", module, env=modules)
    line = one_error_line(result, code)
    assert module in line and said in line
    if module != "missing_dep":  # where it failed, to go and look
        assert f"{module}.py:" in line


def test_a_database_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    database = tmp_path / "file" / "longops.db"
    result = run_longops("serve", "--port", str(free_port()), "--database", f"sqlite:///{database}")
    line = one_error_line(result, 1)
    assert str(database) in line and "cannot create its folder" in line
    assert "longops serving" not in result.stderr


@pytest.mark.parametrize(
    ("models", "said"),
    [
        ("[not json", "LONGOPS_VIDEO_MODELS: Expecting value"),
        ('[{"name": "veo-x", "colour": "red"}]', "LONGOPS_VIDEO_MODELS: "),
        ('[["veo-x"]]', "LONGOPS_VIDEO_MODELS: expected a JSON list of objects"),
    ],
)
def test_bad_inline_video_models(models: str, said: str, database: list[str]) -> None:
    result = run_longops("worker", *database, env={"LONGOPS_VIDEO_MODELS": models})
    assert said in one_error_line(result, 1)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_port_in_use_is_said_before_anything_starts(taken_port: int, tmp_path: Path) -> None:
    """Before the banner, and before the app and its workers start."""
    database = f"sqlite:///{tmp_path / 'longops.db'}"
    assert run_longops("db", "upgrade", "--database", database).returncode == 0
    result = run_longops("serve", "--port", str(taken_port), "--database", database)
    line = one_error_line(result, 1)
    assert line == f"Error: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    assert "longops serving" not in result.stderr
    assert "startup" not in result.stderr  # the app (and its workers) never started


def test_an_unknown_host_to_listen_on(database: list[str]) -> None:
    result = run_longops("serve", *database, "--host", "no-such-host.invalid", "--port", "8000")
    assert "cannot listen on no-such-host.invalid:8000" in one_error_line(result, 1)


@pytest.mark.parametrize(
    ("request_json", "what"),
    [
        ("[1,2]", "an array"),
        ('"x"', "a string"),
        ("3", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ],
)
def test_ops_start_with_json_that_is_not_an_object(request_json: str, what: str) -> None:
    """Refused before any request is sent: no server is needed to say so."""
    result = run_longops(
        "ops", "start", "longops.sleep", request_json, "--base-url", "http://127.0.0.1:1"
    )
    line = one_error_line(result, 2)
    assert "REQUEST" in line and f"must be a JSON object ({{...}}), not {what}" in line


def test_inline_video_models_are_served(tmp_path: Path) -> None:
    """LONGOPS_VIDEO_MODELS as inline JSON, as LONGOPS_VIDEO_FAULTS takes it: the model is
    offered (`longops models`) next to the defaults."""
    port = free_port()
    models = json.dumps([{"name": "veo-inline-test", "like": "veo-2.0-generate-001"}])
    server = Process(
        ["serve", "--port", str(port), "--database", f"sqlite:///{tmp_path / 'l.db'}"],
        subprocess_env({"LONGOPS_VIDEO_MODELS": models}),
        tmp_path / "serve.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        listed = run_longops("models", "--json", "--base-url", url)
        assert listed.returncode == 0, listed.stderr
        by_name = {m["name"]: m for m in json.loads(listed.stdout)}
        assert by_name["models/veo-inline-test"]["videoGeneration"]["durationSeconds"] == [
            5,
            6,
            7,
            8,
        ]
        assert "models/veo-3.0-generate-001" in by_name
    finally:
        server.close()
