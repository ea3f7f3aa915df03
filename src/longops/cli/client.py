"""The commands that talk to a running server: `longops ops …`, `kinds`, `models`."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from longops.cli.exits import EXIT_CODES, FAILED, TIMED_OUT, UNREACHABLE, USAGE
from longops.engine.engine import WAITING_CAP

ops_app = typer.Typer(
    help="Inspect and control operations on a longops server.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)

# -- against a running server ---------------------------------------------------

BaseUrl = Annotated[
    str | None, typer.Option("--base-url", envvar="LONGOPS_BASE_URL", help="Server URL.")
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="LONGOPS_API_KEY")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OperationName = Annotated[
    str,
    typer.Argument(
        help="The operation's name, or its bare id (taken as operations/{id})", show_default=False
    ),
]


def _run(call: Callable[[], Any]) -> Any:
    """`call` with the SDK's errors as one line each and the exit code EXIT_CODES gives."""
    from longops.errors import APIError, RequestTimeoutError, TransportError

    try:
        return call()
    except APIError as exc:
        typer.echo(f"Error: {exc.code} {exc.status}: {exc.message}", err=True)
        raise typer.Exit(FAILED) from None
    except RequestTimeoutError as exc:
        typer.echo(
            f"Error: no answer from {exc.url} within {_http_timeout():g} s: is the server"
            f" there stalled? Allow more with {HTTP_TIMEOUT_VARIABLE}=SECONDS, or point"
            " --base-url or LONGOPS_BASE_URL at another.",
            err=True,
        )
        raise typer.Exit(UNREACHABLE) from None
    except TransportError as exc:
        cause = exc.__cause__
        reason = (str(cause) or type(cause).__name__) if cause is not None else str(exc)
        typer.echo(
            f"Error: no answer from {exc.url} ({reason}): is a longops server running there?"
            " Point --base-url or LONGOPS_BASE_URL at one.",
            err=True,
        )
        raise typer.Exit(UNREACHABLE) from None
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(USAGE) from None


HTTP_TIMEOUT_VARIABLE = "LONGOPS_HTTP_TIMEOUT"
"""Seconds the client commands wait for each step of an answer (the SDK's default else)."""


def _http_timeout() -> float:
    """`LONGOPS_HTTP_TIMEOUT`, or the SDK's default; a usage error when it is not seconds."""
    from longops._transport import DEFAULT_TIMEOUT

    raw = os.environ.get(HTTP_TIMEOUT_VARIABLE)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        typer.echo(f"Error: {HTTP_TIMEOUT_VARIABLE} must be seconds above 0, not {raw!r}", err=True)
        raise typer.Exit(USAGE)
    return seconds


def _client(base_url: str | None, api_key: str | None) -> Any:
    from longops import Client
    from longops.errors import InvalidURLError

    options = {"timeout": _http_timeout()}
    try:
        return Client(api_key=api_key, base_url=base_url, http_options=options)
    except InvalidURLError:
        typer.echo(
            f"Error: --base-url / LONGOPS_BASE_URL {base_url!r} is not a server URL: it needs"
            " http:// or https:// and a host (e.g. http://127.0.0.1:8000)",
            err=True,
        )
        raise typer.Exit(USAGE) from None


def _get(base_url: str | None, api_key: str | None, path: str) -> dict[str, Any]:
    """GET one of the server's own listings (kinds, models), which the SDK has no
    resource for, through its transport: the same retries, key and errors."""
    client = _client(base_url, api_key)
    body: dict[str, Any] = _run(lambda: client._transport.request("GET", path))
    return body


def _operation_name(name: str) -> str:
    """A bare id is short for `operations/{id}`, which the server resolves for every kind."""
    return name if "/" in name else f"operations/{name}"


def _wire(operation: Any) -> dict[str, Any]:
    data: dict[str, Any] = operation.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _state(operation: Any) -> str:
    metadata = operation.metadata or {}
    state = metadata.get("state")
    if state:
        return str(state)
    if not operation.done:
        return "RUNNING"
    return "FAILED" if operation.error else "SUCCEEDED"


def _columns(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns, never cut: a name must stay whole to be copied."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _waiting(metadata: dict[str, Any]) -> str:
    """Why a pending operation waits and how many are ahead, as a read of it says:
    ` (concurrency_limited, 3 ahead)`; nothing for one that does not wait."""
    reason = metadata.get("waitReason")
    if not reason:
        return ""
    ahead = metadata.get("queuePosition")
    if not isinstance(ahead, int):
        return f" ({reason})"
    return f" ({reason}, {ahead}{'+' if ahead >= WAITING_CAP else ''} ahead)"


def _show(operation: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_wire(operation), indent=2))
        return
    metadata = operation.metadata or {}
    fields: list[tuple[str, str]] = [("state", _state(operation) + _waiting(metadata))]
    if "kind" in metadata:
        fields.append(("kind", str(metadata["kind"])))
    if "progressPercent" in metadata:
        fields.append(("progress", f"{metadata['progressPercent']}%"))
    for key in ("createTime", "scheduleTime", "startTime", "endTime", "attempt", "concurrencyKey"):
        if key in metadata:
            fields.append((key, str(metadata[key])))
    if operation.error:
        fields.append(("error", f"{operation.error.code}: {operation.error.message}"))
    elif operation.done and operation.response is not None:
        fields.append(("response", json.dumps(_wire(operation).get("response"))))
    width = max(len(label) for label, _ in fields)
    typer.echo(typer.style(operation.name, bold=True))
    for label, value in fields:
        line = f"  {label:<{width}}  {value}"
        typer.echo(typer.style(line, fg="red") if label == "error" else line)


@ops_app.command("get")
def ops_get(
    name: OperationName, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Show one operation."""
    client = _client(base_url, api_key)
    _show(_run(lambda: client.operations.get(_operation_name(name))), as_json)


@ops_app.command("list")
def ops_list(
    parent: Annotated[str | None, typer.Option(help="e.g. models/veo-2.0-generate-001")] = None,
    done: Annotated[bool | None, typer.Option("--done/--not-done")] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    filter: Annotated[str | None, typer.Option(help='e.g. done=false AND kind="x"')] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List operations, newest first."""
    client = _client(base_url, api_key)

    def collect() -> list[Any]:
        found = []
        pager = client.operations.list(
            parent=parent, done=done, kind=kind, filter=filter, page_size=min(limit, 1000)
        )
        for operation in pager:
            found.append(operation)
            if len(found) >= limit:
                break
        return found

    operations = _run(collect)
    if as_json:
        typer.echo(json.dumps([_wire(o) for o in operations], indent=2))
        return
    if not operations:
        typer.echo("No operations.", err=True)
        return
    rows = [("NAME", "KIND", "STATE", "PROGRESS", "CREATED")]
    for operation in operations:
        metadata = operation.metadata or {}
        progress = metadata.get("progressPercent")
        rows.append(
            (
                operation.name,
                str(metadata.get("kind", "")),
                _state(operation),
                "" if progress is None else f"{progress}%",
                str(metadata.get("createTime", "")),
            )
        )
    _columns(rows)


@ops_app.command("wait")
def ops_wait(
    name: OperationName,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Block until the operation is done, with a progress bar on a terminal.

    Follows the server's watch stream, so each change shows as it happens;
    LONGOPS_HTTP_TIMEOUT bounds connecting and each read of it (the server's keep-alives
    arrive well within the default), not the whole wait."""
    import time

    client = _client(base_url, api_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    states = _Following(client, _operation_name(name))
    operation = _run(lambda: states.next(None))  # the state now, sent at once
    interactive = sys.stderr.isatty() and not as_json
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not interactive,
    )
    last_line = None
    with progress:
        task = progress.add_task(operation.name, total=100)
        while True:
            percent = (operation.metadata or {}).get("progressPercent", 0)
            progress.update(
                task, completed=percent, description=f"{operation.name} {_state(operation)}"
            )
            line = f"{_state(operation)} {percent}%"
            if not interactive and not as_json and line != last_line:
                typer.echo(f"{operation.name} {line}", err=True)
                last_line = line
            if operation.done:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            newer = _run(partial(states.next, remaining))
            if newer is None:  # --timeout ran out with nothing new
                break
            operation = newer
    _show(operation, as_json)
    if not operation.done:
        raise typer.Exit(TIMED_OUT)
    if operation.error:
        raise typer.Exit(FAILED)


class _Following:
    """The states `client.operations.watch` yields, read in a thread so that waiting for
    the next one can give up at `--timeout` (the thread dies with the command)."""

    def __init__(self, client: Any, name: str) -> None:
        import queue
        import threading

        self._states: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
        threading.Thread(target=self._follow, args=(client, name), daemon=True).start()

    def _follow(self, client: Any, name: str) -> None:
        try:
            for operation in client.operations.watch(name):
                self._states.put((operation, None))
        except BaseException as exc:
            self._states.put((None, exc))

    def next(self, seconds: float | None) -> Any:
        """The next state, None if `seconds` pass first; the watch's error, raised."""
        import queue

        try:
            operation, error = self._states.get(timeout=seconds)
        except queue.Empty:
            return None
        if error is not None:
            raise error
        return operation


@ops_app.command("cancel")
def ops_cancel(name: OperationName, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Cancel an operation (pending: at once; running: its handler is told to stop)."""
    client = _client(base_url, api_key)
    name = _operation_name(name)
    _run(lambda: client.operations.cancel(name))
    typer.echo(f"cancel requested for {name}")


@ops_app.command("delete")
def ops_delete(name: OperationName, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Forget an operation."""
    client = _client(base_url, api_key)
    name = _operation_name(name)
    _run(lambda: client.operations.delete(name))
    typer.echo(f"deleted {name}")


@ops_app.command("start")
def ops_start(
    kind: str,
    request: Annotated[str, typer.Argument(help="The request as a JSON object.")] = "{}",
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Start an operation of any registered kind (`longops kinds` lists them)."""
    try:
        body = json.loads(request)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="REQUEST") from None
    if not isinstance(body, dict):
        raise typer.BadParameter(
            f"the request must be a JSON object ({{...}}), not {_json_type(body)}",
            param_hint="REQUEST",
        )
    client = _client(base_url, api_key)
    _show(_run(lambda: client.operations.start(kind, body)), as_json)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def kinds(base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List the kinds a server runs, with their request fields (--json: whole schemas)."""
    found: list[dict[str, Any]] = _get(base_url, api_key, "kinds").get("kinds", [])
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for entry in found:
        typer.echo(typer.style(entry["name"], bold=True) + f"  {entry.get('description', '')}")
        schema = entry.get("requestSchema")
        if schema is None:
            typer.echo("  (no JSON schema for its request)")
            continue
        required = set(schema.get("required", []))
        properties: dict[str, Any] = schema.get("properties", {})
        rows = [
            (f"  {field}", _schema_type(spec), "required" if field in required else "")
            for field, spec in properties.items()
        ]
        if rows:
            _columns(rows)


def _schema_type(spec: dict[str, Any]) -> str:
    """A field's JSON schema in a word or two: `number`, `string | null`, `VideoParameters`."""
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " | ".join(_schema_type(option) for option in spec["anyOf"])
    if spec.get("type") == "array" and isinstance(spec.get("items"), dict):
        return f"array of {_schema_type(spec['items'])}"
    if "enum" in spec:
        return " | ".join(json.dumps(value) for value in spec["enum"])
    return str(spec.get("type", "any"))


def models(base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List the video models a server offers, with the options each accepts."""
    found: list[dict[str, Any]] = _get(base_url, api_key, "models").get("models", [])
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("No video models (video generation is off on this server).", err=True)
        return
    rows = [("NAME", "SECONDS", "RESOLUTIONS", "ASPECT RATIOS", "FPS", "VIDEOS", "AUDIO")]
    for model in found:
        video = model.get("videoGeneration", {})
        rows.append(
            (
                str(model["name"]),
                ",".join(map(str, video.get("durationSeconds", []))),
                ",".join(video.get("resolutions", [])),
                ",".join(video.get("aspectRatios", [])),
                ",".join(map(str, video.get("fps", []))),
                f"1-{video.get('maxVideos', 1)}",
                "yes" if video.get("generateAudio") else "no",
            )
        )
    _columns(rows)
