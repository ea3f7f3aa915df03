"""`/metrics` scraped from real servers and a real `longops worker` while operations run.

The counters are the process's (every server a test starts in this process adds to
them), so the tests compare a scrape after with one before; the gauges are read from
each server's own database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from longops.engine.worker import WorkerConfig
from longops.server import ServerConfig
from tests.store.backends import BACKENDS
from tests.support.postgres import database
from tests.support.servers import Process, ThreadServer, free_port, worker_args
from tests.support.waiting import until_sync

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SLEEP = "longops.sleep"


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in samples if n == name]


def start(url: str, kind: str, body: dict[str, Any] | None = None) -> str:
    response = httpx.post(f"{url}/v1beta/kinds/{kind}:start", json=body or {}, timeout=10)
    assert response.status_code == 200, response.text
    name: str = response.json()["name"]
    return name


def wait_done(url: str, name: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1beta/{name}:wait", json={"timeout": "30s"}, timeout=40)
    assert response.status_code == 200 and response.json().get("done"), response.text
    done: dict[str, Any] = response.json()
    return done


def gauge(url: str, kind: str, state: str) -> float:
    return value(scrape(url), "longops_operations", kind=kind, state=state)


@pytest.fixture(params=BACKENDS)
def on_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The first test runs on both backends (a cancel is counted from what the store's
    answer says on each)."""
    with database(request.param, tmp_path) as url:
        yield url


def test_metrics_follow_operations_created_run_failed_retried_and_cancelled(
    make_server: Callable[..., ThreadServer], on_backend: str
) -> None:
    # One slot: while the long operation runs, the others wait in the queue.
    server = make_server(
        database_url=on_backend,
        worker_config=WorkerConfig(concurrency=1, retry_delay=0.01),
    )
    url = server.url
    before = scrape(url)

    long = start(url, SLEEP, {"seconds": 60, "steps": 600})
    until_sync(lambda: gauge(url, SLEEP, "running") == 1, what="the long one running")
    quick = start(url, SLEEP, {"seconds": 0.05, "steps": 3})
    failing = start(url, SLEEP, {"failWith": {"code": 9, "message": "told to"}})
    flaky = start(url, "test.flaky", {"failures": 1})
    until_sync(lambda: gauge(url, SLEEP, "pending") == 2, what="two sleeps pending")
    assert gauge(url, "test.flaky", "pending") == 1

    cancelled = httpx.post(f"{url}/v1beta/{long}:cancel", timeout=10)
    assert cancelled.status_code == 200
    assert wait_done(url, long)["error"]["code"] == 1
    assert "response" in wait_done(url, quick)
    assert wait_done(url, failing)["error"]["code"] == 9
    assert wait_done(url, flaky)["response"]["attempt"] == 2
    until_sync(
        lambda: gauge(url, SLEEP, "pending") == gauge(url, SLEEP, "running") == 0,
        what="the gauges back to zero",
    )

    after = scrape(url)
    assert delta(after, before, "longops_operations_created_total", kind=SLEEP) == 3
    assert delta(after, before, "longops_operations_created_total", kind="test.flaky") == 1
    finished = "longops_operations_finished_total"
    assert delta(after, before, finished, kind=SLEEP, outcome="succeeded") == 1
    assert delta(after, before, finished, kind=SLEEP, outcome="failed") == 1
    assert delta(after, before, finished, kind=SLEEP, outcome="cancelled") == 1
    assert delta(after, before, finished, kind="test.flaky", outcome="succeeded") == 1
    assert delta(after, before, "longops_attempts_retried_total", kind="test.flaky") == 1
    assert delta(after, before, "longops_attempts_retried_total", kind=SLEEP) == 0
    # Histograms: every operation waited in the queue once; each ended one ran.
    waits = "longops_operation_queue_wait_seconds_count"
    assert delta(after, before, waits, kind=SLEEP) == 3
    assert delta(after, before, waits, kind="test.flaky") == 1
    runs = "longops_operation_run_seconds_count"
    for outcome in ("succeeded", "failed", "cancelled"):
        assert delta(after, before, runs, kind=SLEEP, outcome=outcome) == 1
    assert (
        delta(after, before, "longops_operation_run_seconds_sum", kind=SLEEP, outcome="succeeded")
        > 0
    )
    for call in ("create", "get", "claim", "finish", "fail_attempt", "count_unfinished"):
        assert delta(after, before, "longops_store_seconds_count", call=call) > 0, call

    # HTTP: by route template, never by the operation's name.
    requests = "longops_http_requests_total"
    template = "/{version}/kinds/{kind}:start"
    assert delta(after, before, requests, route=template, method="POST", code="200") == 4
    assert delta(after, before, requests, route="/{version}/{name}:wait", method="POST",
                 code="200") >= 4  # fmt: skip
    assert value(after, "longops_http_request_seconds_count", route=template, method="POST") > 0
    routes = {labels["route"] for labels in series(after, requests)}
    assert not any(n.split("/")[-1] in r for r in routes for n in (long, quick, failing, flaky))


def test_unmatched_paths_and_odd_methods_share_bounded_label_values(
    server: ThreadServer,
) -> None:
    before = scrape(server.url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(100):
            assert http.get(f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}").status_code == 404
        assert http.request("PROPFIND", "/healthz").status_code == 405
        assert http.get("/v1beta/operations/no-such-one").status_code == 404
    after = scrape(server.url)
    requests = "longops_http_requests_total"
    new = [s for s in series(after, requests) if s not in series(before, requests)]
    assert len(new) <= 4, new  # unmatched 404, PROPFIND as other, the GET 404, /metrics itself
    assert delta(after, before, requests, route="unmatched", method="GET", code="404") == 100
    assert delta(after, before, requests, route="/healthz", method="other", code="405") == 1
    assert delta(after, before, requests, route="/{version}/{name}", method="GET", code="404") == 1


def test_metrics_token_guards_metrics_and_api_keys_do_not(
    make_server: Callable[..., ThreadServer],
) -> None:
    guarded = make_server(config=ServerConfig(metrics_token="scrape-me"))
    refused = httpx.get(f"{guarded.url}/metrics", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_INVALID"
    wrong = httpx.get(f"{guarded.url}/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert scrape(guarded.url, authorization="Bearer scrape-me")

    # With API keys and no metrics token, /metrics is open: it holds nothing of a tenant.
    keyed = make_server(config=ServerConfig(api_keys={"k1": "tenant-a"}))
    assert httpx.get(f"{keyed.url}/v1beta/operations", timeout=10).status_code == 403
    samples = scrape(keyed.url)
    assert not any("tenant-a" in v for _, labels in samples for _, v in labels)


def test_a_worker_process_serves_its_own_metrics(
    make_server: Callable[..., ThreadServer], spawn: Callable[..., Process]
) -> None:
    api = make_server(workers=0)
    port = free_port()
    worker = spawn(*worker_args(api.database_url, "--metrics-port", str(port)))
    metrics_url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{metrics_url}/metrics", timeout=1).status_code == 200
        except httpx.TransportError:
            assert worker.proc is not None and worker.proc.poll() is None, worker.log.read_text()
            return False

    until_sync(up, what="the worker's /metrics")
    before = scrape(metrics_url)
    pending = start(api.url, SLEEP, {"seconds": 30, "steps": 300})
    # Created by the API server (not counted here); run and gauged by the worker.
    until_sync(lambda: gauge(metrics_url, SLEEP, "running") == 1, what="running, seen there")
    assert gauge(api.url, SLEEP, "running") == 1  # the same database, the same gauge
    assert httpx.post(f"{api.url}/v1beta/{pending}:cancel", timeout=10).status_code == 200
    wait_done(api.url, pending)
    finished = "longops_operations_finished_total"

    def counted() -> bool:
        return delta(scrape(metrics_url), before, finished, kind=SLEEP, outcome="cancelled") == 1

    until_sync(counted, what="the worker counting the cancelled attempt")
    after = scrape(metrics_url)
    assert delta(after, before, "longops_operations_created_total", kind=SLEEP) == 0
    assert delta(after, before, "longops_operation_queue_wait_seconds_count", kind=SLEEP) == 1
    assert httpx.get(f"{metrics_url}/elsewhere", timeout=5).status_code == 404
    assert worker.terminate() == 0


def test_an_attempt_whose_worker_was_killed_counts_as_abandoned_and_retried(
    make_server: Callable[..., ThreadServer], spawn: Callable[..., Process]
) -> None:
    """The server here runs no sleeps, only maintenance, which sees the killed worker's
    process gone and sends its operation back to PENDING for another attempt."""
    server = make_server(worker_config=WorkerConfig(kinds=["test.cpu"]))
    worker = spawn(*worker_args(server.database_url))
    before = scrape(server.url)
    name = start(server.url, SLEEP, {"seconds": 60, "steps": 600})
    until_sync(lambda: gauge(server.url, SLEEP, "running") == 1, what="the worker running it")
    worker.kill()
    until_sync(lambda: gauge(server.url, SLEEP, "pending") == 1, what="it back in the queue")
    after = scrape(server.url)
    assert delta(after, before, "longops_attempts_abandoned_total", kind=SLEEP) == 1
    assert delta(after, before, "longops_attempts_retried_total", kind=SLEEP) == 1
    assert httpx.post(f"{server.url}/v1beta/{name}:cancel", timeout=10).status_code == 200


@pytest.mark.parametrize("bad", ["0", "65536", "x"])
def test_metrics_port_outside_the_tcp_range_is_a_usage_error(
    bad: str, tmp_path: Any, spawn: Callable[..., Process]
) -> None:
    worker = spawn(*worker_args(f"sqlite:///{tmp_path / 'db'}", "--metrics-port", bad))
    assert worker.proc is not None and worker.proc.wait(30) == 2
    assert "--metrics-port" in worker.log.read_text()
