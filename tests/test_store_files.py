"""The stores' search-store documents under hostile timing, on both backends: a
force-deleted search store leaves no document or chunk behind whatever an import does
meanwhile; and the migration to files per tenant. (Files themselves are in tests/store/.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from longops.engine.records import DocumentRecord, FileRecord, SearchStoreRecord
from longops.engine.store import Store, open_store
from longops.engine.store.base import FileExists
from tests.support.postgres import database


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def file(id: str, tenant: str, blob_key: str, size: int = 3) -> FileRecord:
    return FileRecord(id, tenant, None, "text/plain", size, "00" * 32, "UPLOADED", blob_key,
                      1.0, 1e12)  # fmt: skip


def document(store_id: str, key: str = "source") -> DocumentRecord:
    return DocumentRecord(f"d-{key}", store_id, key, "doc.txt", "text/plain", 5, [], "PENDING",
                          1.0, 1.0)  # fmt: skip


async def rows_of(store: Store, store_id: str) -> tuple[int, int]:
    """Documents and chunks of `store_id` in the database, whatever their state."""
    counts = []
    for table in ("documents", "chunks"):
        sql = f"SELECT count(*) FROM {table} WHERE store_id = "
        if hasattr(store, "pool"):
            counts.append(await store.pool.fetchval(sql + "$1", store_id))
        else:
            sqlite: Any = store
            counts.append(sqlite.conn.execute(sql + "?", (store_id,)).fetchone()[0])
    return counts[0], counts[1]


async def execute(store: Store, sql: str) -> None:
    if hasattr(store, "pool"):
        await store.pool.execute(sql)
    else:
        sqlite: Any = store
        sqlite.conn.execute(sql)


async def test_an_import_begun_after_a_force_delete_leaves_no_document(store: Store) -> None:
    await store.create_search_store(SearchStoreRecord("s", "team-a", None, None, 1.0, 1.0))
    assert await store.delete_search_store("s", force=True) is True
    assert await store.begin_document(document("s")) is None
    assert await rows_of(store, "s") == (0, 0)


async def test_an_import_that_began_before_a_force_delete_indexes_nothing(store: Store) -> None:
    await store.create_search_store(SearchStoreRecord("s", "team-a", None, None, 1.0, 1.0))
    begun = await store.begin_document(document("s"))
    assert begun is not None and begun.state == "PENDING"
    assert await store.delete_search_store("s", force=True) is True
    assert await store.index_document(begun, ["some text"], 2.0) is None
    await store.abandon_document(begun.id)
    assert await rows_of(store, "s") == (0, 0)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_force_delete_during_an_index_leaves_no_chunk(store: Store) -> None:
    """PostgreSQL runs the two at once: an index whose document update went first, and a
    delete that then removed the (not yet inserted) chunks before the index committed,
    left chunks of a deleted store. A trigger holds the index inside its chunk insert
    until the delete is waiting on a lock, so the test drives exactly that order."""
    await store.create_search_store(SearchStoreRecord("s", "team-a", None, None, 1.0, 1.0))
    begun = await store.begin_document(document("s"))
    assert begun is not None
    pool: Any = store.pool  # type: ignore[attr-defined]
    async with pool.acquire() as gate:
        await gate.execute(
            "CREATE FUNCTION hold_chunks() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock(4711); RETURN NEW; END $$;"
            " CREATE TRIGGER hold_chunks BEFORE INSERT ON chunks"
            " FOR EACH ROW EXECUTE FUNCTION hold_chunks()"
        )
        await gate.execute("SELECT pg_advisory_lock(4711)")
        indexing = asyncio.create_task(store.index_document(begun, ["a", "b"], 2.0))
        index_pid = await _blocked_by(gate, await gate.fetchval("SELECT pg_backend_pid()"))
        deleting = asyncio.create_task(store.delete_search_store("s", force=True))
        await _blocked_by(gate, index_pid)
        await gate.execute("SELECT pg_advisory_unlock(4711)")
        indexed, deleted = await asyncio.wait_for(asyncio.gather(indexing, deleting), 10)
    assert deleted is True
    assert indexed is not None  # the index went first, and the delete took it all
    assert await rows_of(store, "s") == (0, 0)


async def _blocked_by(conn: Any, pid: int) -> int:
    """The backend that comes to wait for a lock `pid` holds."""
    for _ in range(1000):
        if waiting := await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid
        ):
            return int(waiting)
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing came to wait for backend {pid}")


async def test_an_existing_database_migrates_to_files_per_tenant(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before files were tenant-scoped keeps its files, then takes a
    second tenant's file of the same id; what an import left for a deleted store goes."""
    from longops.engine.store import postgres, sqlite

    module: Any = sqlite if store_url.startswith("sqlite") else postgres
    full = module._MIGRATIONS
    with monkeypatch.context() as patch:
        patch.setattr(module, "_MIGRATIONS", full[: len(full) - 1])
        old = open_store(store_url)
        await old.open()
        try:
            await execute(
                old,
                "INSERT INTO files (id, tenant, mime_type, size_bytes, sha256, source, blob_key,"
                " create_time, expire_time) VALUES ('report', 'team-a', 'text/plain', 3, '',"
                " 'UPLOADED', 'files/report', 1, 1e12)",
            )
            # What an import used to leave for a store deleted under it:
            await execute(
                old,
                "INSERT INTO documents (id, store_id, source_key, size_bytes, custom_metadata,"
                " state, create_time, update_time)"
                " VALUES ('d', 's', 'k', 1, '[]', 'PENDING', 1, 1)",
            )
            await execute(
                old,
                "INSERT INTO chunks (document_id, store_id, chunk_index, text)"
                " VALUES ('d', 's', 0, 'orphan')",
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
        assert await rows_of(store, "s") == (0, 0)
    finally:
        await store.close()
