"""`/metrics` in Prometheus's text format, and the HTTP instruments behind part of it.

`HttpMetrics` counts and times every request by the Starlette route that answered it —
its path template (`/{version}/{name}`), never the raw path, so a scan of random paths
adds one series (`unmatched`), not one per path — by method (the standard ones, the rest
as `other`) and status code. It is the outermost middleware, so it sees the answers the
error handlers made too; with tracing on it also makes the request's W3C trace context
current (see `engine/tracing.py`).

`/metrics` shows what this process did (`engine/metrics.py`'s `REGISTRY`) and what the
database holds now (pending and running operations by kind, the same from every
process), and nothing of any tenant: no label holds an operation name or a tenant. So it
is open by default, as Prometheus scrapers expect; with `metrics_token` set (env
`LONGOPS_METRICS_TOKEN`), it asks for `Authorization: Bearer <token>`. API keys do not
apply to it: they name tenants, and metrics belong to none.

`longops worker --metrics-port` serves the same route from a small app of its own
(`metrics_app`, `MetricsServer`).
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from longops.engine import Engine
from longops.engine.metrics import (
    CounterSeries,
    HistogramSeries,
    HotCounter,
    HotHistogram,
    OperationCounts,
    exposition,
)
from longops.engine.tracing import Tracing
from longops.server.errors import ERROR_INFO, EXCEPTION_HANDLERS, ErrorReply

UNMATCHED = "unmatched"
"""The route label of requests no route matched (404s of any path)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_KEYS = 10_000
"""Past this many (route, method, status) keys the series are looked up each time."""

HTTP_REQUESTS = HotCounter(
    "longops_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ("route", "method", "code"),
)
HTTP_REQUEST_SECONDS = HotHistogram(
    "longops_http_request_seconds",
    "From a request's arrival to the end of its answer, by route template and method.",
    ("route", "method"),
    (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0),
)


def _route_template(scope: Scope) -> str:
    """The path template of the route that matched (fully, or by path only: a 405)."""
    route = scope.get("route")
    if route is None:  # Starlette before `scope["route"]`: by the endpoint it chose
        endpoint = scope.get("endpoint")
        app = scope.get("app")
        if endpoint is None or app is None:
            return UNMATCHED
        route = next((r for r in app.routes if getattr(r, "endpoint", None) == endpoint), None)
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp, tracing: Tracing | None = None) -> None:
        self.app = app
        self.tracing = tracing
        # The series of each (route, method, status) seen, found with one lookup.
        self._series: dict[tuple[int, str, int], tuple[CounterSeries, HistogramSeries]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.tracing is None:
                await self.app(scope, receive, sending)
            else:
                with self.tracing.incoming(scope["headers"]):
                    await self.app(scope, receive, sending)
        finally:
            # By identity (a Route is unhashable); routes live as long as this app does.
            key = (id(scope.get("route") or scope.get("endpoint")), scope["method"], status)
            series = self._series.get(key)
            if series is None:
                series = self._labelled(scope, status)
                if len(self._series) < _MAX_KEYS:
                    self._series[key] = series
            series[0].inc()
            series[1].observe(time.perf_counter() - start)

    @staticmethod
    def _labelled(scope: Scope, status: int) -> tuple[CounterSeries, HistogramSeries]:
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = _route_template(scope)
        # A request that ended before any answer (the client went away) has code 0.
        return (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_REQUEST_SECONDS.labels(route, method),
        )


class MetricsRoute:
    """`GET /metrics` for one engine: its gauges are read when a scrape finds them stale."""

    def __init__(self, engine: Engine, token: str | None = None) -> None:
        self.counts = OperationCounts(engine)
        self.registry = exposition(self.counts)
        self.token = token.encode() if token else None

    def routes(self) -> list[BaseRoute]:
        return [Route("/metrics", self.metrics, methods=["GET"])]

    def _check(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("latin-1"), self.token
        ):
            raise ErrorReply(
                401,
                "/metrics needs the metrics token: Authorization: Bearer <LONGOPS_METRICS_TOKEN>.",
                details=[{"@type": ERROR_INFO, "reason": "ACCESS_TOKEN_INVALID"}],
                headers={"www-authenticate": "Bearer"},
            )

    async def metrics(self, request: Request) -> Response:
        self._check(request)
        await self.counts.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def metrics_app(engine: Engine, token: str | None = None) -> Starlette:
    """The app of `longops worker --metrics-port`: `/metrics` alone (the engine is the
    worker's, started and closed by it), every other path Google's 404."""
    return Starlette(
        routes=MetricsRoute(engine, token).routes(), exception_handlers=EXCEPTION_HANDLERS
    )


class MetricsServer(uvicorn.Server):
    """uvicorn for `metrics_app` inside `longops worker`: its signals stay the worker's
    (SIGTERM drains the worker, which then stops this server), not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_server(engine: Engine, token: str | None, log_level: str) -> MetricsServer:
    config = uvicorn.Config(
        metrics_app(engine, token),
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=False,
    )
    return MetricsServer(config)
