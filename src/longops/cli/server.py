"""`longops serve`, `longops worker` and `longops db`: the processes a deployment runs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from longops.cli.exits import FAILED, USAGE
from longops.engine import Engine, Registry, Worker, tracing
from longops.engine.blobs import open_blobs
from longops.engine.engine import EngineConfig
from longops.engine.limits import ENVIRONMENT, parse_limits
from longops.engine.quotas import Quotas
from longops.engine.store import Store, StoreBusy, open_store
from longops.engine.webhooks import Webhooks
from longops.engine.webhooks.config import WebhookSettings
from longops.engine.worker import WorkerConfig
from longops.kinds.builtin import default_registry
from longops.kinds.file_search.index import SearchIndex

db_app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode=None)

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
Kinds = Annotated[
    list[str] | None,
    typer.Option(
        "--kinds",
        envvar="LONGOPS_KINDS",
        help="Serve only these kinds (comma-separated or repeated; e.g. generate_videos on a"
        " GPU machine); every registered kind by default.",
    ),
]


def _limit_option(field: str, example: str, what: str) -> Any:
    flag = "--" + field.replace("_", "-")
    return typer.Option(
        flag,
        envvar=ENVIRONMENT[field],
        help=f"{what}, as KIND=N (comma-separated or repeated; e.g. {example}); over the"
        " kind's own. Give every API server and worker the same.",
    )


Concurrency = Annotated[
    list[str] | None,
    _limit_option(
        "concurrency",
        "generate_videos=1",
        "At most N operations of the kind running at once across every worker",
    ),
]
KeyConcurrency = Annotated[
    list[str] | None,
    _limit_option(
        "key_concurrency",
        "import_file=2",
        "At most N running at once per concurrencyKey of the kind",
    ),
]
Rate = Annotated[
    list[str] | None,
    _limit_option(
        "rate",
        "generate_videos=5/m",
        "At most N starts of the kind per second (or N/s, N/m, N/h) across every worker",
    ),
]
KeyRate = Annotated[
    list[str] | None,
    _limit_option("key_rate", "import_file=10/s", "At most N starts per second per concurrencyKey"),
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


def _optional_port(value: int | None) -> int | None:
    return None if value is None else _port(value)


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
        WebhookSettings.from_env()  # checked here, not when the first webhook is sent
        quotas = Quotas.from_env()
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
        quotas=quotas,
    )
    try:
        blob_store = open_blobs(blobs)
    except (ImportError, ValueError) as exc:  # a missing s3fs/gcsfs, a malformed URL
        raise typer.BadParameter(str(exc), param_hint="--blobs") from None
    try:
        if tracing.enabled():
            tracing.install_provider()
        return Engine(_store(database), registry, config, blob_store)
    except RuntimeError as exc:  # LONGOPS_OTEL on without the otel extra
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(FAILED) from None


def _served_kinds(registry: Registry, kinds: list[str] | None) -> list[str] | None:
    """The kinds `--kinds` names, each registered (built in or `--load`ed); None for all.
    A name no module registered is a usage mistake: a worker that silently served
    nothing would look healthy while its queue grew."""
    if not kinds:
        return None
    names = list(dict.fromkeys(n.strip() for entry in kinds for n in entry.split(",")))
    names = [n for n in names if n]
    unknown = [n for n in names if registry.get(n) is None]
    if unknown or not names:
        typer.echo(
            f"Error: --kinds: {', '.join(map(repr, unknown)) or 'no kind'} is not registered;"
            f" registered kinds: {', '.join(registry.names())}",
            err=True,
        )
        raise typer.Exit(USAGE)
    return names


def _limits(registry: Registry, *given: list[str] | None) -> dict[str, dict[str, float]]:
    """The operator's limits, `given` as the entries of `--concurrency`,
    `--key-concurrency`, `--rate` and `--key-rate` (`ENVIRONMENT`'s order), as
    `EngineConfig.limits` takes them. A malformed entry, or a kind no module registered,
    is a usage mistake in one line: a limit on a misspelt kind would silently limit
    nothing."""
    limits: dict[str, dict[str, float]] = {}
    for field, entries in zip(ENVIRONMENT, given, strict=True):
        if not entries:
            continue
        setting = f"--{field.replace('_', '-')} / {ENVIRONMENT[field]}"
        try:
            parsed = parse_limits(field, entries, setting=setting)
        except ValueError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(USAGE) from None
        unknown = [k for k in parsed if registry.get(k) is None]
        if unknown:
            typer.echo(
                f"Error: {setting}: {', '.join(map(repr, unknown))} is not registered;"
                f" registered kinds: {', '.join(registry.names())}",
                err=True,
            )
            raise typer.Exit(USAGE)
        if parsed:
            limits[field] = parsed
    return limits


def _rate(per_second: float) -> str:
    """A rate as an operator writes it: per second, or per minute or hour below one a
    second (`5/s`, `10/m`, `2/h`, where 0.166667/s would be read as a typo)."""
    for unit, seconds in (("s", 1), ("m", 60)):
        if per_second * seconds >= 1:
            return f"{per_second * seconds:g}/{unit}"
    return f"{per_second * 3600:g}/h"


def _limits_shown(engine: Engine, kinds: list[str]) -> str:
    """The limits in effect on `kinds` (declared and overridden), for the start-up line:
    `, limits: generate_videos concurrency=1, import_file key_rate=5/s`; none, nothing."""
    shown = []
    for kind, limit in sorted(engine.limits().among(kinds).items()):
        parts = [
            f"{f.name}={_rate(value) if f.name.endswith('rate') else value}"
            for f in fields(limit)
            if (value := getattr(limit, f.name))
        ]
        shown.append(f"{kind} {' '.join(parts)}")
    return f", limits: {', '.join(shown)}" if shown else ""


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
            await Webhooks.of(store.database).open()  # the outbox trigger, too
        finally:
            await store.close()

    _run_loop(main())


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(
    host: Annotated[str, typer.Option(envvar="LONGOPS_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LONGOPS_PORT", callback=_port)] = 8000,
    database: Database = DEFAULT_DATABASE,
    workers: Workers = 8,
    kinds: Kinds = None,
    concurrency: Concurrency = None,
    key_concurrency: KeyConcurrency = None,
    rate: Rate = None,
    key_rate: KeyRate = None,
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
    slots = 0 if no_workers else workers
    engine = _engine(
        database,
        load,
        retention_days,
        blobs,
        public_url or default_public_url(host, port),
        follow_work=slots > 0,
    )
    served = _served_kinds(engine.registry, kinds)
    engine.config.limits = _limits(engine.registry, concurrency, key_concurrency, rate, key_rate)
    _upgrade(database)
    application = create_app(
        engine,
        ServerConfig(
            api_keys=keys,
            max_wait_seconds=max_wait,
            metrics_token=os.environ.get("LONGOPS_METRICS_TOKEN") or None,
        ),
        workers=1 if slots else 0,
        worker_config=WorkerConfig(
            concurrency=max(slots, 1),
            lease_seconds=lease,
            shutdown_grace=shutdown_grace,
            kinds=served,
        ),
    )
    listening = _listen(host, port)
    shown = served or engine.registry.names()
    typer.echo(
        f"longops serving on http://{host}:{port} ({database}, "
        f"{slots or 'no'} worker slots, kinds: {', '.join(shown)}"
        f"{_limits_shown(engine, shown)})",
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


def worker(
    database: Database = DEFAULT_DATABASE,
    workers: Workers = 8,
    kinds: Kinds = None,
    concurrency: Concurrency = None,
    key_concurrency: KeyConcurrency = None,
    rate: Rate = None,
    key_rate: KeyRate = None,
    load: Load = None,
    lease: Lease = 30.0,
    retention_days: Retention = 7.0,
    shutdown_grace: ShutdownGrace = 30.0,
    blobs: Blobs = DEFAULT_BLOBS,
    public_url: PublicUrl = None,
    log_level: LogLevel = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="LONGOPS_METRICS_PORT",
            callback=_optional_port,
            help="Serve GET /metrics (Prometheus) on this port; none by default.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(envvar="LONGOPS_METRICS_HOST", help="Where --metrics-port listens.")
    ] = "127.0.0.1",
) -> None:
    """Run workers only, against the same database as the API servers."""
    from longops.server.config import default_public_url
    from longops.server.metrics import metrics_server

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
        concurrency=max(workers, 1),
        lease_seconds=lease,
        shutdown_grace=shutdown_grace,
        kinds=_served_kinds(engine.registry, kinds),
    )
    engine.config.limits = _limits(engine.registry, concurrency, key_concurrency, rate, key_rate)

    listening = None if metrics_port is None else _listen(metrics_host, metrics_port)

    async def main() -> None:
        async with engine:
            runner = Worker(engine, config)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.stop)
            logging.getLogger("longops.worker").info(
                "worker %s on %s, kinds: %s%s",
                runner.owner,
                database,
                ", ".join(runner.kinds),
                _limits_shown(engine, runner.kinds),
            )
            if listening is None:
                await runner.run()
                return
            # /metrics until the worker has drained (SIGTERM stops the worker, not it).
            token = os.environ.get("LONGOPS_METRICS_TOKEN") or None
            metrics = metrics_server(engine, token, log_level)
            serving = asyncio.create_task(metrics.serve(sockets=[listening]))
            logging.getLogger("longops.worker").info(
                "metrics on http://%s:%d/metrics", metrics_host, metrics_port
            )
            try:
                await runner.run()
            finally:
                metrics.should_exit = True
                await serving

    _run_loop(main())


@db_app.command("upgrade")
def db_upgrade(database: Database = DEFAULT_DATABASE) -> None:
    """Apply the schema migrations (servers and workers also do it when they start)."""
    _upgrade(database)
    typer.echo(f"{database}: schema is up to date")
