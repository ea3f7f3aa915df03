"""The README's Python examples run as written against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.servers import REPO, ThreadServer, subprocess_env

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
RUNNABLE = [b for b in BLOCKS if ("Client()" in b and "asyncio" not in b) or "asyncio.run" in b]


@pytest.mark.parametrize("code", RUNNABLE, ids=lambda code: code.splitlines()[0][:40])
def test_readme_example_runs(code: str, server: ThreadServer) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env({"LONGOPS_BASE_URL": server.url}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout.lower() or "Success!" in result.stdout


def test_readme_metadata_example_runs_on_a_real_operation(server: ThreadServer) -> None:
    [code] = [b for b in BLOCKS if "operations/abc123" in b]
    created = subprocess.run(
        [sys.executable, "-m", "longops", "ops", "start", "longops.sleep", "--json"],
        env=subprocess_env({"LONGOPS_BASE_URL": server.url}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    name = re.search(r'"name": "([^"]+)"', created.stdout)
    assert name is not None, created.stderr
    result = subprocess.run(
        [sys.executable, "-c", code.replace("operations/abc123", name.group(1))],
        env=subprocess_env({"LONGOPS_BASE_URL": server.url}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Operation: {name.group(1)}" in result.stdout


def test_readme_file_import_example_runs(
    make_server: Callable[..., ThreadServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_extract_chunking import make_pdf

    [code] = [b for b in BLOCKS if "ImportFileSource" in b]
    bucket = tmp_path / "gcs" / "my-bucket"
    bucket.mkdir(parents=True)
    (bucket / "document.pdf").write_bytes(make_pdf(["Revenue grew this quarter.", "Outlook."]))
    monkeypatch.setenv("LONGOPS_GCS_ROOT", str(tmp_path / "gcs"))
    server = make_server()
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env({"LONGOPS_BASE_URL": server.url}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Import completed successfully" in result.stdout
    assert "Revenue grew" in result.stdout
