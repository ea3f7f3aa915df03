"""Models: starting video generations."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from longops.resources._base import ApiContext, AsyncResource, SyncResource
from longops.types import GenerateVideosConfig, GenerateVideosOperation, Image

__all__ = ["AsyncModels", "Models"]

# GenerateVideosConfig field → predictLongRunning parameter, where the name differs.
_PARAMETER_NAMES = {
    "number_of_videos": "sampleCount",
    "output_gcs_uri": "storageUri",
}


def _video_request(
    model: str,
    prompt: str | None,
    image: Image | None,
    config: GenerateVideosConfig | dict[str, Any] | None,
    context: ApiContext,
) -> tuple[str, dict[str, Any]]:
    if prompt is None and image is None:
        raise ValueError("generate_videos needs a prompt, an image, or both.")
    name = model.removeprefix("models/").removeprefix("publishers/google/models/")
    if context.vertexai:
        path = f"{context.vertex_resource(f'publishers/google/models/{name}')}:predictLongRunning"
    else:
        path = f"models/{name}:predictLongRunning"
    instance: dict[str, Any] = {}
    if prompt is not None:
        instance["prompt"] = prompt
    if image is not None:
        picture: dict[str, Any] = {}
        if image.image_bytes is not None:
            picture["bytesBase64Encoded"] = base64.b64encode(image.image_bytes).decode()
        if image.gcs_uri is not None:
            picture["gcsUri"] = image.gcs_uri
        if image.mime_type is not None:
            picture["mimeType"] = image.mime_type
        instance["image"] = picture
    body: dict[str, Any] = {"instances": [instance]}
    options = (
        config
        if isinstance(config, GenerateVideosConfig)
        else GenerateVideosConfig.model_validate(config or {})
    )
    parameters = {
        _PARAMETER_NAMES.get(key, GenerateVideosConfig.model_fields[key].alias or key): value
        for key, value in options.model_dump(exclude_none=True).items()
    }
    if parameters:
        body["parameters"] = parameters
    return path, body


class Models(SyncResource):
    def generate_videos(
        self,
        *,
        model: str,
        prompt: str | None = None,
        image: Image | None = None,
        config: GenerateVideosConfig | dict[str, Any] | None = None,
    ) -> GenerateVideosOperation:
        """Start a video generation; poll the operation with `client.operations.get`."""
        path, body = _video_request(model, prompt, image, config, self._context)
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
        image: Image | None = None,
        config: GenerateVideosConfig | dict[str, Any] | None = None,
    ) -> GenerateVideosOperation:
        """Start a video generation; poll the operation with `client.aio.operations.get`."""
        path, body = _video_request(model, prompt, image, config, self._context)
        data = await self._transport.request(
            "POST", path, body=body, params={"requestId": str(uuid.uuid4())}, idempotent=True
        )
        return self._context.parse_operation(data, GenerateVideosOperation)
