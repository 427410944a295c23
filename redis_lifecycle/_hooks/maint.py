"""Maintenance notifications: ``maintenance_notification`` and the relaxed
timeouts (``maintenance_timeout_relaxed`` / ``maintenance_timeout_restored``).

redis-py 7.0+ (sync; asyncio from 8.1) reads the server's maintenance push
notifications (``MOVING``, ``MIGRATING``, ``MIGRATED``, ``FAILING_OVER``,
``FAILED_OVER``, from 7.2 ``SMIGRATING`` / ``SMIGRATED``) in its RESP3
parser and hands each to a handler bound to the connection it arrived on.

* **The notification**: the parsers' ``handle_push_response`` (looked up on
  ``self`` for every push, so it sees connections configured before the
  hooks were installed) is wrapped. A maintenance push that redis-py has a
  handler for, on an instrumented connection, gives one
  ``MaintenanceNotificationEvent`` before redis-py acts on it. The fields
  are read from the frame as redis-py's parser reads them.
* **The relaxed timeouts, redis-py 8.2+**: redis-py dispatches its own
  ``MaintenanceStartedEvent`` / ``MaintenanceCompletedEvent`` to the
  ``event_dispatcher`` of the ``MaintNotificationsConfig``. The first
  notification seen on a connection registers one listener there (if the
  config has no dispatcher, a ``redis.event.EventDispatcher`` is set on it
  first), next to any listener of the application, which keeps receiving
  them. The listener turns them into ``MaintenanceTimeoutRelaxedEvent`` /
  ``MaintenanceTimeoutRestoredEvent`` for instrumented connections and pools.
* **The relaxed timeouts, redis-py 7.0 - 8.1** (no such events): the state
  redis-py keeps is compared around the handling of each notification
  (``connection.maintenance_state``; for ``MOVING`` the pool's
  ``maintenance_notification_hash``), with the same rules redis-py 8.2
  dispatches by, and the pool handler's ``handle_node_moved_notification``
  (a ``MOVING``'s time-to-live running out) is wrapped.

Nothing here changes what redis-py does: every hook calls the original with
the same arguments, and a failure of ours is logged, never raised.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from time import time
from typing import Any

from ..events import (
    EventOrigin,
    MaintenanceNotificationEvent,
    MaintenanceTimeoutRelaxedEvent,
    MaintenanceTimeoutRestoredEvent,
)
from . import emit_quietly, internal_error
from .state import CONNECTIONS, POOLS, ConnState, PoolState, real_connection

__all__ = ["KINDS", "maint_targets", "maint_targets_async", "native_events"]

#: Push message type -> ``kind``.
KINDS = {
    "MOVING": "moving",
    "MIGRATING": "migrating",
    "MIGRATED": "migrated",
    "FAILING_OVER": "failing_over",
    "FAILED_OVER": "failed_over",
    "SMIGRATING": "smigrating",
    "SMIGRATED": "smigrated",
}
_STARTS = frozenset(("migrating", "failing_over", "smigrating"))
_ENDS = frozenset(("migrated", "failed_over", "smigrated"))

#: redis-py's notification class name -> ``kind``.
_KIND_BY_CLASS = {
    "NodeMovingNotification": "moving",
    "NodeMigratingNotification": "migrating",
    "NodeMigratedNotification": "migrated",
    "NodeFailingOverNotification": "failing_over",
    "NodeFailedOverNotification": "failed_over",
    "OSSNodeMigratingNotification": "smigrating",
    "OSSNodeMigratedNotification": "smigrated",
}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _kind_of(response: Any) -> str | None:
    if not isinstance(response, (list, tuple)) or not response:
        return None
    first = response[0]
    if isinstance(first, bytes):
        try:
            first = first.decode()
        except UnicodeDecodeError:
            return None
    return KINDS.get(first) if isinstance(first, str) else None


def _event_fields(kind: str, response: Any) -> dict[str, Any]:
    """The event's fields, read from the push frame as redis-py's parser reads it."""
    nid = _number(response[1]) if len(response) > 1 else None
    fields: dict[str, Any] = {"notification_id": nid}
    if kind in ("moving", "migrating", "failing_over") and len(response) > 2:
        fields["ttl"] = _number(response[2])
    if kind == "moving" and len(response) > 3 and response[3] is not None:
        host, _, port = _text(response[3]).rpartition(":")
        fields["target_host"] = host or None
        fields["target_port"] = _number(port)
    elif kind == "smigrating" and len(response) > 2:
        fields["slots"] = _text(response[2])
    elif kind == "smigrated" and len(response) > 2:
        moves = []
        for move in response[2] or ():
            if isinstance(move, (list, tuple)) and len(move) == 3:
                source, destination, slots = (_text(part) for part in move)
                moves.append(f"{source}->{destination}:{slots}")
        fields["slots"] = ", ".join(moves)
    return fields


def _handler_owner(parser: Any, kind: str, is_async: bool) -> Any:
    """The redis-py handler object the parser gives a ``kind`` push to, or
    ``None`` when redis-py ignores it (maintenance notifications off). The
    sync parser gives ``SMIGRATED`` to the connection's handler and the
    cluster's, the asyncio one to the cluster's only."""
    if kind == "moving":
        handler = getattr(parser, "node_moving_push_handler_func", None)
    elif kind == "smigrated":
        handler = None if is_async else getattr(parser, "maintenance_push_handler_func", None)
        if handler is None:
            handler = getattr(parser, "oss_cluster_maint_push_handler_func", None)
    else:
        handler = getattr(parser, "maintenance_push_handler_func", None)
    if handler is None:
        return None
    owner = getattr(handler, "__self__", None)
    if owner is None:
        # redis-py 8.2 reading the pushes pending on an idle connection at
        # checkout: a closure that defers the handler it holds.
        for cell in getattr(handler, "__closure__", None) or ():
            try:
                owner = getattr(cell.cell_contents, "__self__", None)
            except ValueError:  # an empty cell
                continue
            if owner is not None:
                break
    return owner


def _connection_state(connection: Any) -> ConnState | None:
    if connection is None:
        return None
    state = CONNECTIONS.get(id(connection))
    if state is None:
        state = CONNECTIONS.get(id(real_connection(connection)))
    if state is None or state.pool_state is None:
        return None
    return state


def _receiving(parser: Any, kind: str, is_async: bool) -> tuple[Any, Any, ConnState] | None:
    """(handler owner, connection, its state) for a push redis-py handles
    on an instrumented connection, else ``None``."""
    owner = _handler_owner(parser, kind, is_async)
    if owner is None:
        return None
    connection = getattr(owner, "connection", None)
    if connection is None:  # the cluster's SMIGRATED handler: no connection of its own
        other = _handler_owner(parser, "migrating", is_async)
        connection = getattr(other, "connection", None)
    state = _connection_state(connection)
    if state is None:
        return None
    return owner, connection, state


class _Before:
    """What redis-py's state was before it handled a notification (for the
    relaxed-timeout events on redis-py without its own)."""

    __slots__ = (
        "connection",
        "kind",
        "moving_hash",
        "notification_id",
        "owner",
        "previous",
        "state",
    )

    def __init__(self, owner: Any, connection: Any, state: ConnState, kind: str, nid: Any) -> None:
        self.owner = owner
        self.connection = connection
        self.state = state
        self.kind = kind
        self.notification_id = nid
        #: ``MOVING``: the pool's ``maintenance_notification_hash``.
        self.moving_hash = _moving_hash(owner) if kind == "moving" else None
        #: Otherwise: the connection's ``maintenance_state`` name.
        self.previous = None if kind == "moving" else _state_name(connection)


def _moving_hash(owner: Any) -> Any:
    pool = getattr(owner, "pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    return kwargs.get("maintenance_notification_hash") if isinstance(kwargs, dict) else None


def _state_name(connection: Any) -> str | None:
    value = getattr(connection, "maintenance_state", None)
    return getattr(value, "name", None)


def _relaxed_enabled(config: Any) -> bool:
    check = getattr(config, "is_relaxed_timeouts_enabled", None)
    return bool(check()) if check is not None else False


def _notice(
    parser: Any, args: tuple[Any, ...], kwargs: dict[str, Any], is_async: bool
) -> _Before | None:
    """Before redis-py handles a push: emit ``maintenance_notification`` and
    plug into redis-py's events; return what the fallback needs afterwards."""
    response = args[0] if args else kwargs.get("response")
    kind = _kind_of(response)
    if kind is None:
        return None
    found = _receiving(parser, kind, is_async)
    if found is None:
        return None
    owner, connection, state = found
    fields = _event_fields(kind, response)
    pool_state = state.pool_state
    assert pool_state is not None
    delivery = pool_state.delivery
    if MaintenanceNotificationEvent in delivery.wanted:
        event = MaintenanceNotificationEvent(time(), state.origin, kind, **fields)
        emit_quietly(delivery, event)
    wanted = delivery.wanted
    if not (MaintenanceTimeoutRelaxedEvent in wanted or MaintenanceTimeoutRestoredEvent in wanted):
        return None
    if native_events() is not None:
        _plug(getattr(owner, "config", None))
        _plug(getattr(connection, "maint_notifications_config", None))
        return None
    return _Before(owner, connection, state, kind, fields["notification_id"])


def _after(before: _Before) -> None:
    """After redis-py handled a notification (redis-py without its own
    maintenance events): the relaxed timeout applied or cleared, by the rules
    redis-py 8.2 dispatches ``MaintenanceStartedEvent`` / ``...CompletedEvent`` by."""
    owner, kind = before.owner, before.kind
    config = getattr(owner, "config", None)
    relaxed_timeout = getattr(config, "relaxed_timeout", None)
    if kind == "moving":
        now = _moving_hash(owner)
        if now is not None and now != before.moving_hash:
            pool_state = _pool_state(getattr(owner, "pool", None)) or before.state.pool_state
            _emit_timeout(
                MaintenanceTimeoutRelaxedEvent,
                pool_state,
                _pool_origin(pool_state, before.state),
                "pool",
                kind,
                before.notification_id,
                relaxed_timeout,
            )
        return
    previous = before.previous
    if previous == "MOVING" or not _relaxed_enabled(config):
        return
    if kind in _STARTS or (kind in _ENDS and previous == "MAINTENANCE"):
        cls = MaintenanceTimeoutRelaxedEvent if kind in _STARTS else MaintenanceTimeoutRestoredEvent
        state = before.state
        _emit_timeout(
            cls,
            state.pool_state,
            state.origin,
            "connection",
            kind,
            before.notification_id,
            relaxed_timeout,
        )


def _pool_state(pool: Any) -> PoolState | None:
    return POOLS.get(id(pool)) if pool is not None else None


def _pool_origin(pool_state: PoolState | None, state: ConnState | None) -> EventOrigin | None:
    if pool_state is not None and state is not None and state.pool_state is pool_state:
        return pool_state.origin
    if state is not None:
        return state.origin
    return pool_state.origin if pool_state is not None else None


def _emit_timeout(
    cls: type[MaintenanceTimeoutRelaxedEvent] | type[MaintenanceTimeoutRestoredEvent],
    pool_state: PoolState | None,
    origin: EventOrigin | None,
    scope: str,
    kind: str | None,
    notification_id: int | None,
    relaxed_timeout: Any,
) -> None:
    if pool_state is None:
        return
    delivery = pool_state.delivery
    if cls not in delivery.wanted:
        return
    timeout = float(relaxed_timeout) if isinstance(relaxed_timeout, (int, float)) else None
    emit_quietly(delivery, cls(time(), origin, scope, kind, notification_id, timeout))


# --- the push hooks ------------------------------------------------------------


def _handle_push(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around the sync parsers' ``handle_push_response``."""
    try:
        before = _notice(instance, args, kwargs, False)
    except Exception:
        internal_error("maintenance notification")
        before = None
    result = wrapped(*args, **kwargs)
    if before is not None:
        try:
            _after(before)
        except Exception:
            internal_error("maintenance notification")
    return result


def _handle_push_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around the asyncio parsers' ``handle_push_response`` (a coroutine function)."""
    try:
        before = _notice(instance, args, kwargs, True)
    except Exception:
        internal_error("maintenance notification")
        before = None
    if before is None:
        return wrapped(*args, **kwargs)
    return _handled_async(wrapped(*args, **kwargs), before)


async def _handled_async(awaitable: Any, before: _Before) -> Any:
    result = await awaitable
    try:
        _after(before)
    except Exception:
        internal_error("maintenance notification")
    return result


def _moved_begin(instance: Any, args: Any, kwargs: Any) -> tuple[Any, Any] | None:
    """Before ``handle_node_moved_notification`` (a ``MOVING``'s ttl ran out):
    whether it will revert the pool (redis-py without its own events)."""
    if native_events() is not None:
        return None
    notification = args[0] if args else kwargs.get("notification")
    pool_state = _pool_state(getattr(instance, "pool", None))
    if pool_state is None or MaintenanceTimeoutRestoredEvent not in pool_state.delivery.wanted:
        return None
    if _moving_hash(instance) != hash(notification):
        return None  # a newer MOVING superseded it: the pool stays relaxed
    return pool_state, notification


def _moved_end(instance: Any, begun: tuple[Any, Any]) -> None:
    pool_state, notification = begun
    timeout = getattr(getattr(instance, "config", None), "relaxed_timeout", None)
    _emit_timeout(
        MaintenanceTimeoutRestoredEvent,
        pool_state,
        pool_state.origin,
        "pool",
        "moving",
        _number(getattr(notification, "id", None)),
        timeout,
    )


def _moved(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        begun = _moved_begin(instance, args, kwargs)
    except Exception:
        internal_error("maintenance notification expiry")
        begun = None
    result = wrapped(*args, **kwargs)
    if begun is not None:
        try:
            _moved_end(instance, begun)
        except Exception:
            internal_error("maintenance notification expiry")
    return result


def _moved_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        begun = _moved_begin(instance, args, kwargs)
    except Exception:
        internal_error("maintenance notification expiry")
        begun = None
    if begun is None:
        return wrapped(*args, **kwargs)
    return _moved_async_run(wrapped(*args, **kwargs), instance, begun)


async def _moved_async_run(awaitable: Any, instance: Any, begun: tuple[Any, Any]) -> Any:
    result = await awaitable
    try:
        _moved_end(instance, begun)
    except Exception:
        internal_error("maintenance notification expiry")
    return result


def maint_targets() -> Iterable[tuple[type, str, Any]]:
    """The sync hooks, for ``_sync``'s ``ClassPatcher`` (none before 7.0)."""
    try:
        from redis._parsers.base import PushNotificationsParser
        from redis.maint_notifications import MaintNotificationsPoolHandler
    except ImportError:
        return
    yield PushNotificationsParser, "handle_push_response", _handle_push
    if native_events() is None:
        yield MaintNotificationsPoolHandler, "handle_node_moved_notification", _moved


def maint_targets_async() -> Iterable[tuple[type, str, Any]]:
    """The asyncio hooks, for ``_async``'s ``ClassPatcher`` (redis-py 8.1+
    hands asyncio notifications to handlers; before, nothing is wrapped)."""
    try:
        from redis._parsers.base import AsyncPushNotificationsParser
        from redis.asyncio.maint_notifications import AsyncMaintNotificationsPoolHandler
    except ImportError:
        return
    yield AsyncPushNotificationsParser, "handle_push_response", _handle_push_async
    if native_events() is None:
        yield AsyncMaintNotificationsPoolHandler, "handle_node_moved_notification", _moved_async


# --- redis-py 8.2's MaintenanceStartedEvent / MaintenanceCompletedEvent --------

_native: tuple[Any, Any] | None = None
_native_loaded = False
_lock = threading.Lock()
#: The dispatchers our listener is registered on (weakly, when they allow it).
_plugged: weakref.WeakSet[Any] = weakref.WeakSet()
_plugged_strong: list[Any] = []
_listener: Any = None


def native_events() -> tuple[Any, Any] | None:
    """redis-py's ``(MaintenanceStartedEvent, MaintenanceCompletedEvent)``, or
    ``None`` on a redis-py without them (before 8.2)."""
    global _native, _native_loaded
    if not _native_loaded:
        try:
            from redis.event import MaintenanceCompletedEvent, MaintenanceStartedEvent

            _native = (MaintenanceStartedEvent, MaintenanceCompletedEvent)
        except ImportError:
            _native = None
        _native_loaded = True
    return _native


def _get_listener() -> Any:
    global _listener
    if _listener is None:
        from redis.event import EventListenerInterface

        class MaintenanceListener(EventListenerInterface):
            """redis_lifecycle's listener for redis-py's maintenance events."""

            def listen(self, event: object) -> None:
                try:
                    _route(event)
                except Exception:
                    internal_error("redis-py maintenance event")

        _listener = MaintenanceListener()
    return _listener


def _is_plugged(dispatcher: Any) -> bool:
    try:
        return dispatcher in _plugged
    except TypeError:
        return any(known is dispatcher for known in _plugged_strong)


def _plug(config: Any) -> None:
    """Register our listener on ``config``'s ``event_dispatcher`` (setting a
    ``redis.event.EventDispatcher`` there first if it has none); once per
    dispatcher. Listeners already there keep receiving every event."""
    events = native_events()
    if events is None or config is None or not hasattr(config, "event_dispatcher"):
        return
    dispatcher = config.event_dispatcher
    if dispatcher is not None and _is_plugged(dispatcher):
        return
    with _lock:
        dispatcher = config.event_dispatcher
        if dispatcher is None:
            from redis.event import EventDispatcher

            dispatcher = EventDispatcher()
            config.event_dispatcher = dispatcher
        if _is_plugged(dispatcher):
            return
        register = getattr(dispatcher, "register_listeners", None)
        if register is None:
            return
        listener = _get_listener()
        register({events[0]: [listener], events[1]: [listener]})
        try:
            _plugged.add(dispatcher)
        except TypeError:
            _plugged_strong.append(dispatcher)


def _route(event: Any) -> None:
    events = native_events()
    if events is None:
        return
    if isinstance(event, events[0]):
        cls: Any = MaintenanceTimeoutRelaxedEvent
    elif isinstance(event, events[1]):
        cls = MaintenanceTimeoutRestoredEvent
    else:
        return
    scope = "pool" if getattr(event.state, "name", None) == "MOVING" else "connection"
    notification = event.notification
    kind = _KIND_BY_CLASS.get(type(notification).__name__) if notification is not None else None
    nid = _number(getattr(notification, "id", None)) if notification is not None else None
    conn_state = _connection_state(event.connection)
    if scope == "pool":
        pool_state = _pool_state(event.connection_pool)
        if pool_state is None and conn_state is not None:
            pool_state = conn_state.pool_state
        origin = _pool_origin(pool_state, conn_state)
    else:
        if conn_state is None:
            return
        pool_state = conn_state.pool_state
        origin = conn_state.origin
    timeout = getattr(event.config, "relaxed_timeout", None)
    _emit_timeout(cls, pool_state, origin, scope, kind, nid, timeout)
