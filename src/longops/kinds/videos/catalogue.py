"""The video models a server offers, and what each accepts.

Ships entries for the Veo model names of Google's documentation; an operator adds or
overrides entries with a JSON list, inline or in a file (`LONGOPS_VIDEO_MODELS`), e.g. to
accept a new model name or to bind one to another backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

RESOLUTIONS: dict[str, tuple[int, int]] = {"720p": (1280, 720), "1080p": (1920, 1080)}
ASPECT_RATIOS = ("16:9", "9:16")


@dataclass(frozen=True, slots=True)
class VideoModel:
    name: str
    durations: tuple[int, ...]
    default_duration: int
    resolutions: tuple[str, ...] = ("720p",)
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    max_videos: int = 4
    fps: tuple[int, ...] = (24,)
    audio: bool = False
    backend: str = "render"

    def frame_size(self, aspect_ratio: str, resolution: str) -> tuple[int, int]:
        long, short = RESOLUTIONS[resolution]
        return (long, short) if aspect_ratio == "16:9" else (short, long)


_VEO2 = VideoModel("veo-2.0-generate-001", durations=(5, 6, 7, 8), default_duration=8)
_VEO3 = VideoModel(
    "veo-3.0-generate-001",
    durations=(4, 6, 8),
    default_duration=8,
    resolutions=("720p", "1080p"),
    audio=True,
)

DEFAULT_MODELS: tuple[VideoModel, ...] = (
    _VEO2,
    replace(_VEO2, name="veo-2.0-generate-exp"),
    _VEO3,
    replace(_VEO3, name="veo-3.0-fast-generate-001"),
    replace(_VEO3, name="veo-3.0-generate-preview"),
    replace(_VEO3, name="veo-3.0-fast-generate-preview"),
    replace(_VEO3, name="veo-3.1-generate-preview"),
    replace(_VEO3, name="veo-3.1-fast-generate-preview"),
)


@dataclass(slots=True)
class Catalogue:
    models: dict[str, VideoModel] = field(
        default_factory=lambda: {m.name: m for m in DEFAULT_MODELS}
    )

    def get(self, name: str) -> VideoModel | None:
        return self.models.get(name.removeprefix("models/"))

    def add(self, entries: Any) -> None:
        """Add or replace entries from a (parsed) JSON list of objects with VideoModel's fields."""
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("expected a JSON list of objects, one per model")
        for entry in entries:
            base = self.models.get(entry.get("like", ""), _VEO3)
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
            values.pop("like", None)
            model = replace(base, **values)  # type: ignore[arg-type]  # an operator's JSON
            self.models[model.name] = model
