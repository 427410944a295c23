"""Delivery on a real server: exact counts under threads, the executor's overflow
policies and shutdown, callback failures under each strategy, order, fork.

Sixteen threads share a pool of four connections for thousands of commands;
slow callbacks wait on a gate the test opens, so nothing depends on timing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis

import redis_lifecycle as rl
import redis_lifecycle._hooks.sync as rl_sync

from ..helpers import wait_until
from .gc_inside_locks import run_in_child

THREADS = 16
PER_THREAD = 250
COMMANDS = THREADS * PER_THREAD


class Counter:
    """A callback counting its calls per event type (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_type: dict[str, int] = {}

    def __call__(self, event: rl.LifecycleEvent) -> None:
        with self.lock:
            self.by_type[event.type.value] = self.by_type.get(event.type.value, 0) + 1

    def __getitem__(self, name: str) -> int:
        with self.lock:
            return self.by_type.get(name, 0)


class Gate:
    """A callback that blocks until the test opens it; counts what it saw."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[str] = []

    def __call__(self, event: rl.LifecycleEvent) -> None:
        assert self.opened.wait(30), "test never opened the gate"
        with self.lock:
            self.threads.append(threading.current_thread().name)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.threads)


def hammer(client: redis.Redis, threads: int = THREADS, per_thread: int = PER_THREAD) -> None:
    """Run ``threads * per_thread`` GETs from ``threads`` threads; re-raise any failure."""
    failures: list[BaseException] = []
    # a deadline, so that a worker failing before it reaches the barrier
    # fails the test (with that worker's error) instead of hanging it
    start = threading.Barrier(threads, timeout=120)

    def work() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                client.get("rl:delivery")
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        # the first error that is not the barrier broken by it
        original = [f for f in failures if not isinstance(f, threading.BrokenBarrierError)]
        raise (original or failures)[0]


@pytest.fixture
def make_pool(redis_url: str) -> Iterator[Callable[..., rl.LifecycleBlockingConnectionPool]]:
    """Blocking lifecycle pools of four connections on the session server."""
    pools: list[rl.LifecycleBlockingConnectionPool] = []

    def make(**kwargs: Any) -> rl.LifecycleBlockingConnectionPool:
        kwargs.setdefault("max_connections", 4)
        kwargs.setdefault("timeout", 30)
        pool = rl.LifecycleBlockingConnectionPool.from_url(redis_url, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.disconnect()


@pytest.fixture
def executors() -> Iterator[list[rl.AsyncCallbackExecutor]]:
    made: list[rl.AsyncCallbackExecutor] = []
    yield made
    for executor in made:
        with contextlib.suppress(rl.CallbackError):
            executor.shutdown(timeout=10)


def counts(pool: rl.LifecycleBlockingConnectionPool) -> tuple[int, int, int]:
    [stats] = pool.lifecycle.pool_stats()
    return stats["active"], stats["idle"], stats["total"]


class TestExactCounts:
    def test_inline_counts_are_exact(self, make_pool: Callable[..., Any]) -> None:
        """16 threads, 4 connections, 4000 GETs inline: acquired == released == commands,
        and Instrumentation's count equals the callbacks that ran."""
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()
        counter = Counter()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, counter)
        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, counter)
        pool = make_pool(event_dispatcher=dispatcher, instrumentation=metrics, pool_name="exact")
        hammer(redis.Redis(connection_pool=pool))
        assert counter["connection_acquired"] == counter["connection_released"] == COMMANDS
        for name in ("connection_acquired", "connection_released"):
            callback = metrics.callback_metrics(name)
            assert callback["count"] == counter[name]
            assert callback["errors"] == 0
        pool_metrics = metrics.pool_metrics()["exact"]
        assert pool_metrics["acquisitions"] == pool_metrics["releases"] == COMMANDS
        assert pool_metrics["wait_time"]["count"] == COMMANDS
        assert pool_metrics["connections_created"] <= 4
        assert pool_metrics["connects"] == pool_metrics["connections_created"]
        assert (pool_metrics["active"], pool_metrics["idle"]) == counts(pool)[:2]
        assert counts(pool)[0] == 0

    def test_executor_counts_are_exact_under_caller_runs(
        self, make_pool: Callable[..., Any], executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Through an executor with a small queue: completed + dropped == submitted,
        nothing dropped under caller_runs, and every event's callback ran and was timed."""
        executor = rl.AsyncCallbackExecutor(pool_size=4, queue_size=16)
        executors.append(executor)
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()
        counter = Counter()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, counter)
        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, counter)
        pool = make_pool(
            event_dispatcher=dispatcher,
            async_callbacks=executor,
            instrumentation=metrics,
            pool_name="exec",
        )
        hammer(redis.Redis(connection_pool=pool))
        assert executor.shutdown(timeout=30)
        stats = executor.stats()
        assert stats["submitted"] == 2 * COMMANDS
        assert stats["dropped"] == 0
        assert stats["completed"] + stats["dropped"] == stats["submitted"]
        assert counter["connection_acquired"] == counter["connection_released"] == COMMANDS
        assert metrics.callback_metrics("connection_acquired")["count"] == COMMANDS
        assert metrics.callback_metrics("connection_released")["count"] == COMMANDS
        assert metrics.pool_metrics()["exec"]["acquisitions"] == COMMANDS
        assert counts(pool)[0] == 0


class TestOverflowWithSlowCallbacks:
    @pytest.mark.parametrize(
        ("policy", "options"),
        [("caller_runs", {}), ("drop", {}), ("block", {"block_timeout": 0.01})],
    )
    def test_slow_callbacks_never_stall_or_fail_commands(
        self,
        policy: str,
        options: dict[str, Any],
        make_pool: Callable[..., Any],
        executors: list[rl.AsyncCallbackExecutor],
    ) -> None:
        """With the workers stuck on slow callbacks, commands keep succeeding; the
        overflow is run inline (caller_runs) or counted as dropped (drop, block)."""
        executor = rl.AsyncCallbackExecutor(
            pool_size=1,
            queue_size=4,
            overflow=policy,  # type: ignore[arg-type]
            **options,
        )
        executors.append(executor)
        gate = Gate()
        ran_inline = Counter()
        dispatcher = rl.EventDispatcher()

        def slow(event: rl.LifecycleEvent) -> None:
            if threading.current_thread().name.startswith("redis_lifecycle-callbacks"):
                gate(event)
            else:
                ran_inline(event)

        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, slow)
        pool = make_pool(event_dispatcher=dispatcher, async_callbacks=executor)
        client = redis.Redis(connection_pool=pool)
        assert client.get("rl:delivery") is None
        wait_until(lambda: executor.stats()["running"] == 1, what="worker stuck on event 1")
        for _ in range(19):  # four fill the queue, fifteen overflow
            assert client.get("rl:delivery") is None
        stats = executor.stats()
        assert stats["submitted"] == 20
        if policy == "caller_runs":
            assert stats["dropped"] == 0
            assert ran_inline["connection_released"] == stats["ran_inline"] == 20 - 5
        else:
            assert stats["dropped"] == 20 - 5
            assert ran_inline["connection_released"] == 0
        gate.opened.set()
        assert executor.shutdown(timeout=30)
        stats = executor.stats()
        assert stats["completed"] + stats["dropped"] == stats["submitted"] == 20
        assert gate.count == 5  # one running + four queued
        assert counts(pool)[0] == 0

    def test_shutdown_with_work_queued(
        self, make_pool: Callable[..., Any], executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Events queued behind a stuck callback: shutdown reports False until they ran,
        then True, and none is lost."""
        executor = rl.AsyncCallbackExecutor(pool_size=2, queue_size=1000, overflow="block")
        executors.append(executor)
        gate = Gate()
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, gate)
        pool = make_pool(event_dispatcher=dispatcher, async_callbacks=executor)
        hammer(redis.Redis(connection_pool=pool), threads=4, per_thread=50)
        assert executor.stats()["queued"] > 0
        assert executor.shutdown(timeout=0.01) is False
        gate.opened.set()
        assert executor.shutdown(timeout=30) is True
        assert gate.count == 200
        stats = executor.stats()
        assert (stats["completed"], stats["dropped"], stats["queued"]) == (200, 0, 0)


class TestGarbageCollectionWhileWaitingForRoom:
    def test_a_finalizer_overflowing_the_same_executor_does_not_deadlock(
        self, redis_url: str
    ) -> None:
        """A collection while an event waits for a slot (overflow "block",
        under the executor's room lock) runs a dead client's __del__, whose
        released connection overflows the same executor: the nested wait
        times out like the outer one instead of deadlocking on the lock."""
        run_in_child("executor", redis_url)


class TestCallbackFailures:
    @pytest.mark.parametrize("strategy", ["ignore", "log"])
    def test_failing_callbacks_do_not_fail_commands(
        self,
        strategy: str,
        make_pool: Callable[..., Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Under ignore and log a raising callback on every event leaves every command
        working; failures are counted (and logged under log)."""
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()

        def fail(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("callback failure")

        dispatcher.subscribe(rl.LifecycleEvent, fail)
        pool = make_pool(
            event_dispatcher=dispatcher,
            instrumentation=metrics,
            callback_error_handler=rl.CallbackErrorHandler(strategy),  # type: ignore[arg-type]
        )
        client = redis.Redis(connection_pool=pool)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            client.set("rl:delivery:k", "v")
            assert client.get("rl:delivery:k") == b"v"
        assert metrics.callback_metrics("connection_acquired")["errors"] == 2
        logged = [r for r in caplog.records if "callback failure" in str(r.exc_info)]
        assert bool(logged) is (strategy == "log")
        assert counts(pool)[0] == 0

    @pytest.mark.parametrize(
        "pool_class", [rl.LifecycleConnectionPool, rl.LifecycleBlockingConnectionPool]
    )
    def test_raise_on_acquired_leaks_no_connection(
        self, pool_class: type[Any], redis_url: str
    ) -> None:
        """Under raise, a failing connection_acquired callback raises CallbackError to the
        caller with the pool's counts as before the call, and the next command works."""
        dispatcher = rl.EventDispatcher()
        pool = pool_class.from_url(
            redis_url,
            max_connections=2,
            event_dispatcher=dispatcher,
            callback_error_handler=rl.CallbackErrorHandler("raise"),
        )
        client = redis.Redis(connection_pool=pool)
        try:
            client.set("rl:delivery:raise", "ok")
            before = counts(pool)

            def fail(event: rl.LifecycleEvent) -> None:
                raise RuntimeError("refuse this checkout")

            subscription = dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, fail)
            for _ in range(3):  # more than max_connections: a leak would exhaust the pool
                with pytest.raises(rl.CallbackError) as caught:
                    client.get("rl:delivery:raise")
                assert isinstance(caught.value.__cause__, RuntimeError)
                assert isinstance(caught.value.event, rl.PoolConnectionAcquiredEvent)
                assert counts(pool) == before
            subscription.unsubscribe()
            assert client.get("rl:delivery:raise") == b"ok"
            assert counts(pool) == before
        finally:
            pool.disconnect()

    def test_raise_through_the_executor_reaches_shutdown(
        self, make_pool: Callable[..., Any], executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Under raise with an executor, commands succeed and shutdown() raises the failures."""
        executor = rl.AsyncCallbackExecutor(pool_size=2)
        executors.append(executor)
        dispatcher = rl.EventDispatcher()

        def fail(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("late failure")

        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, fail)
        pool = make_pool(
            event_dispatcher=dispatcher,
            async_callbacks=executor,
            callback_error_handler=rl.CallbackErrorHandler("raise"),
        )
        client = redis.Redis(connection_pool=pool)
        for _ in range(3):
            assert client.get("rl:delivery") is None
        with pytest.raises(rl.CallbackError, match="3 callbacks raised") as caught:
            executor.shutdown(timeout=10)
        assert len(caught.value.errors) == 3
        assert isinstance(caught.value.__cause__, RuntimeError)
        assert executor.stats()["failed"] == 3


def assert_in_order(per_connection: dict[int | None, list[rl.LifecycleEvent]]) -> None:
    """Every connection's events alternate acquired/released, timestamps rising."""
    assert 1 <= len(per_connection) <= 4
    assert sum(len(events) for events in per_connection.values()) == 2 * COMMANDS
    for events in per_connection.values():
        kinds = [type(e) for e in events]
        assert kinds[0::2] == [rl.PoolConnectionAcquiredEvent] * len(kinds[0::2])
        assert kinds[1::2] == [rl.PoolConnectionReleasedEvent] * len(kinds[1::2])
        stamps = [e.timestamp for e in events]
        assert stamps == sorted(stamps)


class OrderRecorder:
    """A callback keeping each connection's events in the order it saw them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.per_connection: dict[int | None, list[rl.LifecycleEvent]] = {}

    def __call__(self, event: rl.LifecycleEvent) -> None:
        with self.lock:
            self.per_connection.setdefault(event.connection_id, []).append(event)

    def dispatcher(self) -> rl.EventDispatcher:
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, self)
        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, self)
        return dispatcher


@pytest.mark.usefixtures("fast_thread_switches")
class TestEachConnectionsOrder:
    """A connection goes back into the pool before its ``connection_released``
    is delivered; a thread that checks it out in that instant waits for that
    delivery before its ``connection_acquired``. With the GIL handed over
    every microsecond, 16 threads on 4 connections hit that instant many
    times per run: these tests failed in every run before the wait."""

    def test_through_the_executor(
        self, make_pool: Callable[..., Any], executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """Through four workers, every connection's events alternate
        acquired/released with increasing timestamps: the order they happened in."""
        executor = rl.AsyncCallbackExecutor(pool_size=4, queue_size=100_000, overflow="block")
        executors.append(executor)
        recorder = OrderRecorder()
        pool = make_pool(event_dispatcher=recorder.dispatcher(), async_callbacks=executor)
        hammer(redis.Redis(connection_pool=pool))
        assert executor.shutdown(timeout=60)
        assert executor.stats()["ran_inline"] == 0
        assert_in_order(recorder.per_connection)

    def test_inline(self, make_pool: Callable[..., Any]) -> None:
        """Inline, a connection's callbacks also see its events in order."""
        recorder = OrderRecorder()
        pool = make_pool(event_dispatcher=recorder.dispatcher())
        hammer(redis.Redis(connection_pool=pool))
        assert_in_order(recorder.per_connection)

    def test_on_a_plain_pool_of_an_instrumented_client(self, redis_url: str) -> None:
        """The same for redis-py's own pool, hooked by instrument()."""
        recorder = OrderRecorder()
        pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=4, timeout=30)
        client = redis.Redis(connection_pool=pool)
        rl.instrument(client, event_dispatcher=recorder.dispatcher())
        try:
            hammer(client)
        finally:
            rl.uninstrument(client)
            pool.disconnect()
        assert_in_order(recorder.per_connection)

    def test_a_callback_commanding_the_same_pool_does_not_wait_for_itself(
        self, make_pool: Callable[..., Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        """A ``connection_released`` callback that runs a command on the same
        pool gets the connection being released back at once: no wait, no
        warning, and its events follow the outer release."""
        pool = make_pool(max_connections=1)
        client = redis.Redis(connection_pool=pool)
        recorder = OrderRecorder()
        inner: list[rl.LifecycleEvent] = []

        def command_once(event: rl.LifecycleEvent) -> None:
            if not inner:
                inner.append(event)
                client.get("rl:delivery")

        pool.lifecycle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        pool.lifecycle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, recorder)
        pool.lifecycle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, command_once)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            client.get("rl:delivery")
        assert caplog.records == []
        [events] = recorder.per_connection.values()
        assert [type(e) for e in events] == [
            rl.PoolConnectionAcquiredEvent,
            rl.PoolConnectionReleasedEvent,
            rl.PoolConnectionAcquiredEvent,
            rl.PoolConnectionReleasedEvent,
        ]

    def test_the_wait_is_bounded(
        self,
        make_pool: Callable[..., Any],
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A release whose delivery is stuck (an inline callback waiting on a
        gate) holds up the next user of its connection for ``ORDER_TIMEOUT``
        only (the executor's ``order_timeout`` when there is one); then a
        warning, and that command goes on. Nothing is lost."""
        monkeypatch.setattr(rl_sync, "ORDER_TIMEOUT", 0.2)
        held = threading.Event()
        gate = Gate()

        def hold(event: rl.LifecycleEvent) -> None:
            held.set()
            gate(event)

        recorder = OrderRecorder()
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        dispatcher.subscribe(rl.PoolConnectionReleasedEvent, hold)
        pool = make_pool(max_connections=1, event_dispatcher=dispatcher)
        client = redis.Redis(connection_pool=pool)
        errors: list[BaseException] = []

        def command() -> None:
            try:
                client.get("rl:delivery")
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        def acquisitions() -> int:
            with recorder.lock:
                return sum(len(events) for events in recorder.per_connection.values())

        first = threading.Thread(target=command)
        second = threading.Thread(target=command)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            first.start()
            assert held.wait(30), "the first release never reached its callback"
            second.start()
            # The second thread has the connection and went on: its
            # connection_acquired ran while the first release is still stuck.
            wait_until(lambda: acquisitions() == 2, what="the second connection_acquired")
            assert first.is_alive()  # its release is still stuck in the callback
            [warning] = [r for r in caplog.records if "was not delivered" in r.getMessage()]
            assert "within 0.2s" in warning.getMessage()
        gate.opened.set()
        first.join(30)
        second.join(30)
        assert not first.is_alive()
        assert not second.is_alive()
        assert not errors
        assert gate.count == 2
        assert counts(pool) == (0, 1, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_executor_delivers_in_a_forked_child(
    make_pool: Callable[..., Any], executors: list[rl.AsyncCallbackExecutor]
) -> None:
    """After os.fork the child's commands produce events its restarted workers deliver."""
    executor = rl.AsyncCallbackExecutor(pool_size=2)
    executors.append(executor)
    threads: list[str] = []
    dispatcher = rl.EventDispatcher()
    dispatcher.subscribe(
        rl.PoolConnectionAcquiredEvent, lambda e: threads.append(threading.current_thread().name)
    )
    pool = make_pool(event_dispatcher=dispatcher, async_callbacks=executor)
    client = redis.Redis(connection_pool=pool)
    client.get("rl:delivery")
    wait_until(lambda: len(threads) == 1, what="parent event delivered")
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only
        code = 1
        try:
            threads.clear()
            for _ in range(5):
                client.get("rl:delivery")
            drained = executor.shutdown(timeout=10)
            on_workers = all(name.startswith("redis_lifecycle-callbacks") for name in threads)
            if drained and len(threads) == 5 and on_workers:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.get("rl:delivery")
    wait_until(lambda: len(threads) == 2, what="parent still delivers after the fork")


class TestArguments:
    @pytest.mark.parametrize(
        ("argument", "value", "expected"),
        [
            ("async_callbacks", True, "AsyncCallbackExecutor"),
            ("instrumentation", {}, "Instrumentation"),
            ("callback_error_handler", "raise", "CallbackErrorHandler"),
        ],
    )
    def test_wrong_delivery_objects_are_rejected_up_front(
        self, argument: str, value: object, expected: str, redis_url: str
    ) -> None:
        """A delivery argument of the wrong type raises TypeError naming the expected class."""
        with pytest.raises(TypeError, match=expected):
            rl.LifecycleConnectionPool.from_url(redis_url, **{argument: value})

    def test_pooled_wires_executor_handler_and_metrics(
        self, redis_url: str, executors: list[rl.AsyncCallbackExecutor]
    ) -> None:
        """pooled() passes async_callbacks, callback_error_handler and instrumentation on."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executors.append(executor)
        metrics = rl.Instrumentation()
        dispatcher = rl.EventDispatcher()
        threads: list[str] = []
        dispatcher.subscribe(
            rl.PoolConnectionReleasedEvent,
            lambda e: threads.append(threading.current_thread().name),
        )
        info = redis.connection.parse_url(redis_url)
        client = rl.pooled(
            info.get("host", "localhost"),
            info.get("port", 6379),
            pool={"size": 2, "event_dispatcher": dispatcher, "pool_name": "pooled"},
            async_callbacks=executor,
            callback_error_handler=rl.CallbackErrorHandler("ignore"),
            instrumentation=metrics,
        )
        try:
            for _ in range(3):
                client.get("rl:delivery")
            assert executor.shutdown(timeout=10)
            assert threads == ["redis_lifecycle-callbacks-0"] * 3
            assert metrics.pool_metrics()["pooled"]["releases"] == 3
            assert metrics.callback_metrics("connection_released")["count"] == 3
            pool = cast(rl.LifecycleBlockingConnectionPool, client.connection_pool)
            assert pool.lifecycle.delivery.error_handler.strategy == "ignore"
        finally:
            client.connection_pool.disconnect()
