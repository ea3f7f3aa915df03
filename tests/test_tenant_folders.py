"""Folders that stand in for Cloud Storage or hold importable files, one per tenant.

With `{tenant}` in LONGOPS_GCS_ROOT / LONGOPS_IMPORT_FOLDER, a tenant reads and writes
only its own folder: the videos another wrote and the files under another's import
folder are NOT_FOUND to it, through every route (importFile, a video's first frame).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from longops import Client
from longops.kinds.folders import OutsideFolder, inside, tenant_folder, tenant_name
from longops.kinds.videos.catalogue import Catalogue, VideoModel
from longops.kinds.videos.settings import VideoSettings
from longops.server.config import ServerConfig
from longops.types import GenerateVideosConfig, Image, ImportFileSource
from tests.support.servers import ThreadServer

NOT_FOUND, INVALID_ARGUMENT = 5, 3
# A tenant name that, pasted into the path as is, would be team-a's folder.
SNEAK = "x/../team-a"
KEYS = {"KEY_A": "team-a", "KEY_B": "team-b", "KEY_S": SNEAK}
QUICK = VideoModel("veo-test", durations=(1,), default_duration=1, resolutions=("720p",))

HOSTILE = ["..", ".", "a/b", "x/../team-a", "../team-a", "team-a/..", "a\x00b", "é", "x" * 65]


@pytest.mark.parametrize("tenant", HOSTILE)
def test_a_hostile_tenant_name_is_one_folder_inside_the_root(tenant: str, tmp_path: Path) -> None:
    root = tmp_path / "gcs" / "{tenant}"
    folder = tenant_folder(root, tenant)
    name = tenant_name(tenant)
    assert folder == tmp_path / "gcs" / name and folder.parent == tmp_path / "gcs"
    assert re.fullmatch(r"t-[0-9a-f]{32}", name)
    assert tenant_name(tenant) == name  # stable: the same folder on every read and write
    with pytest.raises(OutsideFolder):
        inside(folder, "../team-a/bucket/video.mp4")


def test_tenant_names_keep_safe_names_and_never_share_a_folder() -> None:
    assert tenant_name("team-a") == "team-a" and tenant_name("Team.A_1-2") == "Team.A_1-2"
    assert tenant_name("") == "default"  # the open server's tenant
    assert tenant_name("\udcff").startswith("t-")  # undecodable bytes from the environment
    names = [tenant_name(t) for t in [*HOSTILE, "team-a", "team-b", "", "\udcff"]]
    assert len(set(names)) == len(names)


def test_without_the_placeholder_one_folder_is_shared(tmp_path: Path) -> None:
    assert tenant_folder(tmp_path / "gcs", "team-a") == tmp_path / "gcs"


@pytest.fixture
def tenants(
    make_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, tuple[Client, Client, str]]]:
    """A server with `{tenant}` in both folder settings; per API key, a Gemini client,
    a Vertex client and a file search store of that key's tenant."""
    root = tmp_path / "gcs" / "{tenant}"
    monkeypatch.setenv("LONGOPS_GCS_ROOT", str(root))
    monkeypatch.setenv("LONGOPS_IMPORT_FOLDER", str(tmp_path / "imports" / "{tenant}"))
    catalogue = Catalogue()
    catalogue.models[QUICK.name] = QUICK
    server = make_server(
        config=ServerConfig(api_keys=KEYS),
        videos=VideoSettings(catalogue=catalogue, gcs_root=root),
    )
    clients: dict[str, tuple[Client, Client, str]] = {}
    for key in KEYS:
        gemini = Client(api_key=key, base_url=server.url)
        vertex = Client(vertexai=True, project="p", location="l", api_key=key, base_url=server.url)
        store = gemini.file_search_stores.create().name
        assert store is not None
        clients[key] = (gemini, vertex, store)
    yield clients
    for gemini, vertex, _ in clients.values():
        gemini.close()
        vertex.close()


def imported(tenant: tuple[Client, Client, str], **source: str) -> Any:
    gemini, _, store = tenant
    operation = gemini.file_search_stores.import_file(
        store=store, source=ImportFileSource(**source)
    )
    return gemini.operations.wait(operation, timeout=60)


def test_a_video_one_tenant_wrote_is_not_found_by_another(
    tenants: dict[str, tuple[Client, Client, str]], tmp_path: Path
) -> None:
    _, vertex, _ = tenants["KEY_A"]
    operation = vertex.models.generate_videos(
        model=QUICK.name,
        prompt="a lighthouse",
        config=GenerateVideosConfig(output_gcs_uri="gs://bucket/out/"),
    )
    done = vertex.operations.wait(operation, timeout=120)
    assert done.error is None and done.response is not None
    uri = done.response.generated_videos[0].video.uri
    assert uri is not None and uri.startswith("gs://bucket/out/")
    written = tmp_path / "gcs" / "team-a" / uri.removeprefix("gs://")
    assert written.is_file()
    assert [p.name for p in (tmp_path / "gcs").iterdir()] == ["team-a"]

    # Its own tenant reaches the file: it is read, and refused only for being a video.
    assert imported(tenants["KEY_A"], gcs_uri=uri).error.code == INVALID_ARGUMENT
    for other in ("KEY_B", "KEY_S"):
        failed = imported(tenants[other], gcs_uri=uri).error
        assert failed.code == NOT_FOUND, failed
        assert str(tmp_path) not in failed.message

    def first_frame(key: str) -> Any:
        _, client, _ = tenants[key]
        started = client.models.generate_videos(
            model=QUICK.name, prompt="x", image=Image(gcs_uri=uri, mime_type="image/png")
        )
        return client.operations.wait(started, timeout=60).error

    assert first_frame("KEY_A").code == INVALID_ARGUMENT  # read, and not an image
    assert first_frame("KEY_B").code == NOT_FOUND
    assert first_frame("KEY_S").code == NOT_FOUND


def test_imports_read_only_their_own_tenants_folders(
    tenants: dict[str, tuple[Client, Client, str]], tmp_path: Path
) -> None:
    bucket = tmp_path / "gcs" / "team-a" / "bucket"
    bucket.mkdir(parents=True)
    (bucket / "notes.txt").write_text("The moon pulls the oceans into tides.")
    folder = tmp_path / "imports" / "team-a"
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text("# Plan\n\nShip the tide tables on Friday.")

    assert imported(tenants["KEY_A"], gcs_uri="gs://bucket/notes.txt").error is None
    assert imported(tenants["KEY_A"], uri="file:///plan.md").error is None
    for other in ("KEY_B", "KEY_S"):  # team-b's folders do not even exist
        assert imported(tenants[other], gcs_uri="gs://bucket/notes.txt").error.code == NOT_FOUND
        assert imported(tenants[other], uri="file:///plan.md").error.code == NOT_FOUND
        gemini, _, store = tenants[other]
        assert list(gemini.file_search_stores.documents.list(parent=store)) == []
