"""The kinds longops ships, and the registry `longops serve` starts with."""

from typing import Any

from longops.engine.registry import Kind, Registry
from longops.kinds.file_search.importer import FileSearchSettings, file_search_kinds
from longops.kinds.sleep import sleep
from longops.kinds.videos.generate import generate_videos_kind
from longops.kinds.videos.settings import VideoSettings

BUILTIN_KINDS: tuple[Kind[Any], ...] = (sleep,)
"""The kinds that need no settings."""


def default_registry(videos: VideoSettings | None = None) -> Registry:
    """The built-in kinds; video generation configured from `videos` or the environment."""
    registry = Registry()
    for builtin in BUILTIN_KINDS:
        registry.add(builtin)
    registry.add(generate_videos_kind(videos or VideoSettings.from_env()))
    for search in file_search_kinds(FileSearchSettings.from_env()):
        registry.add(search)
    return registry
