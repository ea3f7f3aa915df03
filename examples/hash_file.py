"""An example operation kind: hash a large file on the server, with live progress.

Run it::

    EXAMPLE_HASH_ROOT=/srv/data PYTHONPATH=examples longops serve --load hash_file
    longops ops start example.hash_file '{"path": "big.iso", "algorithm": "sha256"}'
    longops ops wait operations/...

It shows the parts of a kind: a request model (validated before anything is
stored), expected failures as `OperationFailed` with a google.rpc code, progress
in `metadata`, cancellation between chunks, and blocking work off the event loop
(hashlib releases the GIL on large buffers, so a thread is the right place).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from longops.kinds import Context, OperationFailed, kind
from longops.rpc import Code


class HashFileRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    path: str = Field(min_length=1, description="relative to EXAMPLE_HASH_ROOT")
    algorithm: Literal["sha256", "sha512", "blake2b", "md5"] = "sha256"
    chunk_bytes: int = Field(default=4 << 20, ge=4096, le=64 << 20)


class HashFileResponse(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    path: str
    algorithm: str
    size_bytes: int
    hex_digest: str


def _resolve(relative: str) -> Path:
    root = Path(os.environ.get("EXAMPLE_HASH_ROOT", ".")).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise OperationFailed(Code.PERMISSION_DENIED, f"{relative} is outside the allowed folder.")
    if not path.is_file():
        raise OperationFailed(Code.NOT_FOUND, f"No such file: {relative}.")
    return path


@kind(
    "example.hash_file",
    request=HashFileRequest,
    response_type="type.googleapis.com/example.v1.HashFileResponse",
    metadata_type="type.googleapis.com/example.v1.HashFileMetadata",
)
async def hash_file(ctx: Context, request: HashFileRequest) -> HashFileResponse:
    """Hash a file chunk by chunk, reporting bytes done."""
    path = _resolve(request.path)
    size = path.stat().st_size
    digest = hashlib.new(request.algorithm)
    done = 0
    with path.open("rb") as f:
        while chunk := await ctx.run_in_thread(f.read, request.chunk_bytes):
            await ctx.run_in_thread(digest.update, chunk)
            done += len(chunk)
            await ctx.report_progress(100 * done / size if size else 100, bytesHashed=done)
    return HashFileResponse(
        path=request.path, algorithm=request.algorithm, size_bytes=size,
        hex_digest=digest.hexdigest(),
    )  # fmt: skip
