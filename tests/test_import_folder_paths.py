"""`file://` imports name a file of LONGOPS_IMPORT_FOLDER by its path relative to the
folder or by its absolute path, as a user copies it; neither reaches outside the folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from longops import Client
from longops.types import ImportFileSource
from tests.support.servers import ThreadServer

NOT_FOUND = 5


def test_relative_and_absolute_paths_inside_the_folder_import(
    make_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "imports"
    (folder / "reports").mkdir(parents=True)
    (folder / "reports" / "q3.txt").write_text("Quarterly revenue grew by a fifth.")
    (tmp_path / "secret.txt").write_text("The vault code is 1234.")
    monkeypatch.setenv("LONGOPS_IMPORT_FOLDER", str(folder))
    server = make_server()

    with Client(base_url=server.url) as client:
        store = client.file_search_stores.create()

        def imported(uri: str) -> object:
            operation = client.file_search_stores.import_file(
                store=store.name, source=ImportFileSource(uri=uri)
            )
            return client.operations.wait(operation, timeout=60).error

        assert imported("file://reports/q3.txt") is None
        assert imported(f"file://{folder / 'reports' / 'q3.txt'}") is None
        for outside in (f"file://{tmp_path / 'secret.txt'}", f"file://{folder}/../secret.txt"):
            error = imported(outside)
            assert error is not None and error.code == NOT_FOUND  # type: ignore[attr-defined]
        hits = client.file_search_stores.query(name=store.name, query="vault")
        assert hits.relevant_chunks == []
