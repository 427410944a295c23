"""The retry events' fields, and how the retry hook names what is retried
(pure logic: the closures redis-py passes to ``Retry.call_with_retry``)."""

from __future__ import annotations

from typing import Any

import redis

import redis_lifecycle as rl
from redis_lifecycle._hooks.retry import describe_operation
from redis_lifecycle.events import EventOrigin

ORIGIN = EventOrigin(host="10.0.0.1", port=6380, db=0, connection_id=3, pool_name="cache")


def test_retry_event_fields_and_legacy_dict() -> None:
    error = redis.ConnectionError("Connection closed by server.")
    event = rl.ConnectionRetryEvent(1.0, ORIGIN, 2, 3, 0.004, error, "command", "GET")
    assert event.type is rl.EventType.RETRY
    assert (event.attempt, event.max_attempts, event.backoff) == (2, 3, 0.004)
    assert (event.operation, event.command, event.error) == ("command", "GET", error)
    data = event.to_dict()
    assert data["type"] == "retry"
    assert data["attempt"] == 2
    assert data["connection_id"] == 3
    assert "ConnectionError: Connection closed by server." in repr(event)


def test_exhausted_event_fields() -> None:
    error = redis.ConnectionError("refused")
    event = rl.ConnectionRetriesExhaustedEvent(1.0, ORIGIN, 4, error, "connect", None)
    assert event.type is rl.EventType.RETRIES_EXHAUSTED
    assert (event.attempts, event.error, event.operation, event.command) == (
        4,
        error,
        "connect",
        None,
    )
    assert event.to_dict()["attempts"] == 4


class _Conn:
    def _connect(self) -> None: ...

    def _send_ping(self) -> None: ...

    def connect_check_health(self, **kwargs: Any) -> None: ...

    def send_command(self, *args: Any) -> None: ...


def _pubsub_do(command: Any, *args: Any) -> Any:
    """What PubSub's ``_execute(conn, command, *args)`` passes as ``do``."""
    return lambda: command(*args)


def test_describe_operation_reads_the_closures_redis_py_passes() -> None:
    conn = _Conn()
    command_name = "get"
    args = ("get", "secret-key")
    client_do = lambda: (conn, command_name, args)  # noqa: E731
    assert describe_operation(client_do) == ("command", "GET")
    assert describe_operation(conn._connect) == ("connect", None)
    assert describe_operation(conn._send_ping) == ("health_check", "PING")
    connect_do = lambda: conn.connect_check_health(check_health=True)  # noqa: E731
    assert describe_operation(connect_do) == ("connect", None)
    stack = [("SET", "k", "v")]
    pipeline_do = lambda: (conn, stack)  # noqa: E731
    assert describe_operation(pipeline_do) == ("pipeline", None)
    assert describe_operation(_pubsub_do(conn.send_command, "SUBSCRIBE", "ch")) == (
        "command",
        "SUBSCRIBE",
    )
    assert describe_operation(lambda: None) == ("other", None)


def test_command_name_never_carries_arguments() -> None:
    command_name = b"AUTH user s3cr3t"
    do = lambda: command_name  # noqa: E731
    assert describe_operation(do) == ("command", "AUTH")
