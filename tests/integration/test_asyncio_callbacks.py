"""Where callbacks run for asyncio clients, and how ``async def`` callbacks are
scheduled, reported and awaited (``handle.drain()`` / ``handle.aclose()``).

Real server, real commands; the callbacks themselves are the test doubles.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

import redis_lifecycle as rl
from redis_lifecycle._coroutine_callbacks import pending
from redis_lifecycle.asyncio import LifecycleConnectionPool
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, async_wait_for


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[aredis.Redis]:
    c = aredis.Redis(host=server.host, port=server.port)
    yield c
    await c.aclose()


class TestPlainCallbacks:
    async def test_plain_callback_runs_inline_in_the_commands_task(
        self, client: aredis.Redis
    ) -> None:
        """A plain callback runs on the loop's thread, inside the task that ran the
        command, before the command returns."""
        handle = rl.instrument(client)
        seen: list[tuple[Any, int]] = []
        handle.dispatcher.subscribe(
            rl.PoolConnectionAcquiredEvent,
            lambda e: seen.append((asyncio.current_task(), threading.get_ident())),
        )
        await client.ping()
        assert seen == [(asyncio.current_task(), threading.get_ident())]

    async def test_raising_plain_callback_never_fails_the_command(
        self, client: aredis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plain callback that raises is logged (strategy log) and the command works."""
        handle = rl.instrument(client)

        def boom(event: rl.LifecycleEvent) -> None:
            raise ValueError("callback bug")

        handle.dispatcher.subscribe(rl.LifecycleEvent, boom)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            assert await client.set("k", "v") is True
            assert await client.get("k") == b"v"
        assert any("callback bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
        assert client.connection_pool._in_use_connections == set()

    async def test_raise_strategy_on_acquired_releases_before_raising(
        self, client: aredis.Redis
    ) -> None:
        """Strategy raise: the command raises CallbackError and the connection is back in
        the pool (none leaked)."""
        handle = rl.instrument(client, callback_error_handler=rl.CallbackErrorHandler("raise"))

        def boom(event: rl.LifecycleEvent) -> None:
            raise ValueError("no")

        handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, boom)
        with pytest.raises(rl.CallbackError) as caught:
            await client.ping()
        assert isinstance(caught.value.event, rl.PoolConnectionAcquiredEvent)
        assert isinstance(caught.value.__cause__, ValueError)
        pool = client.connection_pool
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) == 1


class TestAsyncCallbacks:
    async def test_async_callback_does_not_block_the_command(self, client: aredis.Redis) -> None:
        """An async def callback is scheduled: the command completes while the callback
        still waits; drain() then waits for it to finish."""
        handle = rl.instrument(client)
        gate = asyncio.Event()
        finished: list[str] = []

        async def slow(event: rl.LifecycleEvent) -> None:
            await gate.wait()
            finished.append(event.type.value)

        handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, slow)
        assert await client.ping() is True
        assert finished == []
        assert pending(handle.delivery) == 1
        gate.set()
        await handle.drain()
        assert finished == ["connection_released"]
        assert pending(handle.delivery) == 0

    async def test_async_callbacks_start_in_event_order_on_the_same_loop(
        self, client: aredis.Redis
    ) -> None:
        """Async callbacks run on the client's loop and start in the order the events
        happened."""
        handle = rl.instrument(client)
        started: list[str] = []
        loops: set[Any] = set()

        async def note(event: rl.LifecycleEvent) -> None:
            started.append(event.type.value)
            loops.add(asyncio.get_running_loop())

        handle.dispatcher.subscribe(rl.LifecycleEvent, note)
        await client.ping()
        await handle.drain()
        assert started == [
            "pool_connection_created",
            "connection_created",
            "connected",
            "connection_acquired",
            "connection_released",
        ]
        assert loops == {asyncio.get_running_loop()}

    async def test_async_callback_failure_goes_to_the_error_handler(
        self, client: aredis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An async callback that raises is logged with its traceback (strategy log);
        drain() does not raise."""
        handle = rl.instrument(client)

        async def boom(event: rl.LifecycleEvent) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("async callback bug")

        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, boom)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            assert await client.ping() is True
            await handle.drain()
        failures = [r for r in caplog.records if r.exc_info and r.name == "redis_lifecycle"]
        assert len(failures) == 1
        assert "async callback bug" in str(failures[0].exc_info[1])  # type: ignore[index]

    async def test_raise_strategy_async_failure_is_raised_by_drain(
        self, client: aredis.Redis
    ) -> None:
        """Strategy raise: the command is unaffected; the next drain() raises the
        CallbackError with the event attached, once."""
        handle = rl.instrument(client, callback_error_handler=rl.CallbackErrorHandler("raise"))

        async def boom(event: rl.LifecycleEvent) -> None:
            raise KeyError("late")

        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, boom)
        assert await client.ping() is True
        with pytest.raises(rl.CallbackError) as caught:
            await handle.drain()
        assert isinstance(caught.value.event, rl.ConnectionConnectedEvent)
        assert isinstance(caught.value.__cause__, KeyError)
        await handle.drain()  # reported once

    async def test_aclose_waits_for_pending_callbacks_and_stops_events(
        self, server: RedisServer
    ) -> None:
        """handle.aclose() after client.aclose(): the disconnected callback (still
        sleeping) has finished when it returns, and no event follows."""
        c = aredis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(c)
        done: list[rl.LifecycleEvent] = []

        async def slow(event: rl.LifecycleEvent) -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            done.append(event)

        handle.dispatcher.subscribe(rl.LifecycleEvent, slow)
        await c.ping()
        await c.aclose()
        await handle.aclose()
        assert [e.type.value for e in done][-1] == "disconnected"
        assert pending(handle.delivery) == 0
        count = len(done)
        await c.ping()
        await c.aclose()
        assert len(done) == count
        assert rl.uninstrument(c) is False

    async def test_callbacks_started_by_callbacks_are_drained_too(
        self, client: aredis.Redis
    ) -> None:
        """drain() also waits for async callbacks whose events a callback caused (a
        callback that runs a Redis command)."""
        handle = rl.instrument(client)
        admin = aredis.Redis(connection_pool=client.connection_pool)
        results: list[Any] = []

        async def on_connected(event: rl.LifecycleEvent) -> None:
            if None not in results:  # its own GET may connect a second connection
                results.append(await admin.get("missing"))

        async def on_released(event: rl.LifecycleEvent) -> None:
            await asyncio.sleep(0)
            results.append(event.type.value)

        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, on_connected)
        handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, on_released)
        await client.ping()
        await handle.drain()
        # the command's release, then on_connected's GET and its release (two
        # GETs if the second connection's callback started before the first ended)
        assert results.count(None) in (1, 2)
        assert results.count("connection_released") == 1 + results.count(None)
        assert pending(handle.delivery) == 0

    async def test_legacy_async_callback_receives_a_dict(self, client: aredis.Redis) -> None:
        """register_connection_callback accepts an async def; it gets the event dict."""
        handle = rl.instrument(client)
        got: list[dict[str, Any]] = []

        @handle.register_connection_callback("connected")
        async def on_connected(payload: dict[str, Any]) -> None:
            got.append(payload)

        await client.ping()
        await handle.drain()
        assert [p["type"] for p in got] == ["connected"]
        assert got[0]["port"] == client.connection_pool.connection_kwargs["port"]

    async def test_lifecycle_pool_aclose_drains(self, server: RedisServer) -> None:
        """LifecycleConnectionPool.aclose() closes the connections and waits for the async
        callbacks of their disconnects."""
        pool = LifecycleConnectionPool(host=server.host, port=server.port)
        closed: list[rl.CloseReason] = []

        async def on_disconnected(event: rl.ConnectionDisconnectedEvent) -> None:
            await asyncio.sleep(0)
            closed.append(event.reason)

        pool.lifecycle.dispatcher.subscribe(rl.ConnectionDisconnectedEvent, on_disconnected)
        c = aredis.Redis(connection_pool=pool)
        await asyncio.gather(c.ping(), c.ping())
        await pool.aclose()
        assert closed == [rl.CloseReason.APPLICATION] * 2


class TestNoRunningLoop:
    def test_async_callback_on_a_sync_client_is_not_run_and_is_reported(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No loop in the emitting thread (a sync client): the coroutine is closed
        unrun (no 'never awaited' warning), the error handler gets a RuntimeError
        saying why, and the command works."""
        c = redis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(c)
        ran: list[str] = []

        async def never(event: rl.LifecycleEvent) -> None:
            ran.append("ran")

        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, never)
        try:
            with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
                assert c.ping() is True
                gc.collect()  # an unclosed coroutine would warn here (warnings are errors)
        finally:
            c.close()
        assert ran == []
        [record] = [r for r in caplog.records if r.exc_info]
        error = record.exc_info[1]  # type: ignore[index]
        assert isinstance(error, RuntimeError)
        assert "no asyncio event loop is running" in str(error)
        assert pending(handle.delivery) == 0

    def test_raise_strategy_without_a_loop_logs_instead_of_raising(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Strategy raise with no loop: nobody can be raised to later, so it is logged;
        the command is unaffected."""
        c = redis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(c, callback_error_handler=rl.CallbackErrorHandler("raise"))

        async def never(event: rl.LifecycleEvent) -> None:
            raise AssertionError("must not run")

        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, never)
        try:
            with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
                assert c.ping() is True
        finally:
            c.close()
        messages = [r.getMessage() for r in caplog.records]
        assert any("no caller to raise it to" in m for m in messages)

    async def test_event_from_another_thread_runs_on_the_pools_loop(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """An event delivered on a thread with no loop (as an executor worker does) while
        the pool's loop runs: its async callback is handed to that loop and drained."""
        handle = rl.instrument(client)
        ran_on: list[Any] = []

        async def on_event(event: rl.LifecycleEvent) -> None:
            ran_on.append((asyncio.get_running_loop(), threading.get_ident()))

        await client.ping()  # connects: the hooks learn the pool's loop
        handle.dispatcher.subscribe(rl.PoolResetEvent, on_event)
        handle.dispatcher.subscribe(rl.PoolResetEvent, recorder)
        pool = client.connection_pool
        await pool.disconnect()
        await asyncio.to_thread(pool.reset)  # emits pool_reset on a worker thread
        await async_wait_for(recorder, rl.PoolResetEvent)
        await handle.drain()
        assert ran_on == [(asyncio.get_running_loop(), threading.get_ident())]


class TestExecutor:
    async def test_async_callbacks_through_an_executor_run_on_the_clients_loop(
        self, client: aredis.Redis
    ) -> None:
        """With an AsyncCallbackExecutor, plain callbacks run on its worker threads and
        async def callbacks are handed back to the client's loop; drain() waits for
        them."""
        loop_thread = threading.get_ident()
        plain_threads: set[int] = set()
        async_runs: list[tuple[Any, int]] = []
        with rl.AsyncCallbackExecutor(pool_size=2) as executor:
            handle = rl.instrument(client, async_callbacks=executor)
            handle.dispatcher.subscribe(
                rl.ConnectionConnectedEvent, lambda e: plain_threads.add(threading.get_ident())
            )

            async def on_connected(event: rl.LifecycleEvent) -> None:
                async_runs.append((asyncio.get_running_loop(), threading.get_ident()))

            handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, on_connected)
            assert await client.ping() is True
            deadline = asyncio.get_running_loop().time() + 5
            while not async_runs and asyncio.get_running_loop().time() < deadline:
                await handle.drain()
                await asyncio.sleep(0.005)  # the worker thread hands it over
            await handle.drain()
        assert plain_threads
        assert loop_thread not in plain_threads
        assert async_runs == [(asyncio.get_running_loop(), loop_thread)]
