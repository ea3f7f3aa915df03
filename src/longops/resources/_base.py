"""What every resource shares: its transport, the client's mode, and how answers are parsed.

A resource is a sync class over `SyncTransport` and an async twin over `AsyncTransport`,
both built from an `ApiContext`; `Client` and `AsyncClient` each hold one of every resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from longops._transport import AsyncTransport, SyncTransport
from longops.types import GenerateVideosOperation, Operation, OperationT, operation_from_wire

__all__ = ["ApiContext", "AsyncResource", "SyncResource", "coerce", "options", "resource_name"]

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The client-wide facts a resource needs besides its transport."""

    vertexai: bool
    project: str | None
    location: str | None
    # Fetches a video's bytes by its uri. Every Video parsed from an answer gets it, so that
    # `Video.data` works wherever the operation travels, without the caller's client at hand.
    download: Callable[[str], bytes]
    download_to: Callable[[str, Path], None]

    def vertex_resource(self, resource: str) -> str:
        """`resource` as Vertex addresses it: under the client's project and location, if set."""
        if resource.startswith("projects/") or not (self.project and self.location):
            return resource
        return f"projects/{self.project}/locations/{self.location}/{resource}"

    @overload
    def parse_operation(self, data: Mapping[str, Any], cls: type[OperationT]) -> OperationT: ...
    @overload
    def parse_operation(self, data: Mapping[str, Any], cls: None = None) -> Operation: ...
    def parse_operation(
        self, data: Mapping[str, Any], cls: type[Operation] | None = None
    ) -> Operation:
        operation = operation_from_wire(data, cls)
        if isinstance(operation, GenerateVideosOperation) and operation.response is not None:
            for generated in operation.response.generated_videos:
                generated.video._downloader = self.download
                generated.video._saver = self.download_to
        return operation


class SyncResource:
    def __init__(self, transport: SyncTransport, context: ApiContext) -> None:
        self._transport = transport
        self._context = context


class AsyncResource:
    def __init__(self, transport: AsyncTransport, context: ApiContext) -> None:
        self._transport = transport
        self._context = context


def resource_name(name: str) -> str:
    """`name` without a leading `/`, which callers may or may not write."""
    stripped = name.lstrip("/")
    if not stripped:
        raise ValueError(f"Expected a resource name, got {name!r}.")
    return stripped


def coerce(value: object, cls: type[ModelT]) -> ModelT:
    """`value` as a `cls`: already one, a dict, or google-genai's twin of it.

    google-genai's types are pydantic models with the same snake_case field names, so they
    are read through `model_dump`; longops never imports google-genai for it.
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.model_validate(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return cls.model_validate(dump(exclude_none=True))
    raise TypeError(f"Expected a {cls.__name__} or a dict, got {type(value).__name__}.")


def options(config: object, cls: type[ModelT]) -> ModelT:
    """A method's `config=` (None, a dict, a longops config or google-genai's) as a `cls`.

    Unknown keys are refused by `cls`. Per-call `http_options` (google-genai's only
    config field longops has no use for) is refused when set: the client's own settings
    apply to every call, and silently dropping a timeout or a header would be worse.
    """
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, Mapping):
        values = {key: value for key, value in config.items() if value is not None}
    else:
        dump = getattr(config, "model_dump", None)
        if not callable(dump):
            raise TypeError(
                f"config must be a {cls.__name__} or a dict, got {type(config).__name__}."
            )
        values = dump(exclude_none=True)
    for key in ("http_options", "httpOptions"):
        if values.pop(key, None):
            raise ValueError(
                "longops does not take http_options per call; set them on the Client "
                "(Client(http_options=...))."
            )
    return cls.model_validate(values)
