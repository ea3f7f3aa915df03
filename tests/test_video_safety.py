"""Video generation against hostile input: prompts, images and storage URIs that used to
make a render take hours, cost hundreds of MB, ignore a cancel or fail only after retries."""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import av
import httpx
import pytest
from PIL import Image as Picture
from PIL import ImageFile, ImageFont

from longops import Client
from longops.kinds.videos.catalogue import VideoModel
from longops.kinds.videos.render import (
    MAX_IMAGE_PIXELS,
    InvalidImage,
    RenderCancelled,
    RenderResult,
    RenderSpec,
    check_image,
    letterbox,
    render_mp4,
)
from longops.types import GenerateVideosConfig, Image
from tests.support.servers import ThreadServer
from tests.test_videos import settings

LONG_WORD = "w" * 10_000  # the longest prompt a request may carry, as one word
LONG = VideoModel("veo-long", durations=(60,), default_duration=60, resolutions=("1080p",))
"""A minute of 1080p: minutes of encoding here, so a cancel always finds it running."""
TINY = RenderSpec(prompt="x", seed=1, width=160, height=90, fps=4, duration_seconds=1.0)


def png_header_image(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of any size: small to send, huge to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return png_header_image(9000, 9000)  # 81 Mpixel: over 600 MB to decode and scale


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every time Pillow decodes an image's pixels in this process (not just its header)."""
    calls: list[int] = []
    load = ImageFile.ImageFile.load

    def counting(self: ImageFile.ImageFile) -> Any:
        calls.append(self.size[0] * self.size[1])
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return calls


class Renders:
    """A backend that renders with `render_mp4` and records each call and its end."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = threading.Event()

    def __call__(self, spec: RenderSpec, out: BinaryIO, **kwargs: Any) -> RenderResult:
        self.started += 1
        try:
            return render_mp4(spec, out, **kwargs)
        finally:
            self.ended.set()


@pytest.fixture
def renders() -> Renders:
    return Renders()


@pytest.fixture
def server(
    make_server: Callable[..., ThreadServer], tmp_path: Path, renders: Renders
) -> ThreadServer:
    videos = settings(tmp_path, backends={"render": renders})
    videos.catalogue.models[LONG.name] = LONG
    return make_server(videos=videos)


@pytest.fixture
def vertex(server: ThreadServer) -> Iterator[Client]:
    with Client(vertexai=True, project="p", location="l", base_url=server.url) as client:
        yield client


# -- text layout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        LONG_WORD,
        "short " + LONG_WORD[:9_994],
        "\u200b" * 10_000,  # zero-width: all of it fits on one line
        "a" + "\u0301" * 9_999,  # one letter under 9,999 combining accents
        " ".join(["ab"] * 3_333),
    ],
    ids=["one-word", "word-after-a-word", "zero-width", "combining", "many-words"],
)
def test_laying_out_10000_characters_measures_little(
    monkeypatch: pytest.MonkeyPatch, prompt: str
) -> None:
    """Counted, not timed: the old wrap re-measured a long word one character shorter at
    a time, ~n^2/2 measurements of ~n/2 characters (an hour at 10,000 characters)."""
    measured: list[int] = []
    getlength = ImageFont.FreeTypeFont.getlength
    budget = 5 * len(prompt)

    def counting(self: ImageFont.FreeTypeFont, text: str, *args: Any, **kwargs: Any) -> float:
        measured.append(len(text))
        assert sum(measured) <= budget, "the layout measures far more than the prompt"
        return getlength(self, text, *args, **kwargs)

    monkeypatch.setattr(ImageFont.FreeTypeFont, "getlength", counting)
    out = io.BytesIO()
    render_mp4(replace(TINY, width=1920, height=1080, prompt=prompt), out)
    assert len(measured) < 300
    with av.open(io.BytesIO(out.getvalue()), "r") as container:
        assert len(list(container.decode(video=0))) == TINY.frames


def test_a_10000_character_word_renders_through_the_server(server: ThreadServer) -> None:
    with Client(base_url=server.url) as client:
        operation = client.models.generate_videos(
            model="veo-test", prompt=LONG_WORD, config=GenerateVideosConfig(duration_seconds=1)
        )
        done = client.operations.wait(operation, timeout=60)  # was: about an hour
        assert done.done and done.error is None and done.response is not None
        assert len(done.response.generated_videos) == 1


# -- cancelling --------------------------------------------------------------------------


def test_should_stop_is_asked_while_the_scene_is_built() -> None:
    """Not only before each frame: a one-frame render asks between its setup steps too."""
    asked: list[int] = []

    def never() -> bool:
        asked.append(1)
        return False

    black = io.BytesIO()
    Picture.new("RGB", (320, 180)).save(black, "PNG")
    one_frame = replace(TINY, fps=1, first_frame=black.getvalue())
    render_mp4(one_frame, io.BytesIO(), should_stop=never)
    assert len(asked) >= 5  # text, image (twice), background, panel; then frame and copy
    with pytest.raises(RenderCancelled):
        render_mp4(replace(one_frame, first_frame=None), io.BytesIO(), should_stop=lambda: True)


def test_cancel_stops_a_long_render_and_its_thread(server: ThreadServer, renders: Renders) -> None:
    with Client(base_url=server.url) as client:
        operation = client.models.generate_videos(
            model=LONG.name,
            prompt=LONG_WORD[:4000],  # 238 s of layout in a thread a cancel did not reach
            config=GenerateVideosConfig(resolution="1080p"),
        )
        deadline = time.monotonic() + 30
        while not renders.started:
            assert time.monotonic() < deadline, "the render never started"
            time.sleep(0.01)
        time.sleep(0.3)  # well into the scene's setup or its first frames
        client.operations.cancel(operation)
        cancelled = client.operations.wait(operation, timeout=10)
        assert cancelled.done and cancelled.error is not None and cancelled.error.code == 1
        assert renders.ended.wait(5), "the render thread is still running"
        assert list(client.files.list()) == []


# -- image input -----------------------------------------------------------------------


def test_a_huge_image_is_refused_from_its_header(huge_png: bytes, decodes: list[int]) -> None:
    with pytest.raises(InvalidImage) as refused:
        letterbox(huge_png, 1280, 720)
    assert "9000x9000" in str(refused.value)
    with pytest.raises(InvalidImage):
        check_image(png_header_image(30_000, 30_000))  # past Pillow's own bomb limit
    assert decodes == []  # nothing was decoded
    assert check_image(png_header_image(4096, 4096)) == (4096, 4096)
    assert MAX_IMAGE_PIXELS >= 4096 * 4096


@pytest.mark.parametrize(
    "data", [b"garbage", b"\x89PNG\r\n\x1a\nnot really", b"%!PS-Adobe-3.0 EPSF-3.0\n"]
)
def test_image_errors_carry_no_object_reprs(data: bytes) -> None:
    with pytest.raises(InvalidImage) as refused:
        letterbox(data, 320, 180)
    message = str(refused.value)
    assert "<" not in message and "0x" not in message and "BytesIO" not in message


def test_a_huge_inline_image_is_a_400_naming_the_field(
    server: ThreadServer, huge_png: bytes, decodes: list[int], renders: Renders
) -> None:
    body = {
        "instances": [
            {
                "prompt": "x",
                "image": {
                    "bytesBase64Encoded": base64.b64encode(huge_png).decode(),
                    "mimeType": "image/png",
                },
            }
        ]
    }
    answer = httpx.post(f"{server.url}/v1beta/models/veo-test:predictLongRunning", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "instances[0].image.bytesBase64Encoded" in error["message"]
    assert "9000x9000" in error["message"]
    assert decodes == [] and renders.started == 0


def test_a_huge_image_in_the_bucket_fails_before_decoding(
    vertex: Client, tmp_path: Path, huge_png: bytes, decodes: list[int], renders: Renders
) -> None:
    (tmp_path / "gcs" / "bucket").mkdir(parents=True)
    (tmp_path / "gcs" / "bucket" / "huge.png").write_bytes(huge_png)
    operation = vertex.models.generate_videos(
        model="veo-test",
        prompt="x",
        image=Image(gcs_uri="gs://bucket/huge.png", mime_type="image/png"),
        config=GenerateVideosConfig(duration_seconds=1),
    )
    done = vertex.operations.wait(operation, timeout=60)
    assert done.error is not None and done.error.code == 3
    assert "instances[0].image" in (done.error.message or "")
    assert "9000x9000" in (done.error.message or "")
    assert decodes == [] and renders.started == 0


# -- storage URIs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "storage", ["gs://bucket/taken.txt", "gs://bucket/taken.txt/deeper", "gs://bucket/taken.txt/"]
)
def test_a_storage_uri_naming_a_file_fails_before_rendering(
    vertex: Client, tmp_path: Path, renders: Renders, storage: str
) -> None:
    (tmp_path / "gcs" / "bucket").mkdir(parents=True)
    (tmp_path / "gcs" / "bucket" / "taken.txt").write_text("someone's data")
    operation = vertex.models.generate_videos(
        model="veo-test",
        prompt="x",
        config=GenerateVideosConfig(duration_seconds=1, output_gcs_uri=storage),
    )
    done = vertex.operations.wait(operation, timeout=60)
    assert done.error is not None and done.error.code == 3, done.error
    assert "parameters.storageUri" in (done.error.message or "")
    assert "gs://bucket/taken.txt is a file" in (done.error.message or "")
    assert str(tmp_path) not in (done.error.message or "")  # no local paths
    assert renders.started == 0  # refused before rendering: no attempts, no retries
    assert (tmp_path / "gcs" / "bucket" / "taken.txt").read_text() == "someone's data"


@pytest.mark.parametrize(
    ("field", "uri"),
    [
        ("parameters.storageUri", "gs://bucket/" + "n" * 256),
        ("parameters.storageUri", "gs://bucket/" + "é" * 128),  # 256 bytes in UTF-8
        ("parameters.storageUri", "gs://bucket/" + "/".join(["d" * 200] * 21)),
        ("parameters.storageUri", "gs://bucket/a\0b"),
        ("parameters.storageUri", "gs://bucket/../../etc"),
        ("instances[0].image.gcsUri", "gs://bucket/" + "n" * 256 + ".png"),
        ("instances[0].image.gcsUri", "gs://bucket/" + "/".join(["d" * 200] * 21)),
    ],
)
def test_unusable_uris_are_400s_at_create_time(
    server: ThreadServer, renders: Renders, field: str, uri: str
) -> None:
    parameters: dict[str, Any] = {"durationSeconds": 1}
    instance: dict[str, Any] = {"prompt": "x"}
    if field == "parameters.storageUri":
        parameters["storageUri"] = uri
    else:
        instance["image"] = {"gcsUri": uri, "mimeType": "image/png"}
    answer = httpx.post(
        f"{server.url}/v1/projects/p/locations/l/publishers/google/models/veo-test:predictLongRunning",
        json={"instances": [instance], "parameters": parameters},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert field in error["message"]
    assert renders.started == 0


def test_a_storage_uri_under_a_real_folder_still_works(vertex: Client, tmp_path: Path) -> None:
    (tmp_path / "gcs" / "bucket" / "out").mkdir(parents=True)
    operation = vertex.models.generate_videos(
        model="veo-test",
        prompt="x",
        config=GenerateVideosConfig(duration_seconds=1, output_gcs_uri="gs://bucket/out/"),
    )
    done = vertex.operations.wait(operation, timeout=60)
    assert done.error is None and done.response is not None
    uri = done.response.generated_videos[0].video.uri
    assert uri is not None and uri.startswith("gs://bucket/out/")
    assert (tmp_path / "gcs" / uri.removeprefix("gs://")).stat().st_size > 0
