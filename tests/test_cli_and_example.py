"""The `longops` command and the example kind in examples/, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from longops import Client
from longops.errors import ClientError
from tests.support.servers import (
    REPO,
    Process,
    ThreadServer,
    free_port,
    run_longops,
    subprocess_env,
    wait_healthy,
)

EXAMPLES = REPO / "examples"


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_longops(*args, env={"LONGOPS_BASE_URL": url})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database", "mysql://db/x"], "unsupported database URL"),
        (["--database", "postgresql://db/x?schema=a-b"], "bad schema name"),
        (["--database", "postgresql://db/x?pool_size=many"], "pool_size must be a number"),
        (["--blobs", "nosuchfs://bucket/x"], "--blobs"),
    ],
)
def test_bad_settings_are_named_not_traced(args: list[str], message: str) -> None:
    result = run_longops("worker", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_database_is_an_error_message() -> None:
    """After retrying for a while (a database may still be starting), not a traceback."""
    result = run_longops("db", "upgrade", "--database", f"postgresql://127.0.0.1:{free_port()}/x")
    assert result.returncode == 1
    assert "PostgreSQL is unreachable" in result.stderr and "Traceback" not in result.stderr


def test_ops_commands(server: ThreadServer) -> None:
    started = cli(server.url, "ops", "start", "longops.sleep", '{"seconds": 0.3}', "--json")
    assert started.returncode == 0, started.stderr
    name = json.loads(started.stdout)["name"]

    waited = cli(server.url, "ops", "wait", name, "--timeout", "30")
    assert waited.returncode == 0, waited.stderr
    assert "SUCCEEDED" in waited.stdout and "100%" in waited.stdout
    assert f"{name} SUCCEEDED 100%" in waited.stderr  # plain progress lines off a terminal

    got = json.loads(cli(server.url, "ops", "get", name, "--json").stdout)
    assert got["done"] is True and got["response"]["sleptSeconds"] == 0.3

    listed = json.loads(cli(server.url, "ops", "list", "--done", "--json").stdout)
    assert [op["name"] for op in listed] == [name]

    long = json.loads(
        cli(server.url, "ops", "start", "longops.sleep", '{"seconds": 60}', "--json").stdout
    )["name"]
    assert cli(server.url, "ops", "cancel", long).returncode == 0
    timed_out = cli(server.url, "ops", "wait", long, "--timeout", "30", "--json")
    assert json.loads(timed_out.stdout)["error"]["code"] == 1
    assert timed_out.returncode == 1  # done with an error

    assert cli(server.url, "ops", "delete", name).returncode == 0
    missing = cli(server.url, "ops", "get", name)
    assert missing.returncode == 1 and "404 NOT_FOUND" in missing.stderr


def test_ops_wait_gives_up_at_its_timeout(server: ThreadServer) -> None:
    name = json.loads(
        cli(server.url, "ops", "start", "longops.sleep", '{"seconds": 60}', "--json").stdout
    )["name"]
    waited = cli(server.url, "ops", "wait", name, "--timeout", "0.5", "--json")
    assert waited.returncode == 3
    assert json.loads(waited.stdout)["done"] is False
    # Not left running: the server's shutdown would give it its whole grace.
    assert cli(server.url, "ops", "cancel", name).returncode == 0


def test_ops_rejects_bad_json_request(server: ThreadServer) -> None:
    result = cli(server.url, "ops", "start", "longops.sleep", "{not json")
    assert result.returncode == 2 and "not JSON" in result.stderr


@pytest.fixture
def hash_server(
    make_server: Callable[..., ThreadServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ThreadServer:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("EXAMPLE_HASH_ROOT", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    return make_server(load=("hash_file",))


def test_example_kind_hashes_a_file(hash_server: ThreadServer, tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    (tmp_path / "root" / "blob.bin").write_bytes(data)
    with Client(base_url=hash_server.url) as client:
        op = client.operations.start(
            "example.hash_file", {"path": "blob.bin", "algorithm": "sha512", "chunkBytes": 65536}
        )
        done = client.operations.wait(op, timeout=60)
    assert done.error is None
    assert done.response["hexDigest"] == hashlib.sha512(data).hexdigest()  # type: ignore[index]
    assert done.response["sizeBytes"] == len(data)  # type: ignore[index]
    assert done.metadata is not None and done.metadata["bytesHashed"] == len(data)
    assert done.metadata["@type"] == "type.googleapis.com/example.v1.HashFileMetadata"


def test_example_kind_reports_expected_failures(hash_server: ThreadServer, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("outside the root")
    with Client(base_url=hash_server.url) as client:
        outside = client.operations.start("example.hash_file", {"path": "../secret.txt"})
        missing = client.operations.start("example.hash_file", {"path": "nope.bin"})
        assert client.operations.wait(outside, timeout=30).error.code == 7  # type: ignore[union-attr]
        assert client.operations.wait(missing, timeout=30).error.code == 5  # type: ignore[union-attr]
        with pytest.raises(ClientError) as info:
            client.operations.start("example.hash_file", {"path": "x", "algorithm": "crc32"})
        assert info.value.code == 400 and "algorithm" in (info.value.message or "")


def test_serve_loads_a_kind_module(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "file.txt").write_bytes(b"hello longops\n")
    port = free_port()
    env = subprocess_env({"PYTHONPATH": f"{EXAMPLES}{os.pathsep}{REPO}"})
    env["EXAMPLE_HASH_ROOT"] = str(tmp_path)
    server = Process(
        ["serve", "--port", str(port), "--database", database_url, "--load", "hash_file"],
        env,
        tmp_path / "serve.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        with Client(base_url=url) as client:
            done = client.operations.wait(
                client.operations.start("example.hash_file", {"path": "file.txt"}), timeout=60
            )
        assert done.response["hexDigest"] == hashlib.sha256(b"hello longops\n").hexdigest()  # type: ignore[index]
        # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status.
        assert server.terminate() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log.read_text()
    finally:
        server.close()
