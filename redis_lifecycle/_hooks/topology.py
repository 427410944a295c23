"""Topology events: cluster redirects, slot-map changes, Sentinel master changes.

* ``cluster_redirect``: a ``MOVED`` or ``ASK`` reply, seen where the node's
  reply is parsed. Sync: each node's ``redis.Redis`` gets its own
  ``parse_response`` (an instance attribute, so that plain clients pay
  nothing); the cluster, its pipelines and transactions all read node
  replies through it. asyncio: a class-level wrapper on
  ``ClusterNode.parse_response`` (single commands and ``execute_pipeline``).
* ``cluster_topology_changed``: wrappers on ``NodesManager.initialize`` (the
  full refresh) and on the single-slot patch redis-py applies after a
  ``MOVED`` (``move_slot`` on newer redis-py, ``_update_moved_slots`` on
  older ones) compare the slot map before and after. redis-py 8.x also
  dispatches ``AfterSlotsCacheRefreshEvent`` from the same two places, with
  no data; the diff is computed here instead, so it is counted once and
  redis-py's dispatcher is left alone.
* ``sentinel_master_changed``: around ``get_master_address`` of the sync
  ``SentinelConnectionPoolProxy`` and of the asyncio
  ``SentinelConnectionPool``, where redis-py replaces ``master_address``.

Every callback error here is logged, never raised into redis-py: these run
while redis-py follows a redirect, refreshes its map or connects.
"""

from __future__ import annotations

import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from time import time
from typing import Any

from ..events import (
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    EventOrigin,
    SentinelMasterChangedEvent,
    SlotMove,
)
from . import ClassPatcher, emit_quietly, internal_error
from .state import CONNECTIONS

__all__ = [
    "ASYNC_CLUSTER_PATCHER",
    "SENTINEL_MASTER_PATCHER",
    "SYNC_CLUSTER_PATCHER",
    "unwatch_sync_node",
    "watch_sync_node",
]

_PRIMARY = "primary"
_REPLICA = "replica"

#: How to find an instrumented cluster's bindings, registered by the cluster
#: modules when they load (they import this module, so it cannot import them):
#: ``"sync_manager"`` and ``"async_manager"`` (a ``NodesManager``'s binding),
#: ``"async_node"`` (an asyncio ``ClusterNode``'s).
LOOKUPS: dict[str, Callable[[Any], Any]] = {}


def _lookup(kind: str, obj: Any) -> Any:
    find = LOOKUPS.get(kind)
    return None if find is None else find(obj)


# --- redirects ------------------------------------------------------------


def _redirect_event(origin: EventOrigin, error: Any) -> ClusterRedirectEvent:
    from redis.exceptions import MovedError

    kind = "moved" if isinstance(error, MovedError) else "ask"
    host = error.host or origin.host  # a redirect without a host: the sender's
    return ClusterRedirectEvent(
        time(), origin, kind, int(error.slot_id), str(host), int(error.port)
    )


def _report_redirect(pool_state: Any, connection: Any, error: Any) -> None:
    try:
        delivery = pool_state.delivery
        if ClusterRedirectEvent not in delivery.wanted:
            return
        conn_state = CONNECTIONS.get(id(connection)) if connection is not None else None
        origin = conn_state.origin if conn_state is not None else pool_state.origin
        event = _redirect_event(origin, error)
    except Exception:
        internal_error("reporting a cluster redirect")
        return
    emit_quietly(delivery, event)


#: Per thread, the node clients whose watcher is running (see __call__).
_inside = threading.local()


def _bind(attribute: Any, client: Any) -> Any:
    """``attribute`` (found on the class) as ``client.attribute`` would give
    it: a function binds; a mock put there by a test does not."""
    bind = getattr(type(attribute), "__get__", None)
    return bind(attribute, client, type(client)) if bind is not None else attribute


class _NodeParseResponse:
    """A sync cluster node's ``parse_response``: redis-py's, watching for
    ``MOVED`` / ``ASK`` replies."""

    __slots__ = ("client_ref", "original")

    def __init__(self, client: Any) -> None:
        self.client_ref = weakref.ref(client)
        #: The class's method when the node was watched.
        self.original = inspect.getattr_static(type(client), "parse_response")

    def __call__(self, connection: Any, command_name: Any, **options: Any) -> Any:
        client = self.client_ref()
        if client is None:  # pragma: no cover - called through the client
            raise ReferenceError("the cluster node's client is gone")
        active: set[int] | None = getattr(_inside, "clients", None)
        if active is None:
            active = _inside.clients = set()
        key = id(client)
        if key in active:
            # Called from inside our own call: a mock patched on the class
            # calling the client.parse_response it saw before (this watcher)
            # as the real method, as redis-py's tests do. Give it redis-py's.
            return _bind(self.original, client)(connection, command_name, **options)
        # What client.parse_response is without us: the class attribute, so
        # that a mock patched on the class is called as the client would.
        method = _bind(type(client).parse_response, client)
        active.add(key)
        try:
            return method(connection, command_name, **options)
        except Exception as error:
            if _is_redirect(error):
                _report_node_redirect(client, connection, error)
            raise
        finally:
            active.discard(key)


def _is_redirect(error: BaseException) -> bool:
    from redis.exceptions import AskError

    return isinstance(error, AskError)


def _report_node_redirect(client: Any, connection: Any, error: Any) -> None:
    from .attach import pool_state_of

    state = pool_state_of(getattr(client, "connection_pool", None))
    if state is not None:
        _report_redirect(state, connection, error)


def watch_sync_node(client: Any) -> None:
    """Give a sync cluster node's ``redis.Redis`` the redirect-watching
    ``parse_response`` (once)."""
    if client is None or isinstance(client.__dict__.get("parse_response"), _NodeParseResponse):
        return
    if not callable(getattr(type(client), "parse_response", None)):
        return  # a redis-py without it: capabilities() reports the event as unavailable
    client.parse_response = _NodeParseResponse(client)


def unwatch_sync_node(client: Any) -> None:
    """Undo :func:`watch_sync_node`."""
    if client is not None and isinstance(client.__dict__.get("parse_response"), _NodeParseResponse):
        del client.parse_response


def _async_parse_response(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around asyncio ``ClusterNode.parse_response(connection, command, ...)``."""
    binding = _lookup("async_node", instance)
    if binding is None or ClusterRedirectEvent not in binding.state.delivery.wanted:
        return wrapped(*args, **kwargs)
    connection = args[0] if args else kwargs.get("connection")
    return _watch_async_reply(wrapped(*args, **kwargs), binding.state, connection)


async def _watch_async_reply(coroutine: Any, state: Any, connection: Any) -> Any:
    try:
        return await coroutine
    except Exception as error:
        if _is_redirect(error):
            _report_redirect(state, connection, error)
        raise


# --- slot-map changes -----------------------------------------------------


class _Snapshot:
    """The parts of a ``NodesManager``'s map that an event reports."""

    __slots__ = ("nodes", "owners", "primaries")

    def __init__(self, manager: Any, slot: int | None = None) -> None:
        roles: dict[str, str] = {}
        for node in list(manager.nodes_cache.values()):
            roles[node.name] = node.server_type
        owners: dict[int, str] = {}
        slots_cache = manager.slots_cache
        if slot is not None:
            items: Iterable[tuple[int, Any]] = [(slot, slots_cache.get(slot))]
        else:
            items = list(slots_cache.items())
        # The slot map is what the client routes by: a slot's first node is
        # its primary, the others replicas, whatever nodes_cache still says
        # (asyncio 7.x keeps the old objects there after a refresh).
        seen_lists: set[int] = set()
        for key, nodes in items:
            if not nodes:
                continue
            owners[key] = nodes[0].name
            if id(nodes) in seen_lists:  # one list is shared by a whole slot range
                continue
            seen_lists.add(id(nodes))
            for node in nodes[1:]:
                roles[node.name] = _REPLICA
        for name in owners.values():
            roles[name] = _PRIMARY
        self.nodes = set(roles)
        self.primaries = {name for name, role in roles.items() if role == _PRIMARY}
        self.owners = owners


def _slot_moves(before: dict[int, str], after: dict[int, str]) -> tuple[SlotMove, ...]:
    moves: list[SlotMove] = []
    for slot in sorted(set(before) | set(after)):
        old, new = before.get(slot), after.get(slot)
        if old == new:
            continue
        last = moves[-1] if moves else None
        if last is not None and last[1] == slot - 1 and last[2] == old and last[3] == new:
            moves[-1] = SlotMove((last[0], slot, old, new))
        else:
            moves.append(SlotMove((slot, slot, old, new)))
    return tuple(moves)


def _report_change(
    delivery: Any, origin: EventOrigin, reason: str | None, before: _Snapshot, after: _Snapshot
) -> None:
    moves = _slot_moves(before.owners, after.owners)
    added = tuple(sorted(after.nodes - before.nodes))
    removed = tuple(sorted(before.nodes - after.nodes))
    promoted = tuple(sorted(after.primaries - before.primaries))
    demoted = tuple(sorted(before.primaries - after.primaries))
    if not (moves or added or removed or promoted or demoted):
        return
    event = ClusterTopologyChangedEvent(
        time(), origin, reason, added, removed, promoted, demoted, moves
    )
    emit_quietly(delivery, event)


_REASON_BY_ERROR = (
    ("MovedError", "moved"),
    ("ClusterDownError", "cluster_down"),
    ("SlotNotCoveredError", "cluster_down"),
    ("ConnectionError", "connection_error"),
    ("TimeoutError", "connection_error"),
)


def _refresh_reason(kwargs: dict[str, Any]) -> str | None:
    """Why redis-py refreshes: its own arguments (newer redis-py passes the
    failed node or the MOVED target), else the error it is handling."""
    if kwargs.get("last_failed_node_name"):
        return "connection_error"
    if kwargs.get("additional_startup_nodes_info"):
        return "moved"
    error = sys.exc_info()[1]
    if error is None:
        return None
    names = {klass.__name__ for klass in type(error).__mro__}
    for name, reason in _REASON_BY_ERROR:
        if name in names:
            return reason
    return None


def _around_refresh(wrapped: Any, instance: Any, args: Any, kwargs: Any, single_slot: bool) -> Any:
    target = _cluster_target(instance)
    if target is None:
        return wrapped(*args, **kwargs)
    delivery, origin = target
    if ClusterTopologyChangedEvent not in delivery.wanted:
        return wrapped(*args, **kwargs)
    try:
        slot: int | None = None
        if single_slot:
            error = (
                args[0] if args else kwargs.get("e", getattr(instance, "_moved_exception", None))
            )
            slot = int(error.slot_id) if error is not None else None
            reason: str | None = "moved"
        else:
            reason = _refresh_reason(kwargs)
        before = _Snapshot(instance, slot)
    except Exception:
        internal_error("reading the cluster slot map")
        return wrapped(*args, **kwargs)
    result = wrapped(*args, **kwargs)
    if inspect.isawaitable(result):
        return _after_async_refresh(result, instance, delivery, origin, reason, before, slot)
    _after_refresh(instance, delivery, origin, reason, before, slot)
    return result


async def _after_async_refresh(
    awaitable: Any,
    manager: Any,
    delivery: Any,
    origin: EventOrigin,
    reason: str | None,
    before: _Snapshot,
    slot: int | None,
) -> Any:
    result = await awaitable
    _after_refresh(manager, delivery, origin, reason, before, slot)
    return result


def _after_refresh(
    manager: Any,
    delivery: Any,
    origin: EventOrigin,
    reason: str | None,
    before: _Snapshot,
    slot: int | None,
) -> None:
    if slot is None and not before.owners:
        return  # the first load of the map: nothing changed
    try:
        after = _Snapshot(manager, slot)
    except Exception:
        internal_error("reading the cluster slot map")
        return
    _report_change(delivery, origin, reason, before, after)


def _initialize(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``NodesManager.initialize`` (sync and asyncio)."""
    return _around_refresh(wrapped, instance, args, kwargs, single_slot=False)


def _move_slot(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``NodesManager.move_slot(e)`` / ``_update_moved_slots()``."""
    return _around_refresh(wrapped, instance, args, kwargs, single_slot=True)


def _cluster_origin(prefix: str | None) -> EventOrigin:
    return EventOrigin(pool_name=prefix or "cluster")


def _cluster_target(manager: Any) -> tuple[Any, EventOrigin] | None:
    """``(delivery, origin)`` of an instrumented ``NodesManager``, sync or asyncio."""
    try:
        binding = _lookup("sync_manager", manager)
    except TypeError:  # the asyncio manager cannot be weakly referenced
        binding = None
    if binding is not None:
        return binding.handle.delivery, _cluster_origin(binding.prefix)
    async_binding = _lookup("async_manager", manager)
    if async_binding is not None:
        client = async_binding.cluster_ref()
        if client is not None and client.nodes_manager is manager:
            return async_binding.handle.delivery, _cluster_origin(async_binding.prefix)
    return None


def _manager_targets(module: Any) -> Iterable[tuple[type, str, Any]]:
    manager = module.NodesManager
    yield manager, "initialize", _initialize
    # One or the other: 8.x patches the slot in move_slot, older redis-py in
    # _update_moved_slots (called by get_node_from_slot).
    if "move_slot" in manager.__dict__:
        yield manager, "move_slot", _move_slot
    else:
        yield manager, "_update_moved_slots", _move_slot


def _sync_cluster_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.cluster as rcluster

    yield from _manager_targets(rcluster)


def _async_cluster_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.asyncio.cluster as acluster

    yield acluster.ClusterNode, "parse_response", _async_parse_response
    yield from _manager_targets(acluster)


#: Slot-map wrappers of the sync ``NodesManager``, while a sync cluster is instrumented.
SYNC_CLUSTER_PATCHER = ClassPatcher(_sync_cluster_targets)
#: Redirect and slot-map wrappers of the asyncio cluster, while one is instrumented.
ASYNC_CLUSTER_PATCHER = ClassPatcher(_async_cluster_targets)


# --- Sentinel -------------------------------------------------------------


def _master_pool_state(pool: Any) -> Any:
    from .attach import pool_state_of

    state = pool_state_of(pool)
    if state is None or SentinelMasterChangedEvent not in state.delivery.wanted:
        return None
    return state


def _report_master_change(state: Any, service: Any, old: Any, new: Any) -> None:
    if not old or not new or tuple(old) == tuple(new):
        return
    try:
        (old_host, old_port), (new_host, new_port) = old, new
        origin = EventOrigin(
            host=str(new_host),
            port=int(new_port),
            db=state.origin.db,
            pool_name=state.name,
        )
        event = SentinelMasterChangedEvent(
            time(), origin, str(service), str(old_host), int(old_port), str(new_host), int(new_port)
        )
    except Exception:
        internal_error("reporting a Sentinel master change")
        return
    emit_quietly(state.delivery, event)


def _sync_get_master_address(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around the sync ``SentinelConnectionPoolProxy.get_master_address``."""
    ref = getattr(instance, "connection_pool_ref", None)
    pool = ref() if ref is not None else None
    state = _master_pool_state(pool) if pool is not None and instance.is_master else None
    if state is None:
        return wrapped(*args, **kwargs)
    old = instance.master_address
    result = wrapped(*args, **kwargs)
    _report_master_change(state, instance.service_name, old, instance.master_address)
    return result


def _async_get_master_address(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around the asyncio ``SentinelConnectionPool.get_master_address``."""
    state = _master_pool_state(instance) if instance.is_master else None
    if state is None:
        return wrapped(*args, **kwargs)
    return _after_async_discovery(wrapped(*args, **kwargs), instance, state)


async def _after_async_discovery(awaitable: Any, pool: Any, state: Any) -> Any:
    old = pool.master_address
    result = await awaitable
    _report_master_change(state, pool.service_name, old, pool.master_address)
    return result


def _sentinel_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.sentinel as sync_sentinel

    proxy = getattr(sync_sentinel, "SentinelConnectionPoolProxy", None)
    if proxy is not None:
        yield proxy, "get_master_address", _sync_get_master_address
    try:
        import redis.asyncio.sentinel as async_sentinel
    except ImportError:  # pragma: no cover
        return
    yield async_sentinel.SentinelConnectionPool, "get_master_address", _async_get_master_address


#: The ``get_master_address`` wrappers, while a Sentinel-managed client is instrumented.
SENTINEL_MASTER_PATCHER = ClassPatcher(_sentinel_targets)
