"""``instrument_all()``: lifecycle events from every redis-py pool created
afterwards, including the ones a framework builds for you.

    >>> import redis, redis_lifecycle as rl
    >>> dispatcher = rl.instrument_all()
    >>> sub = dispatcher.subscribe(rl.ConnectionConnectedEvent, print)
    >>> client = redis.Redis.from_url("redis://localhost:6379/0")  # instrumented
    >>> rl.uninstrument_all()
    True

It wraps ``__init__`` of redis-py's connection pools (``redis.ConnectionPool``,
``BlockingConnectionPool`` and every subclass that defines its own
``__init__``, such as Sentinel's pool; the same for ``redis.asyncio``) and of
``redis.asyncio.cluster.RedisCluster``, whose nodes hold their connections
without a pool, with class-level ``wrapt`` wrappers. When the outermost
``__init__`` of a new pool (or asyncio cluster client) returns, it is passed
to :func:`~redis_lifecycle.instrument` with the arguments given here, so each
gets its own handle and all of them share one dispatcher. A client is
instrumented through its pool: ``redis.Redis(...)`` and ``Redis.from_url``
build one, and so does each node of a sync ``RedisCluster``; the sync
``RedisCluster`` itself is instrumented too, for its redirects and slot-map
changes (its node pools keep the handles they already have). Pools and
clients created before the call are left alone (instrument them with
:func:`~redis_lifecycle.instrument`).

:func:`uninstrument_all` removes every wrapper it installed and uninstruments
every pool it instrumented; they keep working. Callbacks run as with
``instrument()``: inline on the thread that caused the event unless
``async_callbacks`` is given. A failure inside the hook is logged and never
stops a pool from being built.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis.connection as rconn
import wrapt

from ._capabilities import check_redis_py
from .dispatcher import EventDispatcher
from .errors import CallbackErrorHandler

if TYPE_CHECKING:
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

__all__ = ["instrument_all", "is_instrumenting_all", "uninstrument_all"]

logger = logging.getLogger("redis_lifecycle")

_lock = threading.RLock()
_local = threading.local()


class _Auto:
    """The active ``instrument_all()``: its arguments, wrappers and pools."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.dispatcher: EventDispatcher = options["event_dispatcher"]
        self.wrapped: list[tuple[type, Any]] = []
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()


_active: _Auto | None = None


def _bases() -> list[type]:
    """The classes whose new instances are instrumented, with their subclasses."""
    import redis.cluster as rcluster

    # A sync cluster's node pools are instrumented as pools; the client too,
    # for its topology (redirects, slot-map changes).
    bases: list[type] = [rconn.ConnectionPool, rcluster.RedisCluster]
    try:
        import redis.asyncio.cluster as acluster
        import redis.asyncio.connection as aconn
    except ImportError:  # pragma: no cover - every supported redis-py has asyncio
        return bases
    # An asyncio cluster's nodes hold their connections themselves: no pool
    # is built for them, so the client itself is instrumented.
    bases += [aconn.ConnectionPool, acluster.RedisCluster]
    return bases


def _is_pipeline(cls: type) -> bool:
    """A sync ``ClusterPipeline`` subclasses ``RedisCluster`` and shares its
    nodes: it is not a cluster of its own."""
    import redis.cluster as rcluster

    return issubclass(cls, rcluster.ClusterPipeline)


def _is_ours(cls: type) -> bool:
    """Lifecycle pools attach themselves."""
    return cls.__module__.startswith("redis_lifecycle.")


def _classes() -> Iterator[type]:
    """Every such class defining its own ``__init__``, base classes first."""
    seen: set[type] = set()
    stack = list(reversed(_bases()))
    while stack:
        cls = stack.pop()
        if cls in seen or _is_pipeline(cls):
            continue
        seen.add(cls)
        if "__init__" in cls.__dict__ and not _is_ours(cls):
            yield cls
        stack.extend(reversed(cls.__subclasses__()))


def _in_init() -> set[int]:
    found: set[int] | None = getattr(_local, "in_init", None)
    if found is None:
        found = _local.in_init = set()
    return found


def _init_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around a pool's (or an asyncio cluster client's) ``__init__``:
    instrument it once the outermost returns."""
    building = _in_init()
    key = id(instance)
    if key in building:
        return wrapped(*args, **kwargs)
    building.add(key)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        building.discard(key)
    auto = _active
    if auto is not None and not _is_ours(type(instance)):
        _instrument_new_pool(auto, instance)
    return result


def _instrument_new_pool(auto: _Auto, pool: Any) -> None:
    """Instrument a new pool or asyncio cluster client; never raises."""
    from ._hooks.targets import resolve_target
    from .instrument import _instrument

    try:
        resolve_target(pool)
    except TypeError:
        return  # a pool kind instrument() does not support (yet): leave it alone
    try:
        _instrument(pool, auto.options)
        auto.pools.add(pool)
    except Exception:
        logger.error(
            "redis_lifecycle: instrument_all() could not instrument %s.%s; "
            "the pool works, without lifecycle events",
            type(pool).__module__,
            type(pool).__qualname__,
            exc_info=True,
        )


def instrument_all(
    *,
    event_dispatcher: EventDispatcher | None = None,
    async_callbacks: AsyncCallbackExecutor | None = None,
    callback_error_handler: CallbackErrorHandler | None = None,
    instrumentation: Instrumentation | None = None,
    leak_detection: float | None = None,
) -> EventDispatcher:
    """Instrument every redis-py pool (and so every client) and every asyncio
    ``RedisCluster`` created from now on.

    Returns the :class:`~redis_lifecycle.EventDispatcher` that receives every
    event (``event_dispatcher`` if given). The other arguments are those of
    :func:`~redis_lifecycle.instrument`, shared by all the pools
    (``leak_detection=SECONDS`` watches every pool's checkouts). Calling it
    again while active returns the same dispatcher and ignores the arguments,
    like ``instrument()``. Raises :class:`TypeError` for an argument of the
    wrong type, and :class:`RuntimeError` for an ``async_callbacks`` executor
    that was shut down, before anything is changed.
    """
    global _active
    from .instrument import check_executor_running

    check_redis_py()  # warns once if this redis-py lacks a name the hooks need
    check_executor_running(async_callbacks, "instrument_all()")
    with _lock:
        if _active is not None:
            return _active.dispatcher
        if event_dispatcher is not None and not isinstance(event_dispatcher, EventDispatcher):
            msg = (
                "instrument_all(event_dispatcher=...) expects a redis_lifecycle.EventDispatcher, "
                f"got {type(event_dispatcher).__module__}.{type(event_dispatcher).__qualname__}"
            )
            raise TypeError(msg)
        if callback_error_handler is not None and not isinstance(
            callback_error_handler, CallbackErrorHandler
        ):
            msg = (
                "instrument_all(callback_error_handler=...) expects a "
                f"redis_lifecycle.CallbackErrorHandler, got {callback_error_handler!r}; "
                "e.g. CallbackErrorHandler('log')"
            )
            raise TypeError(msg)
        from .instrument import check_leak_detection

        check_leak_detection(leak_detection)  # TypeError/ValueError before any change
        auto = _Auto(
            {
                "event_dispatcher": event_dispatcher or EventDispatcher(),
                "async_callbacks": async_callbacks,
                "callback_error_handler": callback_error_handler,
                "instrumentation": instrumentation,
                "leak_detection": leak_detection,
            }
        )
        try:
            for cls in _classes():
                original = cls.__dict__["__init__"]
                wrapper = wrapt.FunctionWrapper(original, _init_wrapper)
                cls.__init__ = wrapper  # type: ignore[misc]
                auto.wrapped.append((cls, wrapper))
        except BaseException:
            _unwrap(auto)
            raise
        _active = auto
        return auto.dispatcher


def _unwrap(auto: _Auto) -> None:
    for cls, wrapper in reversed(auto.wrapped):
        if cls.__dict__.get("__init__") is wrapper:
            cls.__init__ = wrapper.__wrapped__
        else:
            logger.warning(
                "redis_lifecycle: %s.__init__ was wrapped again by another library; "
                "leaving the wrapper chain in place (it is inert now)",
                cls.__qualname__,
            )
    auto.wrapped.clear()


def uninstrument_all() -> bool:
    """Undo :func:`instrument_all`: new pools are no longer instrumented, and
    the pools it instrumented stop emitting events (they keep working).

    Returns ``False`` if ``instrument_all()`` was not active.
    """
    global _active
    from .instrument import uninstrument

    with _lock:
        auto = _active
        if auto is None:
            return False
        _active = None
        _unwrap(auto)
        for pool in list(auto.pools):
            uninstrument(pool)
        auto.pools.clear()
        return True


def is_instrumenting_all() -> bool:
    """Whether :func:`instrument_all` is active."""
    return _active is not None
