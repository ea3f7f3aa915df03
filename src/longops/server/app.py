"""The ASGI application: routes, error envelope, and the engine's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longops.engine import Engine, Worker
from longops.engine.worker import WorkerConfig
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.errors import EXCEPTION_HANDLERS, AnswerFailures
from longops.server.metrics import HttpMetrics, MetricsRoute
from longops.server.openapi import openapi_route
from longops.server.requests import RefuseNulInUrl
from longops.server.routes.file_search import FileSearchRoutes
from longops.server.routes.files import FileRoutes
from longops.server.routes.kinds import KindRoutes
from longops.server.routes.models import ModelRoutes
from longops.server.routes.operations import OperationRoutes
from longops.server.routes.uploads import UploadRoutes
from longops.server.routes.watch import WatchRoutes
from longops.server.routes.webhooks import WebhookRoutes

log = logging.getLogger("longops.server")


class ApiVersionConvertor(Convertor[str]):
    """The API versions Google clients use: Gemini 3.x `v1`, 2.x `v1beta`, Vertex `v1beta1`."""

    regex = "v1|v1beta|v1beta1|v1alpha"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class OperationNameConvertor(Convertor[str]):
    """Paths that name an operation or an operations collection, and nothing else, so
    the operation routes can come first (polling is the hot path) without shadowing
    other resources."""

    regex = "(?:[^:]*/)?operations(?:/[^/:]*)?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class KindNameConvertor(Convertor[str]):
    """A kind's name as a path segment: no `:`, which starts a custom method
    (`kinds/{kind}:start`), so a GET there is that route's 405, not an unknown kind."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("apiver", ApiVersionConvertor())
register_url_convertor("opname", OperationNameConvertor())
register_url_convertor("kindname", KindNameConvertor())


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_app(
    engine: Engine,
    config: ServerConfig | None = None,
    *,
    workers: int = 0,
    worker_config: WorkerConfig | None = None,
) -> Starlette:
    """An app serving `engine`; with `workers` > 0 it also runs that many workers in-process."""
    config = config or ServerConfig()
    auth = Authenticator(config.api_keys)
    operations = OperationRoutes(engine, auth, config)
    files = FileRoutes(engine, auth, config)
    models = ModelRoutes(engine, auth, config, operations)
    uploads = UploadRoutes(engine, auth, config)
    file_search = FileSearchRoutes(engine, auth, config, operations)
    kinds = KindRoutes(engine, auth, config)
    webhooks = WebhookRoutes(engine, auth, config)

    running: list[Worker] = []

    def begin_shutdown() -> None:
        """Answer open waits and start the workers' grace: the server calls this as it
        stops accepting, before it waits for open requests (see `serving.Server`), so a
        long `:wait` neither holds the shutdown nor delays the workers' grace."""
        engine.hub.stop_waits()
        for worker in running:
            worker.stop()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        running[:] = [Worker(engine, worker_config) for _ in range(workers)]
        tasks = [asyncio.create_task(w.run(), name="longops-worker") for w in running]
        try:
            yield
        finally:
            begin_shutdown()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *MetricsRoute(engine, config.metrics_token).routes(),
            openapi_route(engine),
            *operations.routes(),
            # Before the other resources, whose GET routes would take `…/operations/x:watch`.
            *WatchRoutes(engine, auth, config, operations).routes(),
            *files.routes(),
            *models.routes(),
            *uploads.routes(),
            *file_search.routes(),
            *kinds.routes(),
            *webhooks.routes(),
        ],
        # HttpMetrics outermost, to count every answer; then AnswerFailures: it must see
        # the errors of the middleware after it.
        middleware=[
            Middleware(HttpMetrics, tracing=engine.tracing),
            Middleware(AnswerFailures),
            Middleware(RefuseNulInUrl),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.begin_shutdown = begin_shutdown
    return app
