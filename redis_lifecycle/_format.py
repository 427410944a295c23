"""One-line and JSON-safe renderings of events, shared by the log subscriber,
the metric exporters and the CLI.

    >>> import time, redis_lifecycle as rl
    >>> from redis_lifecycle._format import summary
    >>> origin = rl.EventOrigin(host="127.0.0.1", port=6379, db=0, connection_id=3,
    ...                         pool_name="cache")
    >>> summary(rl.ConnectionConnectedEvent(time.time(), origin, 0.0012))
    'connected cache 127.0.0.1:6379/0 conn#3 connect_time=1.2ms'

Nothing here runs callbacks; it only formats. No rendering ever contains a
password: events hold none.
"""

from __future__ import annotations

import enum
from typing import Any

from .events import (
    CloseReason,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionRetriesExhaustedEvent,
    ConnectionRetryEvent,
    LifecycleEvent,
    PoolConnectionLeakEvent,
    PoolExhaustedEvent,
    describe_error,
)

__all__ = ["address", "is_problem", "json_value", "json_dict", "summary"]

#: Fields measured in seconds (rendered in milliseconds in summaries).
_SECONDS = frozenset({"connect_time", "downtime", "wait_time", "held_time", "waited", "threshold"})
#: Fields already in milliseconds.
_MILLISECONDS = frozenset({"latency"})
#: Fields a summary leaves out because they say nothing new.
_QUIET = frozenset({"first_connection"})
_TROUBLE_CLOSES = frozenset(
    {CloseReason.ERROR, CloseReason.SERVER_CLOSED, CloseReason.HEALTH_CHECK_FAILED}
)


def address(event: LifecycleEvent) -> str:
    """``host:port/db`` or ``unix:path/db`` of the event's connection or pool."""
    origin = event.origin
    db = "" if origin.db is None else f"/{origin.db}"
    if origin.path is not None:
        return f"unix:{origin.path}{db}"
    if origin.host is None and origin.port is None:
        return "-"
    return f"{origin.host}:{origin.port}{db}"


def json_value(value: Any) -> Any:
    """``value`` as something ``json.dumps`` accepts: errors as
    ``"Type: message"``, enums by value, other objects by ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):  # nodes and slot ranges of topology events
        return [json_value(item) for item in value]
    return str(value)


def json_dict(event: LifecycleEvent) -> dict[str, Any]:
    """``event.to_dict()`` with every value JSON-safe."""
    return {key: json_value(value) for key, value in event.to_dict().items()}


def _render(name: str, value: Any) -> str:
    if isinstance(value, float):
        if name in _SECONDS:
            return f"{name}={value * 1000.0:.1f}ms"
        if name in _MILLISECONDS:
            return f"{name}={value:.2f}ms"
        return f"{name}={value:g}"
    if isinstance(value, BaseException):
        return f"{name}={describe_error(value)!r}"
    return f"{name}={json_value(value)}"


def summary(event: LifecycleEvent) -> str:
    """``"<type> <pool> <address> conn#<id> field=value ..."``, on one line."""
    parts = [event.type.value]
    if event.pool_name is not None:
        parts.append(event.pool_name)
    where = address(event)
    if where != event.pool_name:
        parts.append(where)
    if event.connection_id is not None:
        parts.append(f"conn#{event.connection_id}")
    for name, value in event.fields().items():
        if name in _QUIET or value is None:
            continue
        if name == "stack":  # one line: where it was taken (the full stack is the event's)
            parts.append(f"at={value[-1]}" if value else "at=(no frame outside redis-py)")
            continue
        if name == "pending" and not value:  # nobody was waiting: nothing to say
            continue
        if name == "reported_leak" and not value:
            continue
        parts.append(_render(name, value))
    return " ".join(parts).replace("\n", " ")


def is_problem(event: LifecycleEvent) -> bool:
    """Whether the event reports trouble: an error, an exhausted pool, a
    leaked connection, a failed health check, a close caused by an error or
    the server, a retry or retries given up."""
    if isinstance(
        event,
        (
            ConnectionErrorEvent,
            PoolExhaustedEvent,
            PoolConnectionLeakEvent,
            ConnectionRetryEvent,
            ConnectionRetriesExhaustedEvent,
        ),
    ):
        return True
    if isinstance(event, ConnectionHealthCheckEvent):
        return not event.healthy
    if isinstance(event, ConnectionDisconnectedEvent):
        return event.reason in _TROUBLE_CLOSES
    return False
