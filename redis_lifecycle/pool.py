"""Drop-in lifecycle pools for sync redis-py.

    >>> import redis, redis_lifecycle as rl
    >>> dispatcher = rl.EventDispatcher()
    >>> pool = rl.LifecycleConnectionPool(
    ...     host="localhost", max_connections=10,
    ...     event_dispatcher=dispatcher, pool_name="cache")
    >>> client = redis.Redis(connection_pool=pool)

:class:`LifecycleConnectionPool` and :class:`LifecycleBlockingConnectionPool`
are real subclasses of redis-py's pools: they take every argument those take
(``from_url`` included) plus the lifecycle ones. Callbacks run inline unless
``async_callbacks`` is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis
import redis.connection as rconn

from ._capabilities import check_redis_py
from ._hooks.sync import SyncPoolHooks
from ._hooks.sync_kinds import attach_sync_pool
from ._redact import redact
from .dispatcher import EventDispatcher
from .errors import CallbackErrorHandler
from .instrument import (
    CallbackRegistry,
    LifecycleHandle,
    _make_delivery,
    check_executor_running,
    handle_for,
    register_handle,
)

if TYPE_CHECKING:
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

__all__ = ["LifecycleBlockingConnectionPool", "LifecycleConnectionPool", "pooled"]

_LIFECYCLE_ARGUMENTS = (
    "pool_name",
    "async_callbacks",
    "callback_error_handler",
    "instrumentation",
    "leak_detection",
)


def split_lifecycle_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the lifecycle arguments out of ``kwargs`` (in place).

    ``event_dispatcher`` is ours only if it is a
    :class:`redis_lifecycle.EventDispatcher`; redis-py's own dispatcher is
    left in ``kwargs`` for redis-py.
    """
    ours = {name: kwargs.pop(name) for name in _LIFECYCLE_ARGUMENTS if name in kwargs}
    dispatcher = kwargs.get("event_dispatcher")
    if dispatcher is None or isinstance(dispatcher, EventDispatcher):
        ours["event_dispatcher"] = kwargs.pop("event_dispatcher", None)
    return ours


class _LifecyclePoolMixin:
    """The lifecycle arguments and legacy callbacks of the drop-in pools
    (sync and asyncio: ``_rl_attach`` says how to hook this kind of pool)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        lifecycle = split_lifecycle_kwargs(kwargs)
        check_executor_running(lifecycle.get("async_callbacks"), type(self).__qualname__)
        check_redis_py()  # warns once if this redis-py lacks a name the hooks need
        super().__init__(*args, **kwargs)
        delivery = _make_delivery(
            lifecycle.get("event_dispatcher"),
            lifecycle.get("async_callbacks"),
            lifecycle.get("callback_error_handler"),
            lifecycle.get("instrumentation"),
            lifecycle.get("leak_detection"),
        )
        handle = LifecycleHandle(self, delivery, CallbackRegistry(delivery.dispatcher))
        handle._options = {name: value for name, value in lifecycle.items() if value is not None}
        self._rl_attach(handle, lifecycle.get("pool_name"))
        register_handle(self, handle)

    def _rl_attach(self, handle: LifecycleHandle, pool_name: str | None) -> None:
        attach_sync_pool(handle, self, pool_name)

    @property
    def lifecycle(self) -> LifecycleHandle:
        """The :class:`~redis_lifecycle.LifecycleHandle` of this pool."""
        handle = handle_for(self)
        if handle is None:
            msg = (
                "this pool was uninstrumented; call redis_lifecycle.instrument(pool) "
                "to get a handle again"
            )
            raise RuntimeError(msg)
        return handle

    @property
    def event_dispatcher(self) -> EventDispatcher:
        """The :class:`~redis_lifecycle.EventDispatcher` events go to."""
        return self.lifecycle.dispatcher

    def register_connection_callback(self, name: str, callback: Any = None) -> Any:
        """See :meth:`LifecycleHandle.register_connection_callback`."""
        return self.lifecycle.register_connection_callback(name, callback)

    def deregister_connection_callback(self, name: str, callback: Any) -> bool:
        """See :meth:`LifecycleHandle.deregister_connection_callback`."""
        return self.lifecycle.deregister_connection_callback(name, callback)


class LifecycleConnectionPool(_LifecyclePoolMixin, SyncPoolHooks, rconn.ConnectionPool):
    """A ``redis.ConnectionPool`` that emits lifecycle events.

    Lifecycle arguments: ``event_dispatcher`` (a
    :class:`~redis_lifecycle.EventDispatcher`; redis-py's own dispatcher is
    passed through), ``pool_name``, ``async_callbacks``,
    ``callback_error_handler``, ``instrumentation``, ``leak_detection``
    (seconds; see :func:`~redis_lifecycle.instrument`). An ``async_callbacks``
    executor that was shut down raises :class:`RuntimeError`.
    """


class LifecycleBlockingConnectionPool(
    _LifecyclePoolMixin, SyncPoolHooks, rconn.BlockingConnectionPool
):
    """A ``redis.BlockingConnectionPool`` that emits lifecycle events.

    Takes the same lifecycle arguments as :class:`LifecycleConnectionPool`.
    """


def blocking_pool_for_pooled(
    pool_class: Any, host: str, port: int, pool: dict[str, Any] | None, **kwargs: Any
) -> Any:
    """The lifecycle blocking pool that :func:`pooled` (sync or asyncio) builds:
    ``pool`` checked (its type, keys and values), then mapped to the pool's arguments."""
    options = _check_pool_options(pool)
    if options.get("leak_detection") is not None:
        kwargs["leak_detection"] = options["leak_detection"]
    return pool_class(
        host=host,
        port=port,
        max_connections=options.get("size", 10),
        timeout=options.get("timeout", 5),
        event_dispatcher=options.get("event_dispatcher"),
        pool_name=options.get("pool_name"),
        **kwargs,
    )


_POOL_EXAMPLE = 'e.g. pool={"size": 10, "timeout": 5}'


def _check_pool_options(pool: Any) -> dict[str, Any]:
    """``pooled(pool=...)`` as a dict, or :class:`TypeError`/:class:`ValueError`
    saying what was expected, what was given and what to do."""
    if pool is None:
        return {}
    if not isinstance(pool, Mapping):
        msg = (
            f"pool= expects a dict of pool options (size, timeout, event_dispatcher, "
            f"pool_name, leak_detection), got {type(pool).__name__}: "
            f"{redact(repr(pool))[:60]}; {_POOL_EXAMPLE}"
        )
        raise TypeError(msg)
    options = dict(pool)
    unknown = set(options) - {"size", "timeout", "event_dispatcher", "pool_name", "leak_detection"}
    if unknown:
        shown = redact(str(sorted(unknown, key=repr)))
        msg = (
            "pool= takes size, timeout, event_dispatcher, pool_name and leak_detection; "
            f"got unknown {shown}; "
            "connection arguments (db, password, socket_timeout, ...) go to pooled() itself, "
            "not into pool="
        )
        raise TypeError(msg)
    if "size" in options:
        size = options["size"]
        if isinstance(size, bool) or not isinstance(size, int):
            msg = (
                f'pool["size"] is the maximum number of connections, an int >= 1; '
                f"got {type(size).__name__}: {redact(repr(size))[:40]}; {_POOL_EXAMPLE}"
            )
            raise TypeError(msg)
        if size < 1:
            msg = (
                f'pool["size"] is the maximum number of connections and must be >= 1, '
                f"got {size}; {_POOL_EXAMPLE}"
            )
            raise ValueError(msg)
    if "timeout" in options and options["timeout"] is not None:
        timeout = options["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            msg = (
                f'pool["timeout"] is the seconds a checkout waits for a free connection, '
                f"a number >= 0 or None (no limit); got {type(timeout).__name__}: "
                f"{redact(repr(timeout))[:40]}; {_POOL_EXAMPLE}"
            )
            raise TypeError(msg)
        if not timeout >= 0 or timeout == float("inf"):
            msg = (
                f'pool["timeout"] is the seconds a checkout waits for a free connection '
                f"and must be a finite number >= 0 (or None: no limit), got {timeout!r}; "
                f"{_POOL_EXAMPLE}"
            )
            raise ValueError(msg)
    name = options.get("pool_name")
    if name is not None and not isinstance(name, str):
        msg = (
            f'pool["pool_name"] names the pool in events and metrics and must be a str, '
            f"got {type(name).__name__}: {redact(repr(name))[:40]}; "
            'e.g. pool={"pool_name": "cache"}'
        )
        raise TypeError(msg)
    return options


def pooled(
    host: str = "localhost",
    port: int = 6379,
    *,
    pool: dict[str, Any] | None = None,
    async_callbacks: AsyncCallbackExecutor | None = None,
    callback_error_handler: CallbackErrorHandler | None = None,
    instrumentation: Instrumentation | None = None,
    **redis_kwargs: Any,
) -> redis.Redis:
    """A ``redis.Redis`` on a :class:`LifecycleBlockingConnectionPool`.

    ``pool`` takes ``size`` (max connections, default 10), ``timeout``
    (seconds a checkout waits, default 5), ``event_dispatcher``,
    ``pool_name`` and ``leak_detection`` (seconds, off by default: see
    :func:`~redis_lifecycle.instrument`); ``redis_kwargs`` go to the connections (``db``,
    ``password``, ``socket_timeout``, ...).

    ``pool`` is checked here, not at the first command: :class:`TypeError`
    for a ``pool`` that is not a dict, an unknown key or a value of the wrong
    type; :class:`ValueError` for a ``size`` below 1 or a ``timeout`` that is
    negative, NaN or infinite (``None`` waits without limit). A shut-down
    ``async_callbacks`` executor raises :class:`RuntimeError`.
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
    return redis.Redis(connection_pool=connection_pool)  # type: ignore[no-untyped-call, unused-ignore]
