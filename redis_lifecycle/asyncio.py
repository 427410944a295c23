"""Drop-in lifecycle pools for ``redis.asyncio``.

    >>> import redis.asyncio, redis_lifecycle as rl
    >>> from redis_lifecycle.asyncio import LifecycleConnectionPool
    >>> dispatcher = rl.EventDispatcher()
    >>> pool = LifecycleConnectionPool(
    ...     host="localhost", max_connections=10,
    ...     event_dispatcher=dispatcher, pool_name="cache")
    >>> client = redis.asyncio.Redis(connection_pool=pool)

:class:`LifecycleConnectionPool` and :class:`LifecycleBlockingConnectionPool`
are real subclasses of ``redis.asyncio.ConnectionPool`` and
``redis.asyncio.BlockingConnectionPool``: they take every argument those take
(``from_url`` included) plus ``event_dispatcher``, ``pool_name``,
``async_callbacks``, ``callback_error_handler`` and ``instrumentation``.

Plain callbacks run inline on the event loop's thread, inside the task whose
command caused the event; ``async def`` callbacks are scheduled as tasks on
the running loop and awaited by ``await pool.aclose()`` or
``await pool.lifecycle.drain()`` (see :mod:`redis_lifecycle._coroutine_callbacks`).
With ``async_callbacks`` (an :class:`~redis_lifecycle.AsyncCallbackExecutor`)
plain callbacks run on its worker threads instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis
import redis.asyncio.connection as aconn

from ._coroutine_callbacks import drain
from ._hooks.aio import AsyncPoolHooks
from .instrument import (
    LifecycleHandle,
    handle_for,
)
from .pool import _LifecyclePoolMixin, blocking_pool_for_pooled

if TYPE_CHECKING:
    from .errors import CallbackErrorHandler
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

__all__ = ["LifecycleBlockingConnectionPool", "LifecycleConnectionPool", "pooled"]


class _AsyncLifecyclePoolMixin(_LifecyclePoolMixin):
    def _rl_attach(self, handle: LifecycleHandle, pool_name: str | None) -> None:
        from ._hooks.aio_targets import attach_async_pool

        attach_async_pool(handle, self, pool_name)

    async def aclose(self) -> None:
        """Close every connection (redis-py's ``aclose``), then wait for the
        ``async def`` callbacks their events started."""
        try:
            await super().aclose()  # type: ignore[misc]
        finally:
            handle = handle_for(self)
            if handle is not None:
                await drain(handle.delivery)


class LifecycleConnectionPool(_AsyncLifecyclePoolMixin, AsyncPoolHooks, aconn.ConnectionPool):
    """A ``redis.asyncio.ConnectionPool`` that emits lifecycle events.

    Lifecycle arguments: ``event_dispatcher`` (a
    :class:`~redis_lifecycle.EventDispatcher`; redis-py's own dispatcher is
    passed through), ``pool_name``, ``async_callbacks``,
    ``callback_error_handler``, ``instrumentation``.
    """


class LifecycleBlockingConnectionPool(
    _AsyncLifecyclePoolMixin, AsyncPoolHooks, aconn.BlockingConnectionPool
):
    """A ``redis.asyncio.BlockingConnectionPool`` that emits lifecycle events.

    Takes the same lifecycle arguments as :class:`LifecycleConnectionPool`.
    """


def pooled(
    host: str = "localhost",
    port: int = 6379,
    *,
    pool: dict[str, Any] | None = None,
    async_callbacks: AsyncCallbackExecutor | None = None,
    callback_error_handler: CallbackErrorHandler | None = None,
    instrumentation: Instrumentation | None = None,
    **redis_kwargs: Any,
) -> aredis.Redis:
    """A ``redis.asyncio.Redis`` on a :class:`LifecycleBlockingConnectionPool`.

    The asyncio twin of :func:`redis_lifecycle.pooled` (a plain function, as
    building an asyncio client needs no ``await``). ``pool`` takes ``size``
    (max connections, default 10), ``timeout`` (seconds a checkout waits,
    default 5), ``event_dispatcher``, ``pool_name`` and ``leak_detection``
    (seconds, off by default); ``redis_kwargs`` go to
    the connections (``db``, ``password``, ``socket_timeout``, ...). The client
    owns the pool: ``await client.aclose()`` closes it too. Bad ``pool``
    values raise as in :func:`redis_lifecycle.pooled`.
    """
    connection_pool = blocking_pool_for_pooled(
        LifecycleBlockingConnectionPool,
        host,
        port,
        pool,
        async_callbacks=async_callbacks,
        callback_error_handler=callback_error_handler,
        instrumentation=instrumentation,
        **redis_kwargs,
    )
    from_pool = getattr(aredis.Redis, "from_pool", None)
    if from_pool is not None:
        return from_pool(connection_pool)  # type: ignore[no-any-return]
    client = aredis.Redis(connection_pool=connection_pool)  # redis-py 5.0.0: no from_pool
    client.auto_close_connection_pool = True
    return client
