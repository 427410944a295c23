"""What redis_lifecycle knows about each instrumented pool and connection.

State is kept *beside* redis-py's objects, never in their ``__dict__``:
adding attributes to an object after it was built slows every later attribute
lookup on it in CPython 3.11+. Pools are looked up by ``id()`` in
:data:`POOLS` and connections in :data:`CONNECTIONS`; each entry is removed
when its object is detached or dies (a weakref callback), so an id is never
reused while its entry exists.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .._accumulate import CommandFigures
from .._delivery import Delivery
from ..events import EventOrigin
from .originals import unpatched

__all__ = [
    "CONNECTIONS",
    "POOLS",
    "ConnState",
    "PoolState",
    "conn_state_of",
    "connection_origin",
    "forget_connection",
    "forget_pool",
    "pool_state_by_id",
    "register_connection",
]

_connection_ids = itertools.count(1)
#: Serialises registration. A garbage collection can start at any allocation
#: made under it and run, on this very thread, pool finalizers and redis-py's
#: ``__del__`` methods (a connection's disconnect: hooks, callbacks, even a
#: command that registers a new connection). So it is reentrant, and the
#: finalizers' own paths (forget_pool, the connections' removers) take no
#: lock at all (tests/integration/gc_inside_locks.py).
_lock = threading.RLock()


def _new_lock_in_child() -> None:
    """A fork while another thread held ``_lock`` would leave the child's copy
    locked forever: its first new connection would hang. Start it afresh."""
    global _lock
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_in_child)

#: Pool state by ``id(pool)``, for every attached pool; an entry goes with
#: its pool (detached or garbage-collected).
POOLS: dict[int, PoolState] = {}

#: Connection state by ``id(connection)``; read without a lock (a dict lookup
#: is atomic), written under ``_lock``.
CONNECTIONS: dict[int, ConnState] = {}

#: ``POOLS.get`` and ``CONNECTIONS.get``, bound once, for the per-command
#: hooks: CPython 3.11 compiles ``POOLS.get(key)`` on an imported name as an
#: attribute load plus a call, which builds a bound method on every call
#: (``benchmarks/instructions.py``: about 150 instructions each, four per
#: command).
pool_state_by_id = POOLS.get
conn_state_of = CONNECTIONS.get


class PoolState:
    """One instrumented pool: its delivery, constants, and how to count it."""

    __slots__ = (
        "__weakref__",
        "base_class",
        "blocking",
        "counts",
        "delivery",
        "exhausted_in_checkout",
        "figures",
        "handle",
        "is_async",
        "name",
        "origin",
        "pool_ref",
        "redis_get_connection",
        "redis_make_connection",
        "redis_release",
        "redis_reset",
        "resetting",
        "size",
        "strategy",
        "timeout",
        "total",
        "waiting",
        "waiting_peak",
    )

    def __init__(
        self,
        pool: Any,
        *,
        name: str,
        origin: EventOrigin,
        delivery: Delivery,
        base_class: type,
        counts: Callable[[Any], tuple[int, int]],
        total: Callable[[Any], int],
        size: int,
        timeout: float | None,
        is_async: bool = False,
        originals: type | None = None,
        strategy: str = "registry",
        exhausted_in_checkout: bool = True,
    ) -> None:
        self.pool_ref = weakref.ref(pool)
        self.name = name
        self.origin = origin
        self.delivery = delivery
        self.base_class = base_class
        #: ``counts(pool) -> (active, idle)`` and ``total(pool) -> created``.
        self.counts = counts
        #: Checkout waits and hold times, recorded by the per-command hooks
        #: while the delivery has sinks (_accumulate.py); goes with the state.
        self.figures = CommandFigures(origin.pool_name, self.pool_ref, counts)
        delivery.figures.add(self.figures)
        self.total = total
        #: redis-py's own methods (never our patches of them), called by the
        #: lifecycle overrides.
        originals = originals or base_class
        self.redis_get_connection: Any = unpatched(originals, "get_connection")
        self.redis_release: Any = unpatched(originals, "release")
        self.redis_make_connection: Any = unpatched(originals, "make_connection")
        self.redis_reset: Any = unpatched(originals, "reset")
        #: How the pool is hooked: "subclass" (a lifecycle pool) or
        #: "registry" (class-level patches); see attach.py.
        self.strategy = strategy
        self.size = size
        self.timeout = timeout
        #: Whether running out shows in the checkout (else in make_connection).
        self.exhausted_in_checkout = exhausted_in_checkout
        self.is_async = is_async
        #: Set while the pool's ``reset()`` runs, to label what it closes.
        self.resetting = False
        #: The :class:`~redis_lifecycle.LifecycleHandle` serving this pool.
        self.handle: Any = None
        #: Whether callers may wait for a connection (a blocking pool): its
        #: checkout hook then counts them (_hooks/leaks.py, ``wait_for``).
        self.blocking = False
        #: Callers waiting for a connection now, and per reader (``None``:
        #: ``pool_stats()``; an exporter: its id) the most at once since that
        #: reader last looked.
        self.waiting = 0
        self.waiting_peak: dict[int | None, int] = {None: 0}


class ConnState:
    """One connection seen by an instrumented pool."""

    __slots__ = (
        "__weakref__",
        "checked_out_at",
        "connect_started",
        "connected",
        "connected_at",
        "deferred_pings",
        "disconnected_at",
        "ever_connected",
        "health_pings",
        "in_connect",
        "in_health_check",
        "last_connect_time",
        "leak",
        "mark_reason",
        "origin",
        "pending_close",
        "pool_state",
        "ref",
        "releasing",
    )

    def __init__(self, origin: EventOrigin, pool_state: PoolState | None) -> None:
        self.origin = origin
        self.pool_state = pool_state
        self.ref: weakref.ref[Any] | None = None
        #: Whether it has a socket and finished its handshake, as we saw it.
        self.connected = False
        self.ever_connected = False
        #: perf_counter of the first socket attempt of the connect in progress.
        self.connect_started: float | None = None
        self.in_connect = False
        #: Set while redis-py's own health PING (``_send_ping``) runs on it.
        self.in_health_check = False
        self.connected_at = 0.0
        self.last_connect_time = 0.0
        self.disconnected_at: float | None = None
        self.checked_out_at: float | None = None
        #: The thread whose ``release`` of it is under way, from just before
        #: it goes back into the pool until its ``connection_released`` is
        #: delivered (see _hooks/sync.py's ``await_release``).
        self.releasing: int | None = None
        #: Reason given when redis-py marked it for reconnect, until it closes.
        self.mark_reason: str | None = None
        #: perf_counter of each PubSub health ping sent and not yet answered.
        self.health_pings: deque[float] | None = None
        #: A close not reported yet: it waits for the exception redis-py
        #: raises to its caller (a ``_hooks.PendingClose``).
        self.pending_close: Any = None
        #: While checked out under leak detection: the checkout's record
        #: (stack, holder, reported; see _hooks/leaks.py), else ``None``.
        self.leak: Any = None
        #: ``health_check`` events of pings redis-py sent inside the
        #: handshake, reported once the handshake is over (after
        #: ``connected``/``reconnected``, or before its ``error``).
        self.deferred_pings: list[Any] | None = None


def connection_origin(connection: Any, pool_name: str | None, connection_id: int) -> EventOrigin:
    """Read a connection's address (never its credentials) into an origin."""
    path = getattr(connection, "path", None)
    if path:
        host, port = None, None
    else:
        path = None
        host = getattr(connection, "host", None)
        port = getattr(connection, "port", None)
    return EventOrigin(
        host=host,
        port=port,
        path=path,
        db=getattr(connection, "db", None),
        connection_id=connection_id,
        pool_name=pool_name,
    )


def real_connection(connection: Any) -> Any:
    """The real connection behind redis-py's client-side-cache proxy."""
    inner = getattr(connection, "_conn", None)
    return inner if inner is not None and hasattr(inner, "disconnect") else connection


def register_connection(connection: Any, pool_state: PoolState | None) -> ConnState:
    """Start tracking ``connection`` (idempotent); returns its state."""
    connection = real_connection(connection)
    key = id(connection)
    state = CONNECTIONS.get(key)
    if state is not None:
        if pool_state is not None and state.pool_state is not pool_state:
            state.pool_state = pool_state
            state.origin = connection_origin(
                connection, pool_state.name, state.origin.connection_id or 0
            )
        return state
    with _lock:
        state = CONNECTIONS.get(key)
        if state is not None:
            return state
        name = pool_state.name if pool_state is not None else None
        state = ConnState(connection_origin(connection, name, next(_connection_ids)), pool_state)
        state.connected = _is_connected(connection)
        state.ever_connected = state.connected
        state.ref = weakref.ref(connection, _make_remover(key))
        # A collection above may have run code that registered it meanwhile.
        return CONNECTIONS.setdefault(key, state)


def _is_connected(connection: Any) -> bool:
    if getattr(connection, "_sock", None) is not None:
        return True
    return getattr(connection, "_writer", None) is not None


#: Set by the hooks: delivers a close still waiting for its caller's
#: exception (``ConnState.pending_close``) when its connection is forgotten,
#: so that it is reported, with the error redis-py closed on, rather than lost.
report_pending_close: Callable[[ConnState], None] | None = None


def _forgotten(state: ConnState) -> None:
    if state.pending_close is not None and report_pending_close is not None:
        report_pending_close(state)


def _make_remover(key: int) -> Callable[[weakref.ref[Any]], None]:
    def remove(ref: weakref.ref[Any]) -> None:
        state = CONNECTIONS.get(key)
        if state is not None and state.ref is ref:
            CONNECTIONS.pop(key, None)
            _forgotten(state)

    return remove


def forget_connection(connection: Any) -> None:
    """Stop tracking ``connection``."""
    state = CONNECTIONS.pop(id(real_connection(connection)), None)
    if state is not None:
        _forgotten(state)


def forget_pool(pool_state: PoolState) -> None:
    """Stop tracking every connection of ``pool_state``.

    Takes no lock (it runs in finalizers, which a garbage collection may
    start anywhere): it walks a copy, made in one step, since a connection's
    weakref callback may remove entries meanwhile, and removes an entry only
    if it is still the one it saw. The pool's buffered per-command figures go
    to their readers first, so that none is lost."""
    pool_state.figures.flush(pool_state.delivery.sinks)
    for key, state in CONNECTIONS.copy().items():
        if state.pool_state is pool_state and CONNECTIONS.get(key) is state:
            CONNECTIONS.pop(key, None)
            _forgotten(state)
