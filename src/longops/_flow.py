"""The SDK's flow-control arguments (`priority=`, `schedule_time=`, `schedule_delay=`,
`concurrency_key=`) as the wire spells them: `priority`, an RFC 3339 `scheduleTime`, a
`scheduleDelay` like "30s", `concurrencyKey`.
The server checks the values (README: "Flow control"); this only writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["flow_fields", "schedule_delay_text", "schedule_time_text"]


def schedule_time_text(value: datetime | str) -> str:
    """A time as RFC 3339; a datetime must say its timezone (a naive one is ambiguous)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("schedule_time needs a timezone, e.g. datetime.now(UTC) + ...")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def schedule_delay_text(value: float | timedelta | str) -> str:
    """A delay in seconds (a number or a timedelta) as a google.protobuf.Duration."""
    if isinstance(value, str):
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


def flow_fields(
    priority: int | None,
    schedule_time: datetime | str | None,
    schedule_delay: float | timedelta | str | None,
    concurrency_key: str | None = None,
) -> dict[str, Any]:
    """The body fields for the arguments given; none for those left out."""
    fields: dict[str, Any] = {}
    if priority is not None:
        fields["priority"] = priority
    if schedule_time is not None:
        fields["scheduleTime"] = schedule_time_text(schedule_time)
    if schedule_delay is not None:
        fields["scheduleDelay"] = schedule_delay_text(schedule_delay)
    if concurrency_key is not None:
        fields["concurrencyKey"] = concurrency_key
    return fields
