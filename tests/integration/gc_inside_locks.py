"""Run in a child process by test_memory.py and tests/cluster (a deadlock
must not hang the suite; see :func:`run_in_child`): a garbage collection that
runs while redis_lifecycle holds one of its own locks finds an instrumented
pool (or cluster) to finalize, whose finalizer needs that same lock.

A collection can start at any allocation, so the child makes it start at the
worst place: it wraps a function called inside the lock with one that runs
``gc.collect()`` first. Prints ``ok`` once the dead object was collected
there and the live client still works; a deadlock is the parent's timeout.

    python -m tests.integration.gc_inside_locks register REDIS_URL
    python -m tests.integration.gc_inside_locks cluster HOST:PORT
"""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle import _cluster, _state

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


def collect_first(function: Any) -> Any:
    """``function``, but the first call runs a full collection before it."""
    pending = [True]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if pending:
            pending.clear()
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
    {"register": register, "cluster": cluster}[sys.argv[1]](sys.argv[2])
    print("ok")
