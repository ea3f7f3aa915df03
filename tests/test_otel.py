"""OpenTelemetry traces (`LONGOPS_OTEL=1`): a create's span continues the caller's W3C
trace, and its attempts' spans continue the create's, through the `traceparent` stored
with the operation. The server runs in this process, its spans kept in memory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.servers import (
    Process,
    ThreadServer,
    run_longops,
    subprocess_env,
    worker_args,
    worker_ready,
)
from tests.support.waiting import until_sync

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

_EXPORTER = InMemorySpanExporter()
Json = dict[str, Any]


@pytest.fixture(scope="module")
def provider() -> None:
    """The SDK's provider, set once: OpenTelemetry allows one global provider a process."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(sdk)


@pytest.fixture
def spans(provider: None) -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def traced(
    make_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch
) -> ThreadServer:
    monkeypatch.setenv("LONGOPS_OTEL", "1")
    return make_server()


def run(server: ThreadServer, body: Json, headers: dict[str, str | bytes]) -> Json:
    with httpx.Client(base_url=server.url, timeout=40) as http:
        started = http.post("/v1beta/kinds/longops.sleep:start", json=body, headers=headers)
        assert started.status_code == 200, started.text
        name = started.json()["name"]
        done = http.post(f"/v1beta/{name}:wait", json={"timeout": "30s"})
        assert done.json().get("done"), done.text
        result: Json = done.json()
        return result


def named(exporter: InMemorySpanExporter, name: str, operation: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.name == name
        and (s.attributes or {}).get("longops.operation.id") == operation.rpartition("/")[2]
    ]


def test_the_create_and_its_attempt_continue_the_callers_trace(
    traced: ThreadServer, spans: InMemorySpanExporter
) -> None:
    op = run(
        traced,
        {"seconds": 0.05, "steps": 3},
        {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
    )
    id = op["name"]
    until_sync(lambda: named(spans, "longops.attempt", id), what="the attempt's span")
    [create] = named(spans, "longops.create", id)
    [attempt] = named(spans, "longops.attempt", id)
    assert create.context is not None and attempt.context is not None
    assert format(create.context.trace_id, "032x") == TRACE_ID
    assert create.parent is not None and format(create.parent.span_id, "016x") == CALLER_SPAN
    assert create.kind is trace.SpanKind.SERVER
    assert attempt.context.trace_id == create.context.trace_id
    assert attempt.parent is not None and attempt.parent.span_id == create.context.span_id
    assert attempt.attributes is not None
    assert attempt.attributes["longops.outcome"] == "succeeded"
    assert attempt.attributes["longops.attempt"] == 1
    # Carried in the stored metadata, which the progress writes kept.
    stored = op["metadata"]["traceparent"]
    assert stored.split("-")[1:3] == [TRACE_ID, format(create.context.span_id, "016x")]
    assert op["metadata"]["progressPercent"] == 100


def test_without_a_traceparent_the_create_starts_a_trace_its_attempts_join(
    traced: ThreadServer, spans: InMemorySpanExporter
) -> None:
    op = run(traced, {"failWith": {"code": 9, "message": "told to"}}, {})
    id = op["name"]
    until_sync(lambda: named(spans, "longops.attempt", id), what="the attempt's span")
    [create] = named(spans, "longops.create", id)
    [attempt] = named(spans, "longops.attempt", id)
    assert create.parent is None
    assert create.context is not None and attempt.context is not None
    assert attempt.context.trace_id == create.context.trace_id
    assert attempt.attributes is not None and attempt.attributes["longops.outcome"] == "failed"
    assert attempt.status.status_code is trace.StatusCode.ERROR


def test_a_malformed_traceparent_is_ignored(
    traced: ThreadServer, spans: InMemorySpanExporter
) -> None:
    headers: list[str | bytes] = ["00-zz-nonsense", f"00-{'f' * 10_000}-{CALLER_SPAN}-01"]
    for header in [*headers, b"\xff" * 64]:
        id = run(traced, {}, {"traceparent": header})["name"]
        until_sync(lambda: named(spans, "longops.attempt", id), what="the attempt's span")  # noqa: B023
        [create] = named(spans, "longops.create", id)
        assert create.parent is None


def test_a_worker_process_continues_the_trace_it_reads_from_the_database(
    make_server: Callable[..., ThreadServer],
    spawn: Callable[..., Process],
    monkeypatch: pytest.MonkeyPatch,
    spans: InMemorySpanExporter,
) -> None:
    """`longops worker` with tracing on makes the SDK's provider itself, exporting to the
    `OTEL_TRACES_EXPORTER` named (here the console: its log), flushed as it exits."""
    monkeypatch.setenv("LONGOPS_OTEL", "1")
    api = make_server(workers=0)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    worker = spawn(*worker_args(api.database_url))
    until_sync(worker_ready(worker), what="the worker")
    op = run(api, {"seconds": 0.05}, {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    [create] = named(spans, "longops.create", op["name"])
    assert create.context is not None
    assert worker.terminate() == 0
    log = worker.log.read_text()
    assert '"name": "longops.attempt"' in log
    assert f'"trace_id": "0x{TRACE_ID}"' in log
    assert f'"parent_id": "0x{create.context.span_id:016x}"' in log
    assert '"service.name": "longops"' in log


def test_tracing_on_without_opentelemetry_installed_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    done = run_longops(*worker_args(f"sqlite:///{tmp_path / 'db'}"), env={"LONGOPS_OTEL": "1"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "Error: LONGOPS_OTEL is on but OpenTelemetry is not installed: pip install 'longops[otel]'"
    )


def test_tracing_off_makes_no_spans_and_stores_nothing(
    server: ThreadServer, spans: InMemorySpanExporter
) -> None:
    op = run(server, {}, {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert "traceparent" not in op["metadata"]
    assert spans.get_finished_spans() == ()


def test_tracing_off_imports_no_opentelemetry() -> None:
    script = (
        "import sys\n"
        "from longops.cli import app\n"
        "from longops.server import create_app\n"
        "from longops.server.metrics import metrics_app\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]"
