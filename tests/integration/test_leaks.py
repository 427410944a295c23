"""Leak detection and pool saturation on sync redis-py, provoked for real.

A thread holds a connection past ``leak_detection`` (a bare checkout, a
command blocked in BLPOP, a pipeline under WATCH, a PubSub) and the leak is
reported while it is still held, with the test's own line as the stack's
last (and, in a thread, first) line; one returns it in time and is not
reported. Eight threads race a ``BlockingConnectionPool`` of two.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle._hooks import leaks
from redis_lifecycle._instrument_all import is_instrumenting_all
from redis_lifecycle.server import RedisServer
from redis_lifecycle.testing import EventRecorder

from ..helpers import Recorder, wait_until

THRESHOLD = 0.2


def _checkout_args() -> tuple[str, ...]:
    """What ``get_connection`` needs here: 5.x requires a command name, 6.0+
    deprecates it. Tests call ``pool.get_connection(*ARGS)`` themselves, so
    that the stack's innermost line is theirs (not a helper's)."""
    import inspect

    import redis.connection

    signature = inspect.signature(redis.connection.ConnectionPool.get_connection)
    parameter = signature.parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return ("PING",)
    return ()


ARGS = _checkout_args()


def here(offset: int = 0) -> str:
    """``"path:line in function"`` of the caller's line plus ``offset``."""
    import sys

    frame = sys._getframe(1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno + offset} in {frame.f_code.co_name}"


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=server.host, port=server.port)
    yield c
    c.close()


def watch(target: Any, recorder: Recorder, **options: Any) -> rl.LifecycleHandle:
    handle = rl.instrument(target, leak_detection=THRESHOLD, **options)
    handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return handle


def run_holding(body: Callable[[threading.Event], None], name: str) -> threading.Thread:
    """Start ``body(release)`` as the target of a thread named ``name`` (so its
    frame is the thread's outermost); it returns its connection only once
    ``release`` is set."""
    release = threading.Event()
    thread = threading.Thread(target=body, args=(release,), name=name)
    thread.release = release  # type: ignore[attr-defined]
    thread.start()
    return thread


def finish(thread: threading.Thread) -> None:
    thread.release.set()  # type: ignore[attr-defined]
    thread.join(10)
    assert not thread.is_alive()


class TestLeakWhileHeld:
    def test_a_checkout_held_past_the_threshold_is_reported_while_held(
        self, client: redis.Redis, recorder: Recorder, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The leak event comes while the thread still holds the connection,
        with its name, the threshold and the test's checkout line; the release
        then says reported_leak=True and the log says it came back."""
        watch(client, recorder)
        pool = client.connection_pool
        where: list[str] = []

        def hold(release: threading.Event) -> None:
            where.append(here(1))
            connection = pool.get_connection(*ARGS)
            try:
                release.wait(10)
            finally:
                pool.release(connection)

        caplog.set_level(logging.INFO, logger="redis_lifecycle")
        thread = run_holding(hold, "holder-thread")
        leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
        assert thread.is_alive()  # still held: nothing released yet
        assert recorder.exactly(rl.PoolConnectionReleasedEvent) == []
        assert leak.held_time >= THRESHOLD
        assert leak.threshold == THRESHOLD
        assert leak.thread_name == "holder-thread"
        assert leak.task_name is None
        assert leak.stack[0] == where[0]  # the thread's start-up frames are left out
        assert leak.caller == where[0] == leak.stack[-1]
        assert not any("redis_lifecycle" + os.sep in line for line in leak.stack)
        assert not any(os.sep + "redis" + os.sep in line for line in leak.stack)
        assert any(
            "checked out for" in r.getMessage() and where[0] in r.getMessage()
            for r in caplog.records
        )
        finish(thread)
        [released] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert released.connection_id == leak.connection_id
        assert released.reported_leak is True
        assert released.held_time >= leak.held_time
        assert any(
            "previously reported leaked connection" in r.getMessage() for r in caplog.records
        )
        assert len(recorder.exactly(rl.PoolConnectionLeakEvent)) == 1  # once per checkout

    def test_a_checkout_returned_in_time_is_not_reported(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A thread returns its connection before the threshold: no leak, even
        once a later checkout held past the threshold has been reported (so
        the watchdog has looked after the first one's threshold passed)."""
        watch(client, recorder)
        pool = client.connection_pool

        def quick(release: threading.Event) -> None:
            pool.release(pool.get_connection(*ARGS))

        finish(run_holding(quick, "quick"))
        [quick_release] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert quick_release.reported_leak is False

        def late(release: threading.Event) -> None:
            connection = pool.get_connection(*ARGS)
            release.wait(10)
            pool.release(connection)

        thread = run_holding(late, "late")
        leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
        assert leak.thread_name == "late"
        finish(thread)
        assert len(recorder.exactly(rl.PoolConnectionLeakEvent)) == 1

    def test_a_command_blocked_longer_than_the_threshold(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """Through ``client.blpop``: the command holds its connection while it
        blocks; the stack's last line is the test's call."""
        watch(client, recorder)
        where: list[str] = []

        def blocked(release: threading.Event) -> None:
            where.append(here(1))
            client.blpop(["leaks:never"], timeout=1)

        thread = run_holding(blocked, "blpop")
        leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
        assert leak.stack == (where[0],)
        thread.join(10)
        [released] = recorder.exactly(
            rl.PoolConnectionReleasedEvent,
        )
        assert released.reported_leak is True

    def test_a_pipeline_under_watch(self, client: redis.Redis, recorder: Recorder) -> None:
        """``pipe.watch()`` takes a connection until the pipeline is reset."""
        watch(client, recorder)
        where: list[str] = []

        def watching(release: threading.Event) -> None:
            with client.pipeline() as pipe:
                where.append(here(1))
                pipe.watch("leaks:key")
                release.wait(10)

        thread = run_holding(watching, "pipeline")
        leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
        assert leak.stack == (where[0],)
        finish(thread)
        assert recorder.exactly(rl.PoolConnectionReleasedEvent)[-1].reported_leak is True

    def test_a_pubsub_in_the_test_itself(self, client: redis.Redis, recorder: Recorder) -> None:
        """A PubSub holds its connection until closed; checked out on the test's
        own thread, the stack ends with the test's line."""
        watch(client, recorder)
        pubsub = client.pubsub()
        line = here(1)
        pubsub.subscribe("leaks:channel")
        try:
            leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
            assert leak.caller == line
            assert leak.thread_name == threading.current_thread().name
        finally:
            pubsub.close()
        assert recorder.exactly(rl.PoolConnectionReleasedEvent)[-1].reported_leak is True

    def test_the_stack_keeps_no_frame_or_local_alive(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A function checks a connection out and returns without giving it
        back: its locals are collected, and the leak is still reported with
        its line."""
        watch(client, recorder)
        pool = client.connection_pool

        class Witness:
            pass

        refs: list[weakref.ref[Witness]] = []
        held: list[Any] = []
        where: list[str] = []

        def leak_one() -> None:
            witness = Witness()
            refs.append(weakref.ref(witness))
            where.append(here(1))
            held.append(pool.get_connection(*ARGS))

        leak_one()
        gc.collect()
        assert refs[0]() is None
        leak = recorder.wait_for(rl.PoolConnectionLeakEvent)
        assert leak.caller == where[0]
        pool.release(held.pop())

    def test_a_raising_leak_callback_leaks_nothing(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A leak callback that raises is logged; the connection is returned
        as usual and the next command works."""
        handle = watch(client, recorder, callback_error_handler=rl.CallbackErrorHandler("raise"))

        def boom(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("callback failed")

        handle.dispatcher.subscribe(rl.PoolConnectionLeakEvent, boom)
        pool = client.connection_pool
        connection = pool.get_connection(*ARGS)
        recorder.wait_for(rl.PoolConnectionLeakEvent)
        pool.release(connection)
        assert client.ping() is True
        assert handle.pool_stats()[0]["active"] == 0


class TestWatchdog:
    def test_uninstrument_stops_the_watchdog(self, client: redis.Redis) -> None:
        rl.instrument(client, leak_detection=THRESHOLD)
        client.ping()
        assert leaks.watchdog_running()
        rl.uninstrument(client)
        wait_until(lambda: not leaks.watchdog_running(), what="the watchdog to stop")

    def test_uninstrument_all_stops_the_watchdog(self, server: RedisServer) -> None:
        rl.instrument_all(leak_detection=THRESHOLD)
        c = redis.Redis(host=server.host, port=server.port)
        c.ping()
        assert leaks.watchdog_running()
        rl.uninstrument_all()
        wait_until(lambda: not leaks.watchdog_running(), what="the watchdog to stop")
        c.close()

    def test_instrument_all_reports_leaks(self, server: RedisServer) -> None:
        recorder = Recorder()
        dispatcher = rl.instrument_all(leak_detection=THRESHOLD)
        dispatcher.subscribe(rl.PoolConnectionLeakEvent, recorder)
        c = redis.Redis(host=server.host, port=server.port)
        connection = c.connection_pool.get_connection(*ARGS)
        line = here(-1)
        assert recorder.wait_for(rl.PoolConnectionLeakEvent).caller == line
        c.connection_pool.release(connection)
        c.close()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_a_forked_child_starts_without_watchdog_or_records(self, client: redis.Redis) -> None:
        """The parent holds a connection under leak detection; the child has no
        watchdog and no record of the parent's checkout."""
        rl.instrument(client, leak_detection=30)
        connection = client.connection_pool.get_connection(*ARGS)
        assert leaks.watchdog_running()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            from redis_lifecycle._hooks.state import CONNECTIONS

            ok = not leaks.watchdog_running() and all(s.leak is None for s in CONNECTIONS.values())
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert leaks.watchdog_running()  # the parent's goes on
        client.connection_pool.release(connection)


class TestOptions:
    def test_lifecycle_pool_and_pooled_take_leak_detection(self, server: RedisServer) -> None:
        pool = rl.LifecycleBlockingConnectionPool(
            host=server.host, port=server.port, leak_detection=THRESHOLD
        )
        assert pool.lifecycle.delivery.leak_threshold == THRESHOLD
        rl.uninstrument(pool)
        client = rl.pooled(server.host, server.port, pool={"leak_detection": 1.5})
        handle = rl.instrument(client.connection_pool)
        assert handle.delivery.leak_threshold == 1.5
        with EventRecorder(client.connection_pool) as recorder:
            connection = client.connection_pool.get_connection(*ARGS)
            client.connection_pool.release(connection)
            recorder.assert_no_leaks()
        client.close()

    @pytest.mark.parametrize(
        ("value", "error"), [(0, ValueError), (-1, ValueError), ("5", TypeError), (True, TypeError)]
    )
    def test_bad_values_are_refused_before_anything_changes(
        self, client: redis.Redis, value: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error, match="leak_detection"):
            rl.instrument(client, leak_detection=value)
        assert rl.uninstrument(client) is False
        with pytest.raises(error, match="leak_detection"):
            rl.instrument_all(leak_detection=value)
        assert not is_instrumenting_all()

    def test_a_different_threshold_is_refused_on_an_instrumented_client(
        self, client: redis.Redis
    ) -> None:
        rl.instrument(client, leak_detection=1)
        with pytest.raises(ValueError, match="leak_detection"):
            rl.instrument(client, leak_detection=2)
        assert rl.instrument(client, leak_detection=1) is rl.instrument(client)


class TestRecorder:
    def test_assert_no_leaks_lists_the_stack(self, client: redis.Redis) -> None:
        rl.instrument(client, leak_detection=THRESHOLD)
        with EventRecorder(client) as recorder:
            connection = client.connection_pool.get_connection(*ARGS)
            line = here(-1)
            recorder.wait_for(rl.PoolConnectionLeakEvent)
            with pytest.raises(AssertionError) as failure:
                recorder.assert_no_leaks()
            client.connection_pool.release(connection)
        message = str(failure.value)
        assert "expected no leaked connection, recorded 1" in message
        assert "checked out at (most recent call last):" in message
        assert f"        {line}" in message.splitlines()


class TestSaturation:
    def test_eight_threads_racing_a_blocking_pool_of_two(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """Two threads hold both connections; six more wait in the pool:
        pool_stats() shows 6 waiting, the peak, and connection_acquired the
        callers already waiting when each started."""
        pool = redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=2, timeout=10
        )
        client = redis.Redis(connection_pool=pool)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        assert handle.pool_stats()[0]["waiting"] == 0
        holders = [run_holding(lambda release: _hold(pool, release), f"h{i}") for i in range(2)]
        wait_until(lambda: handle.pool_stats()[0]["active"] == 2, what="both connections out")
        waiters = [threading.Thread(target=client.get, args=("leaks:k",)) for _ in range(6)]
        for count, thread in enumerate(waiters, 1):  # one at a time: each sees the others
            thread.start()
            wait_until(lambda: pool_row(handle)["waiting"] == count, what=f"{count} waiting")  # noqa: B023
        for holder in holders:
            finish(holder)
        for thread in waiters:
            thread.join(10)
        row = pool_row(handle)
        assert row["waiting"] == 0
        assert row["waiting_peak"] == 6  # the most at once since the previous pool_stats()
        assert pool_row(handle)["waiting_peak"] == 0  # starts anew
        pending = [e.pending for e in recorder.exactly(rl.PoolConnectionAcquiredEvent)]
        assert len(pending) == 8
        assert pending[:2] == [0, 0]  # the holders found free connections
        assert sorted(pending[2:]) == [0, 1, 2, 3, 4, 5]  # each waiter saw those before it
        client.close()
        pool.disconnect()

    def test_a_plain_pool_never_waits(self, client: redis.Redis) -> None:
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, lambda e: None)
        client.ping()
        row = handle.pool_stats()[0]
        assert (row["waiting"], row["waiting_peak"]) == (0, 0)

    def test_not_counted_without_a_per_command_subscriber(self, server: RedisServer) -> None:
        pool = redis.BlockingConnectionPool(host=server.host, port=server.port)
        handle = rl.instrument(redis.Redis(connection_pool=pool))
        row = handle.pool_stats()[0]
        assert (row["waiting"], row["waiting_peak"]) == (None, None)


def pool_row(handle: rl.LifecycleHandle) -> dict[str, Any]:
    [row] = handle.pool_stats()
    return row


def _hold(pool: Any, release: threading.Event) -> None:
    connection = pool.get_connection(*ARGS)
    try:
        release.wait(10)
    finally:
        pool.release(connection)
