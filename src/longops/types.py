"""Public data types.

Attributes are snake_case in Python and camelCase on the wire; both spellings are accepted
when parsing, and `model_dump(by_alias=True, exclude_none=True)` gives the wire form.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from longops._flow import schedule_delay_text, schedule_time_text

__all__ = [
    "Chunk",
    "ChunkData",
    "ChunkingConfig",
    "Condition",
    "CreateFileSearchStoreConfig",
    "CustomMetadata",
    "DeleteDocumentConfig",
    "DeleteFileConfig",
    "DeleteFileResponse",
    "DeleteFileSearchStoreConfig",
    "Document",
    "DownloadFileConfig",
    "File",
    "FileSearchStore",
    "FileStatus",
    "GenerateVideosConfig",
    "GenerateVideosOperation",
    "GenerateVideosResponse",
    "GenerateVideosSource",
    "GeneratedVideo",
    "GetDocumentConfig",
    "GetFileConfig",
    "GetFileSearchStoreConfig",
    "GetOperationConfig",
    "HttpOptions",
    "Image",
    "ImportFileConfig",
    "ImportFileOperation",
    "ImportFileResponse",
    "ImportFileSource",
    "ListDocumentsConfig",
    "ListFileSearchStoresConfig",
    "ListFilesConfig",
    "MetadataFilter",
    "Operation",
    "OperationError",
    "QueryResult",
    "RelevantChunk",
    "RetryOptions",
    "StringList",
    "UploadFileConfig",
    "UploadToFileSearchStoreConfig",
    "UploadToFileSearchStoreOperation",
    "UploadToFileSearchStoreResponse",
    "Video",
    "VideoGenerationMask",
    "VideoGenerationReferenceImage",
    "Webhook",
    "WebhookConfig",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookPingResponse",
    "WebhookRedeliverResponse",
    "WebhookRotateSigningSecretResponse",
    "WebhookSigningSecret",
    "WhiteSpaceConfig",
    "operation_from_wire",
]

OperationT = TypeVar("OperationT", bound="Operation")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        ser_json_bytes="base64",
    )


class _Config(_Model):
    """A per-call `config=`: unknown keys are refused, as google-genai's configs refuse them,
    so that a misspelt option is an error instead of silently doing nothing."""

    model_config = ConfigDict(extra="forbid")


class _FlowConfig(_Config):
    """The flow-control options of a config that starts an operation (README: "Flow
    control"): `priority` (0 to 1000, higher first, 500 by default), a delayed start by
    `schedule_time` (a timezone-aware datetime or RFC 3339 text) or `schedule_delay`
    (seconds or a timedelta), and `concurrency_key` (e.g. a customer's id), under which
    the kind's per-key limits count it."""

    priority: int | None = None
    schedule_time: datetime | str | None = None
    schedule_delay: float | timedelta | str | None = None
    concurrency_key: str | None = None

    @field_serializer("schedule_time")
    def _time_text(self, value: datetime | str | None) -> str | None:
        return None if value is None else schedule_time_text(value)

    @field_serializer("schedule_delay")
    def _delay_text(self, value: float | timedelta | str | None) -> str | None:
        return None if value is None else schedule_delay_text(value)


class RetryOptions(_Model):
    """How the transport retries failed requests (full-jitter exponential backoff).

    `attempts` counts the first request too, so `attempts=1` turns retries off. A 429 or
    503 with a `Retry-After` (a quota's, say) is retried after that many seconds when they
    are at most `max_retry_after`; a longer one raises the error at once.
    """

    attempts: int = Field(default=4, ge=1)
    initial_delay: float = Field(default=0.2, ge=0)
    max_delay: float = Field(default=5.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)


class HttpOptions(_Model):
    """Transport settings. `timeout` is in seconds (the official SDK uses milliseconds).

    `max_connections` caps the open connections of each pool (sync and async, 100 by default);
    past it, requests wait for a free connection, within `timeout`.
    """

    base_url: str | None = None
    api_version: str | None = None
    headers: dict[str, str] | None = None
    timeout: float | None = Field(default=None, gt=0)
    retry: RetryOptions | None = None
    max_connections: int | None = Field(default=None, ge=1)


class OperationError(_Model):
    """A google.rpc.Status: `code` is a gRPC code (1 CANCELLED, 5 NOT_FOUND, 13 INTERNAL, …).

    google-genai leaves an operation's error a dict, so code written for it reads
    `error["code"]`; that works here too, besides `error.code`.
    """

    code: int
    # proto3 JSON omits empty strings, so a server may leave the message out.
    message: str = ""
    details: list[Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """`error.get("message")`, as on google-genai's dict."""
        try:
            return self[key]
        except KeyError:
            return default


class Operation(_Model):
    """A long-running operation; `error` or `response` is set once `done` is true.

    `done` is None while the server leaves it out, which means not done yet. `metadata` is
    kept exactly as the server sent it, `@type` included.
    """

    name: str
    done: bool | None = None
    error: OperationError | None = None
    response: Any | None = None
    metadata: dict[str, Any] | None = None


class Video(_Model):
    """A generated video: inline bytes, or a `uri` to fetch them from.

    Operations parsed by a longops client carry a downloader, so `data` works either way.
    """

    uri: str | None = None
    video_bytes: bytes | None = None
    mime_type: str | None = None

    _downloader: Callable[[str], bytes] | None = PrivateAttr(default=None)
    _saver: Callable[[str, Path], None] | None = PrivateAttr(default=None)

    @field_validator("video_bytes", mode="before")
    @classmethod
    def _decode_base64(cls, value: Any) -> Any:
        # Bytes travel as base64 in JSON; servers differ on the alphabet and on padding.
        if not isinstance(value, str):
            return value
        standard = value.replace("-", "+").replace("_", "/").rstrip("=")
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)

    @property
    def data(self) -> bytes:
        """The video's bytes, downloaded from `uri` on first use and kept in `video_bytes`."""
        if self.video_bytes is None:
            if self.uri is None:
                raise ValueError("This video has neither bytes nor a uri.")
            if self._downloader is None:
                raise ValueError(
                    f"This video has only a uri ({self.uri}) and no client to download it with; "
                    "get it from an operation returned by a longops Client."
                )
            self.video_bytes = self._downloader(self.uri)
        return self.video_bytes

    def save(self, path: str | PathLike[str]) -> None:
        """Write the video to `path`, streaming it from `uri` when the bytes aren't here yet."""
        if self.video_bytes is None and self.uri is not None and self._saver is not None:
            self._saver(self.uri, Path(path))
        else:
            Path(path).write_bytes(self.data)


class GeneratedVideo(_Model):
    video: Video
    generation_seed: int | None = None


class GenerateVideosResponse(_Model):
    """The result of a video generation.

    Parses the Gemini wire shape (`generateVideoResponse.generatedSamples[].video`), the Vertex
    one (`videos[]`) and this model's own dump alike.
    """

    generated_videos: list[GeneratedVideo] = []
    rai_media_filtered_count: int | None = None
    rai_media_filtered_reasons: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if "generateVideoResponse" in data:
            inner = data["generateVideoResponse"] or {}
            videos = [_gemini_sample(sample) for sample in inner.get("generatedSamples") or []]
        elif "videos" in data:
            inner = data
            videos = [_vertex_video(video) for video in data["videos"] or []]
        else:
            return data
        return {
            "generatedVideos": videos,
            "raiMediaFilteredCount": inner.get(
                "raiMediaFilteredCount", data.get("raiMediaFilteredCount")
            ),
            "raiMediaFilteredReasons": inner.get(
                "raiMediaFilteredReasons", data.get("raiMediaFilteredReasons")
            ),
        }


def _gemini_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    video = sample.get("video") or {}
    return {
        "video": {
            "uri": video.get("uri"),
            "videoBytes": video.get("encodedVideo"),
            "mimeType": video.get("encoding", video.get("mimeType")),
        },
        "generationSeed": sample.get("seed", sample.get("generationSeed")),
    }


def _vertex_video(video: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "video": {
            "uri": video.get("gcsUri"),
            "videoBytes": video.get("bytesBase64Encoded"),
            "mimeType": video.get("mimeType"),
        },
        "generationSeed": video.get("seed", video.get("generationSeed")),
    }


class GenerateVideosOperation(Operation):
    response: GenerateVideosResponse | None = None

    @property
    def result(self) -> GenerateVideosResponse | None:
        """The response again, under the second name google-genai gives it."""
        return self.response


class ImportFileResponse(_Model):
    """What importing a file made: the new document's name, in the store `parent`."""

    parent: str | None = None
    document_name: str | None = None


class UploadToFileSearchStoreResponse(_Model):
    """What uploading into a store made: the new document's name, in the store `parent`."""

    parent: str | None = None
    document_name: str | None = None


class ImportFileOperation(Operation):
    """Importing a file into a file search store."""

    response: ImportFileResponse | None = None


class UploadToFileSearchStoreOperation(Operation):
    """Uploading straight into a file search store."""

    response: UploadToFileSearchStoreResponse | None = None


# Each flow has its own name pattern (wire contract §3); `@type` decides for the rest.
_CLASS_BY_NAME: list[tuple[re.Pattern[str], type[Operation]]] = [
    (
        re.compile(
            r"(?:(?:projects/[^/]+/locations/[^/]+/)?publishers/google/)?models/[^/]+/operations/[^/]+"
        ),
        GenerateVideosOperation,
    ),
    (
        re.compile(r"fileSearchStores/[^/]+/upload/operations/[^/]+"),
        UploadToFileSearchStoreOperation,
    ),
    (re.compile(r"fileSearchStores/[^/]+/operations/[^/]+"), ImportFileOperation),
]
_CLASS_BY_RESPONSE_TYPE: dict[str, type[Operation]] = {
    "PredictLongRunningResponse": GenerateVideosOperation,
    "GenerateVideoResponse": GenerateVideosOperation,
    "ImportFileResponse": ImportFileOperation,
    "UploadToFileSearchStoreResponse": UploadToFileSearchStoreOperation,
}


@overload
def operation_from_wire(data: Mapping[str, Any], cls: type[OperationT]) -> OperationT: ...
@overload
def operation_from_wire(data: Mapping[str, Any], cls: None = None) -> Operation: ...
def operation_from_wire(data: Mapping[str, Any], cls: type[Operation] | None = None) -> Operation:
    """Parse an Operation's JSON as `cls`, or as the subclass its name or `@type` implies."""
    return (cls or _operation_class(data)).model_validate(data)


def _operation_class(data: Mapping[str, Any]) -> type[Operation]:
    name = data.get("name")
    if isinstance(name, str):
        for pattern, cls in _CLASS_BY_NAME:
            if pattern.fullmatch(name):
                return cls
    response = data.get("response")
    response_type = response.get("@type") if isinstance(response, Mapping) else None
    if isinstance(response_type, str):
        return _CLASS_BY_RESPONSE_TYPE.get(response_type.rpartition(".")[2], Operation)
    return Operation


class Image(_Model):
    """An input image: inline bytes, or a gs:// object."""

    image_bytes: bytes | None = None
    gcs_uri: str | None = None
    mime_type: str | None = None

    @classmethod
    def from_file(cls, path: str | PathLike[str], mime_type: str | None = None) -> Image:
        suffix = Path(path).suffix.lower()
        guessed = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(suffix)
        return cls(image_bytes=Path(path).read_bytes(), mime_type=mime_type or guessed)


class VideoGenerationReferenceImage(_Model):
    """An image the video should resemble; `reference_type` is ASSET or STYLE."""

    image: Image | None = None
    reference_type: str | None = None


class VideoGenerationMask(_Model):
    """Where in the input video to insert or remove, and which (`mask_mode`)."""

    image: Image | None = None
    mask_mode: str | None = None


class GenerateVideosSource(_Model):
    """What to generate from, google-genai's newer spelling of `prompt=`, `image=`, `video=`."""

    prompt: str | None = None
    image: Image | None = None
    video: Video | None = None


class WebhookConfig(_Model):
    """Where a request's terminal event is sent, as google-genai's `WebhookConfig`.

    `uris` (up to 10) receive the event instead of the tenant's registered webhooks,
    signed with a JWT (see the README's "Webhooks"); `user_metadata` travels in every
    event of the operation, to the given uris or to the registered webhooks.
    """

    uris: list[str] | None = None
    user_metadata: dict[str, Any] | None = None


class GenerateVideosConfig(_FlowConfig):
    """Options of a video generation; names as in google-genai's GenerateVideosConfig.

    The fields after `enhance_prompt` are sent as Vertex names them and kept by the server.
    """

    number_of_videos: int | None = None
    duration_seconds: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    fps: int | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    generate_audio: bool | None = None
    output_gcs_uri: str | None = None
    person_generation: str | None = None
    enhance_prompt: bool | None = None
    pubsub_topic: str | None = None
    compression_quality: str | None = None
    resize_mode: str | None = None
    labels: dict[str, str] | None = None
    last_frame: Image | None = None
    reference_images: list[VideoGenerationReferenceImage] | None = None
    mask: VideoGenerationMask | None = None
    webhook_config: WebhookConfig | None = None


class UploadFileConfig(_Config):
    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None


class GetFileConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class DeleteFileConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class DownloadFileConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class GetOperationConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class ListFilesConfig(_Config):
    """One page of `page_size` files, starting at `page_token` (the first page when None)."""

    page_size: int | None = None
    page_token: str | None = None


class DeleteFileResponse(_Model):
    """The (empty) answer to `files.delete`, google-genai's return type."""


class FileStatus(_Model):
    """Why a file failed: a google.rpc.Status."""

    code: int | None = None
    message: str | None = None
    details: list[dict[str, Any]] | None = None


class File(_Model):
    """A file on the server (a generated video, an upload)."""

    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    expiration_time: datetime | None = None
    sha256_hash: str | None = None
    uri: str | None = None
    download_uri: str | None = None
    state: str | None = None
    source: str | None = None
    video_metadata: dict[str, Any] | None = None
    error: FileStatus | None = None


class StringList(_Model):
    values: list[str] = []


class CustomMetadata(_Model):
    """One key of a document's metadata, holding exactly one of the three kinds of value."""

    key: str
    string_value: str | None = None
    numeric_value: float | None = None
    string_list_value: StringList | None = None


class WhiteSpaceConfig(_Model):
    max_tokens_per_chunk: int | None = None
    max_overlap_tokens: int | None = None


class ChunkingConfig(_Model):
    """How a document is cut into chunks before it is embedded."""

    white_space_config: WhiteSpaceConfig | None = None


class FileSearchStore(_Model):
    """A store of documents, chunked and embedded for retrieval."""

    name: str | None = None
    display_name: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    active_documents_count: int | None = None
    pending_documents_count: int | None = None
    failed_documents_count: int | None = None
    size_bytes: int | None = None
    embedding_model: str | None = None


class Document(_Model):
    """A document in a file search store; `state` is STATE_PENDING, STATE_ACTIVE or STATE_FAILED."""

    name: str | None = None
    display_name: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    state: str | None = None
    size_bytes: int | None = None
    mime_type: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None


class CreateFileSearchStoreConfig(_Config):
    display_name: str | None = None
    embedding_model: str | None = None


class GetFileSearchStoreConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class ListFileSearchStoresConfig(_Config):
    """One page of `page_size` stores, starting at `page_token` (the first page when None)."""

    page_size: int | None = None
    page_token: str | None = None


class DeleteFileSearchStoreConfig(_Config):
    """`force` deletes a store that still holds documents, and them with it."""

    force: bool | None = None


class GetDocumentConfig(_Config):
    """No options; here so that google-genai's `config=` has a twin."""


class ListDocumentsConfig(_Config):
    """One page of `page_size` documents, starting at `page_token` (the first page when None)."""

    page_size: int | None = None
    page_token: str | None = None


class DeleteDocumentConfig(_Config):
    """`force` deletes a document that holds chunks, and them with it."""

    force: bool | None = None


class ImportFileSource(_Model):
    """What `import_file` imports: exactly one of a gs:// object, an uploaded file or a URL."""

    gcs_uri: str | None = None
    file_name: str | None = None
    uri: str | None = None


class ImportFileConfig(_FlowConfig):
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None
    webhook_config: WebhookConfig | None = None


class UploadToFileSearchStoreConfig(_FlowConfig):
    display_name: str | None = None
    mime_type: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None
    webhook_config: WebhookConfig | None = None


class Condition(_Model):
    """`operation` is EQUAL, NOT_EQUAL, LESS, LESS_EQUAL, GREATER, GREATER_EQUAL, INCLUDES, …"""

    operation: str
    string_value: str | None = None
    numeric_value: float | None = None


class MetadataFilter(_Model):
    """Keeps chunks whose document's metadata `key` meets any of `conditions`."""

    key: str
    conditions: list[Condition] = []


class ChunkData(_Model):
    string_value: str | None = None


class Chunk(_Model):
    name: str | None = None
    data: ChunkData | None = None
    custom_metadata: list[CustomMetadata] | None = None


class RelevantChunk(_Model):
    # proto3 JSON leaves a score of 0 out.
    chunk_relevance_score: float = 0.0
    chunk: Chunk
    document: Document | None = None


class QueryResult(_Model):
    """The answer of `file_search_stores.query`, most relevant chunk first."""

    relevant_chunks: list[RelevantChunk] = []


class WebhookSigningSecret(_Model):
    """A secret that signs a webhook's deliveries, shown truncated; `expire_time` is set
    on the previous secret after a rotation, until when both sign."""

    truncated_secret: str | None = None
    expire_time: datetime | None = None


class Webhook(_Model):
    """A registered webhook, as google-genai's `Webhook`.

    `state` is `enabled`, `disabled` or `disabled_due_to_failed_deliveries`;
    `new_signing_secret` (the whole `whsec_` secret) is set only on the answer to `create`.
    """

    id: str | None = None
    name: str | None = None
    uri: str | None = None
    subscribed_events: list[str] = []
    state: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    signing_secrets: list[WebhookSigningSecret] = []
    new_signing_secret: str | None = None


class WebhookPingResponse(_Model):
    """The (empty) answer to `webhooks.ping`: the ping is queued for delivery."""


class WebhookRotateSigningSecretResponse(_Model):
    """The new `whsec_` secret, shown this once."""

    secret: str | None = None


class WebhookDeliveryAttempt(_Model):
    """One try at sending a delivery: when, the receiver's status code (None when no
    answer came), how long it took, what went wrong, and when the next try is due."""

    attempt_time: datetime | None = None
    status_code: int | None = None
    latency: timedelta | None = None
    error: str | None = None
    next_attempt_time: datetime | None = None

    @field_validator("latency", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        # A google.protobuf.Duration in JSON: "0.012s".
        if isinstance(value, str) and value.endswith("s"):
            return timedelta(seconds=float(value[:-1]))
        return value


class WebhookDelivery(_Model):
    """One event sent (or being sent) to one uri, from the delivery log.

    `name` is `webhooks/{id}/deliveries/{delivery}` for a registered webhook's delivery and
    `webhookDeliveries/{delivery}` for a per-request one's; `id` is the `webhook-id` header
    the receiver saw. `state` is `pending`, `delivered` or `failed`. `attempts` is filled by
    `webhooks.get_delivery` only.
    """

    name: str | None = None
    id: str | None = None
    webhook_id: str | None = None
    uri: str | None = None
    event_type: str | None = None
    operation: str | None = None
    state: str | None = None
    attempt_count: int = 0
    create_time: datetime | None = None
    next_attempt_time: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    payload: dict[str, Any] | None = None
    attempts: list[WebhookDeliveryAttempt] | None = None


class WebhookRedeliverResponse(_Model):
    """How many deliveries a time range's redelivery queued again."""

    redelivered_count: int = 0
