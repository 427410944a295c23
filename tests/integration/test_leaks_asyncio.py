"""Leak detection and pool saturation on ``redis.asyncio``, provoked for real.

A task holds a connection past ``leak_detection``: the loop's timer reports
it while it is held, with the task's name and the test's own line; a task
that returns it in time is not reported. Eight tasks race an asyncio
``BlockingConnectionPool`` of two.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Coroutine
from typing import Any, cast

import redis.asyncio as aredis
import redis.asyncio.connection as aconn

import redis_lifecycle as rl
from redis_lifecycle._hooks import leaks
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, async_wait_for

THRESHOLD = 0.2


def _checkout_args() -> tuple[str, ...]:
    """``get_connection`` needs a command name on 5.x; tests call it
    themselves so that the stack's innermost line is theirs."""
    signature = inspect.signature(aconn.ConnectionPool.get_connection)
    parameter = signature.parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return ("PING",)
    return ()


ARGS = _checkout_args()


def here(offset: int = 0) -> str:
    frame = sys._getframe(1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno + offset} in {frame.f_code.co_name}"


async def until(condition: Any, what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` without blocking the loop, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class TestAsyncLeaks:
    async def test_a_task_holding_a_connection_past_the_threshold(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        client = aredis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(client, leak_detection=THRESHOLD)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        pool = client.connection_pool
        release = asyncio.Event()
        where: list[str] = []

        async def hold() -> None:
            where.append(here(1))
            connection = await pool.get_connection(*ARGS)
            try:
                await release.wait()
            finally:
                await pool.release(connection)

        task = asyncio.create_task(hold(), name="holder-task")
        leak = await async_wait_for(recorder, rl.PoolConnectionLeakEvent)
        assert not task.done()
        assert recorder.exactly(rl.PoolConnectionReleasedEvent) == []
        assert leak.task_name == "holder-task"
        assert leak.thread_name == "MainThread"
        assert leak.held_time >= THRESHOLD
        assert leak.caller == where[0]
        assert leak.stack[0] == where[0]  # the event loop's frames are left out
        release.set()
        await task
        [released] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert released.reported_leak is True
        assert len(recorder.exactly(rl.PoolConnectionLeakEvent)) == 1
        await client.aclose()

    async def test_a_blocked_command_and_a_task_returning_in_time(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """A quick checkout is not reported, even after a BLPOP blocked past
        the threshold was (the timer has looked by then)."""
        client = aredis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(client, leak_detection=THRESHOLD)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        await client.ping()
        where: list[str] = []

        async def blocked() -> None:
            where.append(here(1))
            await client.blpop(["leaks:never"], timeout=1)

        task = asyncio.create_task(blocked(), name="blpop-task")
        leak = await async_wait_for(recorder, rl.PoolConnectionLeakEvent)
        assert leak.caller == where[0]
        assert leak.task_name == "blpop-task"
        await task
        leaks_seen = recorder.exactly(rl.PoolConnectionLeakEvent)
        assert len(leaks_seen) == 1
        released = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert [r.reported_leak for r in released] == [False, True]  # ping, then blpop
        await client.aclose()

    async def test_uninstrument_stops_the_loop_timer(self, server: RedisServer) -> None:
        client = aredis.Redis(host=server.host, port=server.port)
        rl.instrument(client, leak_detection=THRESHOLD)
        await client.ping()
        assert leaks.watchdog_running()
        rl.uninstrument(client)
        await until(lambda: not leaks.watchdog_running(), "the timer to stop")
        await client.aclose()


class TestAsyncSaturation:
    async def test_eight_tasks_racing_a_blocking_pool_of_two(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        pool = aconn.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=2, timeout=10
        )
        client = aredis.Redis(connection_pool=pool)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        release = asyncio.Event()

        async def hold() -> None:
            connection = await pool.get_connection(*ARGS)
            try:
                await release.wait()
            finally:
                await pool.release(connection)

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await until(lambda: handle.pool_stats()[0]["active"] == 2, "both connections out")
        waiters: list[asyncio.Task[Any]] = []
        for count in range(1, 7):
            # redis-py annotates its asyncio commands as Awaitable; they are coroutines
            waiters.append(
                asyncio.create_task(cast(Coroutine[Any, Any, Any], client.get("leaks:k")))
            )
            await until(lambda: handle.pool_stats()[0]["waiting"] == count, f"{count} waiting")  # noqa: B023
        release.set()
        await asyncio.gather(*holders, *waiters)
        row = handle.pool_stats()[0]
        assert row["waiting"] == 0
        assert row["waiting_peak"] == 6
        pending = [e.pending for e in recorder.exactly(rl.PoolConnectionAcquiredEvent)]
        assert pending[:2] == [0, 0]
        assert sorted(pending[2:]) == [0, 1, 2, 3, 4, 5]
        await client.aclose()
        await pool.disconnect()
