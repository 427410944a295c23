"""Teach ``instrument()`` the asyncio clients and pools.

    >>> import redis.asyncio, redis_lifecycle as rl
    >>> handle = rl.instrument(redis.asyncio.Redis(host="localhost"))

Imported by :mod:`redis_lifecycle._hooks.targets` on the first ``instrument()``
call. Callbacks run inline on the event loop's thread (``async def`` ones as
tasks), see :mod:`redis_lifecycle._coroutine_callbacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis
import redis.asyncio.connection as aconn

from .._coroutine_callbacks import remember_loop
from .aio import async_kind_for
from .attach import attach_pool

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle

__all__ = ["KINDS", "attach_async_pool"]


def attach_async_pool(
    handle: LifecycleHandle, pool: Any, pool_name: str | None = None, **extra: Any
) -> None:
    """Attach one asyncio pool to ``handle``."""
    state = attach_pool(pool, async_kind_for(pool), handle.delivery, pool_name=pool_name, **extra)
    state.handle = handle
    handle._add_pool(pool)
    remember_loop(handle.delivery)


def _is_async_pool(obj: Any) -> bool:
    return isinstance(obj, aconn.ConnectionPool)


def _is_async_client(obj: Any) -> bool:
    return isinstance(obj, aredis.Redis) and isinstance(
        getattr(obj, "connection_pool", None), aconn.ConnectionPool
    )


def _attach_pool(pool: Any, handle: Any, pool_name: str | None) -> None:
    attach_async_pool(handle, pool, pool_name)


def _attach_client(client: Any, handle: Any, pool_name: str | None) -> None:
    attach_async_pool(handle, client.connection_pool, pool_name)


def _attach_connection(connection: Any, handle: Any, pool_name: str | None) -> None:
    from .aio import CONNECTION_PATCHER
    from .connection import attach_connection

    attach_connection(connection, handle, pool_name, patcher=CONNECTION_PATCHER, is_async=True)
    remember_loop(handle.delivery)


#: What ``instrument()`` accepts from ``redis.asyncio``, as ``(predicate,
#: attach)`` rows of the index in :mod:`redis_lifecycle._hooks.targets`.
KINDS: list[tuple[Callable[[Any], bool], Callable[[Any, Any, str | None], None]]] = [
    (_is_async_client, _attach_client),
    (_is_async_pool, _attach_pool),
    (lambda obj: isinstance(obj, aconn.AbstractConnection), _attach_connection),
]
