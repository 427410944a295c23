"""Bad arguments are refused when they are given, not at the first command
(``pooled(pool=...)``, a shut-down ``AsyncCallbackExecutor``), and events that
still reach a shut-down executor are run and warned about once."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, cast

import pytest
import redis

import redis_lifecycle as rl
import redis_lifecycle.asyncio as rla
from redis_lifecycle._instrument_all import is_instrumenting_all
from redis_lifecycle.instrument import find_handle
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, checkout

PASSWORD = "s3cr3t-Pa55word"

POOLED = [pytest.param(rl.pooled, id="sync"), pytest.param(rla.pooled, id="asyncio")]


class TestPooledOptions:
    @pytest.mark.parametrize("pooled", POOLED)
    @pytest.mark.parametrize(
        ("pool", "error", "expected"),
        [
            ({"size": 0}, ValueError, r'pool\["size"\] .* must be >= 1, got 0'),
            ({"size": -3}, ValueError, r'pool\["size"\] .* must be >= 1, got -3'),
            ({"size": "10"}, TypeError, r'pool\["size"\] .* an int >= 1; got str'),
            ({"size": 2.5}, TypeError, r'pool\["size"\] .* an int >= 1; got float'),
            ({"size": True}, TypeError, r'pool\["size"\] .* an int >= 1; got bool'),
            ({"timeout": -1}, ValueError, r'pool\["timeout"\] .* >= 0 .*got -1'),
            ({"timeout": float("nan")}, ValueError, r'pool\["timeout"\] .*got nan'),
            ({"timeout": float("inf")}, ValueError, r"None: no limit"),
            ({"timeout": "5"}, TypeError, r'pool\["timeout"\] .*got str'),
            ({"pool_name": 7}, TypeError, r'pool\["pool_name"\] .* must be a str, got int'),
            ("big", TypeError, r"pool= expects a dict of pool options .*got str: 'big'"),
            ([("size", 2)], TypeError, r"pool= expects a dict .*got list"),
            ({"max_connections": 5}, TypeError, r"got unknown \['max_connections'\]"),
            ({"db": 1}, TypeError, r"connection arguments .* go to pooled\(\) itself"),
        ],
    )
    def test_a_bad_pool_option_is_refused_with_what_to_do(
        self, pooled: Any, pool: Any, error: type[Exception], expected: str
    ) -> None:
        with pytest.raises(error, match=expected) as raised:
            pooled("127.0.0.1", 6379, pool=pool)
        assert 'e.g. pool={"' in str(raised.value) or "pooled() itself" in str(raised.value)

    def test_the_message_never_shows_a_password(self) -> None:
        """A URL pasted into pool= by mistake: the password is masked."""
        with pytest.raises(TypeError) as raised:
            rl.pooled("127.0.0.1", 6379, pool=f"redis://:{PASSWORD}@127.0.0.1:6379/0")  # type: ignore[arg-type]
        assert PASSWORD not in str(raised.value)
        with pytest.raises(TypeError) as raised:
            rl.pooled("127.0.0.1", 6379, pool={"timeout": f"redis://:{PASSWORD}@h/0"})
        assert PASSWORD not in str(raised.value)

    def test_accepted_values_reach_the_pool_on_a_real_server(self, server: RedisServer) -> None:
        """size 1, timeout 0 (do not wait) and timeout None (no limit) are accepted and used."""
        client = rl.pooled(server.host, server.port, pool={"size": 1, "timeout": 0})
        pool = cast(rl.LifecycleBlockingConnectionPool, client.connection_pool)
        assert (pool.max_connections, pool.timeout) == (1, 0)
        assert client.ping() is True
        held = checkout(pool)
        with pytest.raises(redis.ConnectionError):  # size 1, no wait: exhausted at once
            client.ping()
        pool.release(held)
        assert client.ping() is True
        client.close()
        unlimited = rl.pooled(server.host, server.port, pool={"timeout": None, "size": 2})
        assert cast(rl.LifecycleBlockingConnectionPool, unlimited.connection_pool).timeout is None
        assert unlimited.ping() is True
        unlimited.close()

    def test_asyncio_pooled_accepts_good_values_on_a_real_server(self, server: RedisServer) -> None:
        async def main() -> None:
            client = rla.pooled(server.host, server.port, pool={"size": 3, "timeout": 0.5})
            assert await client.ping() is True
            assert client.connection_pool.max_connections == 3
            await client.aclose()

        asyncio.run(main())


def _lifecycle_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "redis_lifecycle"
        and r.levelno == logging.WARNING
        and "shutdown()" in r.message
    ]


class TestShutDownExecutor:
    def test_instrument_refuses_a_shut_down_executor(self, server: RedisServer) -> None:
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executor.shutdown()
        client = redis.Redis(host=server.host, port=server.port)
        with pytest.raises(
            RuntimeError, match=r"instrument\(\) was given async_callbacks=.*shut down"
        ):
            rl.instrument(client, async_callbacks=executor)
        assert find_handle(client) is None  # nothing was instrumented
        assert client.ping() is True
        client.close()

    def test_instrument_all_refuses_a_shut_down_executor(self) -> None:
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executor.shutdown()
        with pytest.raises(RuntimeError, match=r"instrument_all\(\) .*shut down"):
            rl.instrument_all(async_callbacks=executor)
        assert not is_instrumenting_all()

    @pytest.mark.parametrize(
        "pool_class",
        [
            rl.LifecycleConnectionPool,
            rl.LifecycleBlockingConnectionPool,
            rla.LifecycleConnectionPool,
            rla.LifecycleBlockingConnectionPool,
        ],
    )
    def test_lifecycle_pools_refuse_a_shut_down_executor(self, pool_class: Any) -> None:
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executor.shutdown()
        with pytest.raises(RuntimeError, match=r"LifecycleConnectionPool was given|Lifecycle"):
            pool_class(host="127.0.0.1", async_callbacks=executor)
        with pytest.raises(RuntimeError, match="leave out async_callbacks"):
            pool_class.from_url("redis://127.0.0.1/0", async_callbacks=executor)

    def test_pooled_refuses_a_shut_down_executor(self) -> None:
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        executor.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            rl.pooled("127.0.0.1", 6379, async_callbacks=executor)

    def test_events_after_shutdown_run_inline_and_warn_once(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client instrumented before the shutdown keeps delivering: inline, one warning."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        recorder = Recorder()
        threads: list[threading.Thread] = []
        client = redis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(client, async_callbacks=executor)
        handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, recorder)
        handle.dispatcher.subscribe(
            rl.PoolConnectionReleasedEvent, lambda event: threads.append(threading.current_thread())
        )
        client.ping()
        recorder.wait_for(rl.PoolConnectionReleasedEvent)
        assert executor.shutdown(timeout=5.0) is True
        assert _lifecycle_warnings(caplog) == []
        inline_before = executor.stats()["ran_inline"]
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            for _ in range(3):
                client.ping()
        released = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert len(released) == 4  # none lost
        assert threads[-3:] == [threading.current_thread()] * 3  # ran inline
        assert executor.stats()["ran_inline"] == inline_before + 3
        warnings = _lifecycle_warnings(caplog)
        assert len(warnings) == 1  # once per executor
        assert "connection_acquired" in warnings[0].message or "connection_released" in (
            warnings[0].message
        )
        assert "inline" in warnings[0].message
        client.close()

    def test_instrument_all_pools_made_after_shutdown_still_deliver(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """instrument_all() was given a running executor; a pool made after its shutdown
        is still instrumented (events inline, one warning), not an error."""
        executor = rl.AsyncCallbackExecutor(pool_size=1)
        dispatcher = rl.instrument_all(async_callbacks=executor)
        recorder = Recorder()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        executor.shutdown()
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            client = redis.Redis(host=server.host, port=server.port)
            assert find_handle(client) is not None
            client.ping()
            client.ping()
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 2
        assert len(_lifecycle_warnings(caplog)) == 1
        assert not [r for r in caplog.records if "could not instrument" in r.message]
        client.close()
        rl.uninstrument_all()
