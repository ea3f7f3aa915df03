"""The file search index (`kinds/file_search/index.py`) on every backend: stores,
documents and chunks, scoped to one tenant, whatever an import and a delete do at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from longops.engine.store import Store, open_store
from longops.kinds.file_search.index import SearchIndex, TenantIndex
from longops.kinds.file_search.records import DocumentRecord, SearchStoreRecord
from tests.store.backends import only
from tests.support.old_layouts import make_old_layout


@pytest.fixture
def index(store: Store) -> TenantIndex:
    return SearchIndex.of(store.database).tenant("team-a")


def search_store(id: str = "s", tenant: str = "team-a") -> SearchStoreRecord:
    return SearchStoreRecord(id, tenant, "Notes", None, 1.0, 1.0)


def document(store_id: str = "s", key: str = "source", **fields: Any) -> DocumentRecord:
    values: dict[str, Any] = {
        "id": f"d-{key}", "store_id": store_id, "source_key": key, "display_name": "doc.txt",
        "mime_type": "text/plain", "size_bytes": 5, "custom_metadata": [], "state": "PENDING",
        "create_time": 1.0, "update_time": 1.0,
    }  # fmt: skip
    return DocumentRecord(**(values | fields))


async def rows_of(store: Store, store_id: str) -> tuple[int, int]:
    """Documents and chunks of `store_id` in the database, whatever their state."""
    counts = []
    for table in ("documents", "chunks"):
        row = await store.database.read(
            lambda s, t=table: s.fetchrow(f"SELECT count(*) FROM {t} WHERE store_id = ?", store_id)
        )
        assert row is not None
        counts.append(row[0])
    return counts[0], counts[1]


async def indexed(index: TenantIndex, key: str, chunks: list[str], **fields: Any) -> DocumentRecord:
    begun = await index.begin_document(document(key=key, **fields))
    assert begun is not None
    done = await index.index_document(document(key=key, id=begun.id, **fields), chunks, 2.0)
    assert done is not None
    return done


# -- stores ------------------------------------------------------------------------


async def test_stores_are_created_listed_and_paged_per_tenant(store: Store) -> None:
    a, b = SearchIndex.of(store.database).tenant("a"), SearchIndex.of(store.database).tenant("b")
    made = [await a.create_search_store(search_store(f"s{i}", "a")) for i in range(3)]
    await b.create_search_store(search_store("other", "b"))
    assert made[0].display_name == "Notes" and made[0].active_documents == 0
    first = await a.list_search_stores(before_seq=None, limit=2)
    assert [s.id for s in first] == ["s2", "s1"]
    assert [s.id for s in await a.list_search_stores(before_seq=first[-1].seq, limit=2)] == ["s0"]
    assert [s.id for s in await b.list_search_stores(before_seq=None, limit=10)] == ["other"]


async def test_another_tenants_store_is_not_there(store: Store, index: TenantIndex) -> None:
    other = SearchIndex.of(store.database).tenant("team-b")
    await index.create_search_store(search_store())
    await indexed(index, "doc", ["moon and tides"])
    assert await other.get_search_store("s") is None
    assert await other.list_search_stores(before_seq=None, limit=10) == []
    assert await other.delete_search_store("s", force=True) is None
    assert await other.begin_document(document()) is None
    assert await other.get_document("s", "d-doc") is None
    assert await other.list_documents("s", before_seq=None, limit=10) == []
    assert await other.delete_document("s", "d-doc", force=True) is None
    assert await other.query("s", ["moon"], [], 10) == []
    assert await rows_of(store, "s") == (1, 1)  # all still there for its owner
    assert [h.text for h in await index.query("s", ["moon"], [], 10)] == ["moon and tides"]


async def test_a_store_with_documents_is_deleted_only_by_force(
    store: Store, index: TenantIndex
) -> None:
    await index.create_search_store(search_store())
    await indexed(index, "doc", ["one", "two"])
    counted = await index.get_search_store("s")
    assert counted is not None and (counted.active_documents, counted.size_bytes) == (1, 5)
    assert await index.delete_search_store("s", force=False) is False
    assert await index.delete_search_store("s", force=True) is True
    assert await index.get_search_store("s") is None and await rows_of(store, "s") == (0, 0)
    assert await index.delete_search_store("s", force=True) is None


# -- documents ---------------------------------------------------------------------


async def test_a_source_imported_again_is_one_document(index: TenantIndex) -> None:
    await index.create_search_store(search_store())
    first = await indexed(index, "doc", ["old text"])
    again = await index.begin_document(document(key="doc", id="another-id"))
    assert again is not None and again.id == first.id and again.state == "ACTIVE"
    replaced = await index.index_document(document(key="doc", id=first.id), ["new", "text"], 3.0)
    assert replaced is not None and replaced.chunks == 2 and replaced.update_time == 3.0
    assert [h.text for h in await index.query("s", ["old"], [], 10)] == []
    assert len(await index.list_documents("s", before_seq=None, limit=10)) == 1


async def test_abandon_forgets_only_a_document_never_indexed(
    store: Store, index: TenantIndex
) -> None:
    await index.create_search_store(search_store())
    active = await indexed(index, "kept", ["text"])
    pending = await index.begin_document(document(key="new"))
    assert pending is not None
    await index.abandon_document("s", active.id)
    await index.abandon_document("s", pending.id)
    assert await index.get_document("s", pending.id) is None
    assert await index.get_document("s", active.id) == active


async def test_a_document_with_chunks_is_deleted_only_by_force(
    store: Store, index: TenantIndex
) -> None:
    await index.create_search_store(search_store())
    doc = await indexed(index, "doc", ["text"])
    assert await index.delete_document("s", doc.id, force=False) is False
    assert await index.delete_document("s", doc.id, force=True) is True
    assert await index.delete_document("s", doc.id, force=True) is None
    assert await rows_of(store, "s") == (0, 0)


async def test_documents_are_listed_newest_first_in_keyset_pages(index: TenantIndex) -> None:
    await index.create_search_store(search_store())
    for key in ("a", "b", "c"):
        await indexed(index, key, [key])
    first = await index.list_documents("s", before_seq=None, limit=2)
    assert [d.source_key for d in first] == ["c", "b"]
    rest = await index.list_documents("s", before_seq=first[-1].seq, limit=2)
    assert [d.source_key for d in rest] == ["a"]


# -- queries -------------------------------------------------------------------------


async def test_a_query_finds_chunks_best_first_and_filters_on_metadata(
    index: TenantIndex,
) -> None:
    await index.create_search_store(search_store())
    year = [{"key": "year", "numericValue": 1969}, {"key": "kind", "stringValue": "log"}]
    await indexed(
        index, "lunar", ["The moon landing.", "Moon dust and the moon."], custom_metadata=year
    )
    await indexed(index, "sea", ["Tides follow the moon."], custom_metadata=[])
    hits = await index.query("s", ["moon"], [], 10)
    # Each database ranks its own way (BM25, ts_rank); both rank every match, best first.
    assert len(hits) == 3 and {h.text for h in hits} == {
        "The moon landing.",
        "Moon dust and the moon.",
        "Tides follow the moon.",
    }
    assert all(0 < h.score < 1 for h in hits) and hits == sorted(hits, key=lambda h: -h.score)
    assert hits[0].document.custom_metadata == year
    filtered = await index.query("s", ["moon"], [("year", ">=", 1969), ("kind", "=", "log")], 10)
    assert {h.document.source_key for h in filtered} == {"lunar"}
    assert await index.query("s", ["moon"], [("year", "<", 1969)], 10) == []
    assert await index.query("s", ["moon"], [("kind", "!=", "log")], 10) == []
    assert await index.query("s", [], [], 10) == []
    assert len(await index.query("s", ["moon"], [], 1)) == 1


async def test_an_unknown_filter_operator_is_refused_on_every_backend(
    index: TenantIndex,
) -> None:
    """Drift resolved: only PostgreSQL checked the operator; SQLite put it in the SQL."""
    await index.create_search_store(search_store())
    with pytest.raises(ValueError, match="operator"):
        await index.query("s", ["moon"], [("year", "= 1 OR 1 =", 1)], 10)


# -- a store deleted while an import runs ------------------------------------------------


async def test_an_import_begun_after_a_force_delete_leaves_no_document(
    store: Store, index: TenantIndex
) -> None:
    await index.create_search_store(search_store())
    assert await index.delete_search_store("s", force=True) is True
    assert await index.begin_document(document()) is None
    assert await rows_of(store, "s") == (0, 0)


async def test_an_import_that_began_before_a_force_delete_indexes_nothing(
    store: Store, index: TenantIndex
) -> None:
    await index.create_search_store(search_store())
    begun = await index.begin_document(document())
    assert begun is not None and begun.state == "PENDING"
    assert await index.delete_search_store("s", force=True) is True
    assert await index.index_document(begun, ["some text"], 2.0) is None
    await index.abandon_document("s", begun.id)
    assert await rows_of(store, "s") == (0, 0)


@only("postgres")
async def test_a_force_delete_during_an_index_leaves_no_chunk(
    store: Store, index: TenantIndex
) -> None:
    """PostgreSQL runs the two at once (SQLite serialises writes): an index whose
    document update went first, and a delete that then removed the (not yet inserted)
    chunks before the index committed, left chunks of a deleted store. A trigger holds
    the index inside its chunk insert until the delete is waiting on a lock, so the
    test drives exactly that order."""
    await index.create_search_store(search_store())
    begun = await index.begin_document(document())
    assert begun is not None
    pool: Any = store.database.pool  # type: ignore[attr-defined]
    async with pool.acquire() as gate:
        await gate.execute(
            "CREATE FUNCTION hold_chunks() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_advisory_xact_lock(4711); RETURN NEW; END $$;"
            " CREATE TRIGGER hold_chunks BEFORE INSERT ON chunks"
            " FOR EACH ROW EXECUTE FUNCTION hold_chunks()"
        )
        await gate.execute("SELECT pg_advisory_lock(4711)")
        indexing = asyncio.create_task(index.index_document(begun, ["a", "b"], 2.0))
        index_pid = await _blocked_by(gate, await gate.fetchval("SELECT pg_backend_pid()"))
        deleting = asyncio.create_task(index.delete_search_store("s", force=True))
        await _blocked_by(gate, index_pid)
        await gate.execute("SELECT pg_advisory_unlock(4711)")
        done, deleted = await asyncio.wait_for(asyncio.gather(indexing, deleting), 10)
    assert deleted is True
    assert done is not None  # the index went first, and the delete took it all
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


# -- databases an older longops made ---------------------------------------------------


async def test_an_older_layout_is_adopted_with_its_documents(backend: str, store_url: str) -> None:
    """Before the index had a schema of its own, the engine's migrations made its
    tables (and the first PostgreSQL ones indexed chunks with `english`, which drops
    "the" and "to be"): opening such a database keeps every document, makes orphans go,
    and tokenises as today."""
    await make_old_layout(backend, store_url, "To be, or not to be: the café question.")
    store = open_store(store_url)
    await store.open()
    try:
        index = SearchIndex.of(store.database).tenant("t")
        assert [d.id for d in await index.list_documents("s", before_seq=None, limit=10)] == ["d"]
        for terms in (["the"], ["to", "be"], ["cafe"], ["questions"]):
            hits = await index.query("s", terms, [], 10)
            assert [h.text for h in hits] == ["To be, or not to be: the café question."], terms
        assert await rows_of(store, "gone") == (0, 0)  # the orphans
    finally:
        await store.close()


async def _one_document(url: str, text: str) -> Callable[..., Awaitable[list[str]]]:
    store = open_store(url)
    await store.open()
    index = SearchIndex.of(store.database).tenant("t")
    await index.create_search_store(search_store("s", "t"))
    await indexed(index, "doc", [text])

    async def search(*terms: str) -> list[str]:
        return [hit.text for hit in await index.query("s", terms, [], 10)]

    search.store = store  # type: ignore[attr-defined]
    return search


@only("postgres")
async def test_stores_in_two_schemas_of_one_database_search_apart(store_url: str) -> None:
    """Each schema has its own text search configuration; dropping one schema leaves the
    other whole."""
    other_url = f"{store_url}_b"  # the URL ends in ?schema=NAME
    here = await _one_document(store_url, "The moon pulls the tides.")
    try:
        there = await _one_document(other_url, "The sun warms the sea.")
        assert await here("the", "moon") == ["The moon pulls the tides."]
        assert await there("the", "moon") == ["The sun warms the sea."]
        await there.store.close()  # type: ignore[attr-defined]
        schema = other_url.rsplit("schema=", 1)[1]
        await here.store.database.write(  # type: ignore[attr-defined]
            lambda s: s.execute(f'DROP SCHEMA "{schema}" CASCADE')
        )
        assert await here("moon") == ["The moon pulls the tides."]
    finally:
        await here.store.close()  # type: ignore[attr-defined]
