"""Real faults on ``redis.asyncio``: the server killed and restarted under many
concurrent tasks, and event loops that end with connections still open.

The server is SIGKILLed (every connection drops at once) and restarted on the
same port and unix socket; the event loop is closed, or another one runs,
while an instrumented client still holds connected connections.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis.asyncio as aredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import redis_lifecycle as rl
from redis_lifecycle._coroutine_callbacks import pending
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder

TASKS = 40
POOL_SIZE = 8


def client_for(server: RedisServer, transport: str, **kwargs: Any) -> aredis.Redis:
    if transport == "unix":
        pool: aredis.ConnectionPool = aredis.BlockingConnectionPool(
            connection_class=aredis.UnixDomainSocketConnection,
            path=server.unix_path,
            max_connections=POOL_SIZE,
            timeout=10,
            **kwargs,
        )
    else:
        pool = aredis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=POOL_SIZE, timeout=10, **kwargs
        )
    return aredis.Redis.from_pool(pool)


async def wait_for_condition(condition: Any, what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def per_connection(events: list[rl.LifecycleEvent]) -> dict[int, list[str]]:
    """Connect/disconnect history of each connection, in delivery order."""
    history: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if isinstance(event, (rl.ConnectionConnectedEvent, rl.ConnectionDisconnectedEvent)):
            assert event.connection_id is not None
            history[event.connection_id].append(event.type.value)
    return history


class TestKillAndRestart:
    @pytest.mark.parametrize("transport", ["tcp", "unix"])
    async def test_many_tasks_survive_kill_and_restart_with_consistent_events(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """40 tasks on an 8-connection blocking pool while the server is SIGKILLed and
        restarted: every connected connection reports one disconnect with an error,
        connects again only after it, refused attempts report connect errors, every
        acquire is matched by a release, and the pool ends with nothing checked out."""
        client = client_for(server, transport, retry=Retry(NoBackoff(), 1))
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        successes_before: set[int] = set()
        successes_after: set[int] = set()
        failures: list[BaseException] = []
        phase = {"name": "before"}
        stop = asyncio.Event()

        async def worker(n: int) -> None:
            while not stop.is_set():
                try:
                    await client.incr(f"counter:{n}")
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
                    failures.append(e)
                    await asyncio.sleep(0.01)  # pace the retries of a down server
                    continue
                (successes_before if phase["name"] == "before" else successes_after).add(n)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(worker(n)) for n in range(TASKS)]
        try:
            await wait_for_condition(lambda: len(successes_before) == TASKS, "every task to run")
            connected_before = {e.connection_id for e in recorder.of(rl.ConnectionConnectedEvent)}
            assert 1 < len(connected_before) <= POOL_SIZE
            mark = len(recorder.events)
            server.kill()
            await wait_for_condition(lambda: len(failures) >= TASKS, "tasks to see the outage")
            phase["name"] = "after"
            server.restart()
            await wait_for_condition(lambda: len(successes_after) == TASKS, "every task again")
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r is None for r in results), results

        after_kill = recorder.events[mark:]
        disconnected = [e for e in after_kill if isinstance(e, rl.ConnectionDisconnectedEvent)]
        closed_ids = {e.connection_id for e in disconnected}
        assert connected_before <= closed_ids
        for event in disconnected:
            assert event.error is not None
            assert event.reason in (rl.CloseReason.SERVER_CLOSED, rl.CloseReason.ERROR)
        connect_errors = [
            e for e in after_kill if isinstance(e, rl.ConnectionErrorEvent) and e.phase == "connect"
        ]
        assert connect_errors, "refused connects while the server was down"
        reconnected = {e.connection_id for e in recorder.exactly(rl.ConnectionReconnectedEvent)}
        assert reconnected, "connections came back after the restart"

        for connection_id, history in per_connection(recorder.events).items():
            assert history[0] == "connected", (connection_id, history)
            for previous, current in itertools.pairwise(history):
                # strictly alternating: never closed twice, never connected twice
                assert (previous == "disconnected") != (current == "disconnected"), (
                    connection_id,
                    history,
                )
            assert history.count("connected") == 1

        acquired = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        released = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert len(acquired) == len(released)
        assert max(e.active_connections for e in acquired) <= POOL_SIZE
        pool = client.connection_pool
        assert len(pool._in_use_connections) == 0
        assert handle.pool_stats()[0]["active"] == 0
        await client.aclose()
        await handle.aclose()


class TestHealthCheckAfterKill:
    async def test_health_check_interval_after_a_kill(
        self, server: RedisServer, admin: Any, recorder: Recorder
    ) -> None:
        """health_check_interval on a single-connection client whose connection was
        killed: the health PING fails
        (health_check healthy=False), the close is labelled health_check_failed, the
        connection reconnects and the retried PING is healthy."""
        client = aredis.Redis(
            host=server.host,
            port=server.port,
            health_check_interval=cast(int, 0.05),
            # no pool checkout, so no dirty-connection probe gets there first
            single_connection_client=True,
            retry=Retry(NoBackoff(), 1),
        )
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        try:
            own_id = await client.client_id()
            recorder.clear()
            assert admin.client_kill_filter(_id=own_id) == 1
            await asyncio.sleep(0.06)  # let the 50 ms health-check deadline pass (redis-py 5.2
            # pings mid-handshake, between pipelined replies, if it passes during one)
            assert await client.get("missing") is None
        finally:
            await client.aclose()
        checks = recorder.exactly(rl.ConnectionHealthCheckEvent)
        # 5.x also pings during the reconnect's handshake: one or two healthy after
        assert checks[0].healthy is False
        assert len(checks) >= 2
        assert all(c.healthy for c in checks[1:])
        assert checks[0].error is not None
        [disconnected] = [
            e for e in recorder.exactly(rl.ConnectionDisconnectedEvent) if e.error is not None
        ]
        assert disconnected.reason is rl.CloseReason.HEALTH_CHECK_FAILED
        [error] = recorder.exactly(rl.ConnectionErrorEvent)
        assert error.phase == "health_check"
        types = recorder.types()
        assert types.index("health_check") < types.index("reconnected")
        assert types.index("disconnected") < types.index("reconnected")


def _run_and_abandon(
    server: RedisServer, instrumented: bool, ending: str
) -> tuple[Any, Recorder, Any]:
    """Run commands on a fresh loop, then end the loop (``asyncio.run`` or a bare
    ``loop.close()``) with the client's connections still open."""
    recorder = Recorder()
    holder: dict[str, Any] = {}

    async def main() -> None:
        client = aredis.Redis(host=server.host, port=server.port)
        if instrumented:
            handle = rl.instrument(client)
            handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)

            async def slow(event: rl.LifecycleEvent) -> None:
                await asyncio.sleep(3600)  # still pending when the loop ends

            handle.dispatcher.subscribe(rl.LifecycleEvent, slow)
            holder["delivery"] = handle.delivery
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.05) for _ in range(3)))
        holder["client"] = client

    if ending == "asyncio.run":
        asyncio.run(main())
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
    return holder.pop("client"), recorder, holder.get("delivery")


class _Captured:
    def __init__(self) -> None:
        self.unraisable: list[Any] = []
        self.warnings: list[warnings.WarningMessage] = []

    def release(self) -> None:
        """Drop what was recorded and collect: warnings hold their ``source``
        (redis-py passes the connection), which keeps the abandoned client's
        objects, and its destroyed callback tasks, alive until then."""
        self.warnings.clear()
        self.unraisable.clear()
        gc.collect()


@pytest.fixture
def captured() -> Iterator[_Captured]:
    """Unraisable exceptions and every warning, recorded instead of raised."""
    result = _Captured()
    previous = sys.unraisablehook
    sys.unraisablehook = result.unraisable.append
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            result.warnings = recorded  # the live list: the test reads it
            yield result
            gc.collect()
    finally:
        sys.unraisablehook = previous
        # warnings hold their source objects (redis-py passes the connection)
        result.warnings.clear()
        result.unraisable.clear()


def _raised_in_library(unraisable: Any) -> bool:
    """Whether the innermost frame of an unraisable exception is ours."""
    traceback = unraisable.exc_traceback
    innermost = None
    while traceback is not None:
        innermost = traceback
        traceback = traceback.tb_next
    return innermost is not None and "redis_lifecycle" in innermost.tb_frame.f_code.co_filename


def _from_library(message: warnings.WarningMessage) -> bool:
    return "redis_lifecycle" in str(message.filename) or "redis_lifecycle" in str(message.message)


class TestClosedEventLoop:
    @pytest.mark.parametrize("ending", ["asyncio.run", "loop.close"])
    @pytest.mark.parametrize("collected_in", ["no loop", "another loop"])
    def test_closed_loop_with_open_connections_raises_nothing_from_the_library(
        self,
        server: RedisServer,
        captured: _Captured,
        caplog: pytest.LogCaptureFixture,
        ending: str,
        collected_in: str,
    ) -> None:
        """A loop ends with an instrumented client's connections open and async
        callbacks pending; the client is then garbage-collected (with no loop, or
        inside another loop): no exception raised by the library, no library
        warning or log line, and the same kinds of unraisable exceptions and
        warnings as an uninstrumented client gets."""

        def abandon(instrumented: bool) -> tuple[Recorder, int]:
            client, recorder, delivery = _run_and_abandon(server, instrumented, ending)
            still_pending = pending(delivery) if delivery is not None else 0
            doomed = [client, delivery]
            del client, delivery
            if collected_in == "another loop":

                async def collect() -> None:
                    doomed.clear()
                    gc.collect()

                asyncio.run(collect())
            doomed.clear()
            gc.collect()
            return recorder, still_pending

        caplog.set_level(logging.DEBUG, logger="redis_lifecycle")
        caplog.set_level(logging.ERROR, logger="asyncio")
        baseline_recorder, _ = abandon(False)
        gc.collect()
        baseline = {w.category for w in captured.warnings}
        baseline_unraisable = {u.exc_type for u in captured.unraisable}
        captured.warnings.clear()
        captured.unraisable.clear()
        recorder, still_pending = abandon(True)
        gc.collect()
        assert baseline_recorder.events == []
        # asyncio.run cancels the pending callbacks; a bare loop.close() destroys
        # them, which asyncio (not the library) logs: both leave nothing pending.
        assert still_pending == 0
        lost = [r for r in caplog.records if r.name == "asyncio"]
        if ending == "asyncio.run":
            assert lost == []
        assert all("redis_lifecycle callback" in r.getMessage() for r in lost)
        # redis-py itself may raise from __del__ (5.0 closes on a closed loop: RuntimeError);
        # instrumented, exactly the same kinds, and none raised by redis_lifecycle.
        assert {u.exc_type for u in captured.unraisable} == baseline_unraisable
        assert [u for u in captured.unraisable if _raised_in_library(u)] == []
        assert [w for w in captured.warnings if _from_library(w)] == []
        assert {w.category for w in captured.warnings} <= baseline | {ResourceWarning}
        assert [r for r in caplog.records if r.name == "redis_lifecycle"] == []
        assert len(recorder.exactly(rl.ConnectionConnectedEvent)) == 3
        captured.release()
        lost = [r for r in caplog.records if r.name == "asyncio"]
        assert all("redis_lifecycle callback" in r.getMessage() for r in lost)

    def test_library_keeps_working_on_a_new_loop_after_a_closed_one(
        self, server: RedisServer, captured: _Captured, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After a loop closed under an instrumented client, a new loop's instrumented
        client gets its events and uninstrument works."""
        caplog.set_level(logging.ERROR, logger="asyncio")  # the destroyed callbacks
        client, _, delivery = _run_and_abandon(server, True, "loop.close")
        del client, delivery
        gc.collect()

        async def again() -> list[str]:
            fresh = aredis.Redis(host=server.host, port=server.port)
            recorder = Recorder()
            rl.instrument(fresh).dispatcher.subscribe(rl.LifecycleEvent, recorder)
            await fresh.ping()
            await fresh.aclose()
            assert rl.uninstrument(fresh) is True
            return recorder.types()

        types = asyncio.run(again())
        assert types[-1] == "disconnected"
        assert "connected" in types
        assert [u for u in captured.unraisable if _raised_in_library(u)] == []
        captured.release()
