"""Where large payloads live: videos, uploads. The database keeps only their metadata.

A local folder by default. Writes go to a temporary name and are renamed into place
when complete, so a reader (or a crash) never sees half a blob.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class BlobNotFound(LookupError):
    pass


class OffsetMismatch(ValueError):
    """An append that does not continue where the blob ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"blob holds {size} bytes")
        self.size = size


class LocalBlobs:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"invalid blob key {key!r}")
        return path

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to write the blob into; it appears under `key` only if the block succeeds."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def append(self, key: str, data: bytes, expected_size: int) -> int:
        """Add `data` to a growing blob (a resumable upload) if it now holds exactly
        `expected_size` bytes; returns the new size, or raises `OffsetMismatch`."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            size = f.tell()
            if size != expected_size:
                raise OffsetMismatch(size)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            return size + len(data)

    def current_size(self, key: str) -> int:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else 0

    def rename(self, key: str, new_key: str) -> None:
        target = self._path(new_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._path(key).replace(target)

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as f:
            f.write(data)

    def local_path(self, key: str) -> Path:
        """The file behind `key`, for serving it without copying."""
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        return path

    def size(self, key: str) -> int:
        return self.local_path(key).stat().st_size

    def read(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def copy_to(self, key: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.local_path(key), destination)
