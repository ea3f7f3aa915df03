"""Where gs:// URIs lead, for imports, video outputs and first-frame images alike.

Out of the box a local folder stands in for Cloud Storage (`./longops-gcs`: gs://bucket/key
is ./longops-gcs/bucket/key), so a server started with no settings accepts both `gs://`
imports and `output_gcs_uri`. One setting changes that for all of them:
`LONGOPS_GCS_ROOT=gs://` selects Cloud Storage itself, through gcsfs, with Google's
default credentials (or the emulator STORAGE_EMULATOR_HOST names).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longops.engine.failures import OperationFailed
from longops.rpc import Code

log = logging.getLogger("longops.buckets")

SETTING = "LONGOPS_GCS_ROOT"
DEFAULT_ROOT = "./longops-gcs"
"""The folder standing in for buckets when nothing is configured, beside ./longops.db."""
CLOUD = "gs://"
"""The value of LONGOPS_GCS_ROOT that selects Cloud Storage itself."""


def gcs_root(env: Mapping[str, str]) -> Path | None:
    """The folder LONGOPS_GCS_ROOT names (the default one when unset); None for Cloud
    Storage itself. ValueError for a gs:// URI with a bucket in it, which is no folder."""
    value = env.get(SETTING) or DEFAULT_ROOT
    if value == CLOUD:
        return None
    if value.startswith(CLOUD):
        raise ValueError(
            f"{SETTING}: {value[:100]!r}: `gs://` alone selects Cloud Storage; "
            "a bucket or folder in it is not supported"
        )
    return Path(value)


def cloud_storage() -> Any:
    """A gcsfs file system for Cloud Storage itself. Blocks (it may fetch credentials):
    call it in a thread. ValueError when gcsfs is not installed."""
    try:
        import gcsfs
        import gcsfs.core
    except ImportError:
        raise ValueError(
            f"{SETTING}=gs:// reads and writes Cloud Storage through gcsfs"
            " (pip install 'longops[gcs]')"
        ) from None
    emulated = bool(os.environ.get("STORAGE_EMULATOR_HOST"))
    # An emulator speaks only the JSON API: skip gcsfs' gRPC probe for bucket layouts.
    filesystem = gcsfs.core.GCSFileSystem if emulated else gcsfs.GCSFileSystem
    return filesystem(token="anon" if emulated else "google_default", skip_instance_cache=True)


def read_capped(
    fs: Any, path: str, limit: int, *, too_large: str, not_found: str, unreadable: str
) -> bytes:
    """The object at `path` of Cloud Storage (`fs`), refused without being read when it is
    over `limit` bytes. Each failure is the operation's, with the caller's message: too
    large INVALID_ARGUMENT, missing NOT_FOUND, anything else (credentials, network,
    permissions: the operator's to fix, and logged for them) FAILED_PRECONDITION. Blocks:
    run it in a thread."""
    try:
        if int(fs.info(path)["size"]) > limit:
            raise OperationFailed(Code.INVALID_ARGUMENT, too_large)
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        raise OperationFailed(Code.NOT_FOUND, not_found) from None
    except OperationFailed:
        raise
    except Exception as exc:
        log.warning(
            "could not read gs://%s: %s: %s", path.removeprefix("gs://"), type(exc).__name__, exc
        )
        raise OperationFailed(Code.FAILED_PRECONDITION, unreadable) from None
    return data
