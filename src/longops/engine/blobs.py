"""Where large payloads live: videos, uploads. The database keeps only their metadata.

One small protocol, two stores: a local folder (the default, for one machine) and any
fsspec URL (`s3://bucket/prefix`, `gs://bucket/prefix`, ...) that every API server and
worker of a deployment shares. Either way a reader (or a crash) never sees half a blob:
the folder writes to a temporary name and renames it into place; an object store gets
each blob in one upload of a finished local file, and object stores publish atomically.

Every method blocks (disk or network): callers on an event loop run them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import fsspec

CHUNK_BYTES = 1 << 20
"""How much of a blob is held in memory at once when one is copied, hashed or served."""


class BlobNotFound(LookupError):
    pass


class OffsetMismatch(ValueError):
    """An append that does not continue where the blob ends (another append at the same
    offset won, or the growing blob was published meanwhile)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"blob holds {size} bytes")
        self.size = size


class Blobs(Protocol):
    """A flat namespace of immutable blobs under `/`-separated keys, plus growing blobs
    for resumable uploads (`append` ... `publish_appended`)."""

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A file to write the blob into; it appears under `key` only if the block succeeds."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def write_new(self, key: str, data: bytes) -> bool:
        """Write the blob only if there is none under `key`; False if there was. Of
        several processes trying at once, exactly one gets True."""
        ...

    def append(self, key: str, data: bytes | BinaryIO, expected_size: int) -> int:
        """Add `data` (bytes, or a file read from its position to its end) to the growing
        blob `key` if it now holds exactly `expected_size` bytes; returns the new size,
        or raises `OffsetMismatch`. Of several appends at one offset, at most one lands."""
        ...

    def current_size(self, key: str) -> int:
        """How many bytes were appended to `key` so far (0 for none)."""
        ...

    def publish_appended(self, key: str, new_key: str) -> None:
        """Make what was appended to `key` (possibly nothing) the blob `new_key`; an
        append that had not landed when this started does not reach `new_key`.
        Callers publish a growing blob once (see `UploadSessions.claim`): a second
        publish finds nothing appended."""
        ...

    def discard_appended(self, key: str) -> None:
        """Remove what was appended to `key`, if anything."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The blob, to read in chunks; raises `BlobNotFound`."""
        ...

    def read(self, key: str) -> bytes:
        """The whole blob, for small ones; raises `BlobNotFound`."""
        ...

    def delete(self, key: str) -> None:
        """Remove a blob if it exists."""
        ...

    def keys(self, folder: str) -> list[str]:
        """The keys of the blobs directly in `folder` (`folder/name`), sorted; growing
        blobs may or may not be among them."""
        ...


def open_blobs(url_or_path: str) -> Blobs:
    """The store behind `--blobs`: a folder (a path or `file://` URL) or any other fsspec
    URL, whose query string holds storage options (`s3://b/p?endpoint_url=...`);
    fsspec's own configuration (`FSSPEC_S3_...` variables) and the cloud libraries'
    (`AWS_...`, Google credentials) apply too."""
    if "://" not in url_or_path:
        return LocalBlobs(url_or_path)
    base, _, query = url_or_path.partition("?")
    if base.startswith("file://"):
        parts = urlsplit(base)
        if parts.netloc not in ("", "localhost") or query:
            raise ValueError(f"Unsupported file URL {url_or_path!r}: use file:///absolute/path.")
        return LocalBlobs(unquote(parts.path))
    options: dict[str, Any] = {
        name: {"true": True, "false": False}.get(value.lower(), value)
        for name, value in parse_qsl(query, keep_blank_values=True)
    }
    return FsspecBlobs(base, **options)


def _reader(data: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, bytes) else data


def digest(blobs: Blobs, key: str) -> tuple[int, str]:
    """The size and SHA-256 (hex) of a blob, reading it a chunk at a time."""
    h = hashlib.sha256()
    size = 0
    with blobs.open(key) as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class LocalBlobs:
    """Blobs as files under a folder; a growing blob is one file appended to in place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"invalid blob key {key!r}")
        return path

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
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

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as f:
            f.write(data)

    def write_new(self, key: str, data: bytes) -> bool:
        """Written aside, then hard-linked into place: linking fails if the name exists,
        and a reader never sees half of the blob."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            partial.write_bytes(data)
            os.link(partial, path)
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def append(self, key: str, data: bytes | BinaryIO, expected_size: int) -> int:
        """Under an exclusive lock on the growing file, which `publish_appended` takes
        too: without it two appends at one offset both passed the size check and the
        blob held both, and an append could land in a blob already published."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Only a first append may create the file: a later one finding it gone (as it
        # was published) must not start a new one.
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if expected_size == 0 else 0)
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            raise OffsetMismatch(0) from None
        with open(fd, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            size = os.fstat(f.fileno()).st_size
            if not _names(path, f):  # published or discarded while we waited for the lock
                raise OffsetMismatch(self.current_size(key))
            if size != expected_size:
                raise OffsetMismatch(size)
            try:
                shutil.copyfileobj(_reader(data), f, CHUNK_BYTES)
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                f.truncate(size)  # all of the chunk or none of it
                raise
            return f.tell()

    def current_size(self, key: str) -> int:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else 0

    def publish_appended(self, key: str, new_key: str) -> None:
        target = self._path(new_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        try:
            f = path.open("rb")
        except FileNotFoundError:  # nothing was appended: an empty blob
            self.write_bytes(new_key, b"")
            return
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)  # no append is half-way through
            path.replace(target)

    def discard_appended(self, key: str) -> None:
        self.delete(key)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(key) from None

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, folder: str) -> list[str]:
        try:
            names = [p.name for p in self._path(folder).iterdir() if p.is_file()]
        except FileNotFoundError:
            return []
        return sorted(f"{folder}/{name}" for name in names if not name.startswith("."))


def _names(path: Path, f: BinaryIO) -> bool:
    """Whether `path` still names the open file `f`."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(f.fileno()))
    except FileNotFoundError:
        return False


class FsspecBlobs:
    """Blobs in an fsspec filesystem, meant for object stores shared by many machines.

    Object stores cannot append, so a growing blob is a series of part objects
    `{key}.parts/{offset:020d}`, one per append; its size is that of the parts that
    continue each other from offset 0 (a part left by a lost race is ignored), and
    `publish_appended` streams them into the final object. Directory listings are
    never cached: other machines add parts and blobs all the time.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        storage_options.setdefault("use_listings_cache", False)
        self.fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.root = str(root).rstrip("/")

    def _path(self, key: str) -> str:
        if any(s in ("", ".", "..") for s in key.split("/")):
            raise ValueError(f"invalid blob key {key!r}")
        return f"{self.root}/{key}"

    def _parts_folder(self, key: str) -> str:
        return f"{self._path(key)}.parts"

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Spools the blob to a local temporary file, then uploads it in one put, which
        the store publishes only once complete (a failed multipart upload is aborted)."""
        path = self._path(key)
        fd, spool = tempfile.mkstemp(prefix="longops-blob-")
        try:
            with open(fd, "wb") as f:
                yield f
            self.fs.put_file(spool, path)
        finally:
            os.unlink(spool)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)

    def write_new(self, key: str, data: bytes) -> bool:
        """An exclusive create (`If-None-Match: *` on S3), atomic where the filesystem
        implements one; fsspec's fallback for the others checks, then writes."""
        try:
            self.fs.pipe_file(self._path(key), data, mode="create")
            return True
        except FileExistsError:
            return False

    def _parts(self, key: str) -> tuple[list[str], list[tuple[str, int]]]:
        """Every part object of `key`, and those that continue each other from offset 0."""
        try:
            entries = self.fs.ls(self._parts_folder(key), detail=True)
        except FileNotFoundError:
            return [], []
        by_offset = {
            int(posixpath.basename(e["name"])): (e["name"], int(e["size"]))
            for e in entries
            if e["type"] == "file"
        }
        chain = []
        end = 0
        while end in by_offset and by_offset[end][1] > 0:
            chain.append(by_offset[end])
            end += by_offset[end][1]
        return [name for name, _ in by_offset.values()], chain

    def append(self, key: str, data: bytes | BinaryIO, expected_size: int) -> int:
        """The part is created exclusively (as `write_new`): of two appends at one
        offset, the second finds the first's part and fails."""
        size = self.current_size(key)
        if size != expected_size:
            raise OffsetMismatch(size)
        source = _reader(data)
        start = source.tell()
        length = source.seek(0, os.SEEK_END) - start
        source.seek(start)
        if not length:
            return size
        try:
            with self.fs.open(f"{self._parts_folder(key)}/{size:020d}", "xb") as part:
                shutil.copyfileobj(source, part, CHUNK_BYTES)
        except FileExistsError:
            raise OffsetMismatch(self.current_size(key)) from None
        return size + length

    def current_size(self, key: str) -> int:
        return sum(size for _, size in self._parts(key)[1])

    def publish_appended(self, key: str, new_key: str) -> None:
        every, chain = self._parts(key)
        with self.writer(new_key) as out:
            for name, _ in chain:
                with self.fs.open(name, "rb", block_size=CHUNK_BYTES) as part:
                    shutil.copyfileobj(part, out, CHUNK_BYTES)
        if every:
            self.fs.rm(every)

    def discard_appended(self, key: str) -> None:
        every, _ = self._parts(key)
        if every:
            self.fs.rm(every)

    def open(self, key: str) -> BinaryIO:
        try:
            return cast(BinaryIO, self.fs.open(self._path(key), "rb", block_size=CHUNK_BYTES))
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(key) from None

    def read(self, key: str) -> bytes:
        try:
            return cast(bytes, self.fs.cat_file(self._path(key)))
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def keys(self, folder: str) -> list[str]:
        try:
            entries = self.fs.ls(self._path(folder), detail=True)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "file")
        return sorted(f"{folder}/{name}" for name in names)
