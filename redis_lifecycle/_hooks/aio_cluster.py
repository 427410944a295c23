"""Lifecycle events from every node of a ``redis.asyncio.cluster.RedisCluster``.

    >>> import redis_lifecycle as rl
    >>> from redis.asyncio.cluster import RedisCluster
    >>> cluster = RedisCluster(host="127.0.0.1", port=7000)   # doctest: +SKIP
    >>> handle = rl.instrument(cluster)                       # doctest: +SKIP
    >>> await cluster.set("k", "v")                           # doctest: +SKIP

Callbacks run inline on the event loop's thread, inside the task whose
command caused the event (``async def`` callbacks as tasks), unless the
handle was given an :class:`~redis_lifecycle.AsyncCallbackExecutor`.

The asyncio cluster has no pool objects: each ``ClusterNode`` keeps its own
connections (``_connections``, idle ones in ``_free``) and hands them out
with ``acquire_connection`` / ``release``. Neither the node nor the
``NodesManager`` can be weakly referenced or given a subclass (both are
slotted), so:

* ``ClusterNode.acquire_connection``, ``release``, ``execute_command`` and
  ``execute_pipeline`` get class-level
  ``wrapt`` wrappers, installed while at least one asyncio cluster is
  instrumented, that look the node up by ``id()`` in :data:`NODES` (checked
  against a weak reference to the node's ``_free`` deque, which dies with the
  node). They emit ``pool_connection_created``, ``connection_acquired``,
  ``connection_released`` (from ``release`` on 8.x, after ``execute_*``
  before it, where redis-py appends to ``_free`` directly) and
  ``pool_exhausted``; the connections themselves
  are watched by the asyncio connection hooks (connect, disconnect, errors,
  health checks, marks for reconnect) like any pooled connection.
* ``NodesManager.initialize``, ``set_nodes`` and ``move_slot`` (whichever
  the installed redis-py has) get wrappers that, once they return, attach
  every node of an instrumented cluster not attached yet: nodes found by a
  topology refresh or a ``MOVED`` redirect.

Each node reports as a pool named ``host:port`` (``<pool_name>/host:port``
with ``instrument(..., pool_name=...)``), listed by ``handle.pool_stats()``.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterable
from contextvars import ContextVar
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from ..errors import CallbackError
from ..events import (
    EventOrigin,
    PoolConnectionAcquiredEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionReleasedEvent,
    PoolCreatedEvent,
    PoolExhaustedEvent,
)
from . import ClassPatcher, emit, emit_quietly, internal_error
from .cluster import node_pool_name
from .leaks import leak_returned, record_async
from .state import PoolState, conn_state_of, forget_pool, register_connection
from .sync import is_exhaustion
from .topology import ASYNC_CLUSTER_PATCHER, LOOKUPS

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle

__all__ = ["NODES", "NODE_PATCHER", "attach_async_cluster"]

_lock = threading.RLock()


class NodeBinding:
    """One instrumented ``ClusterNode``: its state, and a weak reference to
    its ``_free`` deque that proves an ``id()`` still means this node."""

    __slots__ = ("cluster", "free_ref", "state")

    def __init__(self, node: Any, state: PoolState, cluster: AsyncClusterBinding) -> None:
        self.free_ref = weakref.ref(node._free, _make_remover(id(node)))
        self.state = state
        self.cluster = cluster

    def owns(self, node: Any) -> bool:
        return self.free_ref() is node._free


class AsyncClusterBinding:
    """One instrumented asyncio cluster."""

    __slots__ = ("__weakref__", "cluster_ref", "handle", "nodes", "prefix")

    def __init__(self, cluster: Any, handle: LifecycleHandle, prefix: str | None) -> None:
        self.cluster_ref = weakref.ref(cluster)
        self.handle = handle
        self.prefix = prefix
        #: ids of the nodes attached for this cluster
        self.nodes: set[int] = set()


#: Instrumented nodes by ``id(node)``.
NODES: dict[int, NodeBinding] = {}
#: Instrumented clusters by ``id(cluster.nodes_manager)``.
_MANAGERS: dict[int, AsyncClusterBinding] = {}


def _make_remover(key: int) -> Any:
    def remove(ref: weakref.ref[Any]) -> None:
        binding = NODES.get(key)
        if binding is not None and binding.free_ref is ref:
            NODES.pop(key, None)
            binding.cluster.nodes.discard(key)
            forget_pool(binding.state)

    return remove


def _binding(node: Any) -> NodeBinding | None:
    binding = NODES.get(id(node))
    if binding is None or not binding.owns(node):
        return None
    return binding


def _counts(node: Any) -> tuple[int, int]:
    """``(active, idle)`` of a ``ClusterNode``."""
    idle = len(node._free)
    return len(node._connections) - idle, idle


# --- node wrappers -------------------------------------------------------


def _acquire_connection(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``ClusterNode.acquire_connection`` (sync: a free connection or a
    new one; ``MaxConnectionsError`` when full)."""
    binding = _binding(instance)
    if binding is None:
        return wrapped(*args, **kwargs)
    state = binding.state
    delivery = state.delivery
    before = len(instance._connections)
    started = perf_counter()
    try:
        connection = wrapped(*args, **kwargs)
    except BaseException as error:
        if PoolExhaustedEvent in delivery.wanted and is_exhaustion(error):
            waited = perf_counter() - started
            emit_quietly(
                delivery, PoolExhaustedEvent(time(), state.origin, state.size, None, waited)
            )
        raise
    try:
        if len(instance._connections) > before:
            conn_state = register_connection(connection, state)
            if PoolConnectionCreatedEvent in delivery.wanted:
                total = len(instance._connections)
                emit_quietly(delivery, PoolConnectionCreatedEvent(time(), conn_state.origin, total))
        if not delivery.wants_per_command:
            return connection
        now = perf_counter()
        conn_state = conn_state_of(id(connection)) or register_connection(connection, state)
        conn_state.checked_out_at = now
        if delivery.leak_threshold is not None:
            conn_state.leak = record_async()
        _ACQUIRED.set(connection)
    except Exception:
        internal_error("ClusterNode.acquire_connection")
        return connection
    if delivery.sinks:
        state.figures.add_wait(now - started, delivery.sinks)
    if PoolConnectionAcquiredEvent in delivery.wanted:
        active, idle = _counts(instance)
        try:
            emit(
                delivery,
                PoolConnectionAcquiredEvent(time(), conn_state.origin, now - started, active, idle),
            )
        except CallbackError:
            instance.release(connection)
            raise
    return connection


def _report_release(node: Any, state: PoolState, connection: Any) -> None:
    """Emit ``connection_released`` once per checkout."""
    conn_state = conn_state_of(id(connection))
    if conn_state is None or conn_state.checked_out_at is None:
        return
    held_time = perf_counter() - conn_state.checked_out_at
    conn_state.checked_out_at = None
    leak, conn_state.leak = conn_state.leak, None
    reported_leak = leak is not None and leak[3]
    if reported_leak:
        leak_returned(conn_state, leak, held_time)
    delivery = state.delivery
    if delivery.sinks:
        state.figures.add_held(held_time, delivery.sinks)
    if PoolConnectionReleasedEvent in delivery.wanted:
        active, idle = _counts(node)
        emit(
            delivery,
            PoolConnectionReleasedEvent(
                time(), conn_state.origin, held_time, active, idle, reported_leak
            ),
        )


def _release(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``ClusterNode.release`` (redis-py 6.2+; 8.x returns every
    connection through it)."""
    binding = _binding(instance)
    if binding is None:
        return wrapped(*args, **kwargs)
    result = wrapped(*args, **kwargs)
    if binding.state.delivery.wants_per_command:
        _report_release(instance, binding.state, args[0] if args else kwargs.get("connection"))
    return result


#: The connection the current task last checked out of a node, so that the
#: ``execute_*`` wrappers can report its return: before 8.x redis-py puts it
#: back with ``node._free.append(...)``, bypassing ``release``.
_ACQUIRED: ContextVar[Any] = ContextVar("redis_lifecycle_cluster_acquired", default=None)


def _execute(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``ClusterNode.execute_command`` / ``execute_pipeline``."""
    binding = _binding(instance)
    if binding is None or not binding.state.delivery.wants_per_command:
        return wrapped(*args, **kwargs)
    return _execute_then_release(wrapped(*args, **kwargs), instance, binding.state)


async def _execute_then_release(coroutine: Any, node: Any, state: PoolState) -> Any:
    token = _ACQUIRED.set(None)
    try:
        return await coroutine
    finally:
        connection = _ACQUIRED.get()
        _ACQUIRED.reset(token)
        if connection is not None:
            _report_release(node, state, connection)


def _rescan_after(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around the ``NodesManager`` methods that add nodes: attach new ones
    once the call (or its coroutine) is done."""
    cluster = _MANAGERS.get(id(instance))
    if cluster is None:
        return wrapped(*args, **kwargs)
    result = wrapped(*args, **kwargs)
    if inspect.isawaitable(result):
        return _rescan_when_done(result, cluster, instance)
    _rescan(cluster, instance)
    return result


async def _rescan_when_done(awaitable: Any, cluster: AsyncClusterBinding, manager: Any) -> Any:
    try:
        return await awaitable
    finally:
        _rescan(cluster, manager)


def _rescan(cluster: AsyncClusterBinding, manager: Any) -> None:
    client = cluster.cluster_ref()
    if client is None or client.nodes_manager is not manager:
        return
    try:
        _attach_nodes(cluster, manager)
    except CallbackError as error:  # a pool_created callback under "raise"
        cluster.handle.delivery.error_handler.log(error)
    except Exception:
        internal_error("attaching new asyncio cluster nodes")


def _node_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.asyncio.cluster as acluster

    yield acluster.ClusterNode, "acquire_connection", _acquire_connection
    yield acluster.ClusterNode, "release", _release
    yield acluster.ClusterNode, "execute_command", _execute
    yield acluster.ClusterNode, "execute_pipeline", _execute
    for name in ("initialize", "set_nodes", "move_slot", "_update_moved_slots"):
        yield acluster.NodesManager, name, _rescan_after


#: The node and nodes-manager wrappers, while an asyncio cluster is instrumented.
NODE_PATCHER = ClassPatcher(_node_targets)


# --- attaching -----------------------------------------------------------


def _nodes_of(manager: Any) -> list[Any]:
    """Every ``ClusterNode`` the manager can route to. ``slots_cache`` counts:
    redis-py 7.x keeps the old objects in ``nodes_cache`` after a refresh but
    routes through the new ones it put in ``slots_cache``."""
    unique: dict[int, Any] = {}
    for node in [*manager.nodes_cache.values(), *manager.startup_nodes.values()]:
        unique.setdefault(id(node), node)
    seen_lists: set[int] = set()
    for nodes in list(manager.slots_cache.values()):
        if id(nodes) in seen_lists:  # one list is shared by a whole slot range
            continue
        seen_lists.add(id(nodes))
        for node in nodes:
            unique.setdefault(id(node), node)
    return list(unique.values())


def _attach_node(cluster: AsyncClusterBinding, node: Any) -> None:
    if _binding(node) is not None:
        return
    delivery = cluster.handle.delivery
    name = node_pool_name(cluster.prefix, node.host, node.port)
    origin = EventOrigin(host=node.host, port=int(node.port), db=0, pool_name=name)
    state = PoolState(
        node._free,  # weakly referenced; ClusterNode itself cannot be
        name=name,
        origin=origin,
        delivery=delivery,
        base_class=type(node),
        counts=_counts,
        total=lambda node: len(node._connections),
        size=int(node.max_connections),
        timeout=None,
        is_async=True,
    )
    state.handle = cluster.handle
    with _lock:
        if _binding(node) is not None:
            return
        NODES[id(node)] = NodeBinding(node, state, cluster)
        cluster.nodes.add(id(node))
        for connection in list(node._connections):
            register_connection(connection, state).checked_out_at = None
    if PoolCreatedEvent in delivery.wanted:
        emit(delivery, PoolCreatedEvent(time(), origin, state.size, None))


def _attach_nodes(cluster: AsyncClusterBinding, manager: Any) -> None:
    for node in _nodes_of(manager):
        _attach_node(cluster, node)


def _node_stats(cluster: AsyncClusterBinding) -> list[dict[str, Any]]:
    client = cluster.cluster_ref()
    if client is None:
        return []
    stats = []
    for node in _nodes_of(client.nodes_manager):
        binding = _binding(node)
        if binding is None or binding.cluster is not cluster:
            continue
        active, idle = _counts(node)
        stats.append(
            {
                "pool_name": binding.state.name,
                "max_connections": binding.state.size,
                "timeout": None,
                "active": active,
                "idle": idle,
                "total": len(node._connections),
            }
        )
    return stats


def attach_async_cluster(client: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    """``instrument()`` for an asyncio ``RedisCluster``: every node now and later."""
    from .._coroutine_callbacks import remember_loop
    from .aio import CONNECTION_PATCHER

    manager = client.nodes_manager
    cluster = AsyncClusterBinding(client, handle, pool_name)
    CONNECTION_PATCHER.add_user()
    NODE_PATCHER.add_user()
    ASYNC_CLUSTER_PATCHER.add_user()
    with _lock:
        _MANAGERS[id(manager)] = cluster
    manager_id = id(manager)

    def undo() -> None:
        with _lock:
            if _MANAGERS.get(manager_id) is cluster:
                del _MANAGERS[manager_id]
            for key in list(cluster.nodes):
                binding = NODES.get(key)
                if binding is not None and binding.cluster is cluster:
                    del NODES[key]
                    forget_pool(binding.state)
            cluster.nodes.clear()
        ASYNC_CLUSTER_PATCHER.remove_user()
        NODE_PATCHER.remove_user()
        CONNECTION_PATCHER.remove_user()

    # on uninstrument(), or when the cluster is garbage-collected without it
    handle._closers.append(weakref.finalize(client, undo))
    handle._stats_sources.append(lambda: _node_stats(cluster))
    remember_loop(handle.delivery)
    _attach_nodes(cluster, manager)


LOOKUPS["async_node"] = _binding
LOOKUPS["async_manager"] = lambda manager: _MANAGERS.get(id(manager))
