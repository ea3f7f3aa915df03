"""Databases an older longops made open with everything they hold. (The file search
index's own layouts are in test_search_index.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from longops.engine.store import open_store, postgres, sqlite
from longops.engine.store.base import FileExists
from tests.store.records import file


async def test_an_existing_database_migrates_to_files_per_tenant(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before files were tenant-scoped keeps its files, then takes a
    second tenant's file of the same id."""
    module: Any = sqlite if store_url.startswith("sqlite") else postgres
    full = module._MIGRATIONS
    with monkeypatch.context() as patch:
        patch.setattr(module, "_MIGRATIONS", full[: len(full) - 1])
        old = open_store(store_url)
        await old.open()
        try:
            await old.database.write(
                lambda s: s.execute(
                    "INSERT INTO files (id, tenant, mime_type, size_bytes, sha256, source,"
                    " blob_key, create_time, expire_time) VALUES ('report', 'team-a',"
                    " 'text/plain', 3, '', 'UPLOADED', 'files/report', 1, 1e12)"
                )
            )
        finally:
            await old.close()
    store = open_store(store_url)
    await store.open()
    try:
        kept = await store.get_file("report", "team-a")
        assert kept is not None and kept.blob_key == "files/report"
        other = await store.create_file(file("report", "team-b", "files/other"))
        assert other.tenant == "team-b" and other.seq > kept.seq
        with pytest.raises(FileExists):
            await store.create_file(file("report", "team-a", "files/third"))
    finally:
        await store.close()
