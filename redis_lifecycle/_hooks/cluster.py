"""Lifecycle events from every node of a sync ``redis.cluster.RedisCluster``.

    >>> import redis_lifecycle as rl
    >>> from redis.cluster import RedisCluster
    >>> cluster = RedisCluster(host="127.0.0.1", port=7000)   # doctest: +SKIP
    >>> handle = rl.instrument(cluster)                       # doctest: +SKIP
    >>> [s["pool_name"] for s in handle.pool_stats()]         # doctest: +SKIP
    ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002']

Callbacks run inline, on the thread whose command caused the event, unless
the handle was given an :class:`~redis_lifecycle.AsyncCallbackExecutor`.

redis-py gives each cluster node its own ``redis.Redis`` and connection pool,
built in ``NodesManager.create_redis_node``. ``instrument()`` attaches every
node pool it finds (``nodes_cache`` and ``startup_nodes``) like a plain sync
pool, and a class-level ``wrapt`` wrapper on ``create_redis_node`` (installed
while at least one cluster is instrumented, filtered by a weak registry of
instrumented ``NodesManager`` objects) attaches the pools of nodes redis-py
builds later: topology refreshes, new nodes, and the fresh pool that
redis-py 5.x-7.1 builds for a node after a ``ConnectionError``. Each node
pool is named after the node (``"host:port"``, or ``"<pool_name>/host:port"``
when ``instrument(..., pool_name=...)`` is given) and its events carry the
node's host and port.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CallbackError
from . import ClassPatcher, internal_error
from .attach import attach_pool, pool_state_of
from .topology import LOOKUPS, SYNC_CLUSTER_PATCHER, unwatch_sync_node, watch_sync_node

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle

__all__ = [
    "NODE_PATCHER",
    "attach_cluster",
    "attach_manager",
    "attach_node_pool",
    "node_pool_name",
]

#: Reentrant: a cluster's finalizer (``undo`` in attach_cluster) takes it,
#: and a garbage collection can start under it on the same thread (see
#: state._lock).
_lock = threading.RLock()


class ClusterBinding:
    """What the node hook needs to attach a new node of one cluster."""

    __slots__ = ("handle", "prefix")

    def __init__(self, handle: LifecycleHandle, prefix: str | None) -> None:
        self.handle = handle
        self.prefix = prefix


#: Instrumented ``NodesManager`` objects (sync) -> their binding.
_MANAGERS: weakref.WeakKeyDictionary[Any, ClusterBinding] = weakref.WeakKeyDictionary()
LOOKUPS["sync_manager"] = _MANAGERS.get


def node_pool_name(prefix: str | None, host: Any, port: Any) -> str:
    """``host:port`` (redis-py's node name), behind ``prefix/`` if given."""
    name = f"{host}:{port}"
    return f"{prefix}/{name}" if prefix else name


def attach_node_pool(binding: ClusterBinding, pool: Any, host: Any, port: Any) -> None:
    """Attach one node's sync pool to the cluster's handle (once)."""
    from .sync_kinds import sync_kind_for

    handle = binding.handle
    existing = pool_state_of(pool)
    if existing is not None:
        if existing.handle is handle and pool not in handle.pools():
            handle._add_pool(pool)
        return  # already reports to this handle, or to one the user made for it
    state = attach_pool(
        pool,
        sync_kind_for(pool),
        handle.delivery,
        pool_name=node_pool_name(binding.prefix, host, port),
    )
    state.handle = handle
    handle._add_pool(pool)


def _create_redis_node(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """After ``NodesManager.create_redis_node``: attach the new node's pool."""
    client = wrapped(*args, **kwargs)
    binding = _MANAGERS.get(instance)
    if binding is None:
        return client
    try:
        host = args[0] if args else kwargs.get("host")
        port = args[1] if len(args) > 1 else kwargs.get("port")
        attach_node_pool(binding, client.connection_pool, host, port)
        watch_sync_node(client)
    except CallbackError as error:  # a pool_created callback under "raise"
        binding.handle.delivery.error_handler.log(error)
    except Exception:
        internal_error("NodesManager.create_redis_node")
    return client


def _node_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.cluster as rcluster

    yield rcluster.NodesManager, "create_redis_node", _create_redis_node


#: The wrapper that catches nodes built after ``instrument()``.
NODE_PATCHER = ClassPatcher(_node_targets)


def _current_nodes(manager: Any) -> list[Any]:
    with manager._lock:
        nodes = [*manager.nodes_cache.values(), *manager.startup_nodes.values()]
    unique: dict[int, Any] = {}
    for node in nodes:
        unique.setdefault(id(node), node)
    return list(unique.values())


def attach_cluster(cluster: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    """``instrument()`` for a sync ``RedisCluster``: every node now and later."""
    attach_manager(cluster.nodes_manager, cluster, handle, pool_name)


def attach_manager(
    manager: Any, owner: Any, handle: LifecycleHandle, pool_name: str | None
) -> None:
    """Attach every node pool of ``manager`` (a ``NodesManager``) now and
    later, until ``handle`` is detached or ``owner`` is garbage-collected."""
    binding = ClusterBinding(handle, pool_name)
    NODE_PATCHER.add_user()
    SYNC_CLUSTER_PATCHER.add_user()
    with _lock:
        _MANAGERS[manager] = binding
    manager_ref = weakref.ref(manager)

    def undo() -> None:
        with _lock:
            manager = manager_ref()
            if manager is not None and _MANAGERS.get(manager) is binding:
                del _MANAGERS[manager]
                for node in _current_nodes(manager):
                    unwatch_sync_node(node.redis_connection)
        SYNC_CLUSTER_PATCHER.remove_user()
        NODE_PATCHER.remove_user()

    # on uninstrument(), or when the cluster is garbage-collected without it
    finalizer = weakref.finalize(owner, undo)
    handle._closers.append(finalizer)
    for node in _current_nodes(manager):
        client = node.redis_connection
        if client is not None:
            attach_node_pool(binding, client.connection_pool, node.host, node.port)
            watch_sync_node(client)
