"""What an operator configures about video generation, read from the environment."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longops.kinds.buckets import DEFAULT_ROOT, gcs_root
from longops.kinds.folders import TENANT, TENANT_NAME_MAX, inside, tenant_folder
from longops.kinds.videos.backends import VideoBackend, default_backends
from longops.kinds.videos.catalogue import Catalogue

_DEFAULT_FAILURE = "Video generation failed (injected fault)."
NAME_MAX = 255
"""Bytes in one path component on Linux's file systems (and macOS's)."""
PATH_MAX = 4096
"""Bytes in a whole path on Linux, its terminating NUL included."""


@contextlib.contextmanager
def _naming(setting: str) -> Iterator[None]:
    """Whatever is wrong with an operator's setting (a missing file, bad JSON, a field
    no model has) becomes a ValueError naming it, for start-up to say in one line."""
    try:
        yield
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"{setting}: {exc}") from None


def _inline_or_file(value: str) -> str:
    """The JSON of a setting given either inline (it starts with `[`) or as a file's path."""
    return value if value.lstrip().startswith("[") else Path(value).read_text()


class InvalidUri(ValueError):
    """A gs:// URI that no file under the root can stand for (NUL, a component over
    NAME_MAX bytes, a path over PATH_MAX, outside the root, a file where a folder must
    be): the client's mistake, INVALID_ARGUMENT, where an unconfigured root is the
    server's (FAILED_PRECONDITION). Its message names the URI, never the local path."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Make matching generations fail or take longer, so apps can rehearse those paths.

    A request matches when its prompt contains `prompt_contains` (case-insensitive).
    Deterministic and opt-in: nothing is injected unless the operator configures it.
    """

    prompt_contains: str
    fail_code: int | None = None
    fail_message: str = _DEFAULT_FAILURE
    delay_seconds: float = 0.0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Fault:
        fail = raw.get("failWith") or raw.get("fail_with") or {}
        return cls(
            prompt_contains=str(raw.get("promptContains", raw.get("prompt_contains", ""))),
            fail_code=fail.get("code"),
            fail_message=fail.get("message", _DEFAULT_FAILURE),
            delay_seconds=float(raw.get("delaySeconds", raw.get("delay_seconds", 0.0))),
        )


@dataclass(slots=True)
class VideoSettings:
    catalogue: Catalogue = field(default_factory=Catalogue)
    safety_terms: tuple[str, ...] = ()
    """Prompts containing any of these words have their videos (partly) filtered."""
    faults: tuple[Fault, ...] = ()
    gcs_root: Path | None = field(default_factory=lambda: Path(DEFAULT_ROOT))
    """Folder standing in for Cloud Storage: gs://bucket/key is gcs_root/bucket/key.
    Shared by every tenant, unless it holds `{tenant}`: then each tenant has its own.
    None is Cloud Storage itself (LONGOPS_GCS_ROOT=gs://, kinds/buckets.py)."""
    backends: dict[str, VideoBackend] = field(default_factory=default_backends)
    """Backends by name; each catalogue entry names the one that renders it."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> VideoSettings:
        """LONGOPS_VIDEO_MODELS and LONGOPS_VIDEO_FAULTS (JSON list, or a path to one),
        LONGOPS_SAFETY_TERMS (comma-separated), LONGOPS_GCS_ROOT (folder, optionally with
        `{tenant}`)."""
        env = dict(os.environ) if env is None else env
        settings = cls()
        if models := env.get("LONGOPS_VIDEO_MODELS"):
            with _naming("LONGOPS_VIDEO_MODELS"):
                settings.catalogue.add(json.loads(_inline_or_file(models)))
        if terms := env.get("LONGOPS_SAFETY_TERMS"):
            settings.safety_terms = tuple(t.strip().lower() for t in terms.split(",") if t.strip())
        if faults := env.get("LONGOPS_VIDEO_FAULTS"):
            with _naming("LONGOPS_VIDEO_FAULTS"):
                settings.faults = tuple(Fault.parse(f) for f in json.loads(_inline_or_file(faults)))
        settings.gcs_root = gcs_root(env)
        return settings

    def fault_for(self, prompt: str) -> Fault | None:
        lowered = prompt.lower()
        return next((f for f in self.faults if f.prompt_contains.lower() in lowered), None)

    def unsafe_terms(self, prompt: str) -> list[str]:
        words = set(prompt.lower().replace(",", " ").replace(".", " ").split())
        return [t for t in self.safety_terms if t in words or (" " in t and t in prompt.lower())]

    @property
    def cloud(self) -> bool:
        """Whether gs:// URIs are Cloud Storage itself rather than a local folder."""
        return self.gcs_root is None

    def check_uri(self, uri: str) -> None:
        """InvalidUri when no object can have this gs:// URI (locally: no file under any
        tenant's root), checked before a request is stored."""
        if self.cloud:
            self._key(uri)
        else:
            self.gcs_path(uri)

    def gcs_path(self, uri: str, *, tenant: str | None = None) -> Path:
        """The local file for a gs:// URI in `tenant`'s root; ValueError for Cloud Storage
        itself, InvalidUri when the URI is malformed, escapes the root or makes a path
        the OS refuses.

        Checked from the URI alone, so that a request can be refused before it is
        stored rather than fail with ENAMETOOLONG after rendering. Without a tenant (a
        check before one is known) the path is for no one: only read its verdict.
        """
        root = self._root(tenant)
        key = self._key(uri)
        try:
            path = inside(root, key)
        except ValueError:
            raise InvalidUri(f"{uri[:100]!r} is outside the buckets this server serves") from None
        if len(str(path).encode()) >= PATH_MAX:
            raise InvalidUri(f"the URI is too long ({len(uri.encode())} bytes) for this server")
        return path

    @staticmethod
    def _key(uri: str) -> str:
        """`bucket/key` of a gs:// URI; InvalidUri when no bucket could hold it."""
        if not uri.startswith("gs://"):
            raise InvalidUri(f"not a gs:// URI: {uri[:100]!r}")
        key = uri.removeprefix("gs://")
        if "\0" in key:
            raise InvalidUri("a gs:// URI cannot contain NUL characters")
        longest = max((len(part.encode()) for part in key.split("/")), default=0)
        if longest > NAME_MAX:
            raise InvalidUri(
                f"a folder or file name in the URI is {longest} bytes long; at most {NAME_MAX}"
            )
        if len(key.encode()) >= PATH_MAX:
            raise InvalidUri(f"the URI is too long ({len(uri.encode())} bytes)")
        return key

    def check_folder(self, uri: str, *, tenant: str) -> None:
        """Check that gs:// `uri` is, or can be made, a writable folder, touching nothing.

        InvalidUri when a file stands where a folder is needed, ValueError when the
        folder cannot be written (the server's configuration). On Cloud Storage only the
        URI is checked: whether the bucket takes the objects shows when they are written.
        """
        if self.cloud:
            self._key(uri.rstrip("/") + "/x")
            return
        path = self.gcs_path(uri.rstrip("/") + "/x", tenant=tenant).parent
        root = self._root(tenant)
        for folder in (path, *path.parents):
            if not folder.is_relative_to(root):
                return  # not even the root exists yet: writing makes it
            name = f"gs://{folder.relative_to(root)}" if folder != root else "the storage root"
            try:
                if not folder.exists():
                    continue
                if not folder.is_dir():
                    raise InvalidUri(f"{name} is a file, not a folder")
            except OSError as exc:
                raise ValueError(f"{name} cannot be checked: {exc.strerror}") from None
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError(f"{name} is not writable by this server")
            return

    def _root(self, tenant: str | None) -> Path:
        """`tenant`'s root; for None, the longest root any tenant's `{tenant}` can make,
        so that a URI passing the create-time checks fits every tenant's root."""
        if self.gcs_root is None:
            raise ValueError("gs:// URIs are Cloud Storage itself here (LONGOPS_GCS_ROOT=gs://)")
        if tenant is None:
            return Path(str(self.gcs_root).replace(TENANT, "x" * TENANT_NAME_MAX)).resolve()
        return tenant_folder(self.gcs_root, tenant).resolve()
