"""redis-py's side of :class:`~redis_lifecycle.EventDispatcher`.

    >>> import redis, redis_lifecycle as rl
    >>> dispatcher = rl.EventDispatcher()
    >>> client = redis.Redis(host="localhost", event_dispatcher=dispatcher)  # doctest: +SKIP

redis-py 5.3 and newer take ``event_dispatcher=`` on its clients, pools and
PubSub, and dispatch its own events (``redis.event``) to it. Every one of
them is passed on to a real ``redis.event.EventDispatcher`` that the
:class:`~redis_lifecycle.EventDispatcher` holds, so redis-py's listeners
(re-authentication with credential providers) run as they would without
redis_lifecycle. Some of those events announce objects; once redis-py's
listeners have run, these are instrumented with the dispatcher (as
``instrument(obj, event_dispatcher=dispatcher)`` would, inline delivery,
default error handler):

==============================================  ===============================
redis-py event                                  instrumented
==============================================  ===============================
``AfterPooledConnectionsInstantiationEvent``    each pool (a client's pool; a
                                                sync cluster's node pools, named
                                                ``host:port`` as by
                                                ``instrument(cluster)``, and the
                                                nodes it adds later)
``AfterSingleConnectionInstantiationEvent``     the connection, unless its pool
                                                is instrumented already
``AfterPubSubConnectionInstantiationEvent``     the PubSub's pool
``AfterAsyncClusterInstantiationEvent``         the asyncio cluster client (its
                                                nodes now and later)
==============================================  ===============================

Something already instrumented (by ``instrument()``, a lifecycle pool or
``instrument_all()``) is left as it is. Instrumenting never raises into
redis-py: a failure is logged on the ``redis_lifecycle`` logger.

The objects are found where redis-py announces them; the sync cluster's
``NodesManager`` and the asyncio ``RedisCluster`` are found as ``self`` in
the frames of the ``dispatch`` call (redis-py dispatches these from their
methods). Not found (a redis-py that moved the call): the announced pools
are instrumented one by one instead, or, for the asyncio cluster, nothing is
and a warning says to call ``instrument(cluster)``.

On redis-py older than 5.3 there is no ``redis.event``: redis-py never calls
these methods, and ``instrument()`` is the way in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..errors import CallbackError

if TYPE_CHECKING:
    from ..dispatcher import EventDispatcher

__all__ = ["ANNOUNCED", "ensure_loaded", "new_native_dispatcher"]

logger = logging.getLogger("redis_lifecycle")

#: ``redis.event``, imported on first use (importing redis_lifecycle imports
#: no redis); ``None`` on redis-py before 5.3.
_event: Any = None
_loaded = False


def _load() -> Any:
    global _event, _loaded
    if not _loaded:
        try:
            import redis.event as event_module

            module: Any = event_module
        except ImportError:  # redis-py before 5.3
            module = None
        _event = module
        if module is not None:
            for name, handler in (
                ("AfterPooledConnectionsInstantiationEvent", _pools),
                ("AfterSingleConnectionInstantiationEvent", _single_connection),
                ("AfterPubSubConnectionInstantiationEvent", _pubsub),
                ("AfterAsyncClusterInstantiationEvent", _async_cluster),
            ):
                cls = getattr(module, name, None)
                if cls is not None:
                    ANNOUNCED[cls] = handler
            interface = getattr(module, "EventDispatcherInterface", None)
            if interface is not None:
                from ..dispatcher import EventDispatcher

                interface.register(EventDispatcher)
        _loaded = True
    return _event


class _NoNativeDispatcher:
    """Stands in for redis-py's dispatcher on a redis-py without one."""

    def dispatch(self, event: object) -> None:
        pass

    async def dispatch_async(self, event: object) -> None:
        pass


def new_native_dispatcher() -> Any:
    """A fresh ``redis.event.EventDispatcher`` with redis-py's default listeners
    (which also makes ``ANNOUNCED`` ready)."""
    module = _load()
    if module is None:
        return _NoNativeDispatcher()
    return module.EventDispatcher()


def ensure_loaded() -> None:
    """Import ``redis.event`` (if redis-py has it) and register
    :class:`~redis_lifecycle.EventDispatcher` as a virtual subclass of
    ``redis.event.EventDispatcherInterface``."""
    _load()


# --- what the announcements instrument --------------------------------------

#: How many frames above ``dispatch`` to look for the announcing object.
_FRAMES = 4


def _announcer(caller: FrameType | None, cls: type) -> Any:
    """The first ``self`` of type ``cls`` in ``caller`` and the frames above it."""
    frame = caller
    for _ in range(_FRAMES):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, cls):
            return candidate
        frame = frame.f_back
    return None


def _existing(obj: Any) -> bool:
    from ..instrument import find_handle

    return find_handle(obj) is not None


def _instrument(obj: Any, dispatcher: EventDispatcher, what: str) -> None:
    """``instrument(obj, event_dispatcher=dispatcher)`` unless ``obj`` already
    is; never raises."""
    from ..instrument import instrument

    try:
        if not _existing(obj):
            instrument(obj, event_dispatcher=dispatcher)
    except CallbackError as error:  # a pool_created callback under "raise"
        logger.warning("a callback failed while %s was instrumented: %s", what, error)
    except Exception:
        logger.error("redis_lifecycle could not instrument %s", what, exc_info=True)


def _pools(dispatcher: EventDispatcher, event: Any, caller: FrameType | None) -> None:
    import redis.cluster as rcluster

    manager = _announcer(caller, rcluster.NodesManager)
    if manager is not None:
        from .cluster import attach_manager_for_dispatcher

        try:
            attach_manager_for_dispatcher(manager, dispatcher, list(event.connection_pools))
        except CallbackError as error:
            logger.warning("a callback failed while cluster nodes were instrumented: %s", error)
        except Exception:
            logger.error("redis_lifecycle could not instrument cluster nodes", exc_info=True)
        return
    for pool in list(event.connection_pools):
        _instrument(pool, dispatcher, "a connection pool")


def _single_connection(dispatcher: EventDispatcher, event: Any, caller: FrameType | None) -> None:
    from .state import CONNECTIONS, _unwrap

    state = CONNECTIONS.get(id(_unwrap(event.connection)))
    if state is not None and state.pool_state is not None:
        return  # its pool is instrumented (asyncio clients announce it on every initialize)
    _instrument(event.connection, dispatcher, "a single-connection client's connection")


def _pubsub(dispatcher: EventDispatcher, event: Any, caller: FrameType | None) -> None:
    pool = event.connection_pool
    if pool is not None:
        _instrument(pool, dispatcher, "a PubSub's connection pool")


def _async_cluster(dispatcher: EventDispatcher, event: Any, caller: FrameType | None) -> None:
    import redis.asyncio.cluster as acluster

    # NodesManager.initialize, then RedisCluster.initialize
    cluster = _announcer(caller, acluster.RedisCluster)
    if cluster is None or getattr(cluster.nodes_manager, "nodes_cache", None) is not event.nodes:
        logger.warning(
            "redis_lifecycle could not find the asyncio RedisCluster that dispatched %s; "
            "its nodes are not instrumented: call redis_lifecycle.instrument(cluster, "
            "event_dispatcher=...) instead",
            type(event).__name__,
        )
        return
    _instrument(cluster, dispatcher, "an asyncio cluster")


#: The redis-py events that announce something to instrument, by exact class
#: (redis-py's dispatcher matches ``type(event)`` too); filled by ``_load``.
ANNOUNCED: dict[type, Callable[[EventDispatcher, Any, FrameType | None], None]] = {}
