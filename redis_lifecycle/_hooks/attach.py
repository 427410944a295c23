"""Attach lifecycle hooks to one pool, and take them off again.

Attaching builds the pool's :class:`PoolState`, registers it in ``POOLS``
by ``id(pool)`` (where every hook looks) and hooks the pool one of two ways:

* a lifecycle pool (an instance of the kind's ``hooks`` mixin, built that
  way: strategy "subclass") needs nothing more: its own methods are the
  hooks, and they pass through while the pool is not in ``POOLS``;
* any other pool is hooked by the kind's class-level ``pool_patcher``,
  installed while it is attached ("registry").

Neither gives the pool a class of its own (``pool.__class__ = ...``): CPython
then keeps the instance's attributes in a materialised dict, and every
attribute lookup in redis-py's pool code gets slower for good.

It also registers the connections the pool already holds, installs the
class-level connection wrappers while any pool needs them, and emits
``pool_created``. Detaching undoes each step.
"""

from __future__ import annotations

import copy
import threading
import weakref
from time import perf_counter, time
from typing import Any

from .._delivery import Delivery
from ..events import EventOrigin, PoolCreatedEvent
from . import ClassPatcher, MethodPatcher, emit
from . import retry as retry_hooks
from .state import POOLS, PoolState, forget_pool, register_connection

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
        pool_patcher: MethodPatcher,
        hot_patchers: tuple[MethodPatcher, MethodPatcher] | None = None,
        exhausted_in_checkout: bool = True,
        blocking: bool = False,
    ) -> None:
        self.hooks = hooks
        #: Whether callers may wait in its checkout (counted: pool saturation).
        self.blocking = blocking
        #: Where running out shows: in the checkout (a blocking pool's wait,
        #: asyncio's ``get_available_connection``), so that ``pool_exhausted``
        #: alone needs the checkout guarded; or ``False``: in
        #: ``make_connection`` (sync ``ConnectionPool``), already hooked.
        self.exhausted_in_checkout = exhausted_in_checkout
        #: Class-level pool patches filtered by ``POOLS``.
        self.pool_patcher = pool_patcher
        #: ``(checkout, release)`` patches that a ``POOLS`` pool holds only
        #: while its delivery wants per-command events (see :class:`_HotPatches`).
        self.hot_patchers = hot_patchers
        self.patcher = patcher
        self.counts = counts
        self.total = total
        self.connections = connections
        #: ``in_use(pool)``: connections checked out now (their release is
        #: reported with the time held since instrumentation).
        self.in_use = in_use
        self.is_async = is_async

    def without_counts(self) -> PoolKind:
        """This kind with the counts read as ``-1`` (unknown): for a redis-py
        that renamed the private lists the counts come from. Commands and
        every other event are unaffected."""
        twin = copy.copy(self)
        twin.counts = unknown_counts
        twin.total = unknown_total
        twin.blocking = False  # its free connections cannot be seen either
        return twin


def unknown_counts(pool: Any) -> tuple[int, int]:
    """``(active, idle)`` where this redis-py hides them: ``(-1, -1)``."""
    return -1, -1


def unknown_total(pool: Any) -> int:
    return -1


def has_attributes(pool: Any, names: tuple[str, ...]) -> bool:
    """Whether ``pool`` has every one of ``names`` (its private lists)."""
    return all(hasattr(pool, name) for name in names)


class _HotPatches:
    """Holds the per-command patches for one registry pool while its delivery
    wants them: checkout while ``hot``, or while ``watch_exhaustion`` for a
    pool that runs out in its checkout; release while ``hot``. Re-evaluated
    on every subscription change (a delivery watcher).
    """

    def __init__(self, delivery: Delivery, kind: PoolKind) -> None:
        assert kind.hot_patchers is not None
        self.delivery = delivery
        self.checkout, self.release = kind.hot_patchers
        self.kind = kind
        self.holds_checkout = False
        self.holds_release = False
        self._lock = threading.Lock()

    def update(self) -> None:
        delivery = self.delivery
        with self._lock:
            want_checkout = delivery.wants_per_command or (
                delivery.watch_exhaustion and self.kind.exhausted_in_checkout
            )
            if want_checkout != self.holds_checkout:
                (self.checkout.add_user if want_checkout else self.checkout.remove_user)()
                self.holds_checkout = want_checkout
            want_release = delivery.wants_per_command
            if want_release != self.holds_release:
                (self.release.add_user if want_release else self.release.remove_user)()
                self.holds_release = want_release

    def close(self) -> None:
        with self._lock:
            if self.holds_checkout:
                self.checkout.remove_user()
                self.holds_checkout = False
            if self.holds_release:
                self.release.remove_user()
                self.holds_release = False
        if self.update in self.delivery.watchers:
            self.delivery.watchers.remove(self.update)


#: The per-command patch holders of attached registry pools, by id(state).
_hot: dict[int, _HotPatches] = {}


def pool_state_of(pool: Any) -> PoolState | None:
    """The state of an instrumented pool, else ``None``."""
    state = POOLS.get(id(pool))
    return state if isinstance(state, PoolState) and state.pool_ref() is pool else None


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
        if isinstance(pool, kind.hooks):
            strategy = "subclass"
            mro = base.__mro__
            originals = mro[mro.index(kind.hooks) + 1]
        else:
            strategy = "registry"
            originals = base
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
            originals=originals,
            strategy=strategy,
            exhausted_in_checkout=kind.exhausted_in_checkout,
        )
        state.blocking = kind.blocking
        kind.patcher.add_user()
        if strategy == "registry":
            kind.pool_patcher.add_user()
        try:
            for connection in kind.connections(pool):
                register_connection(connection, state).checked_out_at = None
            now = perf_counter()
            for connection in kind.in_use(pool) if kind.in_use is not None else ():
                register_connection(connection, state).checked_out_at = now
            POOLS[id(pool)] = state  # where the hooks look
            if strategy == "registry" and kind.hot_patchers is not None:
                hot = _hot[id(state)] = _HotPatches(delivery, kind)
                delivery.watchers.append(hot.update)
                hot.update()
            retry_hooks.watch(state)
        except BaseException:
            _release(kind, state)
            raise
        # Detached again by detach_pool: a finalizer left behind would keep
        # the state (and its delivery and handle) alive as long as the pool.
        _finalizers[id(state)] = weakref.finalize(pool, _pool_gone, state)
        _attached[id(state)] = kind
    if PoolCreatedEvent in delivery.wanted:
        emit(delivery, PoolCreatedEvent(time(), origin, size, timeout))
    return state


_attached: dict[int, PoolKind] = {}
_finalizers: dict[int, weakref.finalize[Any, Any]] = {}


def _release(kind: PoolKind, state: PoolState) -> None:
    """Forget ``state`` and give back the patches it held."""
    hot = _hot.pop(id(state), None)
    if hot is not None:
        hot.close()
    retry_hooks.unwatch(state)
    forget_pool(state)
    if POOLS.get(id(state.pool_ref())) is state:
        del POOLS[id(state.pool_ref())]
    kind.patcher.remove_user()
    if state.strategy == "registry":
        kind.pool_patcher.remove_user()


def _pool_gone(state: PoolState) -> None:
    with _lock:
        _finalizers.pop(id(state), None)
        kind = _attached.pop(id(state), None)
        hot = _hot.pop(id(state), None)
        if hot is not None:
            hot.close()
        retry_hooks.unwatch(state)
        if kind is not None:
            forget_pool(state)
            for key in [k for k, s in POOLS.items() if s is state]:
                del POOLS[key]
            kind.patcher.remove_user()
            if state.strategy == "registry":
                kind.pool_patcher.remove_user()


def detach_pool(pool: Any) -> bool:
    """Remove the hooks from ``pool``. Returns ``False`` if it had none."""
    with _lock:
        state = pool_state_of(pool)
        if state is None:
            return False
        finalizer = _finalizers.pop(id(state), None)
        if finalizer is not None:
            finalizer.detach()
        kind = _attached.pop(id(state), None)
        if kind is not None:
            _release(kind, state)
        else:
            forget_pool(state)
            POOLS.pop(id(pool), None)
    if state.delivery.leak_threshold is not None:
        from .leaks import stop_unused

        stop_unused()  # the leak watchdog, if no other pool needs it
    return True


def detach_all() -> int:
    """Detach every attached pool (for test teardown); returns how many."""
    with _lock:
        states = [state for state in _every_state() if state.pool_ref() is not None]
    return sum(detach_pool(state.pool_ref()) for state in states)


def _every_state() -> list[PoolState]:
    """The state of every attached pool (each is its finalizer's argument)."""
    states = []
    for finalizer in list(_finalizers.values()):
        info = finalizer.peek()
        if info is not None and isinstance(info[2][0], PoolState):
            states.append(info[2][0])
    return states
