"""Prometheus metrics: the venue's counters and latency histograms, the process's own figures.

``prometheus_client`` renders ``/metrics`` and supplies the process (memory, CPU, open and
maximum descriptors), GC and platform collectors. What the hot path touches stays plain Python:
a request adds to a histogram kept here (a bisect and three additions), a WebSocket message to
a counter on the hub, and orders and trades are read from the engine's own counters at scrape
time, costing nothing per order. prometheus_client's own labelled Histogram takes a lock and a
label lookup per observation, a few microseconds the gateway would pay on every request.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from engine.sequencer import Engine
    from gateway.hub import Hub

FSYNC_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
                   0.025, 0.05, 0.1, 0.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# A command's wait for its answer (crowdex_command_latency_seconds) and the event loop's lag:
# one scale, so the two read side by side. The loop's timers tick in whole milliseconds
# (libuv), so a lag under 1 ms is noise.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25,
                     0.5, 1.0, 2.5)
HTTP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                  5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # a path no route has: one label, not one per junk path
# The text exposition format prometheus_client writes (generate_latest).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Counts by bucket, a sum and a count; rendered by prometheus_client at scrape time."""

    __slots__ = ("buckets", "count", "counts", "help_text", "name", "total")

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help_text = help_text
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """prometheus_client's bucket form: (upper bound, observations at or below it)."""
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append((_bound(bound), running))
        out.append(("+Inf", self.count))
        return out

    def family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.help_text, buckets=self.cumulative(),
                                     sum_value=self.total)


class Metrics:
    """The venue's figures; ``render(engine, hub)`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.commands = 0
        self.batches = 0
        self.batch_size = Histogram("crowdex_batch_size", "Commands per journal batch.",
                                    BATCH_SIZE_BUCKETS)
        self.fsync = Histogram("crowdex_journal_fsync_seconds",
                               "Journal append+fsync latency per batch.", FSYNC_BUCKETS_S)
        # The fsync system call alone (observed by the journal's thread): the disk's share of
        # the latency above, the rest being the write and waiting for the sequencer.
        self.sync = Histogram("crowdex_journal_sync_seconds",
                              "The journal's fsync call alone, per batch.", FSYNC_BUCKETS_S)
        # Per batch, its oldest command's: from reaching the engine's queue to its reply, the
        # part of a client's latency the server can see (the rest is sockets and the client).
        self.command_latency = Histogram(
            "crowdex_command_latency_seconds", "From a command reaching the engine's queue to "
            "its reply (the oldest command of each batch).", LATENCY_BUCKETS_S)
        # How late the event loop wakes a timer: every command, reply and WebSocket frame
        # waits this long behind whatever holds the loop (gateway.app's watch_loop_lag).
        self.loop_lag = Histogram("crowdex_event_loop_lag_seconds",
                                  "How late the event loop ran a timer, sampled every 10 ms.",
                                  LATENCY_BUCKETS_S)
        self.http: Counter[int] = Counter()  # responses by status (the errors middleware)
        self.http_latency: dict[tuple[str, str, int], Histogram] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._venue = _VenueCollector(self)
        self.registry.register(self._venue)

    def on_batch(self, size: int, fsync_seconds: float) -> None:
        self.commands += size
        self.batches += 1
        self.batch_size.observe(size)
        self.fsync.observe(fsync_seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished request: its latency by method, route template and status."""
        histogram = self.http_latency.get((method, route, status))
        if histogram is None:
            histogram = self.http_latency[(method, route, status)] = Histogram(
                "", "", HTTP_BUCKETS_S)
        histogram.observe(seconds)

    def render(self, engine: Engine | None = None, hub: Hub | None = None) -> bytes:
        """The exposition text, with the engine's and the WebSocket hub's figures when given.

        The caller hands them over (``request.app[keys.ENGINE]``...), so this module does not
        import the app keys, which name its ``Metrics`` type: no circle through them.
        """
        self._venue.engine, self._venue.hub = engine, hub
        try:
            return generate_latest(self.registry)
        finally:
            self._venue.engine = self._venue.hub = None


class _VenueCollector:
    """Builds the venue's metric families from the counters above, the engine and the hub."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.engine: Engine | None = None
        self.hub: Hub | None = None

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield CounterMetricFamily("crowdex_commands", "Commands journaled and applied.",
                                  value=m.commands)
        yield CounterMetricFamily("crowdex_batches", "Journal batches (group commits).",
                                  value=m.batches)
        yield from (h.family() for h in (m.batch_size, m.fsync, m.sync, m.command_latency,
                                         m.loop_lag))
        responses = CounterMetricFamily("crowdex_http_responses", "HTTP responses by status.",
                                        labels=["status"])
        for status, count in sorted(m.http.items()):
            responses.add_metric([str(status)], count)
        yield responses
        yield self._http_latency()
        yield from _venue_families(self.engine, self.hub)

    def _http_latency(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "crowdex_http_request_duration_seconds",
            "HTTP request latency, from the request's arrival at the app to its answer, by "
            "method, route template and status.", labels=["method", "route", "status"])
        for (method, route, status), histogram in sorted(self.metrics.http_latency.items()):
            family.add_metric([method, route, str(status)], histogram.cumulative(),
                              histogram.total)
        return family


def _venue_families(engine: Engine | None, hub: Hub | None) -> Iterator[Metric]:
    """Figures read at scrape time: the engine's state and the WebSocket hub's counters."""
    from engine.kernels.layout import C_LIVE_ORDERS, C_NEXT_OID, C_NEXT_TRADE

    if engine is not None:
        machine = engine.machine
        counters = machine.component("markets").engine.counters
        yield GaugeMetricFamily("crowdex_sequence", "The last applied journal sequence.",
                                value=machine.last_sequence)
        yield GaugeMetricFamily("crowdex_accounts", "Accounts open.",
                                value=len(machine.accounts))
        yield CounterMetricFamily("crowdex_orders", "Orders the matching engine accepted.",
                                  value=int(counters[C_NEXT_OID]) - 1)
        yield CounterMetricFamily("crowdex_trades", "Trades matched by the order books (cn2015 "
                                  "bulletin-board trades are not counted).",
                                  value=int(counters[C_NEXT_TRADE]) - 1)
        yield GaugeMetricFamily("crowdex_orders_resting", "Orders resting on the books.",
                                value=int(counters[C_LIVE_ORDERS]))
        yield from _snapshot_families(engine)
    if hub is not None:
        yield GaugeMetricFamily("crowdex_websocket_connections", "WebSocket connections open.",
                                value=hub.connections)
        yield CounterMetricFamily("crowdex_websocket_connections_opened",
                                  "WebSocket connections accepted.", value=hub.opened)
        yield CounterMetricFamily("crowdex_websocket_messages_received",
                                  "WebSocket messages received from clients.",
                                  value=hub.messages_received)
        yield CounterMetricFamily("crowdex_websocket_messages_sent",
                                  "WebSocket messages sent to clients.", value=hub.messages_sent)


def _snapshot_families(engine: Engine) -> Iterator[Metric]:
    """How far recovery would replay: the newest snapshot, who wrote the periodic ones, and
    how far the snapshot follower said it got."""
    yield GaugeMetricFamily("crowdex_snapshot_sequence",
                            "The sequence of the newest snapshot written (0: none yet).",
                            value=max(engine.snapshotted, 0))
    written = CounterMetricFamily(
        "crowdex_snapshots_written", "Periodic snapshots written since the server started, by "
        "writer: the follower process or a child forked from the server (its fallback).",
        labels=["writer"])
    for writer, count in sorted(engine.snapshots_written.items()):
        written.add_metric([writer], count)
    yield written
    follower = engine.follower
    if follower is not None and follower.applied >= 0:
        yield GaugeMetricFamily(
            "crowdex_snapshot_follower_behind", "Commands the snapshot follower was behind "
            "the last applied sequence, as it last said how far it got (every 0.5 s at most "
            "while it applies).", value=max(engine.machine.last_sequence - follower.applied, 0))


def _bound(value: float) -> str:
    """A bucket bound as Prometheus writes it (``0.0005``, ``1.0``)."""
    return repr(float(value))
