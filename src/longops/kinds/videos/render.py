"""The default video backend: a real, playable, deterministic H.264 MP4 drawn from the request.

`render_mp4(spec, out)` writes an MP4 (H.264 `libx264` preset `ultrafast`, yuv420p,
BT.709 limited range, `moov` first so it streams; plus AAC 48 kHz stereo when
`spec.audio`) whose frames visibly come from the request:

* **Scene.** A background gradient with a soft glow and a faint grid, and 4-7 moving
  shapes (discs, rings, rounded squares, diamonds) that bounce around the stage, all
  with colours, sizes, paths and speeds drawn from `np.random.default_rng` seeded by
  a SHA-256 of (seed, prompt): a different prompt or seed gives a different scene.
* **Text.** The prompt, word-wrapped (long prompts end in an ellipsis), in a panel at
  the bottom under a small `seed · WxH · fps` line; Pillow's bundled default font
  (`ImageFont.load_default(size=...)`), nothing downloaded.
* **Time code.** Top left, `MM:SS.FF #NNNN` (minutes, seconds, frame within the
  second, frame index): it changes on every frame.
* **first_frame.** Frame 0 is the given image, scaled to fit and centred on black
  (letterboxed, see `letterbox`), with nothing drawn over it. The image then stays as
  the background of the scene (in place of the gradient) and the overlays (text
  panel, time code, shapes) fade in over the first `FADE_SECONDS`.
* **Audio.** A plucked three-note chord progression (root, chord qualities and tempo
  from the same rng), exactly as long as the video. With `audio=False` there is no
  audio stream at all. `negative_prompt` is accepted and not drawn.

**Determinism.** Nothing depends on the clock, the machine, the thread count or the
output stream: the same spec gives the same decoded frames and, with one x264 thread,
the native AAC encoder and no creation time in the container, byte-identical MP4 files
(checked across processes and with renders running in parallel threads). What can
change pixels is another build of the libraries: Pillow (text rasterising, Lanczos
scaling of `first_frame`), numpy, or FFmpeg/x264 (the bitstream).

**Cost.** Everything static is made once per render: the background, its text panel
and the time-code box drawn with Pillow and converted to yuv420p (BT.709) once, the
shapes' alpha masks, and the glyphs of the time code as ready Y/U/V tiles. A frame is
then: put back the background under last frame's shapes, alpha-blend each shape into
its small rectangle (16-bit integer maths), copy the time-code glyphs that changed, and
hand the planes to the encoder with no colour conversion (about 0.2 ms of drawing per
1080p frame; the encoder takes the rest). Memory does not grow with duration: frames
are streamed into a temporary file (in `tempfile`'s directory, `TMPDIR`) that FFmpeg
lays out with `movflags=+faststart`, then copied into `out`, so `out` may be any
writable binary stream, even a write-only file; the temporary file is always removed.
Laying out the prompt is linear in what is shown (see `_wrap`) and `first_frame` is
refused from its header when it has more than `MAX_IMAGE_PIXELS`, so no request makes a
step slow. **Cancelling.** `should_stop` is asked between the steps of building the
static layers (laying out the text, decoding and scaling the image, each band of the
gradient, the text panel), before every frame, and between the chunks copied into `out`:
a render stops well within a second of it turning true (0.4 s at most at 1080p with a
4096x4096 `first_frame`, on a slow machine).
"""

from __future__ import annotations

import colorsys
import contextlib
import hashlib
import io
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, Final

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

U8 = NDArray[np.uint8]
U16 = NDArray[np.uint16]
F32 = NDArray[np.float32]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

SAMPLE_RATE = 48_000
AUDIO_CHUNK = 1024  # samples per AAC frame
FADE_SECONDS = 0.5
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_FPS = 60
VIDEO_CODEC: Final = "libx264"
VIDEO_OPTIONS = {"preset": "ultrafast"}
PROGRESS_PER_SECOND = 10  # progress callbacks per second of video (and one at the end)
IMAGE_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
"""What `first_frame` may be: Pillow is asked to try no other decoder on client bytes."""
MAX_IMAGE_SIDE: Final = 4096
MAX_IMAGE_PIXELS: Final = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
"""The most pixels a `first_frame` may have (any shape), checked from its header before
decoding: a 9000x9000 image would cost over 600 MB to decode, convert and scale."""
COPY_CHUNK = 1 << 20
_REPR = re.compile(r"<[^<>]* at 0x[0-9A-Fa-f]+>")

_BOX_RGB = (14, 16, 22)  # time-code box: opaque, so its glyph tiles are too
_TEXT_RGB = (245, 245, 245)
_SUBTLE_RGB = (190, 196, 210)
_PANEL_ALPHA = 150  # text panel darkening, of 255


@dataclass(frozen=True, slots=True)
class RenderSpec:
    prompt: str
    seed: int
    width: int  # e.g. 1280x720 (16:9, 720p), 1920x1080, 720x1280 (9:16), 1080x1920
    height: int
    fps: int  # 1..60
    duration_seconds: float
    negative_prompt: str | None = None
    first_frame: bytes | None = None  # PNG/JPEG bytes: the first frame, letterboxed to fit
    audio: bool = False

    @property
    def frames(self) -> int:
        """round(duration_seconds * fps): the number of frames rendered."""
        return round(self.duration_seconds * self.fps)


@dataclass(frozen=True, slots=True)
class RenderResult:
    frames: int
    duration_seconds: float
    has_audio: bool


class RenderCancelled(Exception):
    """`should_stop()` returned true: rendering stopped; what `out` holds is not a video."""


class InvalidImage(ValueError):
    """`first_frame` is not an image we decode: not a format of `IMAGE_FORMATS`, more
    than `MAX_IMAGE_PIXELS`, or bytes that Pillow cannot decode. The message is safe to
    show a client (no object reprs)."""


def check_spec(spec: RenderSpec) -> None:
    """Raise ValueError when the spec cannot be rendered (odd or out-of-range sizes...)."""
    for name, value in (("width", spec.width), ("height", spec.height)):
        if not MIN_SIZE <= value <= MAX_SIZE or value % 2:
            raise ValueError(f"{name} must be even and {MIN_SIZE}..{MAX_SIZE}, not {value}")
    if not 1 <= spec.fps <= MAX_FPS:
        raise ValueError(f"fps must be 1..{MAX_FPS}, not {spec.fps}")
    if not math.isfinite(spec.duration_seconds) or spec.frames < 1:
        raise ValueError(f"duration {spec.duration_seconds} s at {spec.fps} fps has no frames")


def render_mp4(
    spec: RenderSpec,
    out: BinaryIO,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RenderResult:
    """Render `spec` as an MP4 into `out` (written from its current position).

    `progress(frames_done, total)` is called about `PROGRESS_PER_SECOND` times per
    second of video and once when the file is complete; `should_stop()` is asked between
    the setup steps, before every frame and between copied chunks, and a true answer
    raises RenderCancelled. Raises InvalidImage for a `first_frame` that is not an image
    (or too large, see `check_image`) and ValueError for a spec `check_spec` refuses.
    """
    check_spec(spec)
    total = spec.frames
    scene = _Scene(spec, should_stop)  # decodes first_frame: InvalidImage before any file
    audio = _Chords(_rng(spec, "audio"), total / spec.fps) if spec.audio else None
    step = max(1, round(spec.fps / PROGRESS_PER_SECOND))
    fd, tmp_name = tempfile.mkstemp(prefix="longops-render-", suffix=".mp4")
    os.close(fd)
    try:
        with open_mp4(tmp_name) as container:
            video = add_video_stream(container, spec.width, spec.height, spec.fps)
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=SAMPLE_RATE)
                sound.layout = "stereo"
                sound.time_base = Fraction(1, SAMPLE_RATE)
            samples_done = 0
            for index in range(total):
                _stop_point(should_stop, f"after {index} of {total} frames")
                frame = scene.frame(index)
                frame.pts = index
                container.mux(video.encode(frame))
                if sound is not None and audio is not None:
                    until = (index + 1) * SAMPLE_RATE // spec.fps
                    samples_done = _encode_audio(container, sound, audio, samples_done, until)
                if progress is not None and (index + 1) % step == 0 and index + 1 < total:
                    progress(index + 1, total)
            container.mux(video.encode(None))
            if sound is not None and audio is not None:
                _encode_audio(container, sound, audio, samples_done, audio.samples, final=True)
        with open(tmp_name, "rb") as encoded:
            while chunk := encoded.read(COPY_CHUNK):
                _stop_point(should_stop, "copying the encoded video")
                out.write(chunk)
        out.flush()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
    if progress is not None:
        progress(total, total)
    return RenderResult(frames=total, duration_seconds=total / spec.fps, has_audio=spec.audio)


def _stop_point(should_stop: Callable[[], bool] | None, where: str) -> None:
    """Raise RenderCancelled if `should_stop()`: asked between all steps that take time."""
    if should_stop is not None and should_stop():
        raise RenderCancelled(f"stopped {where}")


def open_mp4(path: str) -> av.container.OutputContainer:
    """An MP4 container writing to `path`, its `moov` box first (`movflags=+faststart`)."""
    return av.open(path, mode="w", format="mp4", container_options={"movflags": "+faststart"})


def add_video_stream(
    container: av.container.OutputContainer, width: int, height: int, fps: int
) -> av.video.stream.VideoStream:
    """The H.264 stream every render uses: libx264 ultrafast, one thread, yuv420p, BT.709."""
    video = container.add_stream(VIDEO_CODEC, rate=fps, options=VIDEO_OPTIONS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = Fraction(1, fps)
    ctx = video.codec_context
    ctx.thread_count = 1  # x264's output depends on its thread count: fix it
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
    ctx.color_range = 1  # limited ("MPEG") range
    return video


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    chords: _Chords,
    start: int,
    until: int,
    *,
    final: bool = False,
) -> int:
    """Encode whole AAC frames of samples [start, until) (all of them when `final`)."""
    until = min(until, chords.samples)
    while until - start >= AUDIO_CHUNK or (final and until > start):
        count = min(AUDIO_CHUNK, until - start)
        frame = av.AudioFrame.from_ndarray(
            chords.samples_at(start, count), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(frame))
        start += count
    if final:
        container.mux(stream.encode(None))
    return start


# -- randomness ------------------------------------------------------------------------


def _rng(spec: RenderSpec, purpose: str) -> np.random.Generator:
    """A generator that depends on the prompt, the seed and `purpose`, nothing else."""
    digest = hashlib.sha256(f"{purpose}\0{spec.seed}\0{spec.prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


# -- colour ----------------------------------------------------------------------------

# BT.709, limited range: Y in 16..235, Cb/Cr in 16..240.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = (c / 255 for c in rgb)
    y = _KR * r + _KG * g + _KB * b
    return (
        round(16 + 219 * y),
        round(128 + 224 * (b - y) / (2 - 2 * _KB)),
        round(128 + 224 * (r - y) / (2 - 2 * _KR)),
    )


def _to_u8(values: NDArray[np.floating[Any]]) -> U8:
    clipped: U8 = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return clipped


def rgb_to_yuv420(rgb: U8) -> tuple[U8, U8, U8]:
    """(h, w, 3) RGB (even h and w) to BT.709 limited-range Y, U, V planes (2x2 chroma mean).

    Converts in bands of rows so that a 1080p frame needs only a few MB of scratch.
    """
    h, w, _ = rgb.shape
    y_plane = np.empty((h, w), np.uint8)
    u_plane = np.empty((h // 2, w // 2), np.uint8)
    v_plane = np.empty((h // 2, w // 2), np.uint8)
    band = 64
    for top in range(0, h, band):
        f = rgb[top : top + band].astype(np.float32) * np.float32(1 / 255)
        rows = f.shape[0]
        luma = f @ np.array([_KR, _KG, _KB], np.float32)
        y_plane[top : top + rows] = _to_u8(16 + 219 * luma)
        q = f.reshape(rows // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        q_luma = q @ np.array([_KR, _KG, _KB], np.float32)
        c0 = top // 2
        u_plane[c0 : c0 + rows // 2] = _to_u8(128 + 224 * (q[..., 2] - q_luma) / (2 - 2 * _KB))
        v_plane[c0 : c0 + rows // 2] = _to_u8(128 + 224 * (q[..., 0] - q_luma) / (2 - 2 * _KR))
    return y_plane, u_plane, v_plane


# -- images and text -------------------------------------------------------------------


def check_image(image_bytes: bytes) -> tuple[int, int]:
    """The image's (width, height), read from its header alone: nothing is decoded.

    Raises InvalidImage when the bytes are not one of `IMAGE_FORMATS` or the image has
    more than `MAX_IMAGE_PIXELS`, so a request can be refused before it is stored.
    """
    with _open_image(image_bytes) as opened:
        size: tuple[int, int] = opened.size
        return size


def letterbox(
    image_bytes: bytes, width: int, height: int, should_stop: Callable[[], bool] | None = None
) -> Image.Image:
    """The image (EXIF orientation applied, alpha over black) scaled to fit, centred on black.

    Scaled with Lanczos to round(w * s) x round(h * s), s = min(width / w, height / h),
    and pasted at ((width - sw) // 2, (height - sh) // 2). Raises InvalidImage, before
    decoding anything when the header is refused by `check_image`'s rules, and
    RenderCancelled between its steps once `should_stop()` is true.
    """
    with _open_image(image_bytes) as opened:
        try:
            opened.load()
            _stop_point(should_stop, "decoding the image")
            image = ImageOps.exif_transpose(opened)
            if image.mode != "RGB":
                rgba = image.convert("RGBA")
                image = Image.new("RGB", rgba.size)
                image.paste(rgba, mask=rgba.getchannel("A"))
        except RenderCancelled:
            raise
        except Exception as exc:  # Pillow raises many types for bad input; all mean the same
            raise InvalidImage(f"cannot decode the image: {_describe(exc)}") from None
    _stop_point(should_stop, "converting the image")
    scale = min(width / image.width, height / image.height)
    size = (
        max(1, min(width, round(image.width * scale))),
        max(1, min(height, round(image.height * scale))),
    )
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


@contextlib.contextmanager
def _open_image(image_bytes: bytes) -> Iterator[Image.Image]:
    """The image opened lazily (Pillow reads the header only) once its size is allowed."""
    names = ", ".join(IMAGE_FORMATS)
    try:
        opened = Image.open(io.BytesIO(image_bytes), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:  # its message is the repr of our BytesIO
        raise InvalidImage(f"the bytes are not an image in a supported format ({names})") from None
    except Image.DecompressionBombError:
        raise InvalidImage(f"the image has more than {MAX_IMAGE_PIXELS} pixels") from None
    except Exception as exc:
        raise InvalidImage(f"cannot read the image header: {_describe(exc)}") from None
    with opened:
        w, h = opened.size
        if w < 1 or h < 1:
            raise InvalidImage("the image is empty")
        if w * h > MAX_IMAGE_PIXELS:
            raise InvalidImage(
                f"the image is {w}x{h}, {w * h} pixels; at most {MAX_IMAGE_PIXELS}"
                f" ({MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}) are accepted"
            )
        yield opened


def _describe(exc: Exception) -> str:
    """Pillow's message with any object repr (`<_io.BytesIO object at 0x…>`) taken out."""
    return _REPR.sub("the image", str(exc)) or type(exc).__name__


def _font(size: int) -> Font:
    """Pillow's bundled font; a new object per render (FreeType faces are not thread-safe)."""
    return ImageFont.load_default(size=size)


def _line_height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    return font.getbbox("Ag")[3] + 2


def _wrap(text: str, font: Font, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; over-long words are broken; past `max_lines` the last line ends in ….

    Each line is the longest prefix of the rest of the text that fits, cut back to its
    last space when it ends inside a word. `_fitting` finds it by doubling then halving,
    so a line of k characters costs O(log k) measurements of at most 2k characters,
    and nothing after the last line shown is measured: laying out any prompt, even one
    10,000-character word, takes milliseconds (re-measuring a word one character
    shorter at a time took an hour).
    """
    rest = " ".join(text.split())
    lines: list[str] = []
    while rest and len(lines) < max_lines:
        cut = max(1, _fitting(rest, "", font, max_width))
        if cut < len(rest) and rest[cut] != " ":
            space = rest.rfind(" ", 0, cut)
            cut = space if space > 0 else cut
        lines.append(rest[:cut])
        rest = rest[cut:].lstrip(" ")
    if rest:
        last = lines[-1]
        lines[-1] = last[: _fitting(last, " …", font, max_width)].rstrip() + " …"
    return lines or ["(empty prompt)"]


def _fitting(text: str, suffix: str, font: Font, max_width: float) -> int:
    """The largest k for which `text[:k] + suffix` is at most `max_width` wide (0 if none).

    Widths grow with k, so: double k from 16 until too wide, then bisect. That is
    O(log k) measurements, none of more than 2k + 16 characters.
    """

    def fits(k: int) -> bool:
        return font.getlength(text[:k] + suffix) <= max_width

    low, high = 0, 16
    while high < len(text) and fits(high):
        low, high = high, 2 * high
    if high >= len(text):
        if fits(len(text)):
            return len(text)
        high = len(text)
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _even(value: float) -> int:
    return 2 * max(0, round(value / 2))


# -- the scene -------------------------------------------------------------------------


@dataclass(slots=True)
class _Shape:
    size: int  # square, even
    y_inv: U16  # 256 - alpha, Y resolution
    y_col: U16  # colour * alpha
    c_inv: U16  # the same at chroma resolution
    u_col: U16
    v_col: U16
    start: tuple[float, float]  # phase along x and y, in pixels of travel
    speed: tuple[float, float]  # pixels per second
    y_tmp: U16
    c_tmp: U16


class _Scene:
    """The static layers of one video, and the cheap per-frame drawing on top of them."""

    def __init__(self, spec: RenderSpec, should_stop: Callable[[], bool] | None = None) -> None:
        self.spec = spec
        w, h = self.width, self.height = spec.width, spec.height
        self.fps = spec.fps
        rng = _rng(spec, "scene")
        unit = min(w, h)
        scale = unit / 720
        margin = _even(max(4.0, 22 * scale))

        # The time-code box, top left: fixed glyph cells, digits at fixed places.
        total = spec.frames
        last = total - 1
        minute_digits = max(2, len(str(last // spec.fps // 60)))
        self._tc_template = (
            f"{{:0{minute_digits}d}}:{{:02d}}.{{:02d}} #{{:0{max(3, len(str(last)))}d}}"
        )
        tc_size = max(9, round(30 * scale))
        pattern = self._timecode(last)
        box_pad = _even(max(2.0, 8 * scale))
        while True:
            cells, tiles, cell_h = self._glyphs(_font(tc_size), pattern)
            box_w = sum(cells) + 2 * box_pad
            if box_w <= w - 2 * margin or tc_size <= 6:
                break
            tc_size -= 1
        box_h = cell_h + 2 * box_pad
        self._tc_x, self._tc_y = margin + box_pad, margin + box_pad
        self._tc_cells = cells
        self._tiles = tiles
        self._shown: str = ""

        # The text panel, bottom: a small info line, then the prompt.
        prompt_font = _font(max(9, round(28 * scale)))
        info_font = _font(max(8, round(18 * scale)))
        pad = _even(max(2.0, 12 * scale))
        prompt_lh = round(_line_height(prompt_font) * 1.08)
        info_lh = _line_height(info_font) + pad // 2
        room = int(h * (0.42 if h > w else 0.34)) - 2 * pad - info_lh
        max_lines = max(1, min(8, room // max(1, prompt_lh)))
        lines = _wrap(spec.prompt, prompt_font, w - 2 * margin, max_lines)
        _stop_point(should_stop, "laying out the text")
        panel_h = _even(2 * pad + info_lh + len(lines) * prompt_lh + 1)
        panel_top = min(h - 2, max(margin + box_h + 2, h - panel_h))
        panel_top -= panel_top % 2
        info = f"seed {spec.seed}  ·  {w}x{h}  ·  {spec.fps} fps"

        # Background: the image, or a gradient with a glow and a faint grid.
        self._first: U8 | None = None
        if spec.first_frame is not None:
            picture = letterbox(spec.first_frame, w, h, should_stop)
            base = np.asarray(picture, dtype=np.uint8)
            self._first = self._planes_from_rgb(base)
        else:
            base = self._gradient(rng, w, h, unit, should_stop)
        _stop_point(should_stop, "drawing the background")
        canvas = Image.fromarray(base, "RGB").convert("RGBA")
        overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        draw.rectangle((0, panel_top, w, h), fill=(0, 0, 0, _PANEL_ALPHA))
        draw.text((margin, panel_top + pad), info, font=info_font, fill=(*_SUBTLE_RGB, 255))
        y = panel_top + pad + info_lh
        for line in lines:
            draw.text((margin, y), line, font=prompt_font, fill=(*_TEXT_RGB, 255))
            y += prompt_lh
        canvas = Image.alpha_composite(canvas, overlay)
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((margin, margin, margin + box_w - 1, margin + box_h - 1), fill=_BOX_RGB)
        self._background = self._planes_from_rgb(np.asarray(canvas.convert("RGB")))
        del canvas, overlay, base
        _stop_point(should_stop, "drawing the text panel")

        # The stage: between the time-code box and the panel; shapes never leave it.
        stage_top = min(margin + box_h + margin // 2, panel_top)
        stage = (0, stage_top - stage_top % 2, w, panel_top)
        self._stage = stage
        self._shapes = self._make_shapes(rng, stage)
        self._work = self._background.copy()
        self._y, self._u, self._v = self._views(self._work)
        self._bg_y, self._bg_u, self._bg_v = self._views(self._background)
        self._dirty: list[tuple[int, int, int]] = []  # (x, y, size) of last frame's shapes
        self._fade = max(1, round(FADE_SECONDS * spec.fps)) if self._first is not None else 0
        self._blend: U8 | None = None

    # static layers

    def _views(self, buffer: U8) -> tuple[U8, U8, U8]:
        w, h = self.width, self.height
        flat = buffer.reshape(-1)
        n = w * h
        return (
            flat[:n].reshape(h, w),
            flat[n : n + n // 4].reshape(h // 2, w // 2),
            flat[n + n // 4 :].reshape(h // 2, w // 2),
        )

    def _planes_from_rgb(self, rgb: U8) -> U8:
        """A (h * 3 / 2, w) yuv420p buffer (Y, then U, then V, each packed) from RGB."""
        buffer = np.empty((self.height * 3 // 2, self.width), np.uint8)
        y, u, v = self._views(buffer)
        y[...], u[...], v[...] = rgb_to_yuv420(rgb)
        return buffer

    @staticmethod
    def _gradient(
        rng: np.random.Generator,
        w: int,
        h: int,
        unit: int,
        should_stop: Callable[[], bool] | None,
    ) -> U8:
        hue = rng.random()
        c0 = np.array(_hsv(hue, rng.uniform(0.45, 0.8), rng.uniform(0.25, 0.45)), np.float32)
        c1 = np.array(
            _hsv(hue + rng.uniform(0.15, 0.5), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.85)),
            np.float32,
        )
        glow = np.array(_hsv(hue + rng.uniform(0.5, 0.8), 0.5, 1.0), np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        gx, gy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.6) * h
        radius = rng.uniform(0.25, 0.5) * max(w, h)
        cell = max(8, round(unit / rng.integers(6, 11)))
        xs = np.arange(w, dtype=np.float32)
        along_x = xs * math.cos(angle)
        span = abs(w * math.cos(angle)) + abs(h * math.sin(angle))
        lo = min(0.0, w * math.cos(angle)) + min(0.0, h * math.sin(angle))
        grid_x = (np.arange(w) % cell) < max(1, unit // 360)
        out = np.empty((h, w, 3), np.uint8)
        for top in range(0, h, 64):
            _stop_point(should_stop, "drawing the background")
            ys = np.arange(top, min(h, top + 64), dtype=np.float32)[:, None]
            t = (along_x[None, :] + ys * math.sin(angle) - lo) / span
            rgb = c0 + (c1 - c0) * t[..., None]
            d2 = ((xs[None, :] - gx) ** 2 + (ys - gy) ** 2) / (radius * radius)
            rgb += glow * (0.35 * np.exp(-d2))[..., None]
            grid = grid_x[None, :] | ((ys.astype(np.int64) % cell) < max(1, unit // 360))
            rgb += np.where(grid, np.float32(18), np.float32(0))[..., None]
            out[top : top + ys.shape[0]] = _to_u8(rgb)
        return out

    def _timecode(self, index: int) -> str:
        seconds, within = divmod(index, self.fps)
        minutes, seconds = divmod(seconds, 60)
        return self._tc_template.format(minutes, seconds, within, index)

    @staticmethod
    def _glyphs(font: Font, pattern: str) -> tuple[list[int], dict[str, tuple[U8, U8, U8]], int]:
        """Cell widths for each place of `pattern`, and each character as opaque Y/U/V tiles."""
        digit_w = max(font.getlength(d) for d in "0123456789")
        chars = "0123456789" + "".join(sorted(set(pattern) - set("0123456789")))

        def width(c: str) -> int:
            return _even(digit_w + 1 if c.isdigit() else max(font.getlength(c), 2) + 1)

        cell_h = _even(_line_height(font) + 1)
        tiles: dict[str, tuple[U8, U8, U8]] = {}
        for c in chars:
            cw = width(c)
            tile = Image.new("RGB", (cw, cell_h), _BOX_RGB)
            x = (cw - font.getlength(c)) / 2
            ImageDraw.Draw(tile).text((x, 0), c, font=font, fill=_TEXT_RGB)
            tiles[c] = rgb_to_yuv420(np.asarray(tile))
        return [width(c) for c in pattern], tiles, cell_h

    def _make_shapes(
        self, rng: np.random.Generator, stage: tuple[int, int, int, int]
    ) -> list[_Shape]:
        x0, y0, x1, y1 = stage
        room = min(x1 - x0, y1 - y0)
        shapes = []
        for _ in range(int(rng.integers(4, 8))):
            size = min(_even(room * rng.uniform(0.12, 0.3)), room - room % 2)
            kind = int(rng.integers(0, 4))
            rgb = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0))
            opacity = rng.uniform(0.7, 1.0)
            speed = (
                rng.uniform(0.1, 0.45) * (x1 - x0) * rng.choice((-1, 1)),
                rng.uniform(0.1, 0.45) * (y1 - y0) * rng.choice((-1, 1)),
            )
            start = (rng.uniform(0, 2 * (x1 - x0)), rng.uniform(0, 2 * (y1 - y0)))
            if size < 2:
                continue
            alpha = _mask(kind, size) * opacity
            chroma = alpha.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3))
            a_y = np.rint(alpha * 256).astype(np.uint16)
            a_c = np.rint(chroma * 256).astype(np.uint16)
            cy, cu, cv = _yuv(rgb)
            shapes.append(
                _Shape(
                    size=size,
                    y_inv=(256 - a_y).astype(np.uint16),
                    y_col=(a_y * cy).astype(np.uint16),
                    c_inv=(256 - a_c).astype(np.uint16),
                    u_col=(a_c * cu).astype(np.uint16),
                    v_col=(a_c * cv).astype(np.uint16),
                    start=start,
                    speed=speed,
                    y_tmp=np.empty((size, size), np.uint16),
                    c_tmp=np.empty((size // 2, size // 2), np.uint16),
                )
            )
        return shapes

    # per frame

    def frame(self, index: int) -> av.VideoFrame:
        """Frame `index` as a yuv420p VideoFrame (valid until the next call)."""
        self._draw(index)
        buffer = self._work
        if self._first is not None and index < self._fade:
            if index == 0:
                buffer = self._first
            else:  # the overlays fade in over the image
                weight = round(256 * index / self._fade)
                mixed = self._first.astype(np.uint16)  # explicit widths: numpy 1.x too
                mixed *= 256 - weight
                mixed += self._work.astype(np.uint16) * weight
                mixed >>= 8
                self._blend = mixed.astype(np.uint8)
                buffer = self._blend
        return av.VideoFrame.from_numpy_buffer(buffer, format="yuv420p")

    def _draw(self, index: int) -> None:
        y, u, v = self._y, self._u, self._v
        for x0, y0, size in self._dirty:
            y[y0 : y0 + size, x0 : x0 + size] = self._bg_y[y0 : y0 + size, x0 : x0 + size]
            cx, cy, cs = x0 // 2, y0 // 2, size // 2
            u[cy : cy + cs, cx : cx + cs] = self._bg_u[cy : cy + cs, cx : cx + cs]
            v[cy : cy + cs, cx : cx + cs] = self._bg_v[cy : cy + cs, cx : cx + cs]
        self._dirty.clear()
        t = index / self.fps
        sx0, sy0, sx1, sy1 = self._stage
        for shape in self._shapes:
            size = shape.size
            x0 = sx0 + _bounce(shape.start[0] + shape.speed[0] * t, sx1 - sx0 - size)
            y0 = sy0 + _bounce(shape.start[1] + shape.speed[1] * t, sy1 - sy0 - size)
            _blend(y[y0 : y0 + size, x0 : x0 + size], shape.y_inv, shape.y_col, shape.y_tmp)
            cx, cy, cs = x0 // 2, y0 // 2, size // 2
            _blend(u[cy : cy + cs, cx : cx + cs], shape.c_inv, shape.u_col, shape.c_tmp)
            _blend(v[cy : cy + cs, cx : cx + cs], shape.c_inv, shape.v_col, shape.c_tmp)
            self._dirty.append((x0, y0, size))
        text = self._timecode(index)
        x = self._tc_x
        for place, (c, cw) in enumerate(zip(text, self._tc_cells, strict=True)):
            if place >= len(self._shown) or self._shown[place] != c:
                ty, tu, tv = self._tiles[c]
                th = ty.shape[0]
                y[self._tc_y : self._tc_y + th, x : x + cw] = ty
                cx, cy = x // 2, self._tc_y // 2
                u[cy : cy + th // 2, cx : cx + cw // 2] = tu
                v[cy : cy + th // 2, cx : cx + cw // 2] = tv
            x += cw
        self._shown = text


def _mask(kind: int, size: int) -> F32:
    """Anti-aliased coverage (0..1) of a disc, ring, rounded square or diamond in size x size."""
    r = size / 2
    c = np.arange(size, dtype=np.float32) + np.float32(0.5 - r)
    dx, dy = np.abs(c)[None, :], np.abs(c)[:, None]
    edge = r - 1.0
    if kind == 0:  # disc
        inside = edge - np.sqrt(dx * dx + dy * dy)
    elif kind == 1:  # ring
        d = np.sqrt(dx * dx + dy * dy)
        inside = np.minimum(edge - d, d - edge * 0.55)
    elif kind == 2:  # rounded square
        corner = edge * 0.3
        qx, qy = np.maximum(dx - (edge - corner), 0), np.maximum(dy - (edge - corner), 0)
        inside = corner - np.sqrt(qx * qx + qy * qy)
        inside = np.minimum(inside, edge - np.maximum(dx, dy))
    else:  # diamond
        inside = (edge - (dx + dy)) / np.float32(math.sqrt(2))
    coverage: F32 = np.clip(inside + 0.5, 0, 1).astype(np.float32)
    return coverage


def _bounce(position: float, travel: int) -> int:
    """`position` folded back and forth over [0, travel], as an even integer."""
    if travel <= 0:
        return 0
    p = position % (2 * travel)
    p = 2 * travel - p if p > travel else p
    return min(travel - travel % 2, 2 * int(p / 2))


def _blend(region: U8, inv: U16, col: U16, tmp: U16) -> None:
    """region = (region * (256 - a) + colour * a) >> 8, in place, in 16-bit integers."""
    np.multiply(region, inv, out=tmp)
    tmp += col
    tmp >>= 8
    np.copyto(region, tmp, casting="unsafe")


# -- audio -----------------------------------------------------------------------------

_CHORDS = ((0, 4, 7), (0, 3, 7), (0, 5, 7), (0, 4, 9), (0, 3, 10), (0, 4, 11))
_DEGREES = (0, 2, 3, 5, 7, 8, 9, 10)


class _Chords:
    """A plucked chord each beat, a new chord each bar; samples computed on demand."""

    def __init__(self, rng: np.random.Generator, seconds: float) -> None:
        self.samples = round(seconds * SAMPLE_RATE)
        self.beat = 60.0 / float(rng.integers(80, 132))
        root = 220.0 * 2 ** (int(rng.integers(-9, 4)) / 12)
        bars = []
        for _ in range(4):
            degree = int(rng.choice(_DEGREES))
            shape = _CHORDS[int(rng.integers(0, len(_CHORDS)))]
            bars.append([root * 2 ** ((degree + n) / 12) for n in shape])
        self.freqs = np.array(bars, np.float64)  # (4 bars, 3 notes)
        self.pan = np.array([0.8, 0.55, 0.3], np.float64)  # left weight per note

    def samples_at(self, start: int, count: int) -> F32:
        """(2, count) float32 stereo samples from sample `start`."""
        n = np.arange(start, start + count, dtype=np.float64)
        t = n / SAMPLE_RATE
        beat = np.floor(t / self.beat)
        tau = t - beat * self.beat
        env = np.minimum(1.0, tau / 0.006) * np.exp(-3.5 * tau / self.beat)
        env *= np.clip((self.beat - tau) / 0.02, 0.0, 1.0)
        env *= np.clip((self.samples - n) / (0.02 * SAMPLE_RATE), 0.0, 1.0)
        freqs = self.freqs[(beat // 4).astype(np.int64) % len(self.freqs)]  # (count, 3)
        notes = np.sin(2 * np.pi * freqs * t[:, None]) * env[:, None] * 0.22
        left = notes @ self.pan
        right = notes @ (1.0 - self.pan)
        stereo: F32 = np.stack([left, right]).astype(np.float32)
        return stereo
