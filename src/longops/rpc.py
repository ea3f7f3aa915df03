"""google.rpc codes and their HTTP statuses: the one table both sides of the wire read.

It imports nothing of longops, so the SDK, the engine, the server and kinds may all use
it without reaching across layers. On the wire a code stays a plain int (`Code` is an
`IntEnum`, which JSON encoders write as its number); its name is the `status` string of
Google's error envelope.
"""

from __future__ import annotations

import enum

__all__ = ["Code"]


class Code(enum.IntEnum):
    """A google.rpc.Code, knowing the HTTP status it maps to (google.rpc.Code's
    documented mapping). `name` is its canonical name (`"INVALID_ARGUMENT"`)."""

    http_status: int

    def __new__(cls, value: int, http_status: int) -> Code:
        member = int.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        return member

    OK = 0, 200
    CANCELLED = 1, 499
    UNKNOWN = 2, 500
    INVALID_ARGUMENT = 3, 400
    DEADLINE_EXCEEDED = 4, 504
    NOT_FOUND = 5, 404
    ALREADY_EXISTS = 6, 409
    PERMISSION_DENIED = 7, 403
    RESOURCE_EXHAUSTED = 8, 429
    FAILED_PRECONDITION = 9, 400
    ABORTED = 10, 409
    OUT_OF_RANGE = 11, 400
    UNIMPLEMENTED = 12, 501
    INTERNAL = 13, 500
    UNAVAILABLE = 14, 503
    DATA_LOSS = 15, 500
    UNAUTHENTICATED = 16, 401

    @classmethod
    def of(cls, value: int) -> Code | None:
        """The member for an int from outside (a kind's, a stored row's), or None for a
        number google.rpc does not define. (`Code(value)` does the same lookup, raising
        ValueError, but type checkers read it as a call to `__new__` above.)"""
        return _BY_NUMBER.get(value)

    @classmethod
    def for_http_status(cls, http_status: int) -> Code:
        """The code an error answer with this HTTP status and no code of its own carries:
        where several codes share a status (400, 409, 500) the general one, and UNKNOWN
        for a status no code stands for."""
        return _FOR_HTTP_STATUS.get(http_status, cls.UNKNOWN)


_BY_NUMBER: dict[int, Code] = {int(code): code for code in Code}

_FOR_HTTP_STATUS: dict[int, Code] = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    405: Code.UNIMPLEMENTED,
    408: Code.DEADLINE_EXCEEDED,
    409: Code.ALREADY_EXISTS,
    411: Code.INVALID_ARGUMENT,
    413: Code.INVALID_ARGUMENT,
    415: Code.INVALID_ARGUMENT,
    429: Code.RESOURCE_EXHAUSTED,
    431: Code.INVALID_ARGUMENT,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}
"""HTTP status → code for answers that name none. Statuses that are some code's own map
to it (the general one where several share it); the rest (405, 408, 411, 413, 415,
431) are the ones the server sends for protocol-level refusals."""
