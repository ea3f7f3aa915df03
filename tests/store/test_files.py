"""Files: ids are each tenant's own, a retried create is the same file, and every read
and delete stays inside its tenant."""

from __future__ import annotations

import pytest

from longops.engine.store import Store
from longops.engine.store.base import FileExists
from tests.store.records import file


async def test_create_file_answers_with_the_file_as_stored(store: Store, other: Store) -> None:
    made = file("report", "team-a", "files/blob-a", size=5 * 2**40)
    created = await store.create_file(made)
    assert created.seq > 0
    assert (created.id, created.tenant, created.blob_key) == ("report", "team-a", "files/blob-a")
    assert created.size_bytes == 5 * 2**40 and created.display_name is None
    assert await other.get_file("report", "team-a") == created


async def test_a_created_file_comes_back_with_the_types_a_read_gives(store: Store) -> None:
    created = await store.create_file(file("report", "team-a", "files/blob-a"))
    assert [type(created.create_time), type(created.expire_time)] == [float, float]


async def test_file_ids_are_unique_per_tenant_only(store: Store) -> None:
    a = await store.create_file(file("report", "team-a", "files/blob-a"))
    b = await store.create_file(file("report", "team-b", "files/blob-b", size=5))
    assert (b.tenant, b.blob_key, b.size_bytes) == ("team-b", "files/blob-b", 5)
    assert await store.get_file("report", "team-a") == a
    assert await store.get_file("report", "team-b") == b
    assert await store.get_file("report", "team-c") is None


async def test_a_retried_create_file_is_that_file_and_another_upload_is_refused(
    store: Store,
) -> None:
    """The same blob key is the same upload, whose first try committed: it is answered
    with the file. Another blob key under the tenant's id is another upload."""
    first = await store.create_file(file("report", "team-a", "files/blob-a"))
    repeated = await store.create_file(file("report", "team-a", "files/blob-a"))
    assert repeated == first
    with pytest.raises(FileExists):
        await store.create_file(file("report", "team-a", "files/blob-c"))
    assert await store.get_file("report", "team-a") == first
    assert await store.list_files("team-a", before_seq=None, limit=10) == [first]


async def test_list_files_is_the_tenants_own_newest_first_in_keyset_pages(
    store: Store,
) -> None:
    mine = [await store.create_file(file(f"f{i}", "t", f"blob-{i}")) for i in range(5)]
    await store.create_file(file("f0", "someone-else", "blob-else"))
    newest_first = list(reversed(mine))
    assert await store.list_files("t", before_seq=None, limit=10) == newest_first
    pages: list[str] = []
    before: int | None = None
    while page := await store.list_files("t", before_seq=before, limit=2):
        assert len(page) <= 2
        pages += [f.id for f in page]
        before = page[-1].seq
    assert pages == [f.id for f in newest_first]
    assert await store.list_files("t", before_seq=mine[0].seq, limit=10) == []
    assert await store.list_files("t", before_seq=None, limit=0) == []
    assert await store.list_files("nobody", before_seq=None, limit=10) == []


async def test_delete_file_takes_only_the_tenants_own(store: Store) -> None:
    a = await store.create_file(file("report", "team-a", "files/blob-a"))
    await store.create_file(file("report", "team-b", "files/blob-b"))
    assert await store.delete_file("report", "team-c") is None
    deleted = await store.delete_file("report", "team-b")
    assert deleted is not None and deleted.blob_key == "files/blob-b"
    assert deleted.tenant == "team-b"
    assert await store.delete_file("report", "team-b") is None
    assert await store.get_file("report", "team-b") is None
    assert await store.get_file("report", "team-a") == a  # the other tenant's is untouched
    again = await store.create_file(file("report", "team-b", "files/blob-new"))
    assert again.blob_key == "files/blob-new" and again.seq > a.seq
