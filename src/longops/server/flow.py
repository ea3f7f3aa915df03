"""What a creating body says about the operation rather than its work: `webhookConfig`
(`server/webhook_config.py`), `priority`, `scheduleTime` or `scheduleDelay`, and
`concurrencyKey`.

They are taken out of the body before the kind's request model sees it, in one call and
by one rule for every route that starts an operation (`predictLongRunning`,
`kinds/{kind}:start`, `importFile`, `uploadToFileSearchStore`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from longops.engine.records import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from longops.server.errors import invalid_argument
from longops.server.requests import take
from longops.server.webhook_config import webhook_config

__all__ = ["MAX_CONCURRENCY_KEY", "MAX_SCHEDULE_SECONDS", "Flow", "flow"]

MAX_CONCURRENCY_KEY = 128
"""Characters in a `concurrencyKey`: enough for a customer or model id, and every
create of a key stores it beside the operation."""

MAX_SCHEDULE_SECONDS = 30 * 86400
"""A delayed start is at most 30 days ahead: further is more likely a mistake (a time in
milliseconds read as seconds) than a plan."""

# RFC 3339: a date, `T` (or a space), a time with optional fractions, and Z or an offset.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_DURATION = re.compile(r"^(\d{1,10}(?:\.\d{0,9})?|\.\d{1,9})s?$")


@dataclass(frozen=True, slots=True)
class Flow:
    """What `Engine.create` takes: `webhook=`, `priority=`, `not_before=` (0 for at
    once) and `concurrency_key=` ("" for none)."""

    webhook: dict[str, Any] | None = None
    priority: int = DEFAULT_PRIORITY
    not_before: float = 0.0
    concurrency_key: str = ""


def _priority(value: Any) -> int:
    if value is None:
        return DEFAULT_PRIORITY
    # JSON has one number type: 7.0 is 7, but 7.5, strings and booleans are refused.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_PRIORITY <= value <= MAX_PRIORITY
    ):
        raise invalid_argument(
            f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}"
            f" (default {DEFAULT_PRIORITY}); higher is claimed first.",
            field="priority",
        )
    return value


def _concurrency_key(value: Any) -> str:
    if value is None:
        return ""
    # Printable only: the key is shown in metadata, logs and the CLI, where a control
    # character (a newline, an escape) would forge or garble what an operator reads.
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_CONCURRENCY_KEY
        or not (value.isprintable())
    ):
        raise invalid_argument(
            f"concurrencyKey must be a string of 1 to {MAX_CONCURRENCY_KEY} printable"
            " characters (no control characters), e.g. a customer's id.",
            field="concurrencyKey",
        )
    return value


def _schedule_time(value: Any) -> float:
    if isinstance(value, str) and len(value) <= 40 and _RFC3339.match(value):
        try:
            return datetime.fromisoformat(value.upper().replace(" ", "T")).timestamp()
        except ValueError:  # a month 13, a 25th hour
            pass
    raise invalid_argument(
        'scheduleTime must be an RFC 3339 time, e.g. "2030-01-01T09:00:00Z".',
        field="scheduleTime",
    )


def _schedule_delay(value: Any) -> float:
    seconds: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = float(value) if 0 <= value <= MAX_SCHEDULE_SECONDS else None
    elif isinstance(value, float):
        seconds = value if 0 <= value <= MAX_SCHEDULE_SECONDS else None
    elif isinstance(value, str) and len(value) <= 21 and (match := _DURATION.match(value)):
        seconds = float(match.group(1))
    if seconds is None:
        raise invalid_argument(
            'scheduleDelay must be a duration of 0 to 30 days, e.g. "30s".',
            field="scheduleDelay",
        )
    return seconds


def flow(body: dict[str, Any], now: float) -> Flow:
    """Take a request's `webhookConfig`, `priority`, `scheduleTime`, `scheduleDelay` and
    `concurrencyKey` out of `body` (each also as its snake_case spelling), checked: the
    webhook config as `webhook_config` says; a priority is a whole number from 0 to 1000,
    500 when absent; a start is delayed by a time (one in the past is now) or by a delay,
    not both, and at most 30 days ahead; a concurrency key is 1 to 128 printable
    characters, none when absent."""
    webhook = webhook_config(body)
    priority = _priority(body.pop("priority", None))
    concurrency_key = _concurrency_key(take(body, "concurrencyKey"))
    when = take(body, "scheduleTime")
    delay = take(body, "scheduleDelay")
    if when is not None and delay is not None:
        raise invalid_argument(
            "Send scheduleTime or scheduleDelay, not both.", field="scheduleDelay"
        )
    not_before = 0.0
    if when is not None:
        not_before = _schedule_time(when)
        if not_before - now > MAX_SCHEDULE_SECONDS:
            raise invalid_argument(
                "scheduleTime must be at most 30 days ahead.", field="scheduleTime"
            )
        if not_before <= now:
            not_before = 0.0
    elif delay is not None:
        seconds = _schedule_delay(delay)
        if seconds > MAX_SCHEDULE_SECONDS:
            raise invalid_argument("scheduleDelay must be at most 30 days.", field="scheduleDelay")
        not_before = now + seconds if seconds > 0 else 0.0
    return Flow(
        webhook=webhook, priority=priority, not_before=not_before, concurrency_key=concurrency_key
    )
