"""Maintenance notifications, sync client: a real server behind a proxy that
injects the server's push frames (see proxy.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redis_lifecycle as rl

from ..helpers import Recorder, wait_until
from .conftest import CLUSTER_KINDS, NATIVE, SYNC
from .proxy import MaintProxy

pytestmark = pytest.mark.skipif(not SYNC, reason="redis-py hands notifications over from 7.0")

NORMAL = 2.0
RELAXED = 7.5
MAINT = (
    rl.MaintenanceNotificationEvent,
    rl.MaintenanceTimeoutRelaxedEvent,
    rl.MaintenanceTimeoutRestoredEvent,
)


def make_client(proxy: MaintProxy, **config: Any) -> redis.Redis:
    from redis.maint_notifications import MaintNotificationsConfig

    settings: dict[str, Any] = {"enabled": True, "relaxed_timeout": RELAXED}
    settings.update(config)
    return redis.Redis(
        host=proxy.host,
        port=proxy.port,
        protocol=3,
        socket_timeout=NORMAL,
        maint_notifications_config=MaintNotificationsConfig(**settings),
    )


@pytest.fixture
def client(proxy: MaintProxy) -> Iterator[redis.Redis]:
    made = make_client(proxy)
    yield made
    made.close()


def only_connection(client: redis.Redis) -> Any:
    pool = client.connection_pool
    connections = list(pool._available_connections) + list(pool._in_use_connections)
    assert len(connections) == 1
    return connections[0]


def read_timeout(connection: Any) -> float | None:
    """The socket's timeout as redis-py set it (relaxed or not)."""
    timeout: float | None = connection._sock.gettimeout()
    return timeout


def maint_events(recorder: Recorder) -> list[rl.LifecycleEvent]:
    return [event for event in recorder.events if isinstance(event, MAINT)]


def subscribe_all(client: redis.Redis, recorder: Recorder) -> rl.LifecycleHandle:
    handle = rl.instrument(client)
    for cls in MAINT:
        handle.dispatcher.subscribe(cls, recorder)
    return handle


@pytest.mark.parametrize("instrumented", [True, False], ids=["instrumented", "bare"])
def test_migration_relaxes_and_restores_the_timeout(
    proxy: MaintProxy, client: redis.Redis, recorder: Recorder, instrumented: bool
) -> None:
    if instrumented:
        subscribe_all(client, recorder)
    assert client.ping()
    assert len(proxy.handshakes) == 1  # redis-py enabled notifications through the proxy
    connection = only_connection(client)
    assert read_timeout(connection) == NORMAL

    proxy.push("MIGRATING", 11, 30)
    assert client.ping()
    assert read_timeout(connection) == RELAXED  # what redis-py does, with or without us

    proxy.push("MIGRATED", 11)
    assert client.ping()
    assert read_timeout(connection) == NORMAL
    if not instrumented:
        return
    events = maint_events(recorder)
    assert [(e.type.value, e.kind) for e in events] == [  # type: ignore[attr-defined]
        ("maintenance_notification", "migrating"),
        ("maintenance_timeout_relaxed", "migrating"),
        ("maintenance_notification", "migrated"),
        ("maintenance_timeout_restored", "migrated"),
    ]
    migrating, relaxed, migrated, restored = events
    assert isinstance(migrating, rl.MaintenanceNotificationEvent)
    assert (migrating.notification_id, migrating.ttl, migrating.target_host) == (11, 30, None)
    assert isinstance(migrated, rl.MaintenanceNotificationEvent)
    assert (migrated.notification_id, migrated.ttl) == (11, None)
    assert isinstance(relaxed, rl.MaintenanceTimeoutRelaxedEvent)
    assert (relaxed.scope, relaxed.notification_id, relaxed.relaxed_timeout) == (
        "connection",
        11,
        RELAXED,
    )
    assert isinstance(restored, rl.MaintenanceTimeoutRestoredEvent)
    assert (restored.scope, restored.notification_id) == ("connection", 11)
    assert {e.connection_id for e in events} == {migrating.connection_id}
    assert migrating.connection_id is not None
    assert (migrating.host, migrating.port) == (proxy.host, proxy.port)


def frames() -> list[tuple[Any, ...]]:
    pushes: list[tuple[Any, ...]] = [
        ("MIGRATING", 1, 10),
        ("MIGRATED", 1),
        ("FAILING_OVER", 2, 20),
        ("FAILED_OVER", 2),
    ]
    if CLUSTER_KINDS:
        pushes += [
            ("SMIGRATING", 3, "100-200,300"),
            ("SMIGRATED", 3, [["10.0.0.1:6379", "10.0.0.2:6379", "100-200,300"]]),
        ]
    return pushes


def test_each_notification_gives_exactly_one_event(
    proxy: MaintProxy, client: redis.Redis, recorder: Recorder
) -> None:
    handle = rl.instrument(client)
    handle.dispatcher.subscribe(rl.MaintenanceNotificationEvent, recorder)
    legacy: list[dict[str, Any]] = []
    handle.register_connection_callback("maintenance_notification", legacy.append)
    assert client.ping()
    connection = only_connection(client)
    for push in frames():
        proxy.push(*push)
        assert client.ping()
        if push[0] in ("MIGRATING", "FAILING_OVER", "SMIGRATING"):
            assert read_timeout(connection) == RELAXED
        else:
            assert read_timeout(connection) == NORMAL

    events = recorder.exactly(rl.MaintenanceNotificationEvent)
    expected = [(push[0].lower(), push[1]) for push in frames()]
    assert [(e.kind, e.notification_id) for e in events] == expected
    assert [(d["type"], d["kind"], d["notification_id"]) for d in legacy] == [
        ("maintenance_notification", kind, nid) for kind, nid in expected
    ]
    ttls = {e.kind: e.ttl for e in events}
    assert ttls["migrating"] == 10
    assert ttls["failing_over"] == 20
    assert ttls["migrated"] is None
    assert ttls["failed_over"] is None
    if CLUSTER_KINDS:
        slots = {e.kind: e.slots for e in events}
        assert slots["smigrating"] == "100-200,300"
        assert slots["smigrated"] == "10.0.0.1:6379->10.0.0.2:6379:100-200,300"


def test_one_event_per_connection_it_arrives_on(
    proxy: MaintProxy, client: redis.Redis, recorder: Recorder
) -> None:
    subscribe_all(client, recorder)
    pool = client.connection_pool
    first = pool.get_connection()
    second = pool.get_connection()
    first.send_command("PING")
    assert first.read_response() in (b"PONG", "PONG")
    second.send_command("PING")
    assert second.read_response() in (b"PONG", "PONG")
    pool.release(first)
    pool.release(second)
    assert proxy.push("FAILING_OVER", 5, 15) == 2
    for connection in (first, second):
        connection.send_command("PING")
        connection.read_response()
    notifications = recorder.exactly(rl.MaintenanceNotificationEvent)
    assert len(notifications) == 2
    ids = {e.connection_id for e in notifications}
    assert len(ids) == 2
    relaxed = recorder.exactly(rl.MaintenanceTimeoutRelaxedEvent)
    assert sorted(e.connection_id for e in relaxed) == sorted(ids)  # type: ignore[type-var]


def test_moving_reconnects_to_the_new_endpoint(
    proxy: MaintProxy, moving_target: MaintProxy, recorder: Recorder
) -> None:
    client = make_client(proxy)
    try:
        subscribe_all(client, recorder)
        assert client.ping()
        assert moving_target.accepted == 0
        target = f"{moving_target.host}:{moving_target.port}"
        proxy.push("MOVING", 21, 2, target)
        assert client.ping()  # reads the push; redis-py hands the pool over
        wait_until(lambda: client.ping() and moving_target.accepted >= 1, 10, "a reconnect")
        pool_kwargs = client.connection_pool.connection_kwargs
        assert pool_kwargs["host"] == "127.0.0.2"  # redis-py moved new connections

        notification = recorder.wait_for(rl.MaintenanceNotificationEvent)
        assert (notification.kind, notification.notification_id, notification.ttl) == (
            "moving",
            21,
            2,
        )
        assert (notification.target_host, notification.target_port) == (
            "127.0.0.2",
            moving_target.port,
        )
        relaxed = recorder.wait_for(rl.MaintenanceTimeoutRelaxedEvent)
        assert (relaxed.scope, relaxed.kind, relaxed.notification_id) == ("pool", "moving", 21)
        # The ttl runs out: redis-py reverts the pool to its configured address.
        restored = recorder.wait_for(rl.MaintenanceTimeoutRestoredEvent, timeout=15)
        assert (restored.scope, restored.kind, restored.notification_id) == ("pool", "moving", 21)
        wait_until(
            lambda: client.connection_pool.connection_kwargs["host"] == "127.0.0.1", 10, "revert"
        )
        assert len(recorder.exactly(rl.MaintenanceNotificationEvent)) == 1
        assert len(recorder.exactly(rl.MaintenanceTimeoutRelaxedEvent)) == 1
        assert len(recorder.exactly(rl.MaintenanceTimeoutRestoredEvent)) == 1
    finally:
        client.close()


def test_uninstrumented_and_unsubscribed_clients_get_nothing(
    proxy: MaintProxy, recorder: Recorder
) -> None:
    watched = make_client(proxy)
    other = make_client(proxy)
    try:
        handle = rl.instrument(watched)
        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, recorder)  # not the maintenance
        watched.ping()
        other.ping()
        assert proxy.push("MIGRATING", 1, 10) == 2
        watched.ping()
        other.ping()
        assert maint_events(recorder) == []
        assert only_connection(other)._sock.gettimeout() == RELAXED
        assert only_connection(watched)._sock.gettimeout() == RELAXED
        # Nobody wants the relaxed-timeout events: redis-py's config is left alone.
        assert (
            getattr(only_connection(watched).maint_notifications_config, "event_dispatcher", None)
            is None
        )
    finally:
        watched.close()
        other.close()


def test_a_raising_callback_never_breaks_redis_py(
    proxy: MaintProxy, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    handle = rl.instrument(client, callback_error_handler=rl.CallbackErrorHandler("raise"))

    def boom(event: rl.LifecycleEvent) -> None:
        raise RuntimeError("callback failure")

    for cls in MAINT:
        handle.dispatcher.subscribe(cls, boom)
    assert client.ping()
    connection = only_connection(client)
    with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
        proxy.push("MIGRATING", 3, 10)
        assert client.set("maint-key", "v")
        assert read_timeout(connection) == RELAXED
        proxy.push("MIGRATED", 3)
        assert client.get("maint-key") == b"v"
        assert read_timeout(connection) == NORMAL
    assert "callback failure" in caplog.text


@pytest.mark.skipif(not NATIVE, reason="redis-py dispatches MaintenanceStartedEvent from 8.2")
def test_redis_py_listeners_still_receive_its_events(proxy: MaintProxy, recorder: Recorder) -> None:
    from redis.event import (
        EventDispatcher,
        EventListenerInterface,
        MaintenanceCompletedEvent,
        MaintenanceStartedEvent,
    )
    from redis.maint_notifications import MaintNotificationsConfig

    received: list[object] = []

    class Mine(EventListenerInterface):
        def listen(self, event: object) -> None:
            received.append(event)

    theirs = EventDispatcher()
    mine = Mine()
    theirs.register_listeners({MaintenanceStartedEvent: [mine], MaintenanceCompletedEvent: [mine]})
    config = MaintNotificationsConfig(
        enabled=True, relaxed_timeout=RELAXED, event_dispatcher=theirs
    )
    client = redis.Redis(
        host=proxy.host,
        port=proxy.port,
        protocol=3,
        socket_timeout=NORMAL,
        maint_notifications_config=config,
    )
    try:
        subscribe_all(client, recorder)
        client.ping()
        for push in (("MIGRATING", 7, 10), ("MIGRATED", 7), ("FAILING_OVER", 8, 10)):
            proxy.push(*push)
            client.ping()
        assert config.event_dispatcher is theirs  # ours was added beside theirs
        assert [type(e).__name__ for e in received] == [
            "MaintenanceStartedEvent",
            "MaintenanceCompletedEvent",
            "MaintenanceStartedEvent",
        ]
        # One of ours for each of redis-py's: nothing counted twice.
        assert [
            e.type.value
            for e in maint_events(recorder)
            if e.type.value != "maintenance_notification"
        ] == [
            "maintenance_timeout_relaxed",
            "maintenance_timeout_restored",
            "maintenance_timeout_relaxed",
        ]
    finally:
        client.close()
    # Closing a relaxed connection ends its relaxation (redis-py 8.2).
    assert [type(e).__name__ for e in received][-1] == "MaintenanceCompletedEvent"
    restored = recorder.exactly(rl.MaintenanceTimeoutRestoredEvent)
    assert len(restored) == 2
    assert restored[-1].kind is None
