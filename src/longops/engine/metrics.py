"""The engine's Prometheus instruments, and the per-engine gauges read from the database.

One registry per process, `REGISTRY` (not prometheus_client's global default, so an
application embedding longops keeps its own default registry to itself). The counters
and histograms here are facts about what *this process* did (operations it created,
attempts it ran, webhooks it delivered), so they are module globals: every engine,
worker and server in the process adds to the same series, as Prometheus expects of one
scrape target. Tests that run several servers in one process therefore read
differences (after minus before), never absolute values.

What is true of the whole database — how many operations are pending or running, by
kind — is not a count this process can keep: `OperationCounts` reads it from the store,
at most every `max_age` seconds and one query at a time however many scrapes arrive, and
`exposition(counts)` gives a registry holding both, for `/metrics` and `--metrics-port`.
Each engine has its own (tests start servers on different databases in one process).

Label values are bounded: kinds are the registered ones, outcomes and states fixed sets;
never an operation name or a tenant.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from longops.engine.records import OperationRecord, State

if TYPE_CHECKING:
    from longops.engine.engine import Engine

log = logging.getLogger("longops.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY.register(PROCESS_COLLECTOR)
REGISTRY.register(PLATFORM_COLLECTOR)

_OPERATION_BUCKETS = (0.01, 0.1, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
_STORE_BUCKETS = (0.0005, 0.002, 0.01, 0.05, 0.25, 1.0)
_WEBHOOK_BUCKETS = (0.05, 0.25, 1.0, 5.0, 30.0)

OUTCOMES: dict[State, str] = {
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.CANCELLED: "cancelled",
}

OPERATIONS_CREATED = Counter(
    "longops_operations_created",
    "Operations created by this process (a repeated requestId is not counted again).",
    ["kind"],
    registry=REGISTRY,
)
OPERATIONS_FINISHED = Counter(
    "longops_operations_finished",
    "Operations this process ended, by outcome (succeeded, failed, cancelled).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
QUEUE_WAIT_SECONDS = Histogram(
    "longops_operation_queue_wait_seconds",
    "From an operation's create to its first claim, observed by the worker that claimed it.",
    ["kind"],
    buckets=_OPERATION_BUCKETS,
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "longops_operation_run_seconds",
    "From an operation's first claim to its end, observed by the process that ended it.",
    ["kind", "outcome"],
    buckets=_OPERATION_BUCKETS,
    registry=REGISTRY,
)
ATTEMPTS_RETRIED = Counter(
    "longops_attempts_retried",
    "Attempts that ended without ending their operation, which went back to PENDING for"
    " another attempt (a handler's unexpected error, or an abandoned lease).",
    ["kind"],
    registry=REGISTRY,
)
ATTEMPTS_ABANDONED = Counter(
    "longops_attempts_abandoned",
    "Attempts whose worker stopped responding (its lease expired or its process died),"
    " recovered by this process's maintenance.",
    ["kind"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "longops_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retrying, failed, refused).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "longops_webhook_delivery_seconds",
    "How long one webhook delivery attempt took, answered or not.",
    buckets=_WEBHOOK_BUCKETS,
    registry=REGISTRY,
)


# -- the hot paths' instruments ----------------------------------------------------


class HotCounter(Collector):
    """A labelled counter for the hot paths (every request, every store call): an
    increment is one `+=` on a slot object, where prometheus_client's takes a lock and
    checks exemplars (about 0.6 us, 1.1 us for a histogram: 5% of a cached GET).

    Updated only from event-loop threads, which hold the GIL between awaits; a process
    running several loops at once (tests starting servers in threads) could lose an
    increment to two threads updating one series in the same few bytecodes."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._series: dict[tuple[str, ...], CounterSeries] = {}
        REGISTRY.register(self)

    def labels(self, *values: str) -> CounterSeries:
        series = self._series.get(values)
        if series is None:
            series = self._series.setdefault(values, CounterSeries())
        return series

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            family.add_metric(values, series.value)
        yield family


class CounterSeries:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class HotHistogram(Collector):
    """A labelled histogram for the hot paths, as `HotCounter` is a counter: an
    observation is a bisection over a few bounds and two additions."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = buckets
        self._series: dict[tuple[str, ...], HistogramSeries] = {}
        REGISTRY.register(self)

    def labels(self, *values: str) -> HistogramSeries:
        series = self._series.get(values)
        if series is None:
            series = self._series.setdefault(values, HistogramSeries(self.bounds))
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        names = [*(repr(float(b)) for b in self.bounds), "+Inf"]
        for values, series in list(self._series.items()):
            counts, total = list(series.counts), series.sum
            cumulative = list(itertools.accumulate(counts))
            family.add_metric(values, list(zip(names, cumulative, strict=True)), total)
        yield family


class HistogramSeries:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount


STORE_SECONDS = HotHistogram(
    "longops_store_seconds",
    "Store calls by method name, from call to answer.",
    ("call",),
    _STORE_BUCKETS,
)

P = ParamSpec("P")
T = TypeVar("T")


def timed(call: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Time a store method into `longops_store_seconds{call}`: one clock read at each end
    and one observation per call (the labelled child is bound once, here)."""
    observe = STORE_SECONDS.labels(call).observe
    clock = time.perf_counter

    def decorate(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            start = clock()
            try:
                return await method(*args, **kwargs)
            finally:
                observe(clock() - start)

        return wrapper

    return decorate


def ended(kind: str, outcome: str, start_time: float | None, now: float) -> None:
    """Count an operation this process ended (`outcome` one of `OUTCOMES`' values), and
    its run time if it ever ran."""
    OPERATIONS_FINISHED.labels(kind, outcome).inc()
    if start_time is not None:
        RUN_SECONDS.labels(kind, outcome).observe(max(0.0, now - start_time))


def recovered(found: Iterable[tuple[str, State, float | None]], now: float) -> None:
    """Attempts `recover_expired` took from workers that stopped responding (kind, the
    state each operation is in now, its first claim): abandoned, and then retried or
    ended."""
    for kind, state, start_time in found:
        ATTEMPTS_ABANDONED.labels(kind).inc()
        if state.done:
            ended(kind, OUTCOMES[state], start_time, now)
        else:
            ATTEMPTS_RETRIED.labels(kind).inc()


def claimed(record: OperationRecord) -> None:
    """A claim came back: its first attempt's wait in the queue (create to first claim)."""
    if record.attempt == 1 and record.start_time is not None:
        QUEUE_WAIT_SECONDS.labels(record.kind).observe(
            max(0.0, record.start_time - record.create_time)
        )


# -- database-wide gauges ------------------------------------------------------


class OperationCounts:
    """Pending and running operations by kind, read from the store at most every
    `max_age` seconds: a scrape that finds the last reading older starts a new one
    (one at a time, however many scrapes arrive) and shows it, or the last one if the
    database takes longer than `patience`."""

    def __init__(self, engine: Engine, max_age: float = 2.0, patience: float = 5.0) -> None:
        self.engine = engine
        self.max_age = max_age
        self.patience = patience
        """The longest a scrape waits for a reading (a database that is down retries for
        longer); past it, the scrape shows the last one."""
        self._counts: dict[tuple[str, State], int] = {}
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Bring the reading up to date if it is stale; scrapes that arrive meanwhile
        wait for the same query."""
        if time.monotonic() - self._read_at < self.max_age:
            return
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="longops-metrics-counts")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reading), self.patience)

    async def _read(self) -> None:
        try:
            self._counts = await self.engine.store.count_unfinished()
        except Exception:
            # A scrape must not fail with the database: it shows the last reading.
            log.exception("could not count unfinished operations for /metrics")
        self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "longops_operations",
            "Operations in the database now, by kind and state (pending, running): the"
            " same in every process on one database.",
            labels=["kind", "state"],
        )
        counts = self._counts
        kinds = sorted({*self.engine.registry.names(), *(k for k, _ in counts)})
        for kind in kinds:
            for state in (State.PENDING, State.RUNNING):
                family.add_metric([kind, state.value.lower()], counts.get((kind, state), 0))
        yield family


class _Exposition(Collector):
    """What one scrape shows: the process's instruments, then an engine's gauges."""

    def __init__(self, parts: Iterable[Any]) -> None:
        self._parts = list(parts)

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()


def exposition(counts: OperationCounts) -> CollectorRegistry:
    """A registry for one engine's scrapes: `REGISTRY` and that engine's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Exposition([REGISTRY, counts]))
    return registry
