"""Run in a child process by test_memory.py, test_delivery.py and
tests/cluster (a deadlock must not hang the suite; see :func:`run_in_child`):
a garbage collection that runs while redis_lifecycle holds one of its own
locks finds an object to finalize (an instrumented pool or cluster, or a
client whose ``__del__`` releases a connection) whose finalizer needs that
same lock.

A collection can start at any allocation, so the child makes it start at the
worst place: it wraps a function called inside the lock with one that runs
``gc.collect()`` first. Prints ``ok`` once the dead object was collected
there and the live client still works; a deadlock is the parent's timeout.

    python -m tests.integration.gc_inside_locks register REDIS_URL
    python -m tests.integration.gc_inside_locks executor REDIS_URL
    python -m tests.integration.gc_inside_locks cluster HOST:PORT
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle import executor as executor_module
from redis_lifecycle._hooks import cluster as _cluster
from redis_lifecycle._hooks import state as _state

ROOT = Path(__file__).resolve().parents[2]


def run_in_child(scenario: str, target: str, deadline: float = 30.0) -> None:
    """For the tests: run ``scenario`` against ``target`` in a child process;
    fail if it deadlocks (does not finish by ``deadline`` seconds) or fails."""
    command = [sys.executable, "-m", "tests.integration.gc_inside_locks", scenario, target]
    try:
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=deadline, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"deadlock: the child did not finish within {deadline:.0f} s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def dead_instrumented_pool(url: str) -> weakref.ref[Any]:
    """An instrumented client's pool, unreachable, that only the cyclic
    collector can free (its finalizer then needs redis_lifecycle's locks)."""
    client = redis.Redis.from_url(url)
    rl.instrument(client)
    client.ping()
    client.close()
    client._cycle = client  # type: ignore[attr-defined]
    return weakref.ref(client.connection_pool)


def collect_first(function: Any, call: int = 1) -> Any:
    """``function``, but its ``call``-th call runs a full collection before it."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            gc.collect()
        return function(*args, **kwargs)

    return wrapper


def register(url: str) -> None:
    """GC inside register_connection's lock (a new connection)."""
    live = redis.Redis.from_url(url)
    rl.instrument(live)
    dead = dead_instrumented_pool(url)
    _state.connection_origin = collect_first(_state.connection_origin)
    live.ping()  # its first connection: registered under the lock
    assert dead() is None, "the dead pool was not collected inside the lock"
    live.close()


def executor(url: str) -> None:
    """GC inside the executor's room lock, while an event waits for a slot
    (overflow "block"): a dead client's ``__del__`` releases its connection,
    whose event overflows the same executor and waits under the same lock."""
    gate = threading.Event()
    running = threading.Event()

    def hold_the_worker(event: Any) -> None:
        running.set()
        gate.wait(30)

    callbacks = rl.AsyncCallbackExecutor(
        pool_size=1, queue_size=1, overflow="block", block_timeout=0.5
    )
    dispatcher = rl.EventDispatcher()
    dispatcher.subscribe(rl.PoolConnectionReleasedEvent, hold_the_worker)
    pool = redis.ConnectionPool.from_url(url)
    live = redis.Redis(connection_pool=pool)
    rl.instrument(live, event_dispatcher=dispatcher, async_callbacks=callbacks)
    # Holds a connection of the same pool until it is collected: then its
    # __del__ -> close() releases it, which emits connection_released.
    dead = redis.Redis(connection_pool=pool, single_connection_client=True)
    dead._cycle = dead  # type: ignore[attr-defined]
    dead_ref = weakref.ref(dead)
    del dead
    live.ping()  # its release: the worker takes it and waits on the gate
    assert running.wait(10), "the worker did not start the first callback"
    live.ping()  # its release takes the only slot: the queue is full
    # The next release waits for a slot under the room lock: monotonic() is
    # called once before taking it (the deadline) and once inside.
    executor_module.monotonic = collect_first(executor_module.monotonic, call=2)  # type: ignore[attr-defined]
    live.ping()
    assert dead_ref() is None, "the dead client was not collected inside the lock"
    gate.set()
    assert callbacks.shutdown(timeout=10), "the executor did not drain"
    assert callbacks.stats()["dropped"] == 2  # both waited block_timeout in vain
    live.close()


def cluster(address: str) -> None:
    """GC inside attach_cluster's lock: a dead instrumented cluster's
    finalizer (undo) takes that lock too."""
    from redis.cluster import RedisCluster

    host, port = address.rsplit(":", 1)
    dead = RedisCluster(host=host, port=int(port))
    rl.instrument(dead)
    dead.ping()
    dead.close()
    dead._cycle = dead  # type: ignore[attr-defined]
    dead_ref = weakref.ref(dead)
    del dead

    class CollectFirst(type(_cluster._MANAGERS)):  # type: ignore[misc]
        """The registry, with a collection before the first store."""

        __setitem__ = collect_first(type(_cluster._MANAGERS).__setitem__)

    _cluster._MANAGERS = CollectFirst()
    live = RedisCluster(host=host, port=int(port))
    rl.instrument(live)  # stores its manager under the lock
    assert dead_ref() is None, "the dead cluster was not collected inside the lock"
    live.ping()
    live.close()


if __name__ == "__main__":
    gc.disable()  # the only collection is the one injected above
    {"register": register, "executor": executor, "cluster": cluster}[sys.argv[1]](sys.argv[2])
    print("ok")
