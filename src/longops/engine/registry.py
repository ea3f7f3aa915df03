"""Operation kinds: what a kind is, how users declare one, and how they are found.

The failures a kind raises are in `longops.engine.failures`, its ids in `longops.engine.ids`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from longops.engine.failures import InvalidRequest
from longops.engine.ids import new_token_id, new_uuid_id
from longops.engine.limits import Limit

if TYPE_CHECKING:
    from longops.engine.context import Context

Req = TypeVar("Req", bound=BaseModel)

Handler = Callable[["Context", Req], Awaitable[BaseModel | dict[str, Any] | None]]

KIND_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Kind(Generic[Req]):
    """A kind of operation the engine can run.

    `response_type` and `metadata_type` are the `@type` URLs shown on the wire.
    """

    name: str
    handler: Handler[Req]
    request_model: type[Req]
    response_type: str = "type.googleapis.com/longops.v1.OperationResponse"
    metadata_type: str = "type.googleapis.com/longops.v1.OperationMetadata"
    id_style: Literal["token", "uuid"] = "token"
    max_attempts: int = 3
    description: str = ""
    check: Callable[[Req], object] | None = None
    """Further checks on a valid request (raising `RequestRejected`), run before storing."""
    limit: Limit = field(default_factory=Limit)
    """Its concurrency and rate limits (`longops.engine.limits`), before the operator's."""

    def __post_init__(self) -> None:
        if not KIND_NAME.fullmatch(self.name):
            raise ValueError(f"invalid kind name {self.name!r}")

    def new_id(self) -> str:
        return new_uuid_id() if self.id_style == "uuid" else new_token_id()

    def validate(self, request: dict[str, Any]) -> Req:
        try:
            validated = self.request_model.model_validate(request)
        except ValidationError as exc:
            violations = [
                {
                    "field": ".".join(str(p) for p in err["loc"]) or "request",
                    "description": err["msg"],
                }
                for err in exc.errors()
            ]
            first = violations[0]
            raise InvalidRequest(
                f"Invalid value for {first['field']}: {first['description']}", violations
            ) from None
        if self.check is not None:
            self.check(validated)
        return validated

    def dump_request(self, request: Req) -> dict[str, Any]:
        return request.model_dump(mode="json", by_alias=True, exclude_none=True)


def kind(
    name: str,
    *,
    request: type[Req],
    response_type: str = "type.googleapis.com/longops.v1.OperationResponse",
    metadata_type: str = "type.googleapis.com/longops.v1.OperationMetadata",
    max_attempts: int = 3,
    concurrency: int = 0,
    key_concurrency: int = 0,
    rate: float = 0.0,
    key_rate: float = 0.0,
) -> Callable[[Handler[Req]], Kind[Req]]:
    """Declare a kind from an async handler; `longops serve --load module` finds it.

    `concurrency` (at most this many running at once), `key_concurrency` (at most this
    many of one `concurrencyKey`), `rate` and `key_rate` (starts per second) hold across
    every worker of the database; 0 is unlimited (see `longops.engine.limits`)."""
    limit = Limit(concurrency, key_concurrency, rate, key_rate)

    def wrap(handler: Handler[Req]) -> Kind[Req]:
        return Kind(
            name=name,
            handler=handler,
            request_model=request,
            response_type=response_type,
            metadata_type=metadata_type,
            max_attempts=max_attempts,
            description=(handler.__doc__ or "").strip().split("\n")[0],
            limit=limit,
        )

    return wrap


class Registry:
    def __init__(self) -> None:
        self._kinds: dict[str, Kind[Any]] = {}

    def add(self, kind: Kind[Any]) -> None:
        if kind.name in self._kinds and self._kinds[kind.name] is not kind:
            raise ValueError(f"kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind

    def get(self, name: str) -> Kind[Any] | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def __iter__(self) -> Iterator[Kind[Any]]:
        return iter(self._kinds.values())

    def load(self, module_name: str) -> list[Kind[Any]]:
        """Import a module and register every `Kind` defined at its top level."""
        module = importlib.import_module(module_name)
        found = [v for v in vars(module).values() if isinstance(v, Kind)]
        if not found:
            raise ValueError(f"module {module_name!r} defines no longops kind")
        for k in found:
            self.add(k)
        return found
