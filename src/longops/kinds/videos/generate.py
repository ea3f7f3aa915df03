"""`generate_videos`: the built-in video generation kind.

It renders each requested video with the model's backend, publishes it the way the
calling API expects (Gemini: a generated File and its download URI; Vertex: inline
base64, or a gs:// object when the request names a storage URI), and reports real
progress while frames are encoded.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import stat
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longops.engine.blobs import CHUNK_BYTES, Blobs, digest
from longops.engine.context import Context
from longops.engine.failures import OperationFailed
from longops.engine.ids import new_token_id
from longops.engine.links import video_uri
from longops.engine.registry import Kind
from longops.kinds.buckets import cloud_storage, read_capped
from longops.kinds.videos.backends import VideoBackend
from longops.kinds.videos.catalogue import VideoModel
from longops.kinds.videos.render import InvalidImage, RenderSpec, check_image
from longops.kinds.videos.request import VideoRequest, check, decode_base64
from longops.kinds.videos.settings import InvalidUri, VideoSettings
from longops.rpc import Code

MAX_IMAGE_BYTES = 32 << 20
"""The largest image file a `gcsUri` may name (inline images are bounded by the body size)."""
GEMINI_RESPONSE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)
VERTEX_RESPONSE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
METADATA = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningMetadata"
SUPPORT_CODE = "58061214"
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class VideoKind(Kind[VideoRequest]):
    """`generate_videos`, with the settings it renders by: the models routes list their
    catalogue, so a server shows the models it serves and not the defaults."""

    settings: VideoSettings


def generate_videos_kind(settings: VideoSettings) -> VideoKind:
    async def handler(ctx: Context, request: VideoRequest) -> dict[str, Any]:
        return await _generate(ctx, request, settings)

    return VideoKind(
        name="generate_videos",
        handler=handler,
        request_model=VideoRequest,
        response_type=GEMINI_RESPONSE,
        metadata_type=METADATA,
        check=lambda request: check(request, settings),
        description="Render videos from a prompt (Veo-compatible).",
        settings=settings,
    )


def seed_for(request: VideoRequest) -> int:
    """The request's seed, or one derived from the prompt, so output is always reproducible."""
    if request.parameters.seed is not None:
        return request.parameters.seed
    return zlib.crc32(request.prompt.encode())


async def _generate(ctx: Context, request: VideoRequest, settings: VideoSettings) -> dict[str, Any]:
    model = settings.catalogue.get(request.model)
    if model is None:  # the catalogue changed since the request was accepted
        raise OperationFailed(Code.NOT_FOUND, f"Model {request.model} is no longer served.")
    fault = settings.fault_for(request.prompt)
    if fault is not None and fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault is not None and fault.fail_code is not None:
        raise OperationFailed(fault.fail_code, fault.fail_message)

    params = request.parameters
    count = params.sample_count or 1
    filtered_terms = settings.unsafe_terms(request.prompt)
    filtered = max(1, count // 2) if filtered_terms else 0
    seed = seed_for(request)
    width, height = model.frame_size(params.aspect_ratio or "16:9", params.resolution or "720p")
    if params.storage_uri is not None:  # before rendering: a retry would not make it work
        await ctx.run_in_thread(_check_storage, settings, params.storage_uri, ctx.tenant)
    first_frame = await _image_bytes(ctx, request, settings)
    specs = [
        RenderSpec(
            prompt=request.prompt,
            seed=seed + index,
            width=width,
            height=height,
            fps=params.fps or model.fps[0],
            duration_seconds=params.duration_seconds or model.default_duration,
            negative_prompt=params.negative_prompt,
            first_frame=first_frame,
            audio=bool(params.generate_audio if params.generate_audio is not None else model.audio),
        )
        for index in range(count - filtered)
    ]
    recorded = {"model": model.name, "videosRequested": count, "seed": seed}
    if params.negative_prompt is not None:
        recorded["negativePrompt"] = params.negative_prompt
    await ctx.report_progress(0, force=True, **recorded)
    backend = settings.backends[model.backend]
    videos: list[tuple[RenderSpec, str]] = []
    try:
        for index, spec in enumerate(specs):
            key = f"videos/{ctx.operation_id}/sample_{index}.mp4"
            await _render(ctx, backend, spec, key, index, len(specs))
            videos.append((spec, key))
    except BaseException:
        # A cancelled or failed attempt leaves no orphan blobs: one thread deletes them
        # all, so a second cancel while waiting for it cannot leave some behind.
        await ctx.run_in_thread(_delete_all, ctx.blobs, [key for _, key in videos])
        raise
    response = await _publish(ctx, request, model, videos, settings)
    if filtered:
        reason = (
            "Some of the requested videos were filtered: the prompt contains words that"
            f" violate the usage guidelines ({', '.join(filtered_terms)})."
            f" Support codes: {SUPPORT_CODE}"
        )
        target = response["generateVideoResponse"] if request.api == "gemini" else response
        target["raiMediaFilteredCount"] = filtered
        target["raiMediaFilteredReasons"] = [reason]
    elif request.api == "vertex":
        response["raiMediaFilteredCount"] = 0
    return response


async def _image_bytes(
    ctx: Context, request: VideoRequest, settings: VideoSettings
) -> bytes | None:
    image = request.instance.image
    if image is None:
        return None
    if image.bytes_base64_encoded is not None:
        return decode_base64(image.bytes_base64_encoded)
    if image.gcs_uri is not None:
        data = await ctx.run_in_thread(_read_image, settings, image.gcs_uri, ctx.tenant)
        try:  # its header, as the create request did for inline images
            check_image(data)
        except InvalidImage as exc:
            raise OperationFailed(
                Code.INVALID_ARGUMENT, f"instances[0].image.gcsUri: {exc}"
            ) from None
        return data
    raise OperationFailed(
        Code.INVALID_ARGUMENT, "instances[0].image needs bytesBase64Encoded or gcsUri."
    )


async def _render(
    ctx: Context, backend: VideoBackend, spec: RenderSpec, key: str, index: int, total: int
) -> None:
    """Encode one video in a thread, relaying its progress and stopping it on cancel."""
    stop = threading.Event()
    frames = [0, 1]

    def progress(done: int, of: int) -> None:
        frames[0], frames[1] = done, of

    def work() -> None:
        with ctx.blobs.writer(key) as out:
            backend(spec, out, progress=progress, should_stop=stop.is_set)

    task = asyncio.ensure_future(ctx.run_in_thread(work))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            percent = 100 * (index + frames[0] / max(frames[1], 1)) / total
            await ctx.report_progress(min(percent, 99.0), framesEncoded=frames[0])
        task.result()
    except InvalidImage as exc:
        raise OperationFailed(Code.INVALID_ARGUMENT, f"instances[0].image: {exc}") from None
    finally:
        stop.set()
        if not task.done():
            # Cancelled: let the encoder see `stop` and drop its partial file first.
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # a RenderCancelled after `stop` is expected: not unretrieved


async def _publish(
    ctx: Context,
    request: VideoRequest,
    model: VideoModel,
    videos: list[tuple[RenderSpec, str]],
    settings: VideoSettings,
) -> dict[str, Any]:
    if request.api == "gemini":
        samples = []
        for spec, key in videos:
            id = await _add_file(ctx, key, f"{model.name} sample")
            # https even when served over http: Google's SDKs read the id only from an
            # https uri, then download through their own base URL (engine/links.py).
            uri = video_uri(ctx.public_url, id)
            samples.append(
                {"video": {"uri": uri, "encoding": "video/mp4"}, "generationSeed": spec.seed}
            )
        return {"@type": GEMINI_RESPONSE, "generateVideoResponse": {"generatedSamples": samples}}

    items = []
    storage = request.parameters.storage_uri
    for index, (spec, key) in enumerate(videos):
        if storage is not None:
            uri = f"{storage.rstrip('/')}/{ctx.operation_id}/sample_{index}.mp4"
            if settings.cloud:
                await ctx.run_in_thread(_upload, ctx.blobs, key, uri)
            else:
                destination = settings.gcs_path(uri, tenant=ctx.tenant)
                await ctx.run_in_thread(_copy_out, ctx.blobs, key, destination)
            items.append({"gcsUri": uri, "mimeType": "video/mp4", "generationSeed": spec.seed})
        else:
            data = await ctx.run_in_thread(ctx.blobs.read, key)
            items.append(
                {
                    "bytesBase64Encoded": base64.b64encode(data).decode(),
                    "mimeType": "video/mp4",
                    "generationSeed": spec.seed,
                }
            )
        await ctx.run_in_thread(ctx.blobs.delete, key)
    return {"@type": VERTEX_RESPONSE, "videos": items}


def _check_storage(settings: VideoSettings, uri: str, tenant: str) -> None:
    try:
        settings.check_folder(uri, tenant=tenant)
    except InvalidUri as exc:
        raise OperationFailed(Code.INVALID_ARGUMENT, f"parameters.storageUri: {exc}") from None
    except ValueError as exc:
        raise OperationFailed(Code.FAILED_PRECONDITION, f"parameters.storageUri: {exc}") from None


def _read_image(settings: VideoSettings, uri: str, tenant: str) -> bytes:
    """The bytes of a gs:// image in `tenant`'s root, refused (not read) when larger
    than MAX_IMAGE_BYTES."""
    field = "instances[0].image.gcsUri"
    if settings.cloud:
        return _download_image(uri, field)
    try:
        path = settings.gcs_path(uri, tenant=tenant)
    except InvalidUri as exc:
        raise OperationFailed(Code.INVALID_ARGUMENT, f"{field}: {exc}") from None
    except ValueError as exc:
        raise OperationFailed(Code.FAILED_PRECONDITION, f"{field}: {exc}") from None
    try:  # not blocking on a FIFO, and nothing but a regular file is read
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise FileNotFoundError
            data = file.read(MAX_IMAGE_BYTES + 1)
    except OSError:
        raise OperationFailed(Code.NOT_FOUND, f"Image {uri} not found.") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise OperationFailed(
            Code.INVALID_ARGUMENT, f"{field}: the image is larger than {MAX_IMAGE_BYTES} bytes"
        )
    return data


def _download_image(uri: str, field: str) -> bytes:
    """A gs:// image from Cloud Storage itself, refused (not read) when larger than
    MAX_IMAGE_BYTES. Blocks: run in a thread."""
    return read_capped(
        _cloud(field),
        uri,
        MAX_IMAGE_BYTES,
        too_large=f"{field}: the image is larger than {MAX_IMAGE_BYTES} bytes",
        not_found=f"Image {uri} not found.",
        unreadable=f"{field}: could not read {uri}.",
    )


def _upload(blobs: Blobs, key: str, uri: str) -> None:
    """Copy a video to Cloud Storage itself, in one request up to gcsfs' chunk size (50
    MB; a resumable upload beyond), as large as the inline answer would hold. Blocks:
    run in a thread."""
    fs = _cloud("parameters.storageUri")
    try:
        fs.pipe_file(uri, blobs.read(key), content_type="video/mp4")
    except Exception as exc:  # credentials, network, permissions: the operator's to fix
        log.warning("could not write %s: %s: %s", uri, type(exc).__name__, exc)
        raise OperationFailed(
            Code.FAILED_PRECONDITION, f"parameters.storageUri: could not write {uri}."
        ) from None


def _cloud(field: str) -> Any:
    try:
        return cloud_storage()
    except ValueError as exc:  # gcsfs is not installed
        raise OperationFailed(Code.FAILED_PRECONDITION, f"{field}: {exc}.") from None


def _delete_all(blobs: Blobs, keys: list[str]) -> None:
    for key in keys:
        blobs.delete(key)


def _copy_out(blobs: Blobs, key: str, destination: Path) -> None:
    """Copy a video to the folder that stands in for a Cloud Storage bucket.

    `_check_storage` ran before rendering; should the folder have changed since (a file
    put in its place), the operation fails with the OS's reason, not after retries."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        out = destination.open("wb")
    except OSError as exc:
        raise OperationFailed(
            Code.FAILED_PRECONDITION, f"parameters.storageUri: cannot be written ({exc.strerror})"
        ) from None
    with blobs.open(key) as source, out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


async def _add_file(ctx: Context, key: str, display_name: str) -> str:
    size, sha256 = await ctx.run_in_thread(digest, ctx.blobs, key)
    id = new_token_id()
    await ctx.add_file(
        id=id,
        blob_key=key,
        mime_type="video/mp4",
        size_bytes=size,
        sha256=sha256,
        display_name=display_name,
    )
    return id
