"""Event types, which operations fire which, and the thin payloads they carry.

Google's Gemini API fires `video.generated`; longops adds its failure counterpart
(`video.failed`, for a generate_videos operation that FAILED or was CANCELLED) and
`operation.succeeded` / `operation.failed` / `operation.cancelled` for every kind. The
batch and interaction events of Google's SDK are accepted in subscriptions but never
fire here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from longops.engine.links import download_uri

VIDEO_KIND = "generate_videos"
PING = "webhook.ping"
FIRED = frozenset(
    {
        "video.generated",
        "video.failed",
        "operation.succeeded",
        "operation.failed",
        "operation.cancelled",
    }
)
SUBSCRIBABLE = FIRED | {
    "batch.succeeded",
    "batch.expired",
    "batch.failed",
    "interaction.requires_action",
    "interaction.completed",
    "interaction.failed",
}
_OPERATION_EVENTS = {
    "SUCCEEDED": "operation.succeeded",
    "FAILED": "operation.failed",
    "CANCELLED": "operation.cancelled",
}
_FILE_ID = re.compile(r"/files/([a-z0-9-]{1,64}):download")


def event_types(kind: str, state: str) -> tuple[str, ...]:
    """What an operation of `kind` ending in `state` fires, to subscribed webhooks."""
    general = _OPERATION_EVENTS[state]
    if kind == VIDEO_KIND:
        return ("video.generated" if state == "SUCCEEDED" else "video.failed", general)
    return (general,)


def request_event_type(kind: str, state: str) -> str:
    """The one event a per-request URI gets: the video one for videos, else the general."""
    return event_types(kind, state)[0]


def rfc3339(seconds: float) -> str:
    """RFC 3339 in UTC, to the microsecond (the finish's own time, not the send's)."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def _videos(response: Any, public_url: str) -> Iterator[dict[str, str]]:
    """The download addresses of a generate_videos response (Gemini: files this server
    serves; Vertex: the Cloud Storage objects it wrote)."""
    if not isinstance(response, dict):
        return
    gemini = response.get("generateVideoResponse")
    if isinstance(gemini, dict):
        for sample in gemini.get("generatedSamples") or ():
            uri = (sample.get("video") or {}).get("uri") if isinstance(sample, dict) else None
            if isinstance(uri, str) and (found := _FILE_ID.search(uri)):
                yield {"uri": download_uri(public_url, found[1])}
    for item in response.get("videos") or ():
        if isinstance(item, dict) and isinstance(item.get("gcsUri"), str):
            yield {"uri": item["gcsUri"]}


def payload(
    event_type: str,
    *,
    time: float,
    name: str,
    kind: str,
    state: str,
    error: Any,
    response: Any,
    user_metadata: Any,
    public_url: str,
) -> dict[str, Any]:
    """The thin payload of an operation's event, as Google's are: what happened to which
    operation, not its result (the receiver reads that with the operation's name)."""
    data: dict[str, Any] = {"name": name, "kind": kind, "state": state}
    if user_metadata is not None:
        data["userMetadata"] = user_metadata
    if isinstance(error, dict):
        data["error"] = {"code": error.get("code"), "message": error.get("message")}
    if kind == VIDEO_KIND and state == "SUCCEEDED":
        data["videos"] = list(_videos(response, public_url))
    return {"type": event_type, "timestamp": rfc3339(time), "data": data}


def ping_payload(webhook_id: str, time: float) -> dict[str, Any]:
    return {"type": PING, "timestamp": rfc3339(time), "data": {"webhook": webhook_id}}
