"""A video generation request as stored: the predictLongRunning body, checked against the
model catalogue before anything is stored."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from longops.engine.failures import RequestRejected
from longops.kinds.videos.catalogue import VideoModel
from longops.kinds.videos.render import InvalidImage, check_image
from longops.kinds.videos.settings import InvalidUri, VideoSettings
from longops.rpc import Code

_ID_ROOM = 36  # characters of the longest operation id (a UUID) in an output path


class _Wire(BaseModel):
    """Proto-JSON: camelCase or snake_case in, unknown fields ignored like Google's
    clients send them (personGeneration, compressionQuality …), camelCase out."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="ignore")


class Media(_Wire):
    bytes_base64_encoded: str | None = None
    gcs_uri: str | None = None
    uri: str | None = None
    mime_type: str | None = None
    encoding: str | None = None

    @field_validator("bytes_base64_encoded")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                decode_base64(value)
            except (binascii.Error, ValueError):
                raise ValueError("is not valid base64") from None
        return value


class Instance(_Wire):
    prompt: str | None = Field(default=None, max_length=10_000)
    image: Media | None = None
    last_frame: Media | None = None
    video: Media | None = None


class Parameters(_Wire):
    sample_count: int | None = Field(default=None, ge=1)
    duration_seconds: int | None = Field(default=None, ge=1)
    aspect_ratio: str | None = None
    resolution: str | None = None
    fps: int | None = Field(default=None, ge=1, le=60)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    negative_prompt: str | None = Field(default=None, max_length=10_000)
    generate_audio: bool | None = None
    storage_uri: str | None = None
    person_generation: str | None = None
    enhance_prompt: bool | None = None


class VideoRequest(_Wire):
    api: Literal["gemini", "vertex"]
    model: str
    instances: list[Instance] = Field(min_length=1, max_length=1)
    parameters: Parameters = Field(default_factory=Parameters)
    labels: dict[str, str] | None = None

    @property
    def instance(self) -> Instance:
        return self.instances[0]

    @property
    def prompt(self) -> str:
        return self.instance.prompt or ""


def decode_base64(value: str) -> bytes:
    """Standard or URL-safe alphabet, padded or not (Google's clients send either)."""
    cleaned = value.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def _reject(field: str, message: str, code: int = 3) -> RequestRejected:
    return RequestRejected(f"{field}: {message}", [{"field": field, "description": message}], code)


def check(request: VideoRequest, settings: VideoSettings) -> VideoModel:
    """What pydantic cannot know: the model's own limits and the server's configuration."""
    model = settings.catalogue.get(request.model)
    if model is None:
        raise RequestRejected(
            f"models/{request.model.removeprefix('models/')} is not found for this API version,"
            " or is not supported for predictLongRunning.",
            code=Code.NOT_FOUND,
        )
    if model.backend not in settings.backends:
        raise RequestRejected(
            f"Model {model.name} is configured with backend {model.backend!r}, which this"
            " server does not have.",
            code=Code.FAILED_PRECONDITION,
        )
    instance, params = request.instance, request.parameters
    if not (instance.prompt or instance.image):
        raise _reject("instances[0].prompt", "a prompt or an image is required")
    if params.duration_seconds is not None and params.duration_seconds not in model.durations:
        allowed = ", ".join(map(str, model.durations))
        raise _reject(
            "parameters.durationSeconds",
            f"{params.duration_seconds} is not supported by {model.name} (allowed: {allowed})",
        )
    if params.aspect_ratio is not None and params.aspect_ratio not in model.aspect_ratios:
        allowed = ", ".join(model.aspect_ratios)
        raise _reject(
            "parameters.aspectRatio",
            f"{params.aspect_ratio!r} is not supported by {model.name} (allowed: {allowed})",
        )
    if params.resolution is not None and params.resolution not in model.resolutions:
        allowed = ", ".join(model.resolutions)
        raise _reject(
            "parameters.resolution",
            f"{params.resolution!r} is not supported by {model.name} (allowed: {allowed})",
        )
    if params.sample_count is not None and params.sample_count > model.max_videos:
        raise _reject(
            "parameters.sampleCount",
            f"{model.name} generates at most {model.max_videos} videos per request",
        )
    if params.fps is not None and params.fps not in model.fps:
        allowed = ", ".join(map(str, model.fps))
        raise _reject(
            "parameters.fps", f"{params.fps} is not supported by {model.name} (allowed: {allowed})"
        )
    if params.generate_audio and not model.audio:
        raise _reject("parameters.generateAudio", f"{model.name} does not generate audio")
    if params.storage_uri is not None:  # checked as the longest file it will be written to
        longest = f"{'o' * _ID_ROOM}/sample_{model.max_videos - 1}.mp4"
        _check_uri("parameters.storageUri", f"{params.storage_uri.rstrip('/')}/{longest}", settings)
    image = instance.image
    if image is not None and image.gcs_uri is not None:
        _check_uri("instances[0].image.gcsUri", image.gcs_uri, settings)
    if image is not None and image.bytes_base64_encoded is not None:
        try:  # its header only: nothing is decoded
            check_image(decode_base64(image.bytes_base64_encoded))
        except InvalidImage as exc:
            raise _reject("instances[0].image.bytesBase64Encoded", str(exc)) from None
    return model


def _check_uri(field: str, uri: str, settings: VideoSettings) -> None:
    try:
        settings.check_uri(uri)
    except InvalidUri as exc:
        raise _reject(field, str(exc)) from None
    except ValueError as exc:
        raise _reject(field, str(exc), Code.FAILED_PRECONDITION) from None
