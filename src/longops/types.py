"""Public data types.

Attributes are snake_case in Python and camelCase on the wire; both spellings are accepted
when parsing, and `model_dump(by_alias=True, exclude_none=True)` gives the wire form.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Chunk",
    "ChunkData",
    "ChunkingConfig",
    "Condition",
    "CreateFileSearchStoreConfig",
    "CustomMetadata",
    "Document",
    "File",
    "FileSearchStore",
    "GenerateVideosConfig",
    "GenerateVideosOperation",
    "GenerateVideosResponse",
    "GeneratedVideo",
    "HttpOptions",
    "Image",
    "ImportFileConfig",
    "ImportFileOperation",
    "ImportFileSource",
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
    "Video",
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


class RetryOptions(_Model):
    """How the transport retries failed requests (full-jitter exponential backoff).

    `attempts` counts the first request too, so `attempts=1` turns retries off.
    """

    attempts: int = Field(default=4, ge=1)
    initial_delay: float = Field(default=0.2, ge=0)
    max_delay: float = Field(default=5.0, ge=0)


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
    """A google.rpc.Status: `code` is a gRPC code (1 CANCELLED, 5 NOT_FOUND, 13 INTERNAL, …)."""

    code: int
    # proto3 JSON omits empty strings, so a server may leave the message out.
    message: str = ""
    details: list[Any] | None = None


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


class ImportFileOperation(Operation):
    """Importing a file into a file search store; `response` is the server's dict verbatim."""

    response: dict[str, Any] | None = None


class UploadToFileSearchStoreOperation(Operation):
    """Uploading straight into a file search store; `response` is the server's dict verbatim."""

    response: dict[str, Any] | None = None


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


class GenerateVideosConfig(_Model):
    """Options of a video generation; names as in google-genai's GenerateVideosConfig."""

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


class UploadFileConfig(_Model):
    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None


class File(_Model):
    """A file on the server (a generated video, an upload)."""

    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    create_time: str | None = None
    update_time: str | None = None
    expiration_time: str | None = None
    sha256_hash: str | None = None
    uri: str | None = None
    download_uri: str | None = None
    state: str | None = None
    source: str | None = None


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
    create_time: str | None = None
    update_time: str | None = None
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
    create_time: str | None = None
    update_time: str | None = None


class CreateFileSearchStoreConfig(_Model):
    display_name: str | None = None
    embedding_model: str | None = None


class ImportFileSource(_Model):
    """What `import_file` imports: exactly one of a gs:// object, an uploaded file or a URL."""

    gcs_uri: str | None = None
    file_name: str | None = None
    uri: str | None = None


class ImportFileConfig(_Model):
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None


class UploadToFileSearchStoreConfig(_Model):
    display_name: str | None = None
    mime_type: str | None = None
    custom_metadata: list[CustomMetadata] | None = None
    chunking_config: ChunkingConfig | None = None


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
