"""Operation kinds: what a kind is, how users declare one, and how they are found."""

from __future__ import annotations

import importlib
import re
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from longops.rpc import Code

if TYPE_CHECKING:
    from longops.engine.context import Context

Req = TypeVar("Req", bound=BaseModel)

Handler = Callable[["Context", Req], Awaitable[BaseModel | dict[str, Any] | None]]

_ID_ALPHABET = string.ascii_lowercase + string.digits
KIND_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,127}$")


class OperationFailed(Exception):
    """Raised by a handler for an expected failure: the operation ends FAILED, no retry.

    `code` is a google.rpc code: a `longops.rpc.Code` (`Code.NOT_FOUND`) or its int.
    """

    def __init__(self, code: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            status["details"] = self.details
        return status


class RequestRejected(Exception):
    """A create request refused before anything was stored, with a google.rpc code.

    Kinds raise it from their request model's validators when a check needs more than
    a field's type (an unknown model is NOT_FOUND, an unwritable output location
    FAILED_PRECONDITION); `violations` name the offending fields.
    """

    code: int = Code.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        violations: list[dict[str, str]] | None = None,
        code: int = Code.INVALID_ARGUMENT,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations or []
        self.code = code


class InvalidRequest(RequestRejected):
    """A create request the kind's model rejected (INVALID_ARGUMENT); nothing was stored."""


def new_token_id(length: int = 20) -> str:
    """Lowercase alphanumerics, as Google's ids are; 20 characters carry 103 random bits.

    One draw from the OS generator, written in base 36: drawing each character
    separately cost a system call apiece and showed up in the create path.
    """
    number = secrets.randbelow(36**length)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 36)
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def new_uuid_id() -> str:
    return str(uuid.uuid4())


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

    def __post_init__(self) -> None:
        if not KIND_NAME.match(self.name):
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
) -> Callable[[Handler[Req]], Kind[Req]]:
    """Declare a kind from an async handler; `longops serve --load module` finds it."""

    def wrap(handler: Handler[Req]) -> Kind[Req]:
        return Kind(
            name=name,
            handler=handler,
            request_model=request,
            response_type=response_type,
            metadata_type=metadata_type,
            max_attempts=max_attempts,
            description=(handler.__doc__ or "").strip().split("\n")[0],
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
