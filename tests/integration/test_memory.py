"""What instrumenting holds, and that ``uninstrument`` (or the client going
away) gives all of it back: checked with weak references and object counts,
never with timings. The RSS soak is ``benchmarks/soak.py`` (and the
``soak``-marked test below)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

import redis_lifecycle as rl
from redis_lifecycle._delivery import Delivery
from redis_lifecycle._hooks.attach import pool_state_of
from redis_lifecycle._hooks.state import CONNECTIONS, POOLS, PoolState
from redis_lifecycle._hooks.sync import (
    CONNECTION_PATCHER,
    SYNC_CHECKOUT_PATCHER,
    SYNC_POOL_PATCHER,
    SYNC_RELEASE_PATCHER,
)
from redis_lifecycle.events import EVENT_CLASSES
from redis_lifecycle.instrument import LifecycleHandle, _handles

from ..helpers import checkout
from .gc_inside_locks import run_in_child

ROOT = Path(__file__).resolve().parents[2]


def live(cls: type) -> int:
    """How many instances of ``cls`` the garbage collector can see now."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def subscribe_everything(dispatcher: rl.EventDispatcher) -> None:
    for cls in EVENT_CLASSES:
        dispatcher.subscribe(cls, lambda event: None, exact=True)


def nothing_patched() -> bool:
    return not (
        CONNECTION_PATCHER.installed
        or SYNC_POOL_PATCHER.installed
        or SYNC_CHECKOUT_PATCHER.installed
        or SYNC_RELEASE_PATCHER.installed
    )


class TestUninstrument:
    def test_releases_handle_delivery_and_state_while_the_client_lives(
        self, redis_url: str
    ) -> None:
        """After uninstrument the handle, its delivery, the pool state and the
        connection states are garbage even though the client is still in use."""
        client = redis.Redis.from_url(redis_url)
        dispatcher = rl.EventDispatcher()
        subscribe_everything(dispatcher)
        handle = rl.instrument(
            client, event_dispatcher=dispatcher, instrumentation=rl.Instrumentation()
        )
        client.set("memory:key", "1")
        state = pool_state_of(client.connection_pool)
        assert state is not None
        refs: list[Callable[[], object]]
        refs = [weakref.ref(handle), weakref.ref(handle.delivery), weakref.ref(state)]
        assert CONNECTIONS
        del handle, state

        assert rl.uninstrument(client)
        gc.collect()

        assert [ref() for ref in refs] == [None, None, None]
        assert not CONNECTIONS
        assert not POOLS
        assert not _handles
        assert nothing_patched()
        assert client.get("memory:key") == b"1"
        client.close()

    def test_repeated_instrument_uninstrument_accumulates_nothing(self, redis_url: str) -> None:
        """Fifty instrument/uninstrument cycles on one live client leave no
        handle, delivery or pool state behind."""
        client = redis.Redis.from_url(redis_url)
        before = (live(LifecycleHandle), live(Delivery), live(PoolState))
        for _ in range(50):
            dispatcher = rl.EventDispatcher()
            subscribe_everything(dispatcher)
            rl.instrument(client, event_dispatcher=dispatcher, instrumentation=rl.Instrumentation())
            client.ping()
            rl.uninstrument(client)
        after = (live(LifecycleHandle), live(Delivery), live(PoolState))
        assert after == before
        assert not CONNECTIONS
        client.close()

    def test_executor_delivery_is_released_after_shutdown(self, redis_url: str) -> None:
        """Events queued on an AsyncCallbackExecutor do not keep the delivery
        (or its pool state) alive once uninstrumented and shut down."""
        client = redis.Redis.from_url(redis_url)
        executor = rl.AsyncCallbackExecutor(pool_size=2)
        dispatcher = rl.EventDispatcher()
        subscribe_everything(dispatcher)
        handle = rl.instrument(client, event_dispatcher=dispatcher, async_callbacks=executor)
        for _ in range(200):
            client.ping()
        delivery_ref = weakref.ref(handle.delivery)
        del handle

        rl.uninstrument(client)
        assert executor.shutdown(timeout=10)
        gc.collect()

        assert delivery_ref() is None
        stats = executor.stats()
        assert stats["completed"] + stats["dropped"] == stats["submitted"] > 0
        client.close()


class TestClientGoesAway:
    def test_collected_client_releases_pool_connections_and_patches(self, redis_url: str) -> None:
        """An instrumented client dropped without uninstrument takes its pool,
        connections, handle and delivery with it, and the class-level patches
        come off."""
        client = redis.Redis.from_url(redis_url)
        dispatcher = rl.EventDispatcher()
        subscribe_everything(dispatcher)
        handle = rl.instrument(client, event_dispatcher=dispatcher)
        client.ping()
        pool = client.connection_pool
        connection = checkout(pool)
        pool.release(connection)
        refs: list[weakref.ref[Any]] = [
            weakref.ref(pool),
            weakref.ref(connection),
            weakref.ref(handle),
            weakref.ref(handle.delivery),
        ]
        assert SYNC_CHECKOUT_PATCHER.installed
        del handle, pool, connection
        client.close()
        del client
        gc.collect()

        assert [ref() for ref in refs] == [None] * len(refs)
        assert not CONNECTIONS
        assert not POOLS
        assert not _handles
        assert nothing_patched()

    def test_collected_lifecycle_pool_releases_its_connections(self, redis_url: str) -> None:
        """A LifecycleConnectionPool with metrics, dropped with its client,
        leaves no tracked connection behind."""
        metrics = rl.Instrumentation()
        pool = rl.LifecycleConnectionPool.from_url(redis_url, instrumentation=metrics)
        client = redis.Redis(connection_pool=pool)
        for _ in range(10):
            client.ping()
        assert CONNECTIONS
        refs: list[Callable[[], object]] = [weakref.ref(pool), weakref.ref(client)]
        client.close()
        del client, pool
        gc.collect()

        assert [ref() for ref in refs] == [None, None]
        assert not CONNECTIONS
        assert sum(p["acquisitions"] for p in metrics.pool_metrics().values()) >= 10


class TestGarbageCollectionInsideOurLocks:
    def test_pool_finalized_while_a_connection_registers_does_not_deadlock(
        self, redis_url: str
    ) -> None:
        """A collection can start at any allocation, also while a new
        connection is registered under redis_lifecycle's lock; the pools it
        finalizes then forget their connections under the same lock. Found by
        redis-py's own test suite (scripts/redis_py_suite.py), which hung.
        Run in a child process with a deadline, so that a deadlock fails this
        test instead of hanging the suite."""
        run_in_child("register", redis_url)


class TestAsyncio:
    async def test_uninstrument_releases_asyncio_state(self, redis_url: str) -> None:
        """uninstrument of an asyncio client releases its handle, delivery and
        pool state while the client keeps working."""
        client = aredis.Redis.from_url(redis_url)
        dispatcher = rl.EventDispatcher()
        subscribe_everything(dispatcher)
        handle = rl.instrument(client, event_dispatcher=dispatcher)
        await client.set("memory:async", "1")
        state = pool_state_of(client.connection_pool)
        assert state is not None
        refs: list[Callable[[], object]]
        refs = [weakref.ref(handle), weakref.ref(handle.delivery), weakref.ref(state)]
        del handle, state

        assert rl.uninstrument(client)
        gc.collect()

        assert [ref() for ref in refs] == [None, None, None]
        assert not CONNECTIONS
        assert await client.get("memory:async") == b"1"
        await client.aclose()


@pytest.mark.soak
def test_soak_keeps_rss_flat(redis_url: str) -> None:
    """A million commands with every event subscribed and metrics on grow RSS
    by less than 8 MiB after the warm-up (benchmarks/soak.py's own check)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--url", redis_url],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
