"""The `longops` command: run the server and workers, and look after operations."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from longops._version import __version__
from longops.engine import Engine, Registry, Worker
from longops.engine.blobs import open_blobs
from longops.engine.engine import EngineConfig
from longops.engine.store import Store, StoreBusy, open_store
from longops.engine.worker import WorkerConfig
from longops.kinds.builtin import default_registry
from longops.kinds.file_search.index import SearchIndex

OK, FAILED, USAGE, TIMED_OUT, UNREACHABLE = 0, 1, 2, 3, 4
"""The exit codes, as EXIT_CODES tells users."""
EXIT_CODES = (
    "Exit codes: 0 done;"
    " 1 the server refused the request, the operation failed, or serve/worker could not start"
    " (database, port in use, a bad LONGOPS_* setting);"
    " 2 a usage mistake (an option, argument or JSON request that is not valid);"
    " 3 `ops wait --timeout` ran out before the operation was done;"
    " 4 no server answered at --base-url / LONGOPS_BASE_URL (not running, wrong host, or"
    " no answer within LONGOPS_HTTP_TIMEOUT seconds)."
)

# Plain output, not rich's panels: a usage error is then one `Error:` line, whole, at any
# terminal width (a panel wraps it across several).
app = typer.Typer(
    help="longops: a self-hosted service for long-running operations.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
ops_app = typer.Typer(
    help="Inspect and control operations on a longops server.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ops_app, name="ops")
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

DEFAULT_DATABASE = "sqlite:///./longops.db"

Database = Annotated[
    str, typer.Option("--database", envvar="LONGOPS_DATABASE_URL", help="Database URL.")
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", envvar="LONGOPS_WORKERS", min=0, help="Operations this process runs at once."
    ),
]
Load = Annotated[
    list[str] | None,
    typer.Option(
        "--load",
        envvar="LONGOPS_LOAD",
        help="Dotted name of a Python module whose kinds to register (repeatable); its folder"
        " must be on PYTHONPATH.",
    ),
]
Lease = Annotated[
    float,
    typer.Option("--lease", envvar="LONGOPS_LEASE_SECONDS", min=1.0, help="Worker lease, seconds."),
]
Retention = Annotated[
    float,
    typer.Option(
        "--retention-days", envvar="LONGOPS_RETENTION_DAYS", min=0.0, help="Keep done operations."
    ),
]
ShutdownGrace = Annotated[
    float,
    typer.Option(
        "--shutdown-grace",
        envvar="LONGOPS_SHUTDOWN_GRACE",
        min=0.0,
        help="On SIGTERM, seconds to finish in-flight operations before handing them back.",
    ),
]
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.lower()


LogLevel = Annotated[
    str,
    typer.Option(
        "--log-level",
        envvar="LONGOPS_LOG_LEVEL",
        callback=_log_level,
        help=f"One of {', '.join(LOG_LEVELS)}.",
    ),
]
Blobs = Annotated[
    str,
    typer.Option(
        "--blobs",
        envvar="LONGOPS_BLOBS",
        help="Where videos and uploads are kept: a folder, or an fsspec URL (s3://bucket/prefix,"
        " gs://bucket/prefix) that all API servers and workers of a deployment share.",
    ),
]
PublicUrl = Annotated[
    str | None,
    typer.Option(
        "--public-url",
        envvar="LONGOPS_PUBLIC_URL",
        help="Where clients reach the API (used in file links); default http://HOST:PORT"
        " from --host/--port (worker: from LONGOPS_HOST/LONGOPS_PORT, as the API servers).",
    ),
]
DEFAULT_BLOBS = "./longops-blobs"
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a TCP port: one of 1-65535")
    return value


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"longops {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """longops: a self-hosted service for long-running operations."""


def _engine(
    database: str,
    load: list[str] | None,
    retention_days: float,
    blobs: str,
    public_url: str,
    *,
    follow_work: bool = True,
    follow_done: bool = True,
) -> Engine:
    try:
        registry: Registry = default_registry()
    except ValueError as exc:  # a malformed LONGOPS_* setting, named in the message
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(FAILED) from None
    for module in load or []:
        for name in filter(None, (n.strip() for n in module.split(","))):
            _load(registry, name)
    config = EngineConfig(
        retention_seconds=retention_days * 86400,
        public_url=public_url,
        follow_work=follow_work,
        follow_done=follow_done,
    )
    try:
        blob_store = open_blobs(blobs)
    except (ImportError, ValueError) as exc:  # a missing s3fs/gcsfs, a malformed URL
        raise typer.BadParameter(str(exc), param_hint="--blobs") from None
    return Engine(_store(database), registry, config, blob_store)


def _load(registry: Registry, name: str) -> None:
    """Register the kinds of module `name`; every way that fails is one line: a file path
    where a module name belongs, a module not on the path, one whose import raises."""
    if name.endswith(".py") or not _MODULE_NAME.match(name):
        path = Path(name)
        hint = ""
        if path.suffix == ".py" or "/" in name:
            folder = path.parent if str(path.parent) != "." else Path(".")
            hint = f" (for this file: PYTHONPATH={folder} ... --load {path.stem})"
        raise typer.BadParameter(
            f"{name!r} is not a module name: --load takes a dotted module name"
            f" (like mypackage.kinds) whose folder is on PYTHONPATH{hint}",
            param_hint="--load",
        )
    try:
        registry.load(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise typer.BadParameter(
                f"importing {name} failed: {exc} (a module it imports is not installed)",
                param_hint="--load",
            ) from None
        raise typer.BadParameter(
            f"no module named {name!r}: --load takes a dotted module name whose folder is on"
            " PYTHONPATH (e.g. PYTHONPATH=examples longops serve --load hash_file)",
            param_hint="--load",
        ) from None
    except ValueError as exc:  # defines no kind, or one already registered
        raise typer.BadParameter(str(exc), param_hint="--load") from None
    except Exception as exc:  # the module's own error: where it was raised, in one line
        if isinstance(exc, SyntaxError):
            where = f"{exc.filename}:{exc.lineno}"
        else:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{frame.filename}:{frame.lineno}"
        typer.echo(
            f"Error: --load {name}: importing it raised {type(exc).__name__}: {exc} ({where})",
            err=True,
        )
        raise typer.Exit(FAILED) from None


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before the banner and before workers start,
    so a port in use (or a host not this machine's) is one line and nothing runs."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections as uvicorn's own do.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        typer.echo(f"Error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(FAILED) from None
    return sock


def _store(database: str) -> Store:
    try:
        return open_store(database)
    except ValueError as exc:  # an unknown scheme, a bad schema name or pool size
        raise typer.BadParameter(str(exc), param_hint="--database") from None


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed, as `serve` does through uvicorn; a database
    that stays out of reach is an error message, not a traceback."""
    try:
        import uvloop
    except ImportError:
        run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        run = uvloop.run
    try:
        run(main)
    except StoreBusy as exc:  # StoreUnavailable too: unreachable, or a file it can't use
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(FAILED) from None


def _upgrade(database: str) -> None:
    """Open the database once and migrate it, with its errors as one line each; `serve`
    does this before uvicorn starts, which would print a failing start as a traceback."""
    store = _store(database)

    async def main() -> None:
        await store.open()
        try:
            await SearchIndex.of(store.database).open()
        finally:
            await store.close()

    _run_loop(main())


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="LONGOPS_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LONGOPS_PORT", callback=_port)] = 8000,
    database: Database = DEFAULT_DATABASE,
    workers: Workers = 8,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API only; run `longops worker` elsewhere.")
    ] = False,
    load: Load = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            envvar="LONGOPS_API_KEYS",
            help="Accepted key, as KEY or TENANT=KEY (repeatable; env: comma-separated).",
        ),
    ] = None,
    lease: Lease = 30.0,
    retention_days: Retention = 7.0,
    max_wait: Annotated[
        float, typer.Option(envvar="LONGOPS_MAX_WAIT_SECONDS", help="Cap on :wait, seconds.")
    ] = 60.0,
    shutdown_grace: ShutdownGrace = 30.0,
    blobs: Blobs = DEFAULT_BLOBS,
    public_url: PublicUrl = None,
    log_level: LogLevel = "info",
    header_timeout: Annotated[
        float,
        typer.Option(
            envvar="LONGOPS_HEADER_TIMEOUT",
            min=0.1,
            help="Seconds a request's line and headers may take to arrive.",
        ),
    ] = 15.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            envvar="LONGOPS_BODY_TIMEOUT",
            min=0.1,
            help="Seconds a request body may go without a byte (inactivity, not total).",
        ),
    ] = 60.0,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(
            envvar="LONGOPS_KEEP_ALIVE_TIMEOUT", min=1, help="Seconds an idle connection is kept."
        ),
    ] = 5,
    max_connections: Annotated[
        int,
        typer.Option(
            envvar="LONGOPS_MAX_CONNECTIONS",
            min=1,
            help="Open connections past which new ones are refused with a 503.",
        ),
    ] = 2000,
) -> None:
    """Serve the API, with workers in the same process unless --no-workers."""
    from longops.server import ServerConfig, create_app
    from longops.server.auth import parse_api_keys
    from longops.server.config import default_public_url
    from longops.server.serving import Limits, server

    _logging(log_level)
    keys = parse_api_keys(k for entry in api_key or [] for k in entry.split(","))
    concurrency = 0 if no_workers else workers
    engine = _engine(
        database,
        load,
        retention_days,
        blobs,
        public_url or default_public_url(host, port),
        follow_work=concurrency > 0,
    )
    _upgrade(database)
    application = create_app(
        engine,
        ServerConfig(api_keys=keys, max_wait_seconds=max_wait),
        workers=1 if concurrency else 0,
        worker_config=WorkerConfig(
            concurrency=max(concurrency, 1), lease_seconds=lease, shutdown_grace=shutdown_grace
        ),
    )
    listening = _listen(host, port)
    typer.echo(
        f"longops serving on http://{host}:{port} ({database}, "
        f"{concurrency or 'no'} worker slots, kinds: {', '.join(engine.registry.names())})",
        err=True,
    )
    limits = Limits(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive_timeout,
        max_connections=max_connections,
        shutdown_timeout=shutdown_grace,
    )
    # On SIGTERM open `:wait` calls answer at once and the workers' grace starts;
    # requests still open when it ends get a 503, which the SDKs retry elsewhere.
    running = server(
        application, limits, host=host, port=port, log_level=log_level, access_log=False
    )
    running.run(sockets=[listening])
    if not running.started:  # uvicorn has logged why
        raise typer.Exit(FAILED)


@app.command()
def worker(
    database: Database = DEFAULT_DATABASE,
    workers: Workers = 8,
    load: Load = None,
    lease: Lease = 30.0,
    retention_days: Retention = 7.0,
    shutdown_grace: ShutdownGrace = 30.0,
    blobs: Blobs = DEFAULT_BLOBS,
    public_url: PublicUrl = None,
    log_level: LogLevel = "info",
) -> None:
    """Run workers only, against the same database as the API servers."""
    from longops.server.config import default_public_url

    _logging(log_level)
    engine = _engine(
        database,
        load,
        retention_days,
        blobs,
        # The API servers' default, from the same LONGOPS_HOST and LONGOPS_PORT.
        public_url
        or default_public_url(
            os.environ.get("LONGOPS_HOST", "127.0.0.1"), os.environ.get("LONGOPS_PORT", "8000")
        ),
        follow_done=False,  # nobody waits here
    )
    config = WorkerConfig(
        concurrency=max(workers, 1), lease_seconds=lease, shutdown_grace=shutdown_grace
    )

    async def main() -> None:
        async with engine:
            runner = Worker(engine, config)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.stop)
            logging.getLogger("longops.worker").info(
                "worker %s on %s, kinds: %s", runner.owner, database, ", ".join(runner.kinds)
            )
            await runner.run()

    _run_loop(main())


@db_app.command("upgrade")
def db_upgrade(database: Database = DEFAULT_DATABASE) -> None:
    """Apply the schema migrations (servers and workers also do it when they start)."""
    _upgrade(database)
    typer.echo(f"{database}: schema is up to date")


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


def _show(operation: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_wire(operation), indent=2))
        return
    metadata = operation.metadata or {}
    fields: list[tuple[str, str]] = [("state", _state(operation))]
    if "kind" in metadata:
        fields.append(("kind", str(metadata["kind"])))
    if "progressPercent" in metadata:
        fields.append(("progress", f"{metadata['progressPercent']}%"))
    for key in ("createTime", "startTime", "endTime", "attempt"):
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
    """Block until the operation is done, with a progress bar on a terminal."""
    import time

    client = _client(base_url, api_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    operation = _run(lambda: client.operations.get(_operation_name(name)))
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
            step = 1.0 if remaining is None else min(1.0, remaining)
            operation = _run(partial(client.operations.wait, operation, timeout=step))
    _show(operation, as_json)
    if not operation.done:
        raise typer.Exit(TIMED_OUT)
    if operation.error:
        raise typer.Exit(FAILED)


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


@app.command("kinds")
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


@app.command("models")
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
