"""The default video renderer: real MP4 bytes, decoded with PyAV."""

from __future__ import annotations

import io
import itertools
import tempfile
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from longops.kinds.videos.render import (
    InvalidImage,
    RenderCancelled,
    RenderSpec,
    render_mp4,
)

Array = NDArray[np.uint8]

SMALL = RenderSpec(
    prompt="A red fox jumps over a sleeping dog in a snowy forest at dawn",
    seed=42,
    width=320,
    height=180,
    fps=12,
    duration_seconds=1.0,
)


def render(spec: RenderSpec) -> bytes:
    out = io.BytesIO()
    render_mp4(spec, out)
    return out.getvalue()


def yuv_frames(data: bytes) -> list[Array]:
    """Every frame as its (h * 3 / 2, w) yuv420p array, exactly as decoded."""
    with av.open(io.BytesIO(data), "r") as container:
        return [
            np.asarray(f.to_ndarray(format="yuv420p"), np.uint8) for f in container.decode(video=0)
        ]


def rgb_frame(data: bytes, index: int) -> Array:
    with av.open(io.BytesIO(data), "r") as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
    raise AssertionError(f"no frame {index}")


def top_level_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        assert size >= 8
        offset += size
    return boxes


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def stream_seconds(stream: av.stream.Stream) -> float:
    assert stream.duration is not None and stream.time_base is not None
    return float(stream.duration * stream.time_base)


def mean_abs_diff(a: Array, b: Array) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def small_mp4() -> bytes:
    return render(SMALL)


def test_mp4_h264_yuv420p_with_moov_first(small_mp4: bytes) -> None:
    with av.open(io.BytesIO(small_mp4), "r") as container:
        assert "mp4" in container.format.name
        (video,) = container.streams.video
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert not container.streams.audio
    boxes = top_level_boxes(small_mp4)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: it streams


@pytest.mark.parametrize(
    ("fps", "seconds"), [(24, 1.0), (30, 0.5), (1, 3.0), (60, 0.25), (25, 0.2), (8, 1.3)]
)
def test_frame_count_is_duration_times_fps(fps: int, seconds: float) -> None:
    spec = replace(SMALL, width=160, height=90, fps=fps, duration_seconds=seconds)
    out = io.BytesIO()
    result = render_mp4(spec, out)
    expected = round(seconds * fps)
    assert result.frames == expected
    assert result.duration_seconds == pytest.approx(expected / fps)
    assert len(yuv_frames(out.getvalue())) == expected
    with av.open(io.BytesIO(out.getvalue()), "r") as container:
        video = container.streams.video[0]
        assert video.average_rate == fps
        assert stream_seconds(video) == pytest.approx(expected / fps)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (720, 1280), (1920, 1080)])
def test_frame_size(width: int, height: int) -> None:
    spec = replace(SMALL, width=width, height=height, fps=8, duration_seconds=0.25)
    with av.open(io.BytesIO(render(spec)), "r") as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 2
    assert {(f.width, f.height) for f in frames} == {(width, height)}


def test_deterministic(small_mp4: bytes) -> None:
    again = render(SMALL)
    first, second = yuv_frames(small_mp4), yuv_frames(again)
    assert len(first) == len(second) == 12
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    assert again == small_mp4  # and the files are byte-identical too


def test_frames_change_every_frame(small_mp4: bytes) -> None:
    frames = yuv_frames(small_mp4)
    for a, b in itertools.pairwise(frames):
        assert not np.array_equal(a, b)  # shapes move, the time code ticks


@pytest.mark.parametrize(
    "change", [{"seed": 43}, {"prompt": "A blue whale sings under the arctic ice"}]
)
def test_seed_and_prompt_change_the_frames(small_mp4: bytes, change: dict[str, object]) -> None:
    other = yuv_frames(render(replace(SMALL, **change)))  # type: ignore[arg-type]
    for a, b in zip(yuv_frames(small_mp4), other, strict=True):
        assert mean_abs_diff(a, b) > 5  # a different scene, not a few pixels


def test_prompt_text_is_drawn() -> None:
    """On the same black image background, only the text panel differs between prompts."""
    black = png(Image.new("RGB", (320, 180)))
    spec = replace(SMALL, first_frame=black, duration_seconds=1.0)
    last = len(yuv_frames(render(spec))) - 1
    a = rgb_frame(render(spec), last)
    b = rgb_frame(render(replace(spec, prompt="Neon koi swim in circles")), last)
    prompt_rows = slice(156, 180)  # the last lines of the panel at the bottom
    assert (a[prompt_rows] > 180).all(axis=2).sum() > 100  # bright text on the dark panel
    assert mean_abs_diff(a[prompt_rows], b[prompt_rows]) > 5


def test_first_frame_is_the_image_letterboxed() -> None:
    image = Image.new("RGB", (200, 100))  # 2:1 into 16:9 -> 320x160, 10-row bars
    for (x, y), colour in {
        (0, 0): (220, 40, 40),
        (100, 0): (40, 200, 60),
        (0, 50): (50, 70, 230),
        (100, 50): (240, 230, 80),
    }.items():
        image.paste(colour, (x, y, x + 100, y + 50))
    spec = replace(SMALL, first_frame=png(image), duration_seconds=0.5)
    data = render(spec)
    frame = rgb_frame(data, 0)
    expected = np.zeros((180, 320, 3), np.uint8)
    expected[10:170] = np.asarray(image.resize((320, 160), Image.Resampling.LANCZOS))
    assert mean_abs_diff(frame, expected) < 4
    assert frame[:8].max() < 30 and frame[-8:].max() < 30  # black bars
    # The image stays as the scene's background once the overlays have faded in.
    later = rgb_frame(data, 5)
    stage = (slice(60, 120), slice(0, 320))
    assert mean_abs_diff(later[stage], expected[stage]) < 25


@pytest.mark.parametrize("audio", [True, False])
def test_audio_track_iff_requested(audio: bool) -> None:
    spec = replace(SMALL, width=160, height=90, duration_seconds=1.5, audio=audio)
    out = io.BytesIO()
    assert render_mp4(spec, out).has_audio is audio
    with av.open(io.BytesIO(out.getvalue()), "r") as container:
        video = container.streams.video[0]
        video_seconds = stream_seconds(video)
        if not audio:
            assert not container.streams.audio
            return
        (sound,) = container.streams.audio
        assert sound.codec_context.name == "aac"
        assert sound.sample_rate == 48_000
        assert stream_seconds(sound) == pytest.approx(video_seconds, abs=0.03)
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert samples.shape[1] == pytest.approx(1.5 * 48_000, abs=1100)
    assert 0.01 < float(np.sqrt(np.mean(samples**2))) < 0.5  # an actual, unclipped tone


def test_progress_reports_and_ends_at_total() -> None:
    calls: list[tuple[int, int]] = []
    render_mp4(SMALL, io.BytesIO(), progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 5
    assert calls[-1] == (12, 12)
    done = [d for d, _ in calls]
    assert done == sorted(done) and all(t == 12 for _, t in calls)


def test_should_stop_cancels_promptly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    spec = replace(SMALL, duration_seconds=60.0, audio=True)
    with pytest.raises(RenderCancelled):
        render_mp4(spec, io.BytesIO(), should_stop=stop)
    assert len(asked) == 4  # asked before every frame; stopped at the first yes
    assert list(tmp_path.iterdir()) == []  # its temporary file is gone


def test_invalid_image() -> None:
    out = io.BytesIO()
    with pytest.raises(InvalidImage):
        render_mp4(replace(SMALL, first_frame=b"\x89PNG\r\n\x1a\nnot really"), out)
    with pytest.raises(ValueError):  # InvalidImage is a ValueError
        render_mp4(replace(SMALL, first_frame=b"garbage"), out)
    assert out.getvalue() == b""


def test_bad_spec_is_a_value_error() -> None:
    for change in ({"width": 321}, {"fps": 0}, {"fps": 61}, {"duration_seconds": 0.01}):
        with pytest.raises(ValueError):
            render_mp4(replace(SMALL, **change), io.BytesIO())


def test_writes_into_a_write_only_file(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    with path.open("wb") as out:
        out.write(b"")
        render_mp4(replace(SMALL, audio=True), out)
    with av.open(str(path)) as container:
        assert len(list(container.decode(video=0))) == 12
        assert len(container.streams.audio) == 1
