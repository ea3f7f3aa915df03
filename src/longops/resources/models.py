"""Models: starting video generations."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from longops.resources._base import ApiContext, AsyncResource, SyncResource, coerce, options
from longops.types import (
    GenerateVideosConfig,
    GenerateVideosOperation,
    GenerateVideosSource,
    Image,
    Video,
    VideoGenerationMask,
    VideoGenerationReferenceImage,
)

__all__ = ["AsyncModels", "Models"]

# GenerateVideosConfig field → predictLongRunning parameter, where the name differs.
_PARAMETER_NAMES = {
    "number_of_videos": "sampleCount",
    "output_gcs_uri": "storageUri",
}
# GenerateVideosConfig fields that are not parameters: where they go instead.
_INSTANCE_FIELDS = {"last_frame", "reference_images", "mask"}
_FLOW_FIELDS = {"priority", "schedule_time", "schedule_delay", "concurrency_key"}
_BODY_FIELDS = {"labels", "webhook_config", *_FLOW_FIELDS}

# What `generate_videos` accepts for an image or a video: longops's, google-genai's or a dict.
ImageLike = Image | dict[str, Any] | object
VideoLike = Video | dict[str, Any] | object


def _image(image: Image) -> dict[str, Any]:
    picture: dict[str, Any] = {}
    if image.image_bytes is not None:
        picture["bytesBase64Encoded"] = base64.b64encode(image.image_bytes).decode()
    if image.gcs_uri is not None:
        picture["gcsUri"] = image.gcs_uri
    if image.mime_type is not None:
        picture["mimeType"] = image.mime_type
    return picture


def _video(video: Video) -> dict[str, Any]:
    clip: dict[str, Any] = {}
    if video.video_bytes is not None:
        clip["bytesBase64Encoded"] = base64.b64encode(video.video_bytes).decode()
    if video.uri is not None:
        clip["gcsUri"] = video.uri
    if video.mime_type is not None:
        clip["mimeType"] = video.mime_type
    return clip


def _reference(reference: VideoGenerationReferenceImage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if reference.image is not None:
        out["image"] = _image(reference.image)
    if reference.reference_type is not None:
        out["referenceType"] = reference.reference_type
    return out


def _mask(mask: VideoGenerationMask) -> dict[str, Any]:
    # As google-genai sends it: the image's own fields, beside the mode.
    out = _image(mask.image) if mask.image is not None else {}
    if mask.mask_mode is not None:
        out["maskMode"] = mask.mask_mode
    return out


def _source(
    prompt: str | None,
    image: ImageLike | None,
    video: VideoLike | None,
    source: GenerateVideosSource | dict[str, Any] | object | None,
) -> GenerateVideosSource:
    """What to generate from, given directly (`prompt=`…) or as google-genai's `source=`."""
    direct = GenerateVideosSource(
        prompt=prompt,
        image=None if image is None else coerce(image, Image),
        video=None if video is None else coerce(video, Video),
    )
    if source is None:
        return direct
    if prompt is not None or image is not None or video is not None:
        raise ValueError("Pass the prompt, image and video either in `source` or directly.")
    return coerce(source, GenerateVideosSource)


def _video_request(
    model: str,
    source: GenerateVideosSource,
    config: GenerateVideosConfig,
    context: ApiContext,
) -> tuple[str, dict[str, Any]]:
    if source.prompt is None and source.image is None and source.video is None:
        raise ValueError("generate_videos needs a prompt, an image, a video, or several.")
    name = model.removeprefix("models/").removeprefix("publishers/google/models/")
    if context.vertexai:
        path = f"{context.vertex_resource(f'publishers/google/models/{name}')}:predictLongRunning"
    else:
        path = f"models/{name}:predictLongRunning"
    instance: dict[str, Any] = {}
    if source.prompt is not None:
        instance["prompt"] = source.prompt
    if source.image is not None:
        instance["image"] = _image(source.image)
    if source.video is not None:
        instance["video"] = _video(source.video)
    if config.last_frame is not None:
        instance["lastFrame"] = _image(config.last_frame)
    if config.reference_images is not None:
        instance["referenceImages"] = [_reference(r) for r in config.reference_images]
    if config.mask is not None:
        instance["mask"] = _mask(config.mask)
    body: dict[str, Any] = {"instances": [instance]}
    parameters = {
        _PARAMETER_NAMES.get(key, GenerateVideosConfig.model_fields[key].alias or key): value
        for key, value in config.model_dump(exclude_none=True).items()
        if key not in _INSTANCE_FIELDS | _BODY_FIELDS
    }
    if parameters:
        body["parameters"] = parameters
    if config.labels is not None:
        body["labels"] = config.labels
    if config.webhook_config is not None:
        body["webhookConfig"] = config.webhook_config.model_dump(by_alias=True, exclude_none=True)
    body.update(
        config.model_dump(
            by_alias=True,
            exclude_none=True,
            include=_FLOW_FIELDS,
        )
    )
    return path, body


class Models(SyncResource):
    def generate_videos(
        self,
        *,
        model: str,
        prompt: str | None = None,
        image: ImageLike | None = None,
        video: VideoLike | None = None,
        source: GenerateVideosSource | dict[str, Any] | object | None = None,
        config: GenerateVideosConfig | dict[str, Any] | object | None = None,
    ) -> GenerateVideosOperation:
        """Start a video generation; poll the operation with `client.operations.get`.

        The arguments are google-genai's: `image`, `video`, `source` and `config` may be
        longops types, dicts, or google-genai's own types.
        """
        path, body = _video_request(
            model,
            _source(prompt, image, video, source),
            options(config, GenerateVideosConfig),
            self._context,
        )
        data = self._transport.request(
            "POST", path, body=body, params={"requestId": str(uuid.uuid4())}, idempotent=True
        )
        return self._context.parse_operation(data, GenerateVideosOperation)


class AsyncModels(AsyncResource):
    async def generate_videos(
        self,
        *,
        model: str,
        prompt: str | None = None,
        image: ImageLike | None = None,
        video: VideoLike | None = None,
        source: GenerateVideosSource | dict[str, Any] | object | None = None,
        config: GenerateVideosConfig | dict[str, Any] | object | None = None,
    ) -> GenerateVideosOperation:
        """Start a video generation; poll the operation with `client.aio.operations.get`."""
        path, body = _video_request(
            model,
            _source(prompt, image, video, source),
            options(config, GenerateVideosConfig),
            self._context,
        )
        data = await self._transport.request(
            "POST", path, body=body, params={"requestId": str(uuid.uuid4())}, idempotent=True
        )
        return self._context.parse_operation(data, GenerateVideosOperation)
