"""OpenTelemetry traces of creates and attempts, when `LONGOPS_OTEL=1` (the `otel` extra).

Off by default, and then nothing here imports opentelemetry: `from_env()` answers None
and every hook in the engine, the worker and the HTTP middleware is one `is None` test.

On, spans go through the OpenTelemetry API's global tracer provider (`longops serve`
and `longops worker` install the SDK's when none is set: `install_provider`):

- `longops.create` (SERVER), one per `Engine.create`, the child of the W3C
  `traceparent` header of the request that asked for it (`incoming`) if it had one;
- `longops.attempt` (CONSUMER), one per attempt a worker runs, in whatever process,
  the child of its operation's create span: the create stores its span's `traceparent`
  with the operation, in the stored `metadata` (no column of its own; progress writes
  merge into the metadata, so it stays), and the worker reads it back from the claimed
  row. Spans a handler starts are children of its attempt's.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from longops._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from longops.engine.records import OperationRecord

log = logging.getLogger("longops.tracing")

TRACEPARENT = "traceparent"
"""The metadata key (and the W3C header) that carries a create's span to its attempts."""


_NOT_INSTALLED = (
    "LONGOPS_OTEL is on but OpenTelemetry is not installed: pip install 'longops[otel]'"
)


def enabled() -> bool:
    return os.environ.get("LONGOPS_OTEL", "").strip().lower() in ("1", "true", "yes", "on")


def from_env() -> Tracing | None:
    """A `Tracing` when `LONGOPS_OTEL` says so; it fails (naming the extra) when
    opentelemetry is not installed, rather than running without the traces asked for."""
    if not enabled():
        return None
    try:
        return Tracing()
    except ImportError as exc:
        raise RuntimeError(_NOT_INSTALLED) from exc


class Tracing:
    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._context = context
        self._tracer = trace.get_tracer("longops", __version__)
        self._propagator = TraceContextTextMapPropagator()

    @contextlib.contextmanager
    def incoming(self, headers: Iterable[tuple[bytes, bytes]]) -> Iterator[None]:
        """Make the request's W3C trace context (its `traceparent` and `tracestate`
        headers) current while it is answered, so a create under it is its child."""
        carrier: dict[str, str] = {}
        for key, value in headers:
            if key in (b"traceparent", b"tracestate"):
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        if not carrier:
            yield
            return
        token = self._context.attach(self._propagator.extract(carrier))
        try:
            yield
        finally:
            self._context.detach(token)

    @contextlib.contextmanager
    def create(self, kind: str, metadata: dict[str, Any]) -> Iterator[Span]:
        """The span of one create; puts its `traceparent` into `metadata` (to be stored)."""
        with self._tracer.start_as_current_span(
            "longops.create",
            kind=self._trace.SpanKind.SERVER,
            attributes={"longops.kind": kind},
        ) as span:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            if TRACEPARENT in carrier:
                metadata[TRACEPARENT] = carrier[TRACEPARENT]
            yield span

    @contextlib.contextmanager
    def attempt(self, record: OperationRecord) -> Iterator[Span]:
        """The span of one attempt, the child of its create's span when one was stored."""
        stored = record.metadata.get(TRACEPARENT)
        parent = (
            self._propagator.extract({TRACEPARENT: stored}) if isinstance(stored, str) else None
        )
        with self._tracer.start_as_current_span(
            "longops.attempt",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "longops.kind": record.kind,
                "longops.operation.id": record.id,
                "longops.attempt": record.attempt,
            },
        ) as span:
            yield span

    def outcome(self, span: Span, outcome: str) -> None:
        """Name how the attempt ended; a failure sets the span's status to error."""
        span.set_attribute("longops.outcome", outcome)
        if outcome == "failed":
            span.set_status(self._trace.StatusCode.ERROR)


def install_provider() -> None:
    """For `longops serve` and `longops worker` with tracing on (RuntimeError when the
    `otel` extra is not installed): unless a tracer provider
    is set already (by `opentelemetry-instrument`, say), the SDK's, its resource from the
    standard `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (service `longops` by
    default), exporting in batches to each exporter `OTEL_TRACES_EXPORTER` names
    (`otlp` by default, as the OpenTelemetry specification says; `console` is the SDK's;
    others come from their packages, such as opentelemetry-exporter-otlp)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(_NOT_INSTALLED) from exc

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "longops"}
    )
    provider = TracerProvider(resource=resource)
    for name in _exporter_names(os.environ):
        found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning(
                "OTEL_TRACES_EXPORTER names %r, which no installed package provides;"
                " its spans are dropped",
                name,
            )
            continue
        for entry in found:
            provider.add_span_processor(BatchSpanProcessor(entry.load()()))
    trace.set_tracer_provider(provider)


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [n for n in names if n and n != "none"]
