"""Callback timings and pool metrics, kept in memory.

    >>> import redis, redis_lifecycle as rl
    >>> metrics = rl.Instrumentation()
    >>> pool = rl.LifecycleConnectionPool(host="localhost", instrumentation=metrics,
    ...                                   pool_name="cache")
    >>> client = redis.Redis(connection_pool=pool)
    >>> metrics.callback_metrics("connection_acquired")["count"]
    0

:class:`Instrumentation` is given as ``instrumentation=`` to
:func:`~redis_lifecycle.instrument`, the lifecycle pools or
:func:`~redis_lifecycle.pooled`. It records, per event name, how long every
callback took, whether it ran inline (on the thread of the Redis command) or on
an :class:`~redis_lifecycle.AsyncCallbackExecutor`'s worker thread; and, per
pool, what the events say about the pool (checkouts, wait and held times,
exhaustions, connects, disconnects by reason, errors, health checks). Checkout
waits and hold times are recorded by the pool hooks themselves, without
building an event (``redis_lifecycle/_accumulate.py``), and counted here in
batches and whenever they are read; the other pool metrics are recorded on
the thread that emits their event, before any callback runs. One instance
may serve several pools: they are told apart by ``pool_name`` (pools given
the same name add up).

Durations are in seconds, except health-check latencies, which are in
milliseconds like :attr:`~redis_lifecycle.ConnectionHealthCheckEvent.latency`.
Percentiles come from a log-bucketed histogram: bounded memory, and within
``1/128`` (about 0.8 %) of the exact nearest-rank value (see
:mod:`redis_lifecycle._histogram`). ``count``, ``errors``, ``total_time``,
``min`` and ``max`` are exact.

Thread-safe without a lock per command: all threads append to the same
histogram buffers (one step each) and one of them at a time counts a full
buffer into the buckets (see :mod:`redis_lifecycle._histogram`); the counts
of the rare events and of failed callbacks are updated under a lock. So
counts are exact once the writers are quiet; a read that races with writers
may miss what is being recorded at that moment (up to one buffer), and never
counts a value twice. Memory follows the pools and event names, not the
threads or the number of events.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any, TypedDict

from ._accumulate import flush_all
from ._histogram import FLUSH_AT, DurationSummary, LogHistogram
from .events import (
    EVENT_CLASSES,
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    ConnectionConnectedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    ConnectionReconnectedEvent,
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
    PoolExhaustedEvent,
    PoolResetEvent,
    SentinelMasterChangedEvent,
)

if TYPE_CHECKING:
    from ._delivery import Delivery

__all__ = [
    "CallbackMetrics",
    "DurationSummary",
    "HealthCheckMetrics",
    "Instrumentation",
    "PoolMetrics",
]


class CallbackMetrics(TypedDict):
    """Timings of the callbacks for one event name (seconds)."""

    count: int
    total_time: float
    avg_time: float
    errors: int
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    #: Callback runs that took longer than ``Instrumentation(slow_callback=...)``.
    slow: int


class HealthCheckMetrics(TypedDict):
    """Health checks of one pool; latencies in **milliseconds**."""

    passed: int
    failed: int
    latency_ms: DurationSummary


class PoolMetrics(TypedDict):
    """What one pool's events add up to (durations in seconds).

    ``active`` and ``idle`` are the pool's counts when read (pools sharing
    the name add up), or the last ones read once the pool is gone (``None``
    before the first checkout). ``redirects`` counts a cluster node's ``MOVED`` /
    ``ASK`` replies by kind (under the node that sent them);
    ``topology_changes`` the slot-map changes of a cluster (under the
    cluster's ``pool_name``, ``"cluster"`` by default); ``master_changes``
    the new masters a Sentinel-managed pool found.
    """

    acquisitions: int
    releases: int
    wait_time: DurationSummary
    held_time: DurationSummary
    exhaustions: int
    connections_created: int
    connects: int
    reconnects: int
    disconnects: dict[str, int]
    errors: int
    errors_by_phase: dict[str, int]
    health_checks: HealthCheckMetrics
    marked_for_reconnect: int
    resets: int
    #: Connections reported held past ``leak_detection`` (``connection_leak``).
    leaks: int
    active: int | None
    idle: int | None
    #: Maintenance notifications received on the pool's connections, by
    #: kind (``moving``, ``migrating``, ...).
    maintenance_notifications: dict[str, int]
    #: Relaxed timeouts applied / restored (connection- and pool-wide).
    maintenance_timeouts_relaxed: int
    maintenance_timeouts_restored: int
    redirects: dict[str, int]
    topology_changes: int
    master_changes: int
    #: Retries redis-py's ``Retry`` made on the pool's connections (``retry``).
    retries: int
    #: Operations it gave up on (``retries_exhausted``).
    retries_exhausted: int


class _CallbackRecord:
    """The callbacks of one event name: every thread writes here."""

    __slots__ = ("errors", "histogram", "slow")

    def __init__(self) -> None:
        self.histogram = LogHistogram()
        #: Written under Instrumentation._lock (failures are rare).
        self.errors = 0
        #: Runs slower than ``slow_callback``; written under the lock too.
        self.slow = 0


class _PoolRecord:
    """One pool name's metrics: every thread writes here.

    ``wait``, ``held`` and ``last`` are written on every command without a
    lock (appends to a histogram's buffer, one reference store); the other
    fields only under ``Instrumentation._lock``.
    """

    __slots__ = (
        "connections_created",
        "connects",
        "disconnects",
        "errors",
        "exhaustions",
        "health_failed",
        "health_latency",
        "health_passed",
        "held",
        "last",
        "leaks",
        "maint_relaxed",
        "maint_restored",
        "maintenance",
        "marked",
        "master_changes",
        "reconnects",
        "redirects",
        "resets",
        "retries",
        "retries_exhausted",
        "topology_changes",
        "wait",
    )

    def __init__(self) -> None:
        self.wait = LogHistogram()
        self.held = LogHistogram()
        self.exhaustions = 0
        self.connections_created = 0
        self.connects = 0
        self.reconnects = 0
        self.disconnects: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.health_passed = 0
        self.health_failed = 0
        self.health_latency = LogHistogram()
        self.marked = 0
        self.resets = 0
        self.leaks = 0
        self.retries = 0
        self.retries_exhausted = 0
        #: ``(active, idle)`` as last read (see PoolMetrics).
        self.last: tuple[int, int] | None = None
        self.maintenance: dict[str, int] = {}
        self.maint_relaxed = 0
        self.maint_restored = 0
        self.redirects: dict[str, int] = {}
        self.topology_changes = 0
        self.master_changes = 0

    def histograms(self) -> tuple[LogHistogram, ...]:
        """Every histogram of the record (for the fork handler)."""
        return self.wait, self.held, self.health_latency


def _observe_rare(pool: _PoolRecord, event: Any) -> None:
    """Pool metrics of the events that are not per-command."""
    cls = type(event)
    if cls is ConnectionConnectedEvent:
        pool.connects += 1
    elif cls is ConnectionReconnectedEvent:
        pool.reconnects += 1
    elif cls is ConnectionDisconnectedEvent:
        reason = event._reason.value
        pool.disconnects[reason] = pool.disconnects.get(reason, 0) + 1
    elif cls is ConnectionErrorEvent:
        phase = event._phase
        pool.errors[phase] = pool.errors.get(phase, 0) + 1
    elif cls is ConnectionHealthCheckEvent:
        if event._healthy:
            pool.health_passed += 1
        else:
            pool.health_failed += 1
        pool.health_latency.add(event._latency)
    elif cls is PoolExhaustedEvent:
        pool.exhaustions += 1
    elif cls is PoolConnectionCreatedEvent:
        pool.connections_created += 1
    elif cls is ConnectionMarkedForReconnectEvent:
        pool.marked += 1
    elif cls is PoolResetEvent:
        pool.resets += 1
    elif cls is MaintenanceNotificationEvent:
        kind = event._kind
        pool.maintenance[kind] = pool.maintenance.get(kind, 0) + 1
    elif cls is MaintenanceTimeoutRelaxedEvent:
        pool.maint_relaxed += 1
    elif cls is MaintenanceTimeoutRestoredEvent:
        pool.maint_restored += 1
    elif cls is PoolConnectionLeakEvent:
        pool.leaks += 1
    elif cls is ClusterRedirectEvent:
        kind = event._kind
        pool.redirects[kind] = pool.redirects.get(kind, 0) + 1
    elif cls is ClusterTopologyChangedEvent:
        pool.topology_changes += 1
    elif cls is SentinelMasterChangedEvent:
        pool.master_changes += 1
    elif cls is ConnectionRetryEvent:
        pool.retries += 1
    elif cls is ConnectionRetriesExhaustedEvent:
        pool.retries_exhausted += 1


def _summary(histogram: LogHistogram) -> DurationSummary:
    """``histogram.summary()``, read from a copy: other threads may be writing it."""
    return LogHistogram.merged((histogram,)).summary()


def _callback_metrics(stats: _CallbackRecord) -> CallbackMetrics:
    summary = _summary(stats.histogram)
    return {
        "count": summary["count"],
        "total_time": summary["total"],
        "avg_time": summary["avg"],
        "errors": stats.errors,
        "min": summary["min"],
        "max": summary["max"],
        "p50": summary["p50"],
        "p95": summary["p95"],
        "p99": summary["p99"],
        "slow": stats.slow,
    }


def _pool_metrics(pool: _PoolRecord) -> PoolMetrics:
    wait = _summary(pool.wait)
    held = _summary(pool.held)
    last = pool.last
    return {
        "acquisitions": wait["count"],
        "releases": held["count"],
        "wait_time": wait,
        "held_time": held,
        "exhaustions": pool.exhaustions,
        "connections_created": pool.connections_created,
        "connects": pool.connects,
        "reconnects": pool.reconnects,
        "disconnects": dict(sorted(pool.disconnects.copy().items())),
        "errors": sum(pool.errors.copy().values()),
        "errors_by_phase": dict(sorted(pool.errors.copy().items())),
        "health_checks": {
            "passed": pool.health_passed,
            "failed": pool.health_failed,
            "latency_ms": _summary(pool.health_latency),
        },
        "marked_for_reconnect": pool.marked,
        "resets": pool.resets,
        "leaks": pool.leaks,
        "active": None if last is None else last[0],
        "idle": None if last is None else last[1],
        "maintenance_notifications": dict(sorted(pool.maintenance.copy().items())),
        "maintenance_timeouts_relaxed": pool.maint_relaxed,
        "maintenance_timeouts_restored": pool.maint_restored,
        "redirects": dict(sorted(pool.redirects.copy().items())),
        "topology_changes": pool.topology_changes,
        "master_changes": pool.master_changes,
        "retries": pool.retries,
        "retries_exhausted": pool.retries_exhausted,
    }


def _event_type(name: EventType | str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        valid = ", ".join(repr(t.value) for t in EventType)
        msg = f"unknown event name {name!r}; expected one of: {valid}"
        raise ValueError(msg) from None


logger = logging.getLogger("redis_lifecycle")

#: Seconds between two log lines about the same slow callback and event name.
SLOW_LOG_INTERVAL = 60.0


def callback_name(callback: Any) -> str:
    """``module.qualname`` of a callback (a legacy callback's own name),
    for log lines: never its arguments or an event's fields."""
    inner = getattr(callback, "callback", None)  # a legacy callback's adapter
    if inner is not None and callable(inner):
        callback = inner
    target = getattr(callback, "__func__", callback)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class Instrumentation:
    """In-memory callback and pool metrics; see the module docstring.

    ``slow_callback`` (seconds, off by default): a callback run that takes
    longer is counted in :meth:`callback_metrics` (``slow``) and logged
    (logger ``redis_lifecycle``, a warning naming the callback, the event
    name and the time it took; at most once per callback and event name
    per minute, with how many slow runs the minute held). Callbacks are
    timed where they run: inline, or on an
    :class:`~redis_lifecycle.AsyncCallbackExecutor`'s worker; an ``async
    def`` callback until it returns its coroutine.
    """

    #: Event classes the pool metrics need built even when nobody subscribes:
    #: the rare ones (the per-command figures come from the hooks, see _take).
    _wanted: frozenset[type[LifecycleEvent]] = frozenset(EVENT_CLASSES) - {
        PoolConnectionAcquiredEvent,
        PoolConnectionReleasedEvent,
    }

    def __init__(self, *, slow_callback: float | None = None) -> None:
        if slow_callback is not None and (
            isinstance(slow_callback, bool)
            or not isinstance(slow_callback, (int, float))
            or not slow_callback > 0
            or math.isinf(slow_callback)
        ):
            msg = (
                f"slow_callback must be a positive number of seconds or None, got {slow_callback!r}"
            )
            raise ValueError(msg)
        #: The threshold, or ``None`` (off).
        self.slow_callback: float | None = None if slow_callback is None else float(slow_callback)
        #: What a callback's time is compared with (infinity when off).
        self._slow_after = math.inf if slow_callback is None else float(slow_callback)
        #: (callback name, event name) -> [monotonic of the last log line,
        #: slow runs not logged since].
        self._slow_logged: dict[tuple[str, str], list[float]] = {}
        # Reentrant: a garbage collection under it can run redis-py's
        # __del__ methods, whose events come back here on the same thread.
        self._lock = threading.RLock()  # rare events, new pool names, readers
        #: Per event name; the records live as long as this object (reset()
        #: clears them in place): the deliveries' emitters hold them.
        self._callbacks: dict[EventType, _CallbackRecord] = {
            event_type: _CallbackRecord() for event_type in EventType
        }
        #: Per pool name; reset() clears the dict in place.
        self._pools: dict[str | None, _PoolRecord] = {}
        self._deliveries: weakref.WeakSet[Delivery] = weakref.WeakSet()
        _INSTANCES.add(self)

    # --- called by the delivery (hot path) --------------------------------

    def _attach(self, delivery: Delivery) -> None:
        """Called once by each :class:`~redis_lifecycle._delivery.Delivery` using it."""
        self._deliveries.add(delivery)

    def _pool(self, name: str | None) -> _PoolRecord:
        """The record of pool ``name``, made on first use."""
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = self._pools[name] = _PoolRecord()
        return pool

    def _take(self, name: str | None, waits: list[float], helds: list[float]) -> None:
        """The sink of the per-command figures (see ``_accumulate.py``): a batch
        of checkout waits and hold times of pool ``name``. Acquisitions and
        releases are the counts of the wait and held histograms."""
        pool = self._pools.get(name) or self._pool(name)
        if waits:
            pending = pool.wait.pending
            pending.extend(waits)  # one step: other pools of this name may add too
            if len(pending) >= FLUSH_AT:
                pool.wait.flush()
        if helds:
            pending = pool.held.pending
            pending.extend(helds)
            if len(pending) >= FLUSH_AT:
                pool.held.flush()

    def _observe(self, event: LifecycleEvent) -> None:
        """Update the pool metrics with a rare ``event``, on the emitting
        thread. A per-command event given here (by a test, say) is recorded
        as the hooks record its figures, through :meth:`_take`."""
        ev: Any = event
        name = ev._origin.pool_name
        cls = type(ev)
        if cls is PoolConnectionAcquiredEvent:
            self._take(name, [ev._wait_time], [])
        elif cls is PoolConnectionReleasedEvent:
            self._take(name, [], [ev._held_time])
        else:
            pool = self._pools.get(name) or self._pool(name)
            with self._lock:
                _observe_rare(pool, ev)
            return
        self._pools[name].last = (ev._active_connections, ev._idle_connections)

    def _callback_failed(self, stats: _CallbackRecord) -> None:
        """Count one callback that raised."""
        with self._lock:
            stats.errors += 1

    def _record_callback(self, event_type: EventType, seconds: float, failed: bool) -> None:
        """Record one callback run of ``seconds``; ``failed`` if it raised."""
        stats = self._callbacks[event_type]
        stats.histogram.add(seconds)
        if failed:
            self._callback_failed(stats)

    def _callback_slow(
        self, stats: _CallbackRecord, event: LifecycleEvent, callback: Any, seconds: float
    ) -> None:
        """Count one callback run slower than ``slow_callback``, and log it
        unless this callback and event name were logged in the last minute."""
        name = callback_name(callback)
        event_name = event.type.value
        key = (name, event_name)
        now = monotonic()
        with self._lock:
            stats.slow += 1
            entry = self._slow_logged.get(key)
            if entry is not None and now - entry[0] < SLOW_LOG_INTERVAL:
                entry[1] += 1
                return
            unlogged = 0 if entry is None else int(entry[1])
            self._slow_logged[key] = [now, 0]
        more = f" ({unlogged} more slow runs in the last minute)" if unlogged else ""
        logger.warning(
            "redis_lifecycle: slow callback %s for %r events took %.3f s (slow_callback=%.3f s)%s",
            name,
            event_name,
            seconds,
            self._slow_after,
            more,
        )

    # --- reading ----------------------------------------------------------

    def callback_metrics(self, name: EventType | str) -> CallbackMetrics:
        """Timings of the callbacks for events named ``name`` (``"connected"``,
        ``EventType.CONNECTION_ACQUIRED``, ...): ``count``, ``total_time``,
        ``avg_time``, ``errors``, ``min``, ``max``, ``p50``, ``p95``, ``p99``
        in seconds (``None`` for the distribution before the first callback),
        and ``slow``: the runs longer than ``slow_callback`` (0 when it is off).

        Raises :class:`ValueError` listing the valid names for an unknown name.
        """
        event_type = _event_type(name)
        return _callback_metrics(self._callbacks[event_type])

    def all_callback_metrics(self) -> dict[str, CallbackMetrics]:
        """:meth:`callback_metrics` for every event name that had a callback run."""
        return {
            event_type.value: _callback_metrics(stats)
            for event_type, stats in self._callbacks.items()
            if len(stats.histogram)
        }

    def pool_metrics(self) -> dict[str, PoolMetrics]:
        """Per pool name: see :class:`PoolMetrics`."""
        deliveries = list(self._deliveries)
        flush_all(deliveries)  # every command so far counted
        counts: dict[str | None, tuple[int, int]] = {}
        for delivery in deliveries:
            for figures in list(delivery.figures):
                now = figures.active_idle()
                if now is None or figures.name not in self._pools:
                    continue
                active, idle = counts.get(figures.name, (0, 0))
                counts[figures.name] = (active + now[0], idle + now[1])
        with self._lock:
            for name, now in counts.items():
                record = self._pools.get(name)
                if record is not None:
                    record.last = now
            pools = list(self._pools.items())
        return {
            str(name): _pool_metrics(pool)
            for name, pool in sorted(pools, key=lambda item: str(item[0]))
        }

    def reset(self) -> None:
        """Forget everything recorded so far.

        A value being recorded by another thread at the same moment may be
        lost or land after the reset.
        """
        flush_all(list(self._deliveries))  # what was recorded before, forgotten too
        with self._lock:
            for stats in self._callbacks.values():
                stats.histogram.clear()
                stats.errors = 0
                stats.slow = 0
            self._pools.clear()

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have held a lock: it does not exist here.
        self._lock = threading.RLock()
        for stats in self._callbacks.values():
            stats.histogram._after_fork_in_child()
        for pool in list(self._pools.values()):
            for histogram in pool.histograms():
                histogram._after_fork_in_child()

    def __repr__(self) -> str:
        slow = "" if self.slow_callback is None else f" slow_callback={self.slow_callback}"
        return f"<Instrumentation pools={len(self._pools)}{slow}>"


_INSTANCES: weakref.WeakSet[Instrumentation] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A reader may have held the lock in a thread that does not exist in the child.
    for instrumentation in list(_INSTANCES):
        instrumentation._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
