"""Video generation end to end: the spec's examples, real MP4s, the Files API, the errors."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import av
import httpx
import pytest

from longops import Client
from longops.errors import ClientError
from longops.kinds.videos.catalogue import Catalogue, VideoModel
from longops.kinds.videos.render import RenderResult, RenderSpec
from longops.kinds.videos.settings import Fault, VideoSettings
from longops.types import GenerateVideosConfig, GenerateVideosOperation, Image
from tests.support.servers import ThreadServer

# A model with short clips keeps the suite fast; the spec's own examples use Veo 2 as given.
# 8 s is for the one test that cancels a render midway: it must outlast a progress write.
QUICK = VideoModel(
    "veo-test", durations=(1, 2, 8), default_duration=1, resolutions=("720p", "1080p"), audio=True
)


def settings(tmp_path: Path, **changes: object) -> VideoSettings:
    catalogue = Catalogue()
    catalogue.models[QUICK.name] = QUICK
    base = VideoSettings(catalogue=catalogue, gcs_root=tmp_path / "gcs")
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def video_server(make_server: Callable[..., ThreadServer], tmp_path: Path) -> ThreadServer:
    return make_server(
        videos=settings(
            tmp_path,
            safety_terms=("forbidden",),
            faults=(
                Fault("please fail", fail_code=8, fail_message="Quota exceeded (injected)."),
                Fault("take your time", delay_seconds=60),
            ),
        )
    )


def probe(data: bytes) -> dict[str, object]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "format": container.format.name,
            "codec": video.codec_context.name,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "frames": frames,
            "audio": len(container.streams.audio),
        }


def decoded(data: bytes) -> list[bytes]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray().tobytes() for f in container.decode(video=0)]


def test_spec_video_generation_example(video_server: ThreadServer, tmp_path: Path) -> None:
    """The spec's example, with only the import and the server address changed."""
    client = Client(
        vertexai=True, project="PROJECT_ID", location="us-central1", base_url=video_server.url
    )
    operation = client.models.generate_videos(
        model="veo-2.0-generate-001", prompt="A cat playing with a ball"
    )
    assert operation.name.startswith(
        "projects/PROJECT_ID/locations/us-central1/publishers/google/models/"
        "veo-2.0-generate-001/operations/"
    )
    assert not operation.done
    deadline = time.monotonic() + 120
    while not operation.done:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        operation = client.operations.get(operation)
    assert isinstance(operation, GenerateVideosOperation)
    assert operation.error is None
    response = operation.response
    assert response is not None and len(response.generated_videos) == 1
    for i, video in enumerate(response.generated_videos):
        (tmp_path / f"video_{i}.mp4").write_bytes(video.video.data)
    info = probe((tmp_path / "video_0.mp4").read_bytes())
    assert info == {
        "format": info["format"],
        "codec": "h264",
        "width": 1280,
        "height": 720,
        "frames": 8 * 24,
        "audio": 0,
    }
    assert "mp4" in str(info["format"])
    assert response.generated_videos[0].video.mime_type == "video/mp4"
    assert response.generated_videos[0].generation_seed is not None


def test_spec_async_polling_example(video_server: ThreadServer) -> None:
    async def wait_for_operation() -> int:
        client = Client(
            vertexai=True, project="PROJECT_ID", location="us-central1", base_url=video_server.url
        )
        operation = await client.aio.models.generate_videos(
            model="veo-2.0-generate-001", prompt="A sunset over mountains"
        )
        while not operation.done:
            await asyncio.sleep(0.2)
            operation = await client.aio.operations.get(operation)
        await client.aio.aclose()
        assert operation.error is None and operation.response is not None
        return len(operation.response.generated_videos)

    assert asyncio.run(wait_for_operation()) == 1


@pytest.mark.parametrize(
    ("aspect_ratio", "resolution", "size"),
    [("16:9", "720p", (1280, 720)), ("9:16", "720p", (720, 1280)), ("16:9", "1080p", (1920, 1080))],
)
def test_gemini_video_is_a_real_mp4_served_by_the_files_api(
    video_server: ThreadServer,
    aspect_ratio: str,
    resolution: str,
    size: tuple[int, int],
    tmp_path: Path,
) -> None:
    with Client(base_url=video_server.url) as client:
        operation = client.models.generate_videos(
            model="veo-test",
            prompt="a red kite over the sea",
            config=GenerateVideosConfig(
                duration_seconds=1, aspect_ratio=aspect_ratio, resolution=resolution, fps=24
            ),
        )
        assert operation.name.startswith("models/veo-test/operations/")
        done = client.operations.wait(operation, timeout=120)
        assert done.error is None and done.response is not None
        video = done.response.generated_videos[0].video
        assert video.uri is not None and video.uri.startswith("https://")
        video.save(tmp_path / "streamed.mp4")
        assert video.video_bytes is None  # streamed to disk, not held in memory
        info = probe(video.data)
        assert (tmp_path / "streamed.mp4").read_bytes() == video.data
        assert (info["codec"], info["width"], info["height"]) == ("h264", *size)
        assert info["frames"] == 24

        file_name = "files/" + video.uri.split("/files/")[1].split(":")[0]
        file = client.files.get(name=file_name)
        assert file.mime_type == "video/mp4" and file.source == "GENERATED"
        assert file.size_bytes == len(video.data)
        assert file_name in {f.name for f in client.files.list()}
        assert client.files.download(file=file_name) == video.data
        client.files.delete(name=file_name)
        with pytest.raises(ClientError) as info_404:
            client.files.get(name=file_name)
        assert info_404.value.code == 404


def test_same_seed_same_frames_and_several_videos_differ(video_server: ThreadServer) -> None:
    config = GenerateVideosConfig(duration_seconds=1, seed=7, number_of_videos=2, fps=24)
    with Client(base_url=video_server.url) as client:
        first, second = (
            client.operations.wait(
                client.models.generate_videos(model="veo-test", prompt="waves", config=config),
                timeout=120,
            )
            for _ in range(2)
        )
        assert first.response is not None and second.response is not None
        a = [v.video.data for v in first.response.generated_videos]
        b = [v.video.data for v in second.response.generated_videos]
    assert len(a) == len(b) == 2
    assert decoded(a[0]) == decoded(b[0]) and decoded(a[1]) == decoded(b[1])
    assert decoded(a[0]) != decoded(a[1])
    seeds = [v.generation_seed for v in first.response.generated_videos]
    assert seeds == [7, 8]


def test_vertex_inline_bytes_audio_and_image(video_server: ThreadServer) -> None:
    png = io.BytesIO()
    from PIL import Image as Picture

    Picture.new("RGB", (64, 36), (250, 20, 20)).save(png, format="PNG")
    client = Client(vertexai=True, project="p", location="l", base_url=video_server.url)
    operation = client.models.generate_videos(
        model="veo-test",
        prompt="a red square comes alive",
        image=Image(image_bytes=png.getvalue(), mime_type="image/png"),
        config=GenerateVideosConfig(duration_seconds=1, generate_audio=True, fps=24),
    )
    done = client.operations.wait(operation, timeout=120)
    assert done.error is None and done.response is not None
    video = done.response.generated_videos[0].video
    assert video.video_bytes is not None and video.uri is None  # inline, as Vertex does
    info = probe(video.data)
    assert info["audio"] == 1
    with av.open(io.BytesIO(video.data)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    red = first[first.shape[0] // 2, first.shape[1] // 2]
    assert red[0] > 200 and red[1] < 80 and red[2] < 80


def test_vertex_storage_uri_writes_the_bucket(video_server: ThreadServer, tmp_path: Path) -> None:
    client = Client(vertexai=True, project="p", location="l", base_url=video_server.url)
    operation = client.models.generate_videos(
        model="veo-test",
        prompt="a lighthouse",
        config=GenerateVideosConfig(duration_seconds=1, output_gcs_uri="gs://bucket/out"),
    )
    done = client.operations.wait(operation, timeout=120)
    assert done.response is not None
    uri = done.response.generated_videos[0].video.uri
    assert uri is not None and uri.startswith("gs://bucket/out/")
    written = tmp_path / "gcs" / uri.removeprefix("gs://")
    assert probe(written.read_bytes())["codec"] == "h264"


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"durationSeconds": 9}, "parameters.durationSeconds"),
        ({"aspectRatio": "4:3"}, "parameters.aspectRatio"),
        ({"sampleCount": 5}, "parameters.sampleCount"),
        ({"resolution": "4k"}, "parameters.resolution"),
        ({"sampleCount": 0}, "parameters.sampleCount"),
        ({"storageUri": "s3://elsewhere"}, "parameters.storageUri"),
    ],
)
def test_invalid_config_is_400_naming_the_field(
    video_server: ThreadServer, parameters: dict[str, object], field: str
) -> None:
    body = {"instances": [{"prompt": "x"}], "parameters": parameters}
    answer = httpx.post(f"{video_server.url}/v1beta/models/veo-test:predictLongRunning", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] in {"INVALID_ARGUMENT", "FAILED_PRECONDITION"}
    assert field in json.dumps(error)
    listed = httpx.get(f"{video_server.url}/v1beta/operations").json()
    assert listed.get("operations", []) == []


def test_unknown_model_is_404(video_server: ThreadServer) -> None:
    answer = httpx.post(
        f"{video_server.url}/v1beta/models/veo-9:predictLongRunning",
        json={"instances": [{"prompt": "x"}]},
    )
    assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"


def test_safety_filter_returns_fewer_videos_with_reasons(video_server: ThreadServer) -> None:
    with Client(base_url=video_server.url) as client:
        done = client.operations.wait(
            client.models.generate_videos(
                model="veo-test",
                prompt="something forbidden here",
                config=GenerateVideosConfig(duration_seconds=1, number_of_videos=2),
            ),
            timeout=120,
        )
    assert done.response is not None
    assert len(done.response.generated_videos) == 1
    assert done.response.rai_media_filtered_count == 1
    assert "forbidden" in (done.response.rai_media_filtered_reasons or [""])[0]


def test_injected_failure_and_cancel_of_a_slow_generation(video_server: ThreadServer) -> None:
    with Client(base_url=video_server.url) as client:
        failed = client.operations.wait(
            client.models.generate_videos(model="veo-test", prompt="please fail now"),
            timeout=60,
        )
        assert failed.error is not None
        assert (failed.error.code, failed.error.message) == (8, "Quota exceeded (injected).")
        slow = client.models.generate_videos(model="veo-test", prompt="take your time")
        assert not client.operations.wait(slow, timeout=0.3).done
        client.operations.cancel(slow)
        cancelled = client.operations.wait(slow, timeout=30)
        assert cancelled.error is not None and cancelled.error.code == 1


def test_progress_rises_and_cancel_stops_encoding(video_server: ThreadServer) -> None:
    assert video_server.loop is not None
    unhandled: list[dict[str, Any]] = []  # what reaches the loop unretrieved, and is logged
    video_server.loop.set_exception_handler(lambda loop, context: unhandled.append(context))
    with Client(base_url=video_server.url) as client:
        operation = client.models.generate_videos(
            model="veo-test",
            prompt="a long pan across a city",
            # Long enough that the render spans several progress writes (every 0.25 s):
            # a 2 s one could end, on a quiet machine, between two of the test's polls.
            config=GenerateVideosConfig(duration_seconds=8, resolution="1080p", fps=24),
        )
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = client.operations.get(operation)
            percent = (current.metadata or {}).get("progressPercent")
            if isinstance(percent, int) and 0 < percent < 100:
                seen.append(percent)
                break
            if current.done:
                break
            time.sleep(0.02)
        assert seen, "no intermediate progress was reported"
        client.operations.cancel(operation)
        cancelled = client.operations.wait(operation, timeout=30)
        assert cancelled.error is not None and cancelled.error.code == 1
        assert list(client.files.list()) == []
    gc.collect()  # a task whose exception nobody read reports it when collected
    assert unhandled == []


def test_models_choose_their_backend(
    make_server: Callable[..., ThreadServer], tmp_path: Path
) -> None:
    from longops.kinds.videos.render import render_mp4

    seen: list[RenderSpec] = []

    def recording(spec: RenderSpec, out: BinaryIO, **kwargs: Any) -> RenderResult:
        seen.append(spec)
        return render_mp4(spec, out, **kwargs)

    videos = settings(tmp_path, backends={"render": render_mp4, "recording": recording})
    videos.catalogue.models["veo-recorded"] = replace(
        QUICK, name="veo-recorded", backend="recording"
    )
    videos.catalogue.models["veo-missing"] = replace(QUICK, name="veo-missing", backend="nowhere")
    server = make_server(videos=videos)
    with Client(base_url=server.url) as client:
        done = client.operations.wait(
            client.models.generate_videos(
                model="veo-recorded",
                prompt="through my backend",
                config=GenerateVideosConfig(negative_prompt="no dogs", seed=3),
            ),
            timeout=120,
        )
        assert done.error is None
        assert [(s.prompt, s.seed, s.negative_prompt) for s in seen] == [
            ("through my backend", 3, "no dogs")
        ]
        assert done.metadata is not None and done.metadata["negativePrompt"] == "no dogs"
        with pytest.raises(ClientError) as info:
            client.models.generate_videos(model="veo-missing", prompt="x")
        assert info.value.code == 400 and info.value.status == "FAILED_PRECONDITION"
