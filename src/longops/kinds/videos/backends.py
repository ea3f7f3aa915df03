"""Video backends: what turns a request into MP4 bytes, chosen per model in the catalogue.

A backend is any callable with `render_mp4`'s signature. It runs in a worker thread,
writes the video to `out`, reports `progress(frames_done, frames_total)`, and raises
`RenderCancelled` soon after `should_stop()` turns true. Register one under a name in
`VideoSettings.backends` and point a catalogue entry's `backend` at it (for example a
wrapper around your own model server).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol

from longops.kinds.videos.render import RenderResult, RenderSpec, render_mp4


class VideoBackend(Protocol):
    def __call__(
        self,
        spec: RenderSpec,
        out: BinaryIO,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RenderResult: ...


def default_backends() -> dict[str, VideoBackend]:
    """The built-in renderer: prompt text, a seeded scene and a time code, really encoded."""
    return {"render": render_mp4}
