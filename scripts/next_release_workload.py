"""The workload ``next_release.py`` runs against a (possibly renamed) redis-py.

    python scripts/next_release_workload.py URL bare|instrumented

Runs a few commands through a sync ``ConnectionPool``, a sync
``BlockingConnectionPool`` and an asyncio pool, each with redis-py's
``health_check_interval`` on, then a PubSub round. Instrumented: every event
subscribed through ``instrument()``. Prints one JSON line: whether every
command succeeded, the event names delivered, and the warnings issued.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
import warnings
from typing import Any

HEALTH_CHECK_INTERVAL = 0.05


def _sync(url: str, blocking: bool, subscribe: Any) -> None:
    import redis

    cls = redis.BlockingConnectionPool if blocking else redis.ConnectionPool
    # An interval far above the handshake's duration: redis-py 8.2 pipelines the
    # handshake, and a health check coming due between its sends (1 ms does, on
    # a loaded machine) reads a handshake reply as the PING's, bare or not.
    pool = cls.from_url(url, health_check_interval=HEALTH_CHECK_INTERVAL, max_connections=4)
    client = redis.Redis(connection_pool=pool)
    subscribe(client)
    for i in range(3):
        client.set(f"next-release:{i}", i)
        assert client.get(f"next-release:{i}") == str(i).encode()
        # lets redis-py's health check come due (not a wait for an event)
        time.sleep(HEALTH_CHECK_INTERVAL * 1.5)
    pubsub = client.pubsub()
    pubsub.subscribe("next-release")
    client.publish("next-release", "x")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            break
    else:
        raise AssertionError("pubsub message not received")
    pubsub.close()
    client.close()
    pool.disconnect()


async def _async(url: str, subscribe: Any) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, health_check_interval=HEALTH_CHECK_INTERVAL)
    subscribe(client)
    for i in range(3):
        await client.set(f"next-release:a{i}", i)
        assert await client.get(f"next-release:a{i}") == str(i).encode()
        await asyncio.sleep(HEALTH_CHECK_INTERVAL * 1.5)
    await client.aclose() if hasattr(client, "aclose") else await client.close()


def main() -> int:
    url, mode = sys.argv[1], sys.argv[2]
    seen: set[str] = set()
    caught: list[str] = []
    ok = True
    error = ""

    def subscribe(client: Any) -> None:
        if mode != "instrumented":
            return
        import redis_lifecycle as rl

        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, lambda e: seen.add(e.type.value))

    with warnings.catch_warnings(record=True) as issued:
        warnings.simplefilter("always")
        try:
            _sync(url, False, subscribe)
            _sync(url, True, subscribe)
            asyncio.run(_async(url, subscribe))
        except Exception:
            ok = False
            error = traceback.format_exc(limit=6)
    caught = [str(w.message) for w in issued if "redis_lifecycle" in str(w.message)]
    print(json.dumps({"ok": ok, "error": error, "events": sorted(seen), "warnings": caught}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
