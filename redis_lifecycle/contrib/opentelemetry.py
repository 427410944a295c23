"""OpenTelemetry metrics from lifecycle events (extra ``otel``).

    >>> import redis, redis_lifecycle as rl
    >>> from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
    >>> client = redis.Redis(host="localhost", port=6379)
    >>> metrics = OpenTelemetryMetrics()          # the global MeterProvider
    >>> metrics.attach(rl.instrument(client))     # doctest: +ELLIPSIS
    <OpenTelemetryMetrics ...>

Instruments, named as redis-py 8's own OpenTelemetry metrics and the
database-client semantic conventions name them, each with the attribute
``db.client.connection.pool.name``:

===========================================  ==============  ======================================
name                                         kind            from
===========================================  ==============  ======================================
``db.client.connection.count``               UpDownCounter   pool counts read at collection,
                                             (observable)    ``db.client.connection.state`` =
                                                             ``idle`` / ``used``
``db.client.connection.max``                 UpDownCounter   ``max_connections``, at collection
                                             (observable)
``db.client.connection.wait_time``           Histogram, s    ``connection_acquired.wait_time``
``db.client.connection.create_time``         Histogram, s    ``connected`` / ``reconnected``
                                                             ``connect_time``
``db.client.connection.timeouts``            Counter         ``pool_exhausted``
``db.client.connection.pending_requests``    UpDownCounter   callers waiting for a connection, read
                                             (observable)    at collection (blocking pools)
``db.client.connection.use_time``            Histogram, s    ``connection_released.held_time``
``redis_lifecycle.connection.pending_        Gauge           the most callers waiting at once since
requests.peak``                              (observable)    the previous collection
``redis_lifecycle.connection.leaks``         Counter         ``connection_leak``
``redis.client.connection.closed``           Counter         ``disconnected``, with
                                                             ``redis.client.connection.close.reason``
``redis_lifecycle.health_check.duration``    Histogram, s    ``health_check.latency``, with
                                                             ``redis_lifecycle.health_check.healthy``
``redis.client.maintenance.notifications``   Counter         ``maintenance_notification``, with
                                                             ``redis.client.connection.notification``
                                                             = ``MOVING``, ``MIGRATING``, ...
``redis_lifecycle.cluster.redirects``        Counter         ``cluster_redirect``, with
                                                             ``redis_lifecycle.cluster.redirect.kind``
                                                             = ``moved`` / ``ask``
``redis_lifecycle.cluster.changes``          Counter         ``cluster_topology_changed``, with
                                                             ``redis_lifecycle.cluster.change.reason``
                                                             (``unknown`` if redis-py does not say)
``redis_lifecycle.sentinel.master_changes``  Counter         ``sentinel_master_changed``
``redis_lifecycle.retries``                  Counter         ``retry``, with
                                                             ``redis_lifecycle.retry.operation``
``redis_lifecycle.retries_exhausted``        Counter         ``retries_exhausted``, with
                                                             ``redis_lifecycle.retry.operation``
``redis_lifecycle.callback.slow``            Counter         slow callback runs of the attached
                                             (observable)    pools' ``Instrumentation``
                                                             (``slow_callback=``), with
                                                             ``redis_lifecycle.event.type``
===========================================  ==============  ======================================

and ``redis_lifecycle.maintenance.relaxed_timeouts``, an UpDownCounter: +1
for each ``maintenance_timeout_relaxed``, -1 for each
``maintenance_timeout_restored``, with ``redis_lifecycle.maintenance.scope``
(``connection`` or ``pool``): the relaxations in force.

redis-py has no health-check, redirect, topology, failover, retry or
callback metric (it counts a ``MOVED`` or ``ASK`` among its
``redis.client.errors``), so those are named in this library's own
namespace rather than borrowing redis-py's. (redis-py 8's own error counter
carries a ``redis.client.operation.retry_attempts`` attribute on the errors
it records; it counts errors, not retries, so nothing is counted twice.)

**No double counting.** When redis-py's own observability is enabled
(``redis.observability``, redis-py 7.2+), it records
``db.client.connection.count`` and ``create_time`` (metric group
``CONNECTION_BASIC``) and ``wait_time`` and ``redis.client.connection.closed``
(``CONNECTION_ADVANCED``) itself; this exporter then leaves each of those to
redis-py and keeps only the others. ``db.client.connection.timeouts`` is
split by where redis-py counts it: a redis-py whose ``BlockingConnectionPool``
records its timeouts (8.2+) counts those under ``CONNECTION_ADVANCED``, so
this exporter then counts only the exhaustions redis-py does not: a plain
``ConnectionPool`` running out ("Too many connections"). Whether redis-py's metrics are on is read
when the exporter is built and again at every collection.
``redis.client.maintenance.notifications`` (metric group ``RESILIENCY``) is
counted by redis-py's connection handler, which is given every kind but
``MOVING`` (that one goes to the pool's handler, which counts a hand-off,
``redis.client.connection.handoff``, instead); with that group on, this
exporter counts only the ``MOVING`` notifications under that name, so that
each notification is counted once. The relaxed timeouts are counted in this
library's namespace: redis-py's ``redis.client.connection.relaxed_timeout``
(``CONNECTION_BASIC``) counts only the connection-level ones.

Wait and use times take no event: the pool hooks record them into per-pool
buffers, which are recorded into the two histograms in batches (every 128
checkouts of a pool, on the thread whose checkout fills the buffer) and at
every collection (an observable instrument's callback flushes them before
the SDK aggregates), so every command is counted once. The rest is recorded
by subscriber callbacks: inline on the thread that caused the event, unless
the pool delivers through an :class:`~redis_lifecycle.AsyncCallbackExecutor`.
Pass ``per_command=False`` to leave the checkout path untouched and do
without wait time, use time and timeouts.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from .._accumulate import flush_all
from .._version import __version__
from ..dispatcher import EventDispatcher, Subscription
from ..events import (
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    ConnectionConnectedEvent,
    ConnectionDisconnectedEvent,
    ConnectionHealthCheckEvent,
    ConnectionRetriesExhaustedEvent,
    ConnectionRetryEvent,
    LifecycleEvent,
    MaintenanceNotificationEvent,
    MaintenanceTimeoutRelaxedEvent,
    MaintenanceTimeoutRestoredEvent,
    PoolConnectionLeakEvent,
    PoolExhaustedEvent,
    SentinelMasterChangedEvent,
)
from . import dispatcher_of, pool_stats_for, require, slow_callbacks_for

_metrics = require("opentelemetry.metrics", "otel", "redis_lifecycle.contrib.opentelemetry")

__all__ = ["OpenTelemetryMetrics", "native_metrics"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
CLOSE_REASON = "redis.client.connection.close.reason"
HEALTHY = "redis_lifecycle.health_check.healthy"
REDIRECT_KIND = "redis_lifecycle.cluster.redirect.kind"
TOPOLOGY_REASON = "redis_lifecycle.cluster.change.reason"

COUNT = "db.client.connection.count"
MAX = "db.client.connection.max"
WAIT_TIME = "db.client.connection.wait_time"
CREATE_TIME = "db.client.connection.create_time"
TIMEOUTS = "db.client.connection.timeouts"
CLOSED = "redis.client.connection.closed"
HEALTH = "redis_lifecycle.health_check.duration"
MAINT_NOTIFICATIONS = "redis.client.maintenance.notifications"
MAINT_KIND = "redis.client.connection.notification"
RELAXED_TIMEOUTS = "redis_lifecycle.maintenance.relaxed_timeouts"
MAINT_SCOPE = "redis_lifecycle.maintenance.scope"
PENDING = "db.client.connection.pending_requests"
PENDING_PEAK = "redis_lifecycle.connection.pending_requests.peak"
USE_TIME = "db.client.connection.use_time"
LEAKS = "redis_lifecycle.connection.leaks"
REDIRECTS = "redis_lifecycle.cluster.redirects"
TOPOLOGY_CHANGES = "redis_lifecycle.cluster.changes"
MASTER_CHANGES = "redis_lifecycle.sentinel.master_changes"
RETRIES = "redis_lifecycle.retries"
RETRIES_EXHAUSTED = "redis_lifecycle.retries_exhausted"
SLOW_CALLBACKS = "redis_lifecycle.callback.slow"
OPERATION = "redis_lifecycle.retry.operation"
EVENT_TYPE = "redis_lifecycle.event.type"

#: What redis-py records itself, by its metric group name.
_NATIVE_BY_GROUP = {
    "CONNECTION_BASIC": (COUNT, CREATE_TIME),
    "CONNECTION_ADVANCED": (WAIT_TIME, CLOSED),
    "RESILIENCY": (MAINT_NOTIFICATIONS,),
}


def native_metrics() -> frozenset[str]:
    """The metric names redis-py's own observability records right now
    (empty when it is off, or on redis-py versions without it)."""
    try:
        from redis.observability import providers
    except ImportError:
        return frozenset()
    try:
        instance = providers.get_observability_instance()
        if not instance.is_enabled():
            return frozenset()
        manager = instance.get_provider_manager()
        groups = manager.config.metric_groups if manager is not None else None
        if groups is None:
            return frozenset()
        names: set[str] = set()
        for group_name, metric_names in _NATIVE_BY_GROUP.items():
            group = getattr(type(groups), group_name, None)
            if group is not None and group in groups:
                names.update(metric_names)
                if group_name == "CONNECTION_ADVANCED" and _native_blocking_timeouts():
                    names.add(TIMEOUTS)
        return frozenset(names)
    except Exception:  # a redis-py we do not know: record everything ourselves
        return frozenset()


def _native_blocking_timeouts() -> bool:
    """Whether this redis-py's ``BlockingConnectionPool`` records its own
    checkout timeouts (``record_connection_timeout``, redis-py 8.2+)."""
    import redis.connection

    return hasattr(redis.connection, "record_connection_timeout")


class OpenTelemetryMetrics:
    """Records lifecycle events as OpenTelemetry metrics; see the module docstring.

    ``meter_provider`` defaults to the global one. ``attach(source)``
    subscribes to a dispatcher, handle, lifecycle pool or instrumented
    client; one exporter can serve several. ``detach()`` stops it.
    """

    def __init__(
        self,
        meter_provider: Any = None,
        *,
        per_command: bool = True,
        skip_native: bool = True,
    ) -> None:
        provider = meter_provider if meter_provider is not None else _metrics.get_meter_provider()
        meter = provider.get_meter("redis_lifecycle", __version__)
        self._per_command = per_command
        self._skip_native = skip_native
        self._lock = threading.Lock()
        self._dispatchers: weakref.WeakKeyDictionary[EventDispatcher, list[Subscription]] = (
            weakref.WeakKeyDictionary()
        )
        self.skipped: frozenset[str] = native_metrics() if skip_native else frozenset()
        self._wait_time = meter.create_histogram(
            WAIT_TIME, unit="s", description="Time to obtain a connection from the pool"
        )
        self._create_time = meter.create_histogram(
            CREATE_TIME, unit="s", description="Time to create (connect and handshake) a connection"
        )
        self._timeouts = meter.create_counter(
            TIMEOUTS,
            unit="{timeout}",
            description="Checkouts that failed because the pool had no free connection",
        )
        self._use_time = meter.create_histogram(
            USE_TIME,
            unit="s",
            description="Time between borrowing a connection and returning it to the pool",
        )
        self._leaks = meter.create_counter(
            LEAKS,
            unit="{connection}",
            description="Connections held past the leak_detection threshold",
        )
        meter.create_observable_up_down_counter(
            PENDING,
            callbacks=[self._observe_pending],
            unit="{request}",
            description="Callers waiting for a connection from the pool",
        )
        meter.create_observable_gauge(
            PENDING_PEAK,
            callbacks=[self._observe_pending_peak],
            unit="{request}",
            description="The most callers waiting at once since the previous collection",
        )
        self._closed = meter.create_counter(
            CLOSED, unit="{connection}", description="Closed connections, by close reason"
        )
        self._health = meter.create_histogram(
            HEALTH, unit="s", description="Round trip of connection health checks"
        )
        self._maint = meter.create_counter(
            MAINT_NOTIFICATIONS,
            unit="{notification}",
            description="Tracks server-side maintenance notifications",
        )
        self._relaxed = meter.create_up_down_counter(
            RELAXED_TIMEOUTS,
            unit="{relaxation}",
            description="Relaxed timeouts in force because of a maintenance, by scope",
        )
        self._redirects = meter.create_counter(
            REDIRECTS, unit="{redirect}", description="MOVED and ASK replies from cluster nodes"
        )
        self._topology_changes = meter.create_counter(
            TOPOLOGY_CHANGES, unit="{change}", description="Changes of a cluster's slot map"
        )
        self._master_changes = meter.create_counter(
            MASTER_CHANGES,
            unit="{failover}",
            description="New master addresses found by Sentinel-managed pools",
        )
        self._retries = meter.create_counter(
            RETRIES, unit="{retry}", description="Retries redis-py's Retry made, by operation"
        )
        self._retries_exhausted = meter.create_counter(
            RETRIES_EXHAUSTED,
            unit="{operation}",
            description="Operations redis-py's Retry gave up on, by operation",
        )
        meter.create_observable_counter(
            SLOW_CALLBACKS,
            callbacks=[self._observe_slow],
            unit="{run}",
            description="Callback runs slower than Instrumentation's slow_callback, by event",
        )
        meter.create_observable_up_down_counter(
            COUNT,
            callbacks=[self._observe_count],
            unit="{connection}",
            description="Connections in the pool, by state (idle, used)",
        )
        meter.create_observable_up_down_counter(
            MAX,
            callbacks=[self._observe_max],
            unit="{connection}",
            description="The most connections the pool may hold",
        )

    # -- wiring ------------------------------------------------------------

    def attach(self, source: Any) -> OpenTelemetryMetrics:
        """Start recording the events of ``source``; returns ``self``."""
        dispatcher = dispatcher_of(source)
        with self._lock:
            if dispatcher in self._dispatchers:
                return self
            subscriptions = [
                dispatcher.subscribe(ConnectionConnectedEvent, self._on_connected),
                dispatcher.subscribe(ConnectionDisconnectedEvent, self._on_disconnected),
                dispatcher.subscribe(ConnectionHealthCheckEvent, self._on_health_check),
                dispatcher.subscribe(MaintenanceNotificationEvent, self._on_maintenance),
                dispatcher.subscribe(MaintenanceTimeoutRelaxedEvent, self._on_relaxed),
                dispatcher.subscribe(MaintenanceTimeoutRestoredEvent, self._on_restored),
                dispatcher.subscribe(PoolConnectionLeakEvent, self._on_leak),
                dispatcher.subscribe(ClusterRedirectEvent, self._on_redirect),
                dispatcher.subscribe(ClusterTopologyChangedEvent, self._on_topology_changed),
                dispatcher.subscribe(SentinelMasterChangedEvent, self._on_master_changed),
                dispatcher.subscribe(ConnectionRetryEvent, self._on_retry),
                dispatcher.subscribe(ConnectionRetriesExhaustedEvent, self._on_retries_exhausted),
            ]
            if self._per_command:
                subscriptions.append(dispatcher.subscribe(PoolExhaustedEvent, self._on_exhausted))
            self._dispatchers[dispatcher] = subscriptions
        if self._per_command:
            dispatcher._add_sink(self._take)
        return self

    def detach(self, source: Any = None) -> None:
        """Stop recording ``source`` (every source when ``None``)."""
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

    # -- events ------------------------------------------------------------

    @staticmethod
    def _pool(event: LifecycleEvent) -> dict[str, str]:
        return {POOL_NAME: event.pool_name or ""}

    def _take(self, name: str | None, waits: list[float], helds: list[float]) -> None:
        """The sink of the per-command figures (see ``redis_lifecycle/_accumulate.py``)."""
        attributes = {POOL_NAME: name or ""}
        if waits and WAIT_TIME not in self.skipped:
            record = self._wait_time.record
            for seconds in waits:
                record(seconds, attributes)
        if helds:
            record = self._use_time.record
            for seconds in helds:
                record(seconds, attributes)

    def _on_connected(self, event: ConnectionConnectedEvent) -> None:
        if CREATE_TIME not in self.skipped:
            self._create_time.record(event.connect_time, self._pool(event))

    def _on_disconnected(self, event: ConnectionDisconnectedEvent) -> None:
        if CLOSED not in self.skipped:
            self._closed.add(1, {**self._pool(event), CLOSE_REASON: event.reason.value})

    def _on_exhausted(self, event: PoolExhaustedEvent) -> None:
        if TIMEOUTS in self.skipped and event.timeout is not None:
            return  # a blocking pool's timeout: redis-py counts it itself
        self._timeouts.add(1, self._pool(event))

    def _on_leak(self, event: PoolConnectionLeakEvent) -> None:
        self._leaks.add(1, self._pool(event))

    def _on_health_check(self, event: ConnectionHealthCheckEvent) -> None:
        self._health.record(
            event.latency / 1000.0, {**self._pool(event), HEALTHY: bool(event.healthy)}
        )

    def _on_maintenance(self, event: MaintenanceNotificationEvent) -> None:
        if self._skip_native:
            self.skipped = native_metrics()
        # redis-py counts every kind but MOVING itself (see the module docstring)
        if MAINT_NOTIFICATIONS in self.skipped and event.kind != "moving":
            return
        self._maint.add(1, {**self._pool(event), MAINT_KIND: event.kind.upper()})

    def _on_relaxed(self, event: MaintenanceTimeoutRelaxedEvent) -> None:
        self._relaxed.add(1, {**self._pool(event), MAINT_SCOPE: event.scope})

    def _on_restored(self, event: MaintenanceTimeoutRestoredEvent) -> None:
        self._relaxed.add(-1, {**self._pool(event), MAINT_SCOPE: event.scope})

    def _on_redirect(self, event: ClusterRedirectEvent) -> None:
        self._redirects.add(1, {**self._pool(event), REDIRECT_KIND: event.kind})

    def _on_topology_changed(self, event: ClusterTopologyChangedEvent) -> None:
        reason = event.reason or "unknown"
        self._topology_changes.add(1, {**self._pool(event), TOPOLOGY_REASON: reason})

    def _on_master_changed(self, event: SentinelMasterChangedEvent) -> None:
        self._master_changes.add(1, self._pool(event))

    def _on_retry(self, event: ConnectionRetryEvent) -> None:
        self._retries.add(1, {**self._pool(event), OPERATION: event.operation})

    def _on_retries_exhausted(self, event: ConnectionRetriesExhaustedEvent) -> None:
        self._retries_exhausted.add(1, {**self._pool(event), OPERATION: event.operation})

    # -- observed at collection ---------------------------------------------

    def _observe_slow(self, options: Any) -> Iterable[Any]:
        with self._lock:
            dispatchers = list(self._dispatchers)
        return [
            _metrics.Observation(count, {EVENT_TYPE: name})
            for name, count in sorted(slow_callbacks_for(dispatchers).items())
        ]

    def _stats(self, reader: object = None) -> list[dict[str, Any]]:
        with self._lock:
            dispatchers = list(self._dispatchers)
        return [stat for dispatcher in dispatchers for stat in pool_stats_for(dispatcher, reader)]

    def _observe_pending(self, options: Any) -> Iterable[Any]:
        return [
            _metrics.Observation(stat["waiting"], {POOL_NAME: stat["pool_name"]})
            for stat in self._stats()
            if stat["waiting"] is not None
        ]

    def _observe_pending_peak(self, options: Any) -> Iterable[Any]:
        return [
            _metrics.Observation(stat["waiting_peak"], {POOL_NAME: stat["pool_name"]})
            for stat in self._stats(self)
            if stat["waiting_peak"] is not None
        ]

    def _observe_count(self, options: Any) -> Iterable[Any]:
        # Run at every collection before the SDK aggregates: the pools'
        # buffered wait and use times are recorded first.
        with self._lock:
            dispatchers = list(self._dispatchers)
        flush_all(d for dispatcher in dispatchers for d in dispatcher._deliveries_now())
        if self._skip_native:
            self.skipped = native_metrics()
        if COUNT in self.skipped:
            return []
        observations = []
        for stat in self._stats():
            pool = {POOL_NAME: stat["pool_name"]}
            observations.append(_metrics.Observation(stat["idle"], {**pool, STATE: "idle"}))
            observations.append(_metrics.Observation(stat["active"], {**pool, STATE: "used"}))
        return observations

    def _observe_max(self, options: Any) -> Iterable[Any]:
        return [
            _metrics.Observation(stat["max_connections"], {POOL_NAME: stat["pool_name"]})
            for stat in self._stats()
        ]

    def __repr__(self) -> str:
        sources = len(self._dispatchers)
        return f"<OpenTelemetryMetrics sources={sources} skipped={sorted(self.skipped)}>"
