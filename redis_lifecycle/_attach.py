"""Attach lifecycle hooks to one pool, and take them off again.

Attaching gives the pool a lifecycle subclass of its own class (made for this
one instance, carrying its :class:`PoolState`), registers the connections it
already holds, installs the class-level connection wrappers while any pool
needs them, and emits ``pool_created``. Detaching undoes each step.
"""

from __future__ import annotations

import threading
import weakref
from time import perf_counter, time
from typing import Any

from ._delivery import Delivery
from ._hooks import ClassPatcher, emit
from ._state import PoolState, forget_pool, register_connection
from .events import EventOrigin, PoolCreatedEvent

__all__ = ["attach_pool", "detach_pool", "pool_state_of", "PoolKind"]

_lock = threading.RLock()


class PoolKind:
    """How to hook and count one family of pools (sync, asyncio, cluster node)."""

    def __init__(
        self,
        *,
        hooks: type,
        patcher: ClassPatcher,
        counts: Any,
        total: Any,
        connections: Any,
        in_use: Any = None,
        is_async: bool = False,
    ) -> None:
        self.hooks = hooks
        self.patcher = patcher
        self.counts = counts
        self.total = total
        self.connections = connections
        #: ``in_use(pool)``: connections checked out now (their release is
        #: reported with the time held since instrumentation).
        self.in_use = in_use
        self.is_async = is_async


def pool_state_of(pool: Any) -> PoolState | None:
    """The state of an instrumented pool, else ``None``."""
    state = type(pool).__dict__.get("_rl_state")
    return state if isinstance(state, PoolState) else None


def default_pool_name(kwargs: dict[str, Any]) -> str:
    """``host:port/db`` or ``unix:path/db``: an address, never credentials."""
    db = kwargs.get("db", 0) or 0
    path = kwargs.get("path")
    if path:
        return f"unix:{path}/{db}"
    host = kwargs.get("host", "localhost")
    port = kwargs.get("port", 6379)
    return f"{host}:{port}/{db}"


def pool_origin(kwargs: dict[str, Any], name: str) -> EventOrigin:
    path = kwargs.get("path") or None
    return EventOrigin(
        host=None if path else kwargs.get("host", "localhost"),
        port=None if path else int(kwargs.get("port", 6379) or 6379),
        path=path,
        db=int(kwargs.get("db", 0) or 0),
        pool_name=name,
    )


def _lifecycle_class(base: type, hooks: type, state: PoolState) -> type:
    namespace = {
        "__slots__": (),
        "_rl_state": state,
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
    }
    return type(base.__name__, (hooks, base), namespace)


def attach_pool(
    pool: Any,
    kind: PoolKind,
    delivery: Delivery,
    *,
    pool_name: str | None = None,
    origin: EventOrigin | None = None,
) -> PoolState:
    """Instrument ``pool``; returns its state (the existing one if attached)."""
    with _lock:
        existing = pool_state_of(pool)
        if existing is not None:
            return existing
        base = type(pool)
        kwargs = dict(getattr(pool, "connection_kwargs", None) or {})
        name = pool_name or default_pool_name(kwargs)
        if origin is None:
            origin = pool_origin(kwargs, name)
        size = int(getattr(pool, "max_connections", 0) or 0)
        timeout = getattr(pool, "timeout", None)
        state = PoolState(
            pool,
            name=name,
            origin=origin,
            delivery=delivery,
            base_class=base,
            counts=kind.counts,
            total=kind.total,
            size=size,
            timeout=timeout,
            is_async=kind.is_async,
        )
        lifecycle_class = _lifecycle_class(base, kind.hooks, state)
        kind.patcher.acquire()
        try:
            for connection in kind.connections(pool):
                register_connection(connection, state).checked_out_at = None
            now = perf_counter()
            for connection in kind.in_use(pool) if kind.in_use is not None else ():
                register_connection(connection, state).checked_out_at = now
            pool.__class__ = lifecycle_class
        except BaseException:
            forget_pool(state)
            kind.patcher.release()
            raise
        weakref.finalize(pool, _pool_gone, kind.patcher, state)
        _attached[id(state)] = kind
    if PoolCreatedEvent in delivery.wanted:
        emit(delivery, PoolCreatedEvent(time(), origin, size, timeout))
    return state


_attached: dict[int, PoolKind] = {}


def _pool_gone(patcher: ClassPatcher, state: PoolState) -> None:
    with _lock:
        if _attached.pop(id(state), None) is not None:
            forget_pool(state)
            patcher.release()


def detach_pool(pool: Any) -> bool:
    """Remove the hooks from ``pool``. Returns ``False`` if it had none."""
    with _lock:
        state = pool_state_of(pool)
        if state is None:
            return False
        pool.__class__ = state.base_class
        kind = _attached.pop(id(state), None)
        forget_pool(state)
        if kind is not None:
            kind.patcher.release()
        return True
