"""Instrumentation: callback timings and pool metrics from events (no Redis)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

import redis_lifecycle as rl
from redis_lifecycle._accumulate import CommandFigures
from redis_lifecycle._delivery import Delivery
from redis_lifecycle._histogram import FLUSH_AT, RELATIVE_ERROR
from redis_lifecycle.events import EVENT_CLASSES, EventOrigin, EventType
from tests.helpers import wait_until


def origin(pool: str = "cache", connection_id: int = 1) -> EventOrigin:
    return EventOrigin(host="h", port=1, db=0, connection_id=connection_id, pool_name=pool)


def acquired(wait: float, active: int = 1, idle: int = 0, at: float = 1.0, pool: str = "cache"):  # type: ignore[no-untyped-def]
    return rl.PoolConnectionAcquiredEvent(at, origin(pool), wait, active, idle)


def released(held: float, active: int = 0, idle: int = 1, at: float = 1.0, pool: str = "cache"):  # type: ignore[no-untyped-def]
    return rl.PoolConnectionReleasedEvent(at, origin(pool), held, active, idle)


class TestCallbackMetrics:
    def test_counts_times_and_errors_per_event_name(self) -> None:
        """count, total, min, max and errors are exact; avg is total/count."""
        metrics = rl.Instrumentation()
        for seconds, failed in [(0.001, False), (0.004, True), (0.002, False)]:
            metrics._record_callback(EventType.CONNECTED, seconds, failed)
        stats = metrics.callback_metrics("connected")
        assert stats["count"] == 3
        assert stats["errors"] == 1
        assert stats["total_time"] == pytest.approx(0.007)
        assert stats["avg_time"] == pytest.approx(0.007 / 3)
        assert (stats["min"], stats["max"]) == (0.001, 0.004)
        assert stats["p50"] == pytest.approx(0.002, rel=RELATIVE_ERROR)
        assert stats["p99"] == pytest.approx(0.004, rel=RELATIVE_ERROR)

    def test_name_may_be_the_enum_or_the_string(self) -> None:
        """EventType members and their string values address the same metrics."""
        metrics = rl.Instrumentation()
        metrics._record_callback(EventType.POOL_EXHAUSTED, 0.5, False)
        assert metrics.callback_metrics(EventType.POOL_EXHAUSTED) == metrics.callback_metrics(
            "pool_exhausted"
        )

    def test_unseen_name_has_zero_count_and_no_distribution(self) -> None:
        """A valid name with no callback yet reports count 0 and None percentiles."""
        stats = rl.Instrumentation().callback_metrics("reconnected")
        assert stats["count"] == 0
        assert stats["avg_time"] == 0.0
        assert stats["p95"] is None
        assert stats["min"] is None

    def test_unknown_name_lists_the_valid_names(self) -> None:
        """An unknown event name raises ValueError naming the valid ones."""
        with pytest.raises(ValueError, match="'connection_acquired'"):
            rl.Instrumentation().callback_metrics("acquired")

    def test_all_callback_metrics_has_only_names_that_ran(self) -> None:
        """all_callback_metrics() lists the event names whose callbacks ran."""
        metrics = rl.Instrumentation()
        metrics._record_callback(EventType.DISCONNECTED, 0.1, False)
        metrics._record_callback(EventType.CONNECTION_RELEASED, 0.2, False)
        assert set(metrics.all_callback_metrics()) == {"disconnected", "connection_released"}

    def test_delivery_times_every_callback(self) -> None:
        """Each callback a Delivery runs is recorded once, under its event's name."""
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()
        calls: list[object] = []
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, calls.append)
        dispatcher.subscribe(rl.LifecycleEvent, calls.append)
        delivery = Delivery(dispatcher, instrumentation=metrics)
        for _ in range(10):
            delivery.emit(acquired(0.001))
        assert metrics.callback_metrics("connection_acquired")["count"] == len(calls) == 20

    @pytest.mark.usefixtures("fast_thread_switches")
    def test_exact_counts_under_threads(self) -> None:
        """Eight threads record into the same histograms and flush them in
        turn, with the GIL handed over every microsecond: nothing is lost or
        counted twice (counts, errors, total, min and max are exact)."""
        metrics = rl.Instrumentation()
        per_thread = 3_000
        start = threading.Barrier(8)

        def record(value: float) -> None:
            start.wait()
            for index in range(per_thread):
                metrics._record_callback(EventType.CONNECTION_ACQUIRED, 1e-6, index % 10 == 0)
                metrics._observe(acquired(value))

        threads = [threading.Thread(target=record, args=(float(n),)) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = metrics.callback_metrics("connection_acquired")
        assert stats["count"] == 8 * per_thread
        assert stats["errors"] == 8 * per_thread // 10
        pool = metrics.pool_metrics()["cache"]
        assert pool["acquisitions"] == 8 * per_thread
        assert pool["wait_time"]["total"] == per_thread * sum(range(1, 9))
        assert (pool["wait_time"]["min"], pool["wait_time"]["max"]) == (1.0, 8.0)
        waits = metrics._pools["cache"].wait
        waits.flush()
        assert sum(waits.buckets.values()) == waits.count == 8 * per_thread

    def test_memory_follows_event_names_not_threads(self) -> None:
        """Threads that recorded and ended leave their counts, and nothing of
        their own, behind: one record per pool name and per event name."""
        metrics = rl.Instrumentation()
        records = dict(metrics._callbacks)

        def once() -> None:
            metrics._record_callback(EventType.CONNECTED, 0.001, False)
            metrics._observe(acquired(0.001))

        for _ in range(20):
            thread = threading.Thread(target=once)
            thread.start()
            thread.join()
        assert metrics.callback_metrics("connected")["count"] == 20
        assert metrics._callbacks == records
        assert list(metrics._pools) == ["cache"]


class TestPoolMetrics:
    def test_wanted_covers_every_rare_event_class(self) -> None:
        """Instrumentation asks for every rare event class to be built (its pool
        metrics need them), never the per-command ones: the hooks record those
        figures without events."""
        per_command = {rl.PoolConnectionAcquiredEvent, rl.PoolConnectionReleasedEvent}
        assert set(rl.Instrumentation._wanted) == set(EVENT_CLASSES) - per_command

    def test_checkouts_wait_and_held_times(self) -> None:
        """Acquisitions, releases and the wait/held distributions follow the events."""
        metrics = rl.Instrumentation()
        for wait in (0.001, 0.002, 0.003):
            metrics._observe(acquired(wait))
        metrics._observe(released(0.5))
        pool = metrics.pool_metrics()["cache"]
        assert pool["acquisitions"] == 3
        assert pool["releases"] == 1
        assert pool["wait_time"]["count"] == 3
        assert pool["wait_time"]["max"] == 0.003
        assert pool["wait_time"]["p50"] == pytest.approx(0.002, rel=RELATIVE_ERROR)
        assert pool["held_time"]["min"] == 0.5

    def test_active_and_idle_come_from_the_latest_event(self) -> None:
        """Current active/idle are those of the most recent acquired or released event."""
        metrics = rl.Instrumentation()
        metrics._observe(acquired(0.0, active=3, idle=1, at=10.0))
        metrics._observe(released(0.0, active=2, idle=2, at=11.0))
        pool = metrics.pool_metrics()["cache"]
        assert (pool["active"], pool["idle"]) == (2, 2)

    def test_rare_events_are_counted(self) -> None:
        """Connects, reconnects, disconnects by reason, errors by phase, health checks,
        exhaustions, created connections, marks and resets each land in their field."""
        metrics = rl.Instrumentation()
        o = origin()
        events: list[rl.LifecycleEvent] = [
            rl.ConnectionConnectedEvent(1.0, o, 0.01),
            rl.ConnectionReconnectedEvent(1.0, o, 0.01, 2.0),
            rl.ConnectionReconnectedEvent(1.0, o, 0.01, 2.0),
            rl.ConnectionDisconnectedEvent(1.0, o, rl.CloseReason.SERVER_CLOSED, None),
            rl.ConnectionDisconnectedEvent(1.0, o, rl.CloseReason.APPLICATION, None),
            rl.ConnectionDisconnectedEvent(1.0, o, rl.CloseReason.SERVER_CLOSED, None),
            rl.ConnectionErrorEvent(1.0, o, ConnectionError("x"), "io"),
            rl.ConnectionErrorEvent(1.0, o, ConnectionError("x"), "connect"),
            rl.ConnectionHealthCheckEvent(1.0, o, True, 0.5, "PING", None),
            rl.ConnectionHealthCheckEvent(1.0, o, False, 1.5, "PING", ConnectionError("x")),
            rl.PoolExhaustedEvent(1.0, o, 4, 1.0, 1.0),
            rl.PoolConnectionCreatedEvent(1.0, o, 1),
            rl.ConnectionMarkedForReconnectEvent(1.0, o, "fork"),
            rl.PoolResetEvent(1.0, o, "explicit", 2),
            rl.PoolConnectionLeakEvent(1.0, o, 2.0, 1.0, "worker", None, ("app.py:3 in f",)),
            rl.PoolCreatedEvent(1.0, o, 4, None),
            rl.ConnectionCreatedEvent(1.0, o),
        ]
        for event in events:
            metrics._observe(event)
        pool = metrics.pool_metrics()["cache"]
        assert (pool["connects"], pool["reconnects"]) == (1, 2)
        assert pool["disconnects"] == {"application": 1, "server_closed": 2}
        assert pool["errors"] == 2
        assert pool["errors_by_phase"] == {"connect": 1, "io": 1}
        assert pool["health_checks"]["passed"] == 1
        assert pool["health_checks"]["failed"] == 1
        assert pool["health_checks"]["latency_ms"]["max"] == 1.5
        assert pool["exhaustions"] == 1
        assert pool["connections_created"] == 1
        assert pool["marked_for_reconnect"] == 1
        assert pool["resets"] == 1
        assert pool["leaks"] == 1

    def test_pools_are_kept_apart(self) -> None:
        """One Instrumentation serving two pools reports each under its own name."""
        metrics = rl.Instrumentation()
        metrics._observe(acquired(0.001, pool="a"))
        metrics._observe(acquired(0.001, pool="b"))
        metrics._observe(acquired(0.001, pool="b"))
        pools = metrics.pool_metrics()
        assert {name: p["acquisitions"] for name, p in pools.items()} == {"a": 1, "b": 2}

    def test_reset_forgets_everything(self) -> None:
        """After reset() the metrics start from zero, and recording works again."""
        metrics = rl.Instrumentation()
        metrics._observe(acquired(0.001))
        metrics._record_callback(EventType.CONNECTION_ACQUIRED, 0.1, True)
        metrics.reset()
        assert metrics.pool_metrics() == {}
        assert metrics.all_callback_metrics() == {}
        metrics._observe(acquired(0.001))
        assert metrics.pool_metrics()["cache"]["acquisitions"] == 1

    def test_a_delivery_made_before_reset_records_after_it(self) -> None:
        """reset() empties the records in place: a delivery's sinks and
        emitters, built before it, go on recording pool and callback metrics
        after it (the figures the hooks record, and the callbacks' timings)."""
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, lambda event: None)
        delivery = Delivery(dispatcher, instrumentation=metrics)
        figures = CommandFigures("cache")
        delivery.figures.add(figures)
        figures.add_wait(0.001, delivery.sinks)
        delivery.emit(acquired(0.001))
        metrics.reset()
        for _ in range(3):
            figures.add_wait(0.002, delivery.sinks)
            delivery.emit(acquired(0.002))
        assert metrics.pool_metrics()["cache"]["acquisitions"] == 3
        assert metrics.pool_metrics()["cache"]["wait_time"]["min"] == 0.002
        assert metrics.callback_metrics("connection_acquired")["count"] == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_held_the_locks_records_everything() -> None:
    """A thread of the parent was flushing a histogram and holding the lock
    of the rare events when the process forked: in the child, that thread
    does not exist, yet rare events are counted (no deadlock) and full
    buffers are flushed (they do not grow without bound)."""
    metrics = rl.Instrumentation()
    metrics._observe(acquired(0.001))
    holding = threading.Event()
    done = threading.Event()

    def hold_the_locks() -> None:
        with metrics._lock, metrics._pools["cache"].wait._flushing:
            holding.set()
            done.wait(30)

    holder = threading.Thread(target=hold_the_locks)
    holder.start()
    assert holding.wait(10)
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only
        code = 1
        try:
            for _ in range(FLUSH_AT + 1):
                metrics._observe(acquired(0.002))
            metrics._observe(rl.ConnectionConnectedEvent(1.0, origin(), 0.01))
            pool = metrics.pool_metrics()["cache"]
            flushed = len(metrics._pools["cache"].wait.pending) < FLUSH_AT
            if pool["acquisitions"] == FLUSH_AT + 2 and pool["connects"] == 1 and flushed:
                code = 0
        finally:
            os._exit(code)
    done.set()
    holder.join()
    statuses: list[int] = []

    def exited() -> bool:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            statuses.append(status)
        return bool(finished)

    try:
        wait_until(exited, timeout=20, what="the forked child to finish (a deadlock hangs it)")
    finally:
        if not statuses:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(statuses[0]) == 0
