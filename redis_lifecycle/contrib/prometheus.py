"""A ``prometheus_client`` collector for lifecycle events (extra ``prometheus``).

    >>> import redis, redis_lifecycle as rl
    >>> from prometheus_client import REGISTRY
    >>> from redis_lifecycle.contrib.prometheus import LifecycleCollector
    >>> client = redis.Redis(host="localhost", port=6379)
    >>> collector = LifecycleCollector(rl.instrument(client))
    >>> REGISTRY.register(collector)

The same figures as :mod:`redis_lifecycle.contrib.opentelemetry`, with the
semantic-convention names in Prometheus form (dots become underscores, units
and ``_total`` are suffixed), labelled ``pool_name``:

* ``db_client_connection_count{pool_name, state="idle"|"used"}``: gauge, read
  from the pools at scrape time;
* ``db_client_connection_max{pool_name}``: gauge, ``max_connections``;
* ``db_client_connection_wait_time_seconds{pool_name}``: histogram of
  checkout waits (``connection_acquired``);
* ``db_client_connection_create_time_seconds{pool_name}``: histogram of
  connect times (``connected`` and ``reconnected``);
* ``db_client_connection_timeouts_total{pool_name}``: ``pool_exhausted``;
* ``db_client_connection_pending_requests{pool_name}``: gauge, callers
  waiting for a connection at scrape time (blocking pools; 0 for pools that
  never wait);
* ``redis_lifecycle_connection_pending_requests_peak{pool_name}``: gauge,
  the most callers waiting at once since the previous scrape;
* ``db_client_connection_use_time_seconds{pool_name}``: histogram of how
  long connections were held (``connection_released``);
* ``redis_lifecycle_connection_leaks_total{pool_name}``: connections
  reported held past ``leak_detection`` (``connection_leak``);
* ``redis_client_connection_closed_total{pool_name, reason}``: ``disconnected``
  by :class:`~redis_lifecycle.CloseReason`;
* ``redis_lifecycle_health_check_duration_seconds{pool_name, healthy}``:
  histogram of health-check round trips;
* ``redis_lifecycle_maintenance_notifications_total{pool_name, kind}``: the
  server's maintenance notifications (``maintenance_notification``) by kind
  (``moving``, ``migrating``, ...), one per notification per connection;
* ``redis_lifecycle_maintenance_timeouts_relaxed_total{pool_name, scope}`` and
  ``redis_lifecycle_maintenance_timeouts_restored_total{pool_name, scope}``:
  relaxed timeouts applied and cleared (``scope`` ``connection`` or ``pool``).
* ``redis_lifecycle_cluster_redirects_total{pool_name, kind}``: ``MOVED``
  (``kind="moved"``) and ``ASK`` (``"ask"``) replies, under the node that
  sent them (``cluster_redirect``);
* ``redis_lifecycle_cluster_changes_total{pool_name, reason}``:
  slot-map changes (``cluster_topology_changed``; ``reason="unknown"`` when
  redis-py does not say);
* ``redis_lifecycle_sentinel_master_changes_total{pool_name}``: new masters
  found by Sentinel-managed pools (``sentinel_master_changed``);
* ``redis_lifecycle_events_total{pool_name, type}``: every event received;
* ``redis_lifecycle_retries_total{pool_name, operation}``: ``retry``, each
  retry redis-py's ``Retry`` made (``operation``: command, pipeline,
  connect, health_check, other);
* ``redis_lifecycle_retries_exhausted_total{pool_name, operation}``:
  ``retries_exhausted``, each operation ``Retry`` gave up on;
* ``redis_lifecycle_slow_callbacks_total{type}``: callback runs slower than
  the ``slow_callback`` of the :class:`~redis_lifecycle.Instrumentation`
  the attached pools use, by event name, read at scrape time.

Checkout waits and hold times (and the ``connection_acquired`` /
``connection_released`` counts of ``redis_lifecycle_events_total``) are not
events here: the pool hooks record them, without building an event, into
per-pool buffers that are counted into this collector's buckets in batches
and at every scrape, so each command is counted once and exactly, and no
command waits for a scrape. The rare events are counted by a subscriber
callback, inline on the thread that caused the event unless the pool uses an
:class:`~redis_lifecycle.AsyncCallbackExecutor`; each one takes a short lock.
``per_command=False`` leaves the checkout path untouched (no wait or use
time histogram, no timeout count, no per-command event counts).
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .._accumulate import flush_all
from ..dispatcher import EventDispatcher, Subscription
from ..events import (
    EVENT_CLASSES,
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    ConnectionConnectedEvent,
    ConnectionCreatedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    ConnectionRetriesExhaustedEvent,
    ConnectionRetryEvent,
    EventType,
    LifecycleEvent,
    MaintenanceNotificationEvent,
    MaintenanceTimeoutRelaxedEvent,
    MaintenanceTimeoutRestoredEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionLeakEvent,
    PoolConnectionReleasedEvent,
    PoolCreatedEvent,
    PoolExhaustedEvent,
    PoolResetEvent,
    SentinelMasterChangedEvent,
)
from . import dispatcher_of, pool_stats_for, require, slow_callbacks_for

_core = require("prometheus_client.core", "prometheus", "redis_lifecycle.contrib.prometheus")

__all__ = ["DEFAULT_BUCKETS", "LifecycleCollector"]

#: Histogram buckets in seconds, from 100 µs (a loopback round trip) to 10 s.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_RARE_EVENTS: tuple[type[LifecycleEvent], ...] = (
    ConnectionCreatedEvent,
    ConnectionConnectedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    PoolCreatedEvent,
    PoolConnectionCreatedEvent,
    PoolResetEvent,
    MaintenanceNotificationEvent,
    MaintenanceTimeoutRelaxedEvent,
    MaintenanceTimeoutRestoredEvent,
    PoolConnectionLeakEvent,
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    SentinelMasterChangedEvent,
    ConnectionRetryEvent,
    ConnectionRetriesExhaustedEvent,
)


#: Every event class but the two per-command ones, whose figures the hooks
#: record without events (see the module docstring).
_EVENTS_BUT_PER_COMMAND: tuple[type[LifecycleEvent], ...] = tuple(
    cls
    for cls in EVENT_CLASSES
    if cls not in (PoolConnectionAcquiredEvent, PoolConnectionReleasedEvent)
)

_ACQUIRED = EventType.CONNECTION_ACQUIRED.value
_RELEASED = EventType.CONNECTION_RELEASED.value


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.sum = 0.0


class LifecycleCollector:
    """Collects lifecycle figures for ``prometheus_client``; see the module docstring.

    Register it once: ``registry.register(collector)``. ``attach(source)``
    adds another dispatcher, handle, lifecycle pool or instrumented client.
    """

    def __init__(
        self,
        source: Any = None,
        *,
        per_command: bool = True,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds:
            msg = f"buckets must hold at least one upper bound in seconds, got {buckets!r}"
            raise ValueError(msg)
        self._bounds = bounds
        self._per_command = per_command
        self._lock = threading.Lock()
        self._dispatchers: weakref.WeakKeyDictionary[EventDispatcher, list[Subscription]] = (
            weakref.WeakKeyDictionary()
        )
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self._counters: dict[tuple[str, tuple[str, ...]], int] = {}
        #: Batches of per-command figures not yet counted (see _take).
        self._batches: deque[tuple[str, list[float], list[float]]] = deque()
        if source is not None:
            self.attach(source)

    # -- wiring ------------------------------------------------------------

    def attach(self, source: Any) -> LifecycleCollector:
        """Start counting the events of ``source``; returns ``self``."""
        dispatcher = dispatcher_of(source)
        with self._lock:
            if dispatcher in self._dispatchers:
                return self
            if self._per_command:  # each class once: exact
                subscriptions = [
                    dispatcher.subscribe(cls, self._on_event, exact=True)
                    for cls in _EVENTS_BUT_PER_COMMAND
                ]
            else:
                subscriptions = [dispatcher.subscribe(cls, self._on_event) for cls in _RARE_EVENTS]
            self._dispatchers[dispatcher] = subscriptions
        if self._per_command:
            dispatcher._add_sink(self._take)
        return self

    def detach(self, source: Any = None) -> None:
        """Stop counting ``source`` (every source when ``None``); figures stay."""
        with self._lock:
            targets = list(self._dispatchers) if source is None else [dispatcher_of(source)]
            attached = []
            for dispatcher in targets:
                if dispatcher in self._dispatchers:
                    attached.append(dispatcher)
                for subscription in self._dispatchers.pop(dispatcher, []):
                    subscription.unsubscribe()
        for dispatcher in attached:
            dispatcher._remove_sink(self._take)  # after what it is owed

    # -- recording -----------------------------------------------------------

    def _take(self, name: str | None, waits: list[float], helds: list[float]) -> None:
        """The sink of the per-command figures (see ``redis_lifecycle/_accumulate.py``).

        Never waits: the batch is queued, and counted now if no other thread
        holds the lock (a scrape, a rare event), else by the next holder."""
        self._batches.append((name or "", waits, helds))
        if self._lock.acquire(blocking=False):
            try:
                self._count_batches()
            finally:
                self._lock.release()

    def _count_batches(self) -> None:
        """Count the queued batches (under ``_lock``)."""
        batches = self._batches
        bounds = self._bounds
        size = len(bounds) + 1
        find = bisect.bisect_left
        while batches:
            pool, waits, helds = batches.popleft()
            for name, event_type, values in (
                ("wait_time", _ACQUIRED, waits),
                ("use_time", _RELEASED, helds),
            ):
                if not values:
                    continue
                key = (name, (pool,))
                histogram = self._histograms.get(key)
                if histogram is None:
                    histogram = self._histograms[key] = _Histogram(size)
                counts = histogram.counts
                for seconds in values:
                    counts[find(bounds, seconds)] += 1
                histogram.sum += sum(values)
                events = ("events", (pool, event_type))
                self._counters[events] = self._counters.get(events, 0) + len(values)

    def _observe(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        key = (name, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = _Histogram(len(self._bounds) + 1)
        histogram.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        histogram.sum += seconds

    def _count(self, name: str, labels: tuple[str, ...]) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0) + 1

    def _on_event(self, event: LifecycleEvent) -> None:
        pool = event.pool_name or ""
        with self._lock:
            self._count("events", (pool, event.type.value))
            if isinstance(event, PoolConnectionLeakEvent):
                self._count("leaks", (pool,))
            elif isinstance(event, ConnectionConnectedEvent):
                self._observe("create_time", (pool,), event.connect_time)
            elif isinstance(event, ConnectionDisconnectedEvent):
                self._count("closed", (pool, event.reason.value))
            elif isinstance(event, PoolExhaustedEvent):
                self._count("timeouts", (pool,))
            elif isinstance(event, ConnectionHealthCheckEvent):
                healthy = "true" if event.healthy else "false"
                self._observe("health", (pool, healthy), event.latency / 1000.0)
            elif isinstance(event, MaintenanceNotificationEvent):
                self._count("maintenance", (pool, event.kind))
            elif isinstance(event, MaintenanceTimeoutRelaxedEvent):
                self._count("maintenance_relaxed", (pool, event.scope))
            elif isinstance(event, MaintenanceTimeoutRestoredEvent):
                self._count("maintenance_restored", (pool, event.scope))
            elif isinstance(event, ClusterRedirectEvent):
                self._count("redirects", (pool, event.kind))
            elif isinstance(event, ClusterTopologyChangedEvent):
                self._count("topology_changes", (pool, event.reason or "unknown"))
            elif isinstance(event, SentinelMasterChangedEvent):
                self._count("master_changes", (pool,))
            elif isinstance(event, ConnectionRetryEvent):
                self._count("retries", (pool, event.operation))
            elif isinstance(event, ConnectionRetriesExhaustedEvent):
                self._count("retries_exhausted", (pool, event.operation))

    # -- prometheus_client protocol -------------------------------------------

    def _families(self) -> dict[str, Any]:
        return {
            "count": _core.GaugeMetricFamily(
                "db_client_connection_count",
                "Connections in the pool, by state (idle, used)",
                labels=["pool_name", "state"],
            ),
            "max": _core.GaugeMetricFamily(
                "db_client_connection_max",
                "The most connections the pool may hold",
                labels=["pool_name"],
            ),
            "wait_time": _core.HistogramMetricFamily(
                "db_client_connection_wait_time_seconds",
                "Time to obtain a connection from the pool",
                labels=["pool_name"],
            ),
            "create_time": _core.HistogramMetricFamily(
                "db_client_connection_create_time_seconds",
                "Time to create (connect and handshake) a connection",
                labels=["pool_name"],
            ),
            "timeouts": _core.CounterMetricFamily(
                "db_client_connection_timeouts",
                "Checkouts that failed because the pool had no free connection",
                labels=["pool_name"],
            ),
            "pending": _core.GaugeMetricFamily(
                "db_client_connection_pending_requests",
                "Callers waiting for a connection from the pool",
                labels=["pool_name"],
            ),
            "pending_peak": _core.GaugeMetricFamily(
                "redis_lifecycle_connection_pending_requests_peak",
                "The most callers waiting for a connection at once since the previous scrape",
                labels=["pool_name"],
            ),
            "use_time": _core.HistogramMetricFamily(
                "db_client_connection_use_time_seconds",
                "Time between borrowing a connection and returning it to the pool",
                labels=["pool_name"],
            ),
            "leaks": _core.CounterMetricFamily(
                "redis_lifecycle_connection_leaks",
                "Connections held past the leak_detection threshold",
                labels=["pool_name"],
            ),
            "closed": _core.CounterMetricFamily(
                "redis_client_connection_closed",
                "Closed connections, by close reason",
                labels=["pool_name", "reason"],
            ),
            "health": _core.HistogramMetricFamily(
                "redis_lifecycle_health_check_duration_seconds",
                "Round trip of connection health checks",
                labels=["pool_name", "healthy"],
            ),
            "redirects": _core.CounterMetricFamily(
                "redis_lifecycle_cluster_redirects",
                "MOVED and ASK replies from cluster nodes, by kind",
                labels=["pool_name", "kind"],
            ),
            "topology_changes": _core.CounterMetricFamily(
                "redis_lifecycle_cluster_changes",
                "Changes of a cluster's slot map, by what made redis-py refresh it",
                labels=["pool_name", "reason"],
            ),
            "master_changes": _core.CounterMetricFamily(
                "redis_lifecycle_sentinel_master_changes",
                "New master addresses found by Sentinel-managed pools",
                labels=["pool_name"],
            ),
            "events": _core.CounterMetricFamily(
                "redis_lifecycle_events",
                "Lifecycle events received, by type",
                labels=["pool_name", "type"],
            ),
            "maintenance": _core.CounterMetricFamily(
                "redis_lifecycle_maintenance_notifications",
                "Maintenance notifications received from the server, by kind",
                labels=["pool_name", "kind"],
            ),
            "maintenance_relaxed": _core.CounterMetricFamily(
                "redis_lifecycle_maintenance_timeouts_relaxed",
                "Relaxed timeouts applied because of a maintenance, by scope",
                labels=["pool_name", "scope"],
            ),
            "maintenance_restored": _core.CounterMetricFamily(
                "redis_lifecycle_maintenance_timeouts_restored",
                "Relaxed timeouts cleared after a maintenance, by scope",
                labels=["pool_name", "scope"],
            ),
            "retries": _core.CounterMetricFamily(
                "redis_lifecycle_retries",
                "Retries redis-py's Retry made, by operation",
                labels=["pool_name", "operation"],
            ),
            "retries_exhausted": _core.CounterMetricFamily(
                "redis_lifecycle_retries_exhausted",
                "Operations redis-py's Retry gave up on, by operation",
                labels=["pool_name", "operation"],
            ),
            "slow_callbacks": _core.CounterMetricFamily(
                "redis_lifecycle_slow_callbacks",
                "Callback runs slower than Instrumentation's slow_callback, by event name",
                labels=["type"],
            ),
        }

    def describe(self) -> Iterator[Any]:
        """The metric families, without samples (for registry checks)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Any]:
        """The metric families with their current samples."""
        families = self._families()
        with self._lock:
            dispatchers = list(self._dispatchers)
        # Every command so far counted: the pools' buffers into _batches.
        flush_all(d for dispatcher in dispatchers for d in dispatcher._deliveries_now())
        with self._lock:
            self._count_batches()
            histograms = [
                (name, labels, list(h.counts), h.sum)
                for (name, labels), h in self._histograms.items()
            ]
            counters = list(self._counters.items())
        for dispatcher in dispatchers:
            for stat in pool_stats_for(dispatcher, self):
                name = stat["pool_name"]
                families["count"].add_metric([name, "idle"], stat["idle"])
                families["count"].add_metric([name, "used"], stat["active"])
                families["max"].add_metric([name], stat["max_connections"])
                if stat["waiting"] is not None:  # counted (see pool_stats())
                    families["pending"].add_metric([name], stat["waiting"])
                    families["pending_peak"].add_metric([name], stat["waiting_peak"])
        for name, labels, counts, total in histograms:
            cumulative = 0
            buckets = []
            for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            families[name].add_metric(list(labels), buckets, total)
        for (name, labels), value in counters:
            families[name].add_metric(list(labels), value)
        for event_name, slow in sorted(slow_callbacks_for(dispatchers).items()):
            families["slow_callbacks"].add_metric([event_name], slow)
        yield from families.values()

    def __repr__(self) -> str:
        return f"<LifecycleCollector sources={len(self._dispatchers)}>"
