"""The `longops` command: run the server and workers, and look after operations."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from longops.engine import Engine, Registry, Worker
from longops.engine.blobs import open_blobs
from longops.engine.engine import EngineConfig
from longops.engine.store import Store, StoreBusy, open_store
from longops.engine.worker import WorkerConfig
from longops.kinds.builtin import default_registry
from longops.kinds.file_search.index import SearchIndex

app = typer.Typer(
    help="longops: a self-hosted service for long-running operations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ops_app = typer.Typer(
    help="Inspect and control operations on a longops server.", no_args_is_help=True
)
app.add_typer(ops_app, name="ops")
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
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
        help="Python module whose kinds to register (repeatable).",
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
LogLevel = Annotated[str, typer.Option("--log-level", envvar="LONGOPS_LOG_LEVEL")]
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
        help="Where clients reach the API (used in file links); default from --host/--port.",
    ),
]
DEFAULT_BLOBS = "./longops-blobs"


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
        raise typer.Exit(1) from None
    for module in load or []:
        for name in filter(None, (n.strip() for n in module.split(","))):
            try:
                registry.load(name)
            except ModuleNotFoundError as exc:
                if exc.name is None or not name.startswith(exc.name):
                    raise  # the module was found, and one it imports was not: its bug
                raise typer.BadParameter(f"no module named {name!r}", param_hint="--load") from None
            except ValueError as exc:  # defines no kind, or one already registered
                raise typer.BadParameter(str(exc), param_hint="--load") from None
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
        raise typer.Exit(1) from None


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
    port: Annotated[int, typer.Option(envvar="LONGOPS_PORT")] = 8000,
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
    running.run()
    if not running.started:  # uvicorn has logged why (the port is taken, say)
        raise typer.Exit(1)


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


# -- ops -----------------------------------------------------------------------

BaseUrl = Annotated[
    str | None, typer.Option("--base-url", envvar="LONGOPS_BASE_URL", help="Server URL.")
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="LONGOPS_API_KEY")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _client(base_url: str | None, api_key: str | None) -> Any:
    from longops import Client

    return Client(api_key=api_key, base_url=base_url)


def _run(call: Any) -> Any:
    from longops.errors import APIError

    try:
        return call()
    except APIError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc.code} {exc.status}: {exc.message}")
        raise typer.Exit(1) from None
    except ValueError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


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


def _show(operation: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_wire(operation), indent=2))
        return
    console = Console()
    metadata = operation.metadata or {}
    console.print(f"[bold]{operation.name}[/bold]")
    console.print(f"  state     {_state(operation)}")
    if "progressPercent" in metadata:
        console.print(f"  progress  {metadata['progressPercent']}%")
    for key in ("createTime", "startTime", "endTime", "attempt"):
        if key in metadata:
            console.print(f"  {key:<9} {metadata[key]}")
    if operation.error:
        console.print(f"  [red]error     {operation.error.code}: {operation.error.message}[/red]")
    elif operation.done and operation.response is not None:
        wire = _wire(operation).get("response")
        console.print(f"  response  {json.dumps(wire)}")


@ops_app.command("get")
def ops_get(
    name: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Show one operation."""
    client = _client(base_url, api_key)
    _show(_run(lambda: client.operations.get(name)), as_json)


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
    table = Table("name", "state", "progress", "created")
    for operation in operations:
        metadata = operation.metadata or {}
        progress = metadata.get("progressPercent")
        table.add_row(
            operation.name,
            _state(operation),
            "" if progress is None else f"{progress}%",
            str(metadata.get("createTime", "")),
        )
    Console().print(table)


@ops_app.command("wait")
def ops_wait(
    name: str,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Block until the operation is done, with a progress bar on a terminal."""
    import time

    client = _client(base_url, api_key)
    deadline = None if timeout is None else time.monotonic() + timeout
    operation = _run(lambda: client.operations.get(name))
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
        raise typer.Exit(3)
    if operation.error:
        raise typer.Exit(1)


@ops_app.command("cancel")
def ops_cancel(name: str, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Cancel an operation (pending: at once; running: its handler is told to stop)."""
    client = _client(base_url, api_key)
    _run(lambda: client.operations.cancel(name))
    typer.echo(f"cancel requested for {name}")


@ops_app.command("delete")
def ops_delete(name: str, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Forget an operation."""
    client = _client(base_url, api_key)
    _run(lambda: client.operations.delete(name))
    typer.echo(f"deleted {name}")


@ops_app.command("start")
def ops_start(
    kind: str,
    request: Annotated[str, typer.Argument(help="The request as JSON.")] = "{}",
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Start an operation of any registered kind."""
    try:
        body = json.loads(request)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    client = _client(base_url, api_key)
    _show(_run(lambda: client.operations.start(kind, body)), as_json)
