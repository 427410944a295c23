"""Lifecycle events for clients from ``Sentinel.master_for`` / ``slave_for``.

    >>> import redis_lifecycle as rl
    >>> from redis.sentinel import Sentinel
    >>> sentinel = Sentinel([("127.0.0.1", 26379)])
    >>> master = sentinel.master_for("mymaster")
    >>> handle = rl.instrument(master)          # doctest: +SKIP
    >>> @handle.dispatcher.subscribe(rl.ConnectionConnectedEvent)  # doctest: +SKIP
    ... def on_connect(event):
    ...     if not event.pool_name.startswith("sentinel:"):  # not a discovery query
    ...         print("now talking to", event.host, event.port)

Callbacks run inline, on the thread that caused the event, unless the handle
was given an :class:`~redis_lifecycle.AsyncCallbackExecutor`.

A Sentinel-managed pool learns its server's address only when a connection
connects (``SentinelManagedConnection.connect_to``). Class-level wrappers on
``SentinelManagedConnection`` (sync and asyncio; installed while a
Sentinel-managed client is instrumented) give a new connection the pool's
known address instead of redis-py's placeholder ``localhost:6379``, and on
``connect_to`` refresh the connection's
:class:`~redis_lifecycle.EventOrigin` to the address being connected to, so
``connection_created``, ``connected``/``reconnected`` and every later event
of that connection carry the discovered master or replica; the pool's own
origin follows the master it last connected to.

Pool names: the managed pool is ``"<service>/master"`` or
``"<service>/replica"`` (or the ``pool_name`` given); the sentinels' own
discovery clients are ``"sentinel:<host>:<port>"`` (:data:`DISCOVERY_PREFIX`)
so that they can be filtered out with :func:`is_discovery`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..events import EventOrigin, LifecycleEvent
from . import ClassPatcher, internal_error
from .attach import pool_state_of
from .state import CONNECTIONS, POOLS, PoolState, register_connection
from .topology import SENTINEL_MASTER_PATCHER

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle

__all__ = [
    "DISCOVERY_PREFIX",
    "SENTINEL_PATCHER",
    "attach_sentinel_client",
    "attach_sentinel_pool",
    "is_discovery",
    "is_sentinel_pool",
    "managed_pool_name",
]

#: Pool-name prefix of the sentinels' own (discovery) connections.
DISCOVERY_PREFIX = "sentinel:"


def is_discovery(event: LifecycleEvent) -> bool:
    """Whether ``event`` comes from a connection to a sentinel itself (the
    discovery queries), not from the master/replica it manages."""
    name = event.pool_name
    return name is not None and name.startswith(DISCOVERY_PREFIX)


def _sentinel_pool_classes() -> tuple[type, ...]:
    classes: list[type] = []
    try:
        import redis.sentinel as sync_sentinel

        classes.append(sync_sentinel.SentinelConnectionPool)
    except ImportError:  # pragma: no cover - always present in redis-py 5+
        pass
    try:
        import redis.asyncio.sentinel as async_sentinel

        classes.append(async_sentinel.SentinelConnectionPool)
    except ImportError:  # pragma: no cover
        pass
    return tuple(classes)


def is_sentinel_pool(pool: Any) -> bool:
    """Whether ``pool`` is a (sync or asyncio) ``SentinelConnectionPool``."""
    return isinstance(pool, _sentinel_pool_classes())


def managed_pool_name(pool: Any) -> str:
    """``"<service>/master"`` or ``"<service>/replica"``."""
    role = "master" if getattr(pool, "is_master", True) else "replica"
    return f"{pool.service_name}/{role}"


def _address_origin(base: EventOrigin, address: Any) -> EventOrigin | None:
    try:
        host, port = address
        return EventOrigin(
            host=str(host),
            port=int(port),
            db=base.db,
            connection_id=base.connection_id,
            pool_name=base.pool_name,
        )
    except (TypeError, ValueError):
        return None


def _connect_to(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``SentinelManagedConnection.connect_to(address)`` (sync and
    asyncio): point the connection's origin at the address it connects to."""
    state = CONNECTIONS.get(id(instance))
    if state is not None and state.pool_state is not None:
        try:
            address = args[0] if args else kwargs.get("address")
            origin = _address_origin(state.origin, address)
            if origin is not None:
                state.origin = origin
                pool_state = state.pool_state
                pool = pool_state.pool_ref()
                if pool is not None and getattr(pool, "is_master", False):
                    pool_state.origin = EventOrigin(
                        host=origin.host,
                        port=origin.port,
                        db=origin.db,
                        pool_name=pool_state.name,
                    )
        except Exception:
            internal_error("SentinelManagedConnection.connect_to")
    return wrapped(*args, **kwargs)


def _state_behind(reference: Any) -> PoolState | None:
    """The state of the pool a Sentinel-managed connection points at: sync
    gives it a ``SentinelConnectionPoolProxy`` (holding a weak reference to
    the pool), asyncio a ``weakref.proxy`` of the pool."""
    if reference is None:
        return None
    if isinstance(reference, weakref.ProxyTypes):
        # A proxy does not give its pool away: find the attached pool that
        # shares its connection_kwargs (once per new connection).
        try:
            kwargs = reference.connection_kwargs
        except ReferenceError:
            return None
        for state in list(POOLS.values()):
            pool = state.pool_ref()
            if pool is not None and pool.connection_kwargs is kwargs:
                return state
        return None
    ref = getattr(reference, "connection_pool_ref", None)
    pool = ref() if ref is not None else reference
    return pool_state_of(pool) if pool is not None else None


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """After ``SentinelManagedConnection.__init__``: a connection of an
    instrumented pool is registered at once with the pool's current address
    (none yet, or the known master) instead of redis-py's placeholder
    ``localhost:6379``, which it has until it connects."""
    result = wrapped(*args, **kwargs)
    try:
        state = _state_behind(getattr(instance, "connection_pool", None))
        if state is not None:
            conn_state = register_connection(instance, state)
            if not conn_state.connected:
                conn_state.origin = _unconnected_origin(state, conn_state.origin)
    except Exception:
        internal_error("SentinelManagedConnection.__init__")
    return result


def _sentinel_targets() -> Iterable[tuple[type, str, Any]]:
    import redis.sentinel as sync_sentinel

    yield sync_sentinel.SentinelManagedConnection, "__init__", _init
    yield sync_sentinel.SentinelManagedConnection, "connect_to", _connect_to
    try:
        import redis.asyncio.sentinel as async_sentinel
    except ImportError:  # pragma: no cover
        return
    yield async_sentinel.SentinelManagedConnection, "__init__", _init
    yield async_sentinel.SentinelManagedConnection, "connect_to", _connect_to


#: The ``__init__`` and ``connect_to`` wrappers (sync and asyncio classes),
#: installed while at least one Sentinel-managed client is instrumented.
SENTINEL_PATCHER = ClassPatcher(_sentinel_targets)


def _unconnected_origin(state: PoolState, origin: EventOrigin) -> EventOrigin:
    """A new connection's origin: the pool's current address (if any)."""
    return EventOrigin(
        host=state.origin.host,
        port=state.origin.port,
        db=origin.db,
        connection_id=origin.connection_id,
        pool_name=state.name,
    )


def _pool_origin(pool: Any, name: str) -> EventOrigin:
    address = getattr(pool, "master_address", None) if getattr(pool, "is_master", False) else None
    host, port = address if address else (None, None)
    db = int(pool.connection_kwargs.get("db", 0) or 0)
    return EventOrigin(host=host, port=port, db=db, pool_name=name)


def attach_sentinel_pool(
    handle: LifecycleHandle,
    pool: Any,
    pool_name: str | None,
    attach: Callable[..., None] | None = None,
    owner: Any = None,
) -> None:
    """Attach a ``SentinelConnectionPool`` (and the sentinels' own clients,
    named ``sentinel:<host>:<port>``) to ``handle``.

    ``attach(handle, pool, name, origin=...)`` attaches the pool itself: the
    sync one by default, the asyncio one for asyncio pools. ``owner`` is what
    was instrumented (the client, else the pool).
    """
    if attach is None:
        from .sync_kinds import attach_sync_pool

        attach = attach_sync_pool
    name = pool_name or managed_pool_name(pool)
    SENTINEL_PATCHER.add_user()
    SENTINEL_MASTER_PATCHER.add_user()
    # released on uninstrument(), or when the client is garbage-collected without it
    handle._closers.append(weakref.finalize(owner or pool, SENTINEL_PATCHER.remove_user))
    handle._closers.append(weakref.finalize(owner or pool, SENTINEL_MASTER_PATCHER.remove_user))
    attach(handle, pool, name, origin=_pool_origin(pool, name))
    state = pool_state_of(pool)
    if state is not None:
        for conn_state in list(CONNECTIONS.values()):
            if conn_state.pool_state is state and not conn_state.connected:
                conn_state.origin = _unconnected_origin(state, conn_state.origin)
    _attach_discovery(handle, getattr(pool, "sentinel_manager", None), attach)


def _attach_discovery(handle: LifecycleHandle, manager: Any, attach: Callable[..., None]) -> None:
    """Attach each sentinel's client pool not already instrumented elsewhere
    (with ``attach``: the sentinels' clients are of the pool's flavour)."""
    for sentinel in list(getattr(manager, "sentinels", ()) or ()):
        pool = getattr(sentinel, "connection_pool", None)
        if pool is None or pool_state_of(pool) is not None:
            continue  # already reports to a handle (this one or another)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        name = f"{DISCOVERY_PREFIX}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 26379)}"
        attach(handle, pool, name)


def attach_sentinel_client(client: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    """``instrument()`` for a client from ``Sentinel.master_for``/``slave_for``."""
    attach_sentinel_pool(handle, client.connection_pool, pool_name, owner=client)


def attach_sentinel_pool_target(pool: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    """``instrument()`` for a ``SentinelConnectionPool`` itself."""
    attach_sentinel_pool(handle, pool, pool_name)
