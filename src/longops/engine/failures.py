"""The failures a kind reports on purpose: a request refused before anything is stored,
or an operation ended FAILED without a retry. Each carries a google.rpc code."""

from __future__ import annotations

from typing import Any

from longops.rpc import Code


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
