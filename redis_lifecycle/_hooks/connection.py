"""``instrument(connection)``: one redis-py connection, without a pool.

    >>> import redis, redis_lifecycle as rl
    >>> connection = redis.Connection(host="localhost", port=6379)
    >>> handle = rl.instrument(connection)
    >>> handle.health_check(command="PING")                  # doctest: +SKIP
    HealthCheckResult(healthy=True, latency_ms=0.210, error=None)

The connection is watched by the same class-level connection hooks as a
pooled one (connect, disconnect, errors, health checks, marks for
reconnect), with a pool state of its own that no pool hook ever sees: its
events carry its address, ``db`` and ``connection_id``, and the pool name
given to ``instrument()`` (by default ``host:port/db`` or ``unix:path/db``).
Callbacks run inline on the thread (or event loop) that caused the event,
unless the handle was given an :class:`~redis_lifecycle.AsyncCallbackExecutor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .state import PoolState, connection_origin, forget_connection, register_connection

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle
    from . import ClassPatcher

__all__ = ["attach_connection"]


def _name(connection: Any) -> str:
    db = getattr(connection, "db", 0) or 0
    path = getattr(connection, "path", None)
    if path:
        return f"unix:{path}/{db}"
    return f"{getattr(connection, 'host', 'localhost')}:{getattr(connection, 'port', 6379)}/{db}"


def _no_counts(connection: Any) -> tuple[int, int]:
    return 0, 0


def _one(connection: Any) -> int:
    return 1


def attach_connection(
    connection: Any,
    handle: LifecycleHandle,
    pool_name: str | None,
    *,
    patcher: ClassPatcher,
    is_async: bool,
) -> None:
    """Watch ``connection`` for ``handle`` until the handle is detached."""
    name = pool_name or _name(connection)
    state = PoolState(
        connection,  # its own "pool": weakly referenced, never in POOLS
        name=name,
        origin=connection_origin(connection, name, 0),
        delivery=handle.delivery,
        base_class=type(connection),
        counts=_no_counts,
        total=_one,
        size=1,
        timeout=None,
        is_async=is_async,
    )
    state.handle = handle
    patcher.add_user()
    try:
        register_connection(connection, state)
    except BaseException:
        patcher.remove_user()
        raise

    def detach() -> None:
        forget_connection(connection)
        patcher.remove_user()

    handle._closers.append(detach)
