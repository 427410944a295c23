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
exhaustions, connects, disconnects by reason, errors, health checks). Pool
metrics are recorded on the thread that emits the event, before any callback
runs. One instance may serve several pools: they are told apart by
``pool_name`` (pools given the same name add up).

Durations are in seconds, except health-check latencies, which are in
milliseconds like :attr:`~redis_lifecycle.ConnectionHealthCheckEvent.latency`.
Percentiles come from a log-bucketed histogram: bounded memory, and within
``1/128`` (about 0.8 %) of the exact nearest-rank value (see
:mod:`redis_lifecycle._histogram`). ``count``, ``errors``, ``total_time``,
``min`` and ``max`` are exact.

Thread-safe without a lock per event: each thread writes its own shard and a
read merges them, so counts are exact once the writers are quiet (a read that
races with writers sees each shard as of a moment during the read). Shards of
threads that ended are folded into one, so memory follows the live threads.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypedDict

from ._histogram import FLUSH_AT, DurationSummary, LogHistogram
from .events import (
    EVENT_CLASSES,
    ConnectionConnectedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    ConnectionReconnectedEvent,
    EventType,
    LifecycleEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionReleasedEvent,
    PoolExhaustedEvent,
    PoolResetEvent,
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


class HealthCheckMetrics(TypedDict):
    """Health checks of one pool; latencies in **milliseconds**."""

    passed: int
    failed: int
    latency_ms: DurationSummary


class PoolMetrics(TypedDict):
    """What one pool's events add up to (durations in seconds).

    ``active`` and ``idle`` are the counts carried by the most recent
    ``connection_acquired`` or ``connection_released`` event (``None``
    before the first).
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
    active: int | None
    idle: int | None


class _CallbackShard:
    __slots__ = ("errors", "histogram")

    def __init__(self) -> None:
        self.histogram = LogHistogram()
        self.errors = 0

    def merge(self, other: _CallbackShard) -> None:
        self.histogram.merge(other.histogram)
        self.errors += other.errors


class _PoolShard:
    """One thread's view of one pool."""

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
        "marked",
        "reconnects",
        "resets",
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
        #: The latest acquired/released event (for active/idle).
        self.last: Any = None

    def merge(self, other: _PoolShard) -> None:
        self.wait.merge(other.wait)
        self.held.merge(other.held)
        self.exhaustions += other.exhaustions
        self.connections_created += other.connections_created
        self.connects += other.connects
        self.reconnects += other.reconnects
        for reason, count in other.disconnects.copy().items():
            self.disconnects[reason] = self.disconnects.get(reason, 0) + count
        for phase, count in other.errors.copy().items():
            self.errors[phase] = self.errors.get(phase, 0) + count
        self.health_passed += other.health_passed
        self.health_failed += other.health_failed
        self.health_latency.merge(other.health_latency)
        self.marked += other.marked
        self.resets += other.resets
        last = other.last
        if last is not None and (self.last is None or last._timestamp > self.last._timestamp):
            self.last = last


class _Shard:
    """Everything one thread recorded."""

    __slots__ = ("callbacks", "pools", "thread")

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        self.callbacks: dict[EventType, _CallbackShard] = {t: _CallbackShard() for t in EventType}
        self.pools: dict[str | None, _PoolShard] = {}

    def merge(self, other: _Shard) -> None:
        for event_type, stats in other.callbacks.items():
            self.callbacks[event_type].merge(stats)
        for name, pool in other.pools.copy().items():
            mine = self.pools.get(name)
            if mine is None:
                mine = self.pools[name] = _PoolShard()
            mine.merge(pool)


def _observe_rare(pool: _PoolShard, event: Any) -> None:
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


def _callback_metrics(stats: _CallbackShard) -> CallbackMetrics:
    summary = stats.histogram.summary()
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
    }


def _pool_metrics(pool: _PoolShard) -> PoolMetrics:
    wait = pool.wait.summary()
    held = pool.held.summary()
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
        "disconnects": dict(sorted(pool.disconnects.items())),
        "errors": sum(pool.errors.values()),
        "errors_by_phase": dict(sorted(pool.errors.items())),
        "health_checks": {
            "passed": pool.health_passed,
            "failed": pool.health_failed,
            "latency_ms": pool.health_latency.summary(),
        },
        "marked_for_reconnect": pool.marked,
        "resets": pool.resets,
        "active": None if last is None else last._active_connections,
        "idle": None if last is None else last._idle_connections,
    }


def _event_type(name: EventType | str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        valid = ", ".join(repr(t.value) for t in EventType)
        msg = f"unknown event name {name!r}; expected one of: {valid}"
        raise ValueError(msg) from None


class Instrumentation:
    """In-memory callback and pool metrics; see the module docstring."""

    #: Event classes the pool metrics need built even when nobody subscribes.
    _wanted: frozenset[type[LifecycleEvent]] = frozenset(EVENT_CLASSES)

    def __init__(self) -> None:
        self._lock = threading.Lock()  # readers and shard registration only
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._retired = _Shard(None)
        self._deliveries: weakref.WeakSet[Delivery] = weakref.WeakSet()
        _INSTANCES.add(self)

    # --- called by the delivery (hot path) --------------------------------

    def _attach(self, delivery: Delivery) -> None:
        """Called once by each :class:`~redis_lifecycle._delivery.Delivery` using it."""
        self._deliveries.add(delivery)

    def _shard(self) -> _Shard:
        thread = threading.current_thread()
        shard = _Shard(thread)
        with self._lock:
            self._fold_dead()
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def _observe(self, event: LifecycleEvent) -> _CallbackShard:
        """Update the pool metrics with ``event`` (on the emitting thread);
        return this thread's callback stats for its event name, for the
        delivery to time the event's inline callbacks into without a second
        thread-local lookup (see ``Delivery.run``)."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        ev: Any = event
        name = ev._origin.pool_name
        try:
            pool = shard.pools[name]
        except KeyError:
            pool = shard.pools[name] = _PoolShard()
        cls = type(ev)
        # LogHistogram.add, inlined: these two run on every command.
        # Acquisitions and releases are the counts of the wait and held
        # histograms; the latest event is kept whole for active/idle.
        if cls is PoolConnectionAcquiredEvent:
            pending = pool.wait.pending
            pending.append(ev._wait_time)
            if len(pending) >= FLUSH_AT:
                pool.wait.flush()
            pool.last = ev
        elif cls is PoolConnectionReleasedEvent:
            pending = pool.held.pending
            pending.append(ev._held_time)
            if len(pending) >= FLUSH_AT:
                pool.held.flush()
            pool.last = ev
        else:
            _observe_rare(pool, ev)
        return shard.callbacks[ev.type]

    def _callback_stats(self, event_type: EventType) -> _CallbackShard:
        """This thread's callback stats for ``event_type`` (write them from
        this thread only)."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        return shard.callbacks[event_type]

    def _record_callback(self, event_type: EventType, seconds: float, failed: bool) -> None:
        """Record one callback run of ``seconds``; ``failed`` if it raised."""
        try:
            shard: _Shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        stats = shard.callbacks[event_type]
        pending = stats.histogram.pending
        pending.append(seconds)
        if len(pending) >= FLUSH_AT:
            stats.histogram.flush()
        if failed:
            stats.errors += 1

    # --- reading ----------------------------------------------------------

    def _fold_dead(self) -> None:
        """Merge the shards of threads that ended into ``_retired`` (lock held)."""
        alive: list[_Shard] = []
        for shard in self._shards:
            thread = shard.thread
            if thread is not None and not thread.is_alive():
                self._retired.merge(shard)
            else:
                alive.append(shard)
        if len(alive) != len(self._shards):
            self._shards = alive

    def _merged(self) -> _Shard:
        with self._lock:
            self._fold_dead()
            total = _Shard(None)
            total.merge(self._retired)
            for shard in list(self._shards):
                total.merge(shard)
        return total

    def callback_metrics(self, name: EventType | str) -> CallbackMetrics:
        """Timings of the callbacks for events named ``name`` (``"connected"``,
        ``EventType.CONNECTION_ACQUIRED``, ...): ``count``, ``total_time``,
        ``avg_time``, ``errors``, ``min``, ``max``, ``p50``, ``p95``, ``p99``
        in seconds (``None`` for the distribution before the first callback).

        Raises :class:`ValueError` listing the valid names for an unknown name.
        """
        event_type = _event_type(name)
        return _callback_metrics(self._merged().callbacks[event_type])

    def all_callback_metrics(self) -> dict[str, CallbackMetrics]:
        """:meth:`callback_metrics` for every event name that had a callback run."""
        merged = self._merged()
        return {
            event_type.value: _callback_metrics(stats)
            for event_type, stats in merged.callbacks.items()
            if stats.histogram.count
        }

    def pool_metrics(self) -> dict[str, PoolMetrics]:
        """Per pool name: see :class:`PoolMetrics`."""
        merged = self._merged()
        return {
            str(name): _pool_metrics(pool)
            for name, pool in sorted(merged.pools.items(), key=lambda item: str(item[0]))
        }

    def reset(self) -> None:
        """Forget everything recorded so far.

        A value being recorded by another thread at the same moment may be
        lost or land after the reset.
        """
        with self._lock:
            self._local = threading.local()
            self._shards = []
            self._retired = _Shard(None)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        with self._lock:
            threads = len(self._shards)
        return f"<Instrumentation shards={threads}>"


_INSTANCES: weakref.WeakSet[Instrumentation] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A reader may have held the lock in a thread that does not exist in the child.
    for instrumentation in list(_INSTANCES):
        instrumentation._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
