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
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._hooks.cluster import _MANAGERS, attach_manager, attach_node_pool
from ._hooks.state import CONNECTIONS, real_connection
from ._redis_event import register_announcement
from .errors import CallbackError
from .instrument import (
    LifecycleHandle,
    _make_delivery,
    find_handle,
    handle_for,
    instrument,
    register_handle,
)
from .instrument import _lock as instrument_lock

if TYPE_CHECKING:
    from .dispatcher import EventDispatcher

__all__ = ["attach_manager_for_dispatcher"]

logger = logging.getLogger("redis_lifecycle")


def attach_manager_for_dispatcher(
    manager: Any, dispatcher: EventDispatcher, pools: list[Any]
) -> None:
    """A ``RedisCluster(event_dispatcher=dispatcher)``'s ``NodesManager``
    announced node ``pools``: attach them and every node it knows (once per
    manager), as ``instrument(cluster, event_dispatcher=dispatcher)`` would.
    The announced pools count: redis-py 5.x-6.x announce them before the
    nodes are in ``nodes_cache``. The handle is registered under the
    manager, where ``uninstrument(cluster)`` finds it."""
    with instrument_lock:
        binding = _MANAGERS.get(manager)
        if binding is None and handle_for(manager) is None:
            handle = LifecycleHandle(manager, _make_delivery(dispatcher, None, None, None))
            handle._options = {"event_dispatcher": dispatcher}
            attach_manager(manager, manager, handle, None)
            register_handle(manager, handle)
            binding = _MANAGERS.get(manager)
        if binding is None:
            return
        for pool in pools:  # attach_node_pool skips those attached already
            kwargs = getattr(pool, "connection_kwargs", {})
            attach_node_pool(binding, pool, kwargs.get("host"), kwargs.get("port"))


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
    return find_handle(obj) is not None


def _instrument(obj: Any, dispatcher: EventDispatcher, what: str) -> None:
    """``instrument(obj, event_dispatcher=dispatcher)`` unless ``obj`` already
    is; never raises."""
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
    state = CONNECTIONS.get(id(real_connection(event.connection)))
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


# The redis-py events that announce something to instrument, by class name;
# the delivery layer (``_redis_event``) maps them to redis-py's classes.
for _name, _handler in (
    ("AfterPooledConnectionsInstantiationEvent", _pools),
    ("AfterSingleConnectionInstantiationEvent", _single_connection),
    ("AfterPubSubConnectionInstantiationEvent", _pubsub),
    ("AfterAsyncClusterInstantiationEvent", _async_cluster),
):
    register_announcement(_name, _handler)
