"""What a type checker sees of the public API (checked by ``mypy --strict tests/typing``).

Not collected by pytest: each line states a type a user's code relies on, and
``mypy`` fails on any drift (``assert_type`` is checked statically only).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from typing_extensions import assert_type

import redis_lifecycle as rl
from redis_lifecycle.testing import EventRecorder


def sync_api(client: redis.Redis) -> None:
    handle = rl.instrument(client)
    assert_type(handle, rl.LifecycleHandle)
    assert_type(rl.uninstrument(client), bool)
    assert_type(rl.instrument_all(), rl.EventDispatcher)
    assert_type(rl.uninstrument_all(), bool)

    dispatcher = rl.EventDispatcher()
    # redis-py 5.3+ takes the dispatcher itself (its argument is typed with its own class)
    redis.Redis(host="localhost", event_dispatcher=dispatcher)
    redis.RedisCluster(host="localhost", event_dispatcher=dispatcher)
    redis.asyncio.Redis(host="localhost", event_dispatcher=dispatcher)

    def on_connected(event: rl.ConnectionConnectedEvent) -> None:
        assert_type(event.connect_time, float)
        assert_type(event.timestamp, float)
        assert_type(event.to_dict(), dict[str, Any])

    subscription = dispatcher.subscribe(rl.ConnectionConnectedEvent, on_connected)
    assert_type(subscription, rl.Subscription)

    @dispatcher.subscribe(rl.ConnectionDisconnectedEvent)
    def on_disconnected(event: rl.ConnectionDisconnectedEvent) -> None:
        assert_type(event.reason, rl.CloseReason)

    assert_type(on_disconnected, rl.Subscription)

    @handle.register_connection_callback("connected")
    def on_connected_dict(data: dict[str, Any]) -> None:
        pass

    assert_type(on_connected_dict({}), None)  # the function kept, not Any

    result = rl.health_check(client)
    assert_type(result, rl.HealthCheckResult)
    assert_type(result.healthy, bool)

    assert_type(rl.pooled("localhost", 6379, pool={"size": 4}), redis.Redis)
    assert_type(rl.capabilities(), rl.CapabilityReport)

    recorder = EventRecorder()
    assert_type(recorder.wait_for(rl.PoolExhaustedEvent, 1.0), rl.PoolExhaustedEvent)
    assert_type(recorder.of(rl.ConnectionErrorEvent), list[rl.ConnectionErrorEvent])


async def asyncio_api(client: redis.asyncio.Redis) -> None:
    assert_type(rl.instrument(client), rl.LifecycleHandle)
    result = await rl.health_check(client)
    assert_type(result, rl.HealthCheckResult)
    recorder = EventRecorder()
    event = await recorder.wait_for_async(rl.ConnectionReconnectedEvent, 1.0)
    assert_type(event, rl.ConnectionReconnectedEvent)
