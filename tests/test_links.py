"""A generated file's links: `uri` an identifier in Google's https form (the official SDKs
read the file id out of it), `downloadUri` the real address under the public URL, which
every process that builds links (API servers, `longops worker`) takes from one setting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import types as genai_types

from longops import Client
from longops.kinds.videos.catalogue import Catalogue, VideoModel
from longops.kinds.videos.settings import VideoSettings
from longops.types import GenerateVideosConfig
from tests.support.servers import (
    Process,
    ThreadServer,
    free_port,
    subprocess_env,
    wait_healthy,
    worker_ready,
)
from tests.support.waiting import until_sync

QUICK = {
    "name": "veo-test",
    "like": "veo-2.0-generate-001",
    "durations": [1],
    "default_duration": 1,
}


def quick_videos() -> VideoSettings:
    catalogue = Catalogue()
    catalogue.models["veo-test"] = VideoModel("veo-test", durations=(1,), default_duration=1)
    return VideoSettings(catalogue=catalogue)


def generate(base_url: str) -> str:
    """A one-second Gemini-style video's uri."""
    with Client(base_url=base_url) as client:
        operation = client.models.generate_videos(
            model="veo-test", prompt="a kite", config=GenerateVideosConfig(duration_seconds=1)
        )
        done = client.operations.wait(operation, timeout=120)
    assert done.done and done.error is None, done.error
    assert done.response is not None
    uri = done.response.generated_videos[0].video.uri
    assert uri is not None
    return uri


def file_id(video_uri: str) -> str:
    return video_uri.split("/files/", 1)[1].split(":", 1)[0]


def test_official_sdk_downloads_a_file_and_every_link_fetches_its_bytes(
    make_server: Callable[..., ThreadServer],
) -> None:
    server = make_server(videos=quick_videos())
    video_uri = generate(server.url)
    id = file_id(video_uri)
    host = server.url.removeprefix("http://")
    assert video_uri == f"https://{host}/v1beta/files/{id}:download?alt=media"

    sdk = genai.Client(api_key="any", http_options=genai_types.HttpOptions(base_url=server.url))
    file = sdk.files.get(name=f"files/{id}")
    version = "v1"  # the version google-genai 3.x calls
    assert file.uri == f"https://{host}/{version}/files/{id}"  # an identifier, as Google's
    assert file.download_uri == f"{server.url}/{version}/files/{id}:download?alt=media"
    data = sdk.files.download(file=file)
    assert data[4:8] == b"ftyp"  # an MP4
    assert sdk.files.download(file=genai_types.Video(uri=video_uri)) == data
    assert sdk.files.download(file=file.uri) == data

    # What a person fetches with curl: the File's downloadUri, as the API gives it.
    for listed in httpx.get(f"{server.url}/v1beta/files").json()["files"]:
        answer = httpx.get(listed["downloadUri"])
        assert (answer.status_code, answer.content) == (200, data)
    assert httpx.get(f"{server.url}/v1/files/{id}").json()["downloadUri"] == (
        f"{server.url}/v1/files/{id}:download?alt=media"
    )


def test_links_follow_the_public_url_not_the_address_a_request_came_to(
    make_server: Callable[..., ThreadServer],
) -> None:
    public = "http://files.example:8080/longops/"
    server = make_server(videos=quick_videos(), public_url=public)
    video_uri = generate(server.url)
    id = file_id(video_uri)
    assert video_uri == f"https://files.example:8080/longops/v1beta/files/{id}:download?alt=media"
    file = httpx.get(f"{server.url}/v1beta/files/{id}").json()
    assert file["uri"] == f"https://files.example:8080/longops/v1beta/files/{id}"
    assert file["downloadUri"] == (
        f"http://files.example:8080/longops/v1beta/files/{id}:download?alt=media"
    )


@pytest.mark.parametrize("setting", ["LONGOPS_PORT", "--public-url"])
def test_a_worker_process_links_to_the_api_servers_public_url(tmp_path: Path, setting: str) -> None:
    """`longops worker` builds video links from the public URL the API servers use: the
    same LONGOPS_HOST/LONGOPS_PORT they default it from, or the same --public-url."""
    models = tmp_path / "models.json"
    models.write_text(json.dumps([QUICK]))
    port = free_port()
    env = subprocess_env(
        {
            "LONGOPS_VIDEO_MODELS": str(models),
            "LONGOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'longops.db'}",
            "LONGOPS_BLOBS": str(tmp_path / "blobs"),
        }
    )
    env.pop("LONGOPS_PUBLIC_URL", None)
    serve_args, worker_extra = ["serve", "--no-workers"], ["worker"]
    if setting == "LONGOPS_PORT":
        env["LONGOPS_PORT"] = str(port)
    else:
        serve_args += ["--port", str(port)]
        worker_extra += ["--public-url", f"http://127.0.0.1:{port}"]
    api = Process(serve_args, env, tmp_path / "serve.log").start()
    worker = Process(worker_extra, env, tmp_path / "worker.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        until_sync(worker_ready(worker), timeout=30, what="the worker started")
        video_uri = generate(url)
        id = file_id(video_uri)
        assert video_uri == f"https://127.0.0.1:{port}/v1beta/files/{id}:download?alt=media"
        file = httpx.get(f"{url}/v1beta/files/{id}").json()
        answer = httpx.get(file["downloadUri"])
        assert answer.status_code == 200 and answer.content[4:8] == b"ftyp"
    finally:
        worker.close()
        api.close()
