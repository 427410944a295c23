"""Maintenance notifications, asyncio client (redis-py 8.1+): a real server
behind a proxy that injects the server's push frames (see proxy.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import redis_lifecycle as rl

from ..helpers import Recorder
from .conftest import ASYNC
from .proxy import MaintProxy

pytestmark = pytest.mark.skipif(
    not ASYNC, reason="redis-py hands asyncio notifications over from 8.1"
)

NORMAL = 2.0
RELAXED = 7.5
MAINT = (
    rl.MaintenanceNotificationEvent,
    rl.MaintenanceTimeoutRelaxedEvent,
    rl.MaintenanceTimeoutRestoredEvent,
)


def make_client(proxy: MaintProxy) -> Any:
    import redis.asyncio as aredis
    from redis.maint_notifications import MaintNotificationsConfig

    return aredis.Redis(
        host=proxy.host,
        port=proxy.port,
        protocol=3,
        socket_timeout=NORMAL,
        maint_notifications_config=MaintNotificationsConfig(enabled=True, relaxed_timeout=RELAXED),
    )


def only_connection(client: Any) -> Any:
    pool = client.connection_pool
    connections = list(pool._available_connections) + list(pool._in_use_connections)
    assert len(connections) == 1
    return connections[0]


async def wait_for_event(recorder: Recorder, cls: type[Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not recorder.exactly(cls):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {cls.__name__} within {timeout}s; saw {recorder.types()}")
        await asyncio.sleep(0.01)
    return recorder.exactly(cls)[0]


async def test_each_notification_gives_exactly_one_event(
    proxy: MaintProxy, recorder: Recorder
) -> None:
    client = make_client(proxy)
    try:
        handle = rl.instrument(client)
        for cls in MAINT:
            handle.dispatcher.subscribe(cls, recorder)
        assert await client.ping()
        assert len(proxy.handshakes) == 1
        connection = only_connection(client)
        pushes: list[tuple[Any, ...]] = [
            ("MIGRATING", 1, 10),
            ("MIGRATED", 1),
            ("FAILING_OVER", 2, 20),
            ("FAILED_OVER", 2),
            ("SMIGRATING", 3, "5-9"),
        ]
        for push in pushes:
            proxy.push(*push)
            assert await client.ping()
            relaxed = push[0] in ("MIGRATING", "FAILING_OVER", "SMIGRATING")
            assert connection.socket_timeout == (RELAXED if relaxed else NORMAL)
        notifications = recorder.exactly(rl.MaintenanceNotificationEvent)
        assert [(e.kind, e.notification_id) for e in notifications] == [
            (push[0].lower(), push[1]) for push in pushes
        ]
        assert notifications[0].ttl == 10
        assert notifications[4].slots == "5-9"
        assert {e.connection_id for e in recorder.events} == {notifications[0].connection_id}
        timeline = [
            (e.type.value, getattr(e, "kind", None))
            for e in recorder.events
            if not isinstance(e, rl.MaintenanceNotificationEvent)
        ]
        assert timeline == [
            ("maintenance_timeout_relaxed", "migrating"),
            ("maintenance_timeout_restored", "migrated"),
            ("maintenance_timeout_relaxed", "failing_over"),
            ("maintenance_timeout_restored", "failed_over"),
            ("maintenance_timeout_relaxed", "smigrating"),
        ]
    finally:
        await client.aclose()


async def test_moving_reconnects_to_the_new_endpoint(
    proxy: MaintProxy, moving_target: MaintProxy, recorder: Recorder
) -> None:
    client = make_client(proxy)
    try:
        handle = rl.instrument(client)
        for cls in MAINT:
            handle.dispatcher.subscribe(cls, recorder)
        assert await client.ping()
        proxy.push("MOVING", 4, 2, f"{moving_target.host}:{moving_target.port}")
        assert await client.ping()
        deadline = time.monotonic() + 10
        while moving_target.accepted == 0:
            assert time.monotonic() < deadline, "no reconnect to the MOVING target"
            await client.ping()
            await asyncio.sleep(0.01)
        notification = await wait_for_event(recorder, rl.MaintenanceNotificationEvent)
        assert (notification.kind, notification.target_host, notification.target_port) == (
            "moving",
            "127.0.0.2",
            moving_target.port,
        )
        relaxed = await wait_for_event(recorder, rl.MaintenanceTimeoutRelaxedEvent)
        assert (relaxed.scope, relaxed.notification_id) == ("pool", 4)
        restored = await wait_for_event(recorder, rl.MaintenanceTimeoutRestoredEvent, 15)
        assert (restored.scope, restored.notification_id) == ("pool", 4)
        assert len(recorder.exactly(rl.MaintenanceNotificationEvent)) == 1
        assert len(recorder.exactly(rl.MaintenanceTimeoutRelaxedEvent)) == 1
    finally:
        await client.aclose()
