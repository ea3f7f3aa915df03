"""gs:// URIs out of the box: a server started with no settings keeps buckets in a local
folder (./longops-gcs) for video outputs and imports alike, and LONGOPS_GCS_ROOT=gs://
sends both to Cloud Storage itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from longops import Client
from longops.kinds.buckets import gcs_root
from longops.kinds.videos.settings import VideoSettings
from longops.types import GenerateVideosConfig, ImportFileSource
from tests.support.servers import (
    AppThread,
    Process,
    ThreadServer,
    free_port,
    subprocess_env,
    wait_healthy,
)

QUICK = {
    "name": "veo-test",
    "like": "veo-2.0-generate-001",
    "durations": [1],
    "default_duration": 1,
}


def generate_to(client: Client, storage: str) -> str:
    """A one-second Vertex-style video written to `storage`; its gs:// URI."""
    done = client.operations.wait(
        client.models.generate_videos(
            model="veo-test",
            prompt="a lighthouse at dusk",
            config=GenerateVideosConfig(duration_seconds=1, output_gcs_uri=storage),
        ),
        timeout=120,
    )
    assert done.done and done.error is None, done.error
    assert done.response is not None
    uri = done.response.generated_videos[0].video.uri
    assert uri is not None and uri.startswith(f"{storage}/") and uri.endswith("/sample_0.mp4")
    return uri


def import_and_find(client: Client, uri: str, word: str) -> list[str]:
    store = client.file_search_stores.create()
    done = client.operations.wait(
        client.file_search_stores.import_file(
            store=store.name, source=ImportFileSource(gcs_uri=uri)
        ),
        timeout=60,
    )
    assert done.error is None, done.error
    hits = client.file_search_stores.query(name=store.name, query=word)
    return [h.document.display_name for h in hits.relevant_chunks if h.document]


def test_a_server_with_no_settings_writes_and_imports_gs_uris_in_its_folder(
    tmp_path: Path,
) -> None:
    """`longops serve` with nothing configured but a short model: output_gcs_uri lands in
    ./longops-gcs, and a gs:// import reads from the same folder."""
    models = tmp_path / "models.json"
    models.write_text(json.dumps([QUICK]))
    env = subprocess_env({"LONGOPS_VIDEO_MODELS": str(models)})
    for name in ("LONGOPS_GCS_ROOT", "LONGOPS_DATABASE_URL", "LONGOPS_BLOBS", "LONGOPS_PORT"):
        env.pop(name, None)
    port = free_port()
    server = Process(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    server.cwd = tmp_path
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        with Client(base_url=url, vertexai=True, project="p", location="us-central1") as vertex:
            uri = generate_to(vertex, "gs://bucket/x")
        written = tmp_path / "longops-gcs" / uri.removeprefix("gs://")
        assert written.read_bytes()[4:8] == b"ftyp"  # an MP4, in the stand-in bucket

        notes = tmp_path / "longops-gcs" / "bucket" / "x" / "notes.txt"
        notes.write_text("The lighthouse keeper lights the lamp at dusk.")
        with Client(base_url=url) as client:
            assert import_and_find(client, "gs://bucket/x/notes.txt", "keeper") == ["notes.txt"]
    finally:
        server.close()


def test_the_default_folder_and_the_setting_for_cloud_storage() -> None:
    assert gcs_root({}) == Path("longops-gcs")
    assert gcs_root({"LONGOPS_GCS_ROOT": "/srv/gcs/{tenant}"}) == Path("/srv/gcs/{tenant}")
    assert gcs_root({"LONGOPS_GCS_ROOT": "gs://"}) is None
    with pytest.raises(ValueError, match="LONGOPS_GCS_ROOT"):
        gcs_root({"LONGOPS_GCS_ROOT": "gs://bucket/prefix"})


def storage_emulator(objects: dict[tuple[str, str], bytes]) -> AppThread:
    """The few calls of the Cloud Storage JSON API that gcsfs makes to read and write
    small objects: the bucket is the edge of the world, so this stands in for it."""

    def described(bucket: str, name: str) -> dict[str, str]:
        size = str(len(objects[(bucket, name)]))
        return {"kind": "storage#object", "bucket": bucket, "name": name, "size": size}

    async def read(request: Request) -> Response:
        bucket, name = request.path_params["bucket"], request.path_params["name"]
        if (bucket, name) not in objects:
            return JSONResponse({"error": {"code": 404, "message": "No such object"}}, 404)
        if request.query_params.get("alt") == "media":
            return Response(objects[(bucket, name)], media_type="application/octet-stream")
        return JSONResponse(described(bucket, name))

    async def upload(request: Request) -> Response:
        """gcsfs' simple upload: a multipart/related body, the object's JSON, then its bytes."""
        bucket, body = request.path_params["bucket"], await request.body()
        metadata_end = body.index(b"\n--==0==\n")
        name = json.loads(body[body.index(b"\n\n") + 2 : metadata_end])["name"]
        start = body.index(b"\n\n", metadata_end) + 2
        objects[(bucket, name)] = body[start : body.rindex(b"\n--==0==--")]
        return JSONResponse(described(bucket, name))

    return AppThread(
        Starlette(
            routes=[
                Route("/storage/v1/b/{bucket}/o/{name:path}", read),
                Route("/download/storage/v1/b/{bucket}/o/{name:path}", read),
                Route("/upload/storage/v1/b/{bucket}/o", upload, methods=["POST"]),
            ]
        ),
        lifespan="off",
    ).start()


def test_gs_root_setting_sends_outputs_and_imports_to_cloud_storage(
    make_server: Callable[..., ThreadServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    objects = {("bucket", "docs/moon.txt"): b"The moon raises tides twice a day."}
    emulator = storage_emulator(objects)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("LONGOPS_GCS_ROOT", "gs://")
    models = tmp_path / "models.json"
    models.write_text(json.dumps([QUICK]))
    monkeypatch.setenv("LONGOPS_VIDEO_MODELS", str(models))
    monkeypatch.chdir(tmp_path)
    server = make_server(videos=VideoSettings.from_env())
    try:
        with Client(base_url=server.url, vertexai=True, project="p", location="l") as vertex:
            uri = generate_to(vertex, "gs://bucket/out")
        bucket, name = uri.removeprefix("gs://").split("/", 1)
        assert objects[(bucket, name)][4:8] == b"ftyp"  # uploaded, an MP4
        assert not (tmp_path / "longops-gcs").exists()  # nothing went to the local folder
        with Client(base_url=server.url) as client:
            assert import_and_find(client, "gs://bucket/docs/moon.txt", "tides") == ["moon.txt"]
        assert httpx.get(f"{emulator.url}/storage/v1/b/bucket/o/{name}").status_code == 200
    finally:
        emulator.stop()
