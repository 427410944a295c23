"""Hooks on sync redis-py: ``redis.connection``'s connections and pools.

Two techniques, chosen per hook point by measurement (``benchmarks/``):

* **Pools** (the per-command hot path: ``get_connection`` and ``release``)
  get plain-function patches of ``ConnectionPool`` and
  ``BlockingConnectionPool``, which find the pool's
  :class:`~redis_lifecycle._hooks.state.PoolState` in ``POOLS`` by ``id()``; the
  lifecycle pools have the same functions as methods. A plain function costs
  about a fifth of a ``wrapt`` wrapper, and the per-command patches are
  installed only while someone wants a per-command event.
* **Connections** (connect, handshake, disconnect, health ping, mark for
  reconnect: rare) get class-level ``wrapt`` wrappers, installed while at
  least one pool is instrumented and filtered by ``CONNECTIONS``. They see
  the calls redis-py makes on ``self`` (lazy reconnects, retries, the
  checkout probe), which no per-object proxy can.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from sys import _getframe
from threading import get_ident
from time import perf_counter, sleep, time
from types import FrameType
from typing import Any

import redis.connection as rconn
import redis.exceptions as rexc

from .._accumulate import FLUSH_AT
from .._delivery import ORDER_TIMEOUT, Delivery
from ..errors import CallbackError
from ..events import (
    ConnectionConnectedEvent,
    ConnectionCreatedEvent,
    ConnectionErrorEvent,
    ConnectionMarkedForReconnectEvent,
    ConnectionReconnectedEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionReleasedEvent,
    PoolExhaustedEvent,
    PoolResetEvent,
)
from . import (
    ClassPatcher,
    check_recursion,
    disconnect_error,
    emit,
    emit_quietly,
    eof_seen,
    flush_close,
    flush_close_on_disconnect,
    flush_deferred_pings,
    internal_error,
    may_be_rewrapped,
    next_method,
    pool_patchers,
    report_disconnect,
    report_ping,
)
from . import leaks as _leaks
from .leaks import leak_returned
from .maint import maint_targets
from .pubsub import pubsub_targets
from .saturation import wait_sync
from .state import (
    CONNECTIONS,
    POOLS,
    ConnState,
    PoolState,
    conn_state_of,
    pool_state_by_id,
    register_connection,
)

__all__ = [
    "CONNECTION_PATCHER",
    "SYNC_CHECKOUT_PATCHER",
    "SYNC_POOL_PATCHER",
    "SYNC_RELEASE_PATCHER",
    "SyncPoolHooks",
    "await_release",
    "blocking_counts",
    "blocking_total",
    "hooked_make_connection",
    "is_exhaustion",
    "new_event",
    "pool_counts",
    "pool_in_use",
    "pool_total",
    "report_exhaustion",
]

logger = logging.getLogger("redis_lifecycle")

_MAX_CONNECTIONS_ERROR: type[BaseException] | None = getattr(rexc, "MaxConnectionsError", None)
_EXHAUSTION_MESSAGES = ("Too many connections", "No connection available.")


def is_exhaustion(error: BaseException) -> bool:
    """Whether a checkout failed because the pool had no free connection."""
    if _MAX_CONNECTIONS_ERROR is not None and isinstance(error, _MAX_CONNECTIONS_ERROR):
        return True
    return isinstance(error, rexc.ConnectionError) and str(error) in _EXHAUSTION_MESSAGES


def report_exhaustion(state: PoolState, started: float, error: BaseException) -> None:
    """After a failed checkout that began at ``started`` (``perf_counter``):
    ``pool_exhausted``, if that is why it failed and someone wants it."""
    delivery = state.delivery
    if PoolExhaustedEvent in delivery.wanted and is_exhaustion(error):
        emit_quietly(
            delivery,
            PoolExhaustedEvent(
                time(), state.origin, state.size, state.timeout, perf_counter() - started
            ),
        )


# --- pool counts ---------------------------------------------------------


def pool_counts(pool: Any) -> tuple[int, int]:
    """``(active, idle)`` of a ``ConnectionPool``."""
    return len(pool._in_use_connections), len(pool._available_connections)


def pool_total(pool: Any) -> int:
    return int(getattr(pool, "_created_connections", -1))


def blocking_counts(pool: Any) -> tuple[int, int]:
    """``(active, idle)`` of a ``BlockingConnectionPool``, in O(1).

    Its LIFO queue holds ``None`` placeholders below the idle connections
    (releases push on top, checkouts pop from the top), so idle = queue length
    less the placeholders, and placeholders = size less connections made.
    """
    created = len(pool._connections)
    idle = len(pool.pool.queue) - (pool.max_connections - created)
    idle = min(max(idle, 0), created)
    return created - idle, idle


def blocking_total(pool: Any) -> int:
    return len(pool._connections)


# --- pool overrides ------------------------------------------------------
#
# The per-command methods, ``get_connection`` and ``release``, are each one
# function made by a factory below (_checkout_hook, _release_hook): the state
# lookup, the call into redis-py, the event and its delivery in a single
# frame, since every command pays for each call in between. The same
# functions serve both ways a sync pool is hooked:
#
# * class-level patches of ConnectionPool and BlockingConnectionPool
#   (SYNC_CHECKOUT_PATCHER / SYNC_RELEASE_PATCHER), for the pools
#   instrument() attached, installed only while one of their deliveries wants
#   a per-command event: with no such subscriber the hot path is redis-py's
#   own, untouched. ``original`` is the method they replaced;
# * SyncPoolHooks, the mixin of the lifecycle pools (real subclasses), with
#   ``original=None``: the state's ``redis_get_connection``/``redis_release`` (the next class in
#   the pool's MRO) is called instead.
#
# Either way the pool's state is found in POOLS by id(): attaching a sync
# pool registers it there (the lifecycle pools too).
#
# The rare methods (make_connection, reset) keep a front end per technique
# around one hook body each (hooked_make_connection, hooked_reset).
#
# Measured (benchmarks/instructions.py): each Python call saved here is about
# 600 instructions per command of ~170,000 for a bare GET; assigning the pool
# a per-instance subclass (``pool.__class__ = ...``) cost more than any
# front end, because CPython then keeps the instance's attributes in a
# materialised dict and every attribute lookup in redis-py's pool code gets
# slower, for good.

#: Builds the two per-command events, whose slots the hooks then fill in
#: directly: ``type(...)`` calling ``__init__`` costs about 2,200
#: instructions, this and five slot stores about 600. Which slots each event
#: has is pinned by tests/unit/test_events.py.
new_event = object.__new__


def _checkout_hook(original: Any) -> Any:
    """``get_connection`` for ``original`` (``None``: the lifecycle pools')."""

    def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = pool_state_by_id(id(self))
        if state is None:
            return (original or next_method(self, SyncPoolHooks, "get_connection"))(
                self, *args, **kwargs
            )
        delivery = state.delivery
        call = original or state.redis_get_connection
        if not delivery.wants_per_command:
            if delivery.watch_exhaustion and state.exhausted_in_checkout:
                return guarded_get_connection(self, state, call, args, kwargs)
            return call(self, *args, **kwargs)
        started = perf_counter()
        pending = state.waiting
        try:
            if state.blocking and not self.pool.queue:  # nothing free: it waits
                connection = wait_sync(self, state, call, args, kwargs)
            else:
                # redis-py 8 passes no arguments: a plain call then, which
                # builds no argument tuple or dict to pass on.
                connection = call(self, *args, **kwargs) if args or kwargs else call(self)
        except BaseException as error:
            report_exhaustion(state, started, error)
            raise
        now = perf_counter()
        conn_state = conn_state_of(id(connection)) or register_connection(connection, state)
        conn_state.checked_out_at = now
        if delivery.leak_threshold is not None:
            # The checkout's stack, as record_sync() does, inlined: a call
            # and this frame's own frame object saved on every checkout.
            frame: Any = _getframe(1)
            frames = []
            while frame is not None:
                frames.append((frame.f_code, frame.f_lasti))
                frame = frame.f_back
            conn_state.leak = [frames, get_ident(), None, False, None]
            if _leaks._watchdog is None:
                _leaks.start_watchdog()
        if conn_state.releasing is not None:  # its release is still being reported
            await_release(conn_state, delivery)
        sinks = delivery.sinks
        build = PoolConnectionAcquiredEvent in delivery.wanted
        if sinks or build:
            wait_time = now - started
            if conn_state.connected_at > started:
                wait_time = max(wait_time - conn_state.last_connect_time, 0.0)
        if sinks:
            # CommandFigures.add_wait, inlined (see _accumulate.py).
            figures = state.figures
            waits = figures.wait
            waits.append(wait_time)
            if len(waits) >= FLUSH_AT:
                figures.flush(sinks)
        if build:
            if state.counts is pool_counts:  # inlined for the common pool
                active = len(self._in_use_connections)
                idle = len(self._available_connections)
            else:
                active, idle = state.counts(self)
            # PoolConnectionAcquiredEvent(time(), origin, wait_time, active,
            # idle), built without the call to __init__: a third of the cost
            # (see new_event).
            event = new_event(PoolConnectionAcquiredEvent)
            event._timestamp = time()
            event._origin = conn_state.origin
            event._wait_time = wait_time
            event._active_connections = active
            event._idle_connections = idle
            event._pending = pending
            # A slot holding a function: loaded as an attribute, since a
            # method call on it would take CPython 3.11's slow path.
            emit_acquired = delivery.emit_acquired
            try:
                emit_acquired(event)
            except CallbackError:
                self.release(connection)
                raise
        return connection

    return get_connection


def await_release(conn_state: ConnState, delivery: Delivery) -> None:
    """Wait until another thread's release of this connection has delivered
    its ``connection_released`` (to the executor's queue, or inline to its
    callbacks), so that the ``connection_acquired`` to come follows it.

    Only a thread that got the connection in the instant between its return
    to the pool and that delivery waits: for microseconds, or as long as
    inline ``connection_released`` callbacks take. Bounded by the executor's
    ``order_timeout`` (without one, :data:`ORDER_TIMEOUT`): then it logs a
    warning and goes on, so a callback blocked on something this thread holds
    delays it but cannot deadlock it. The releasing thread itself (a callback
    running a command on the same pool) never waits.
    """
    releasing = conn_state.releasing
    if releasing is None or releasing == get_ident():
        return
    executor = delivery.executor
    timeout = ORDER_TIMEOUT if executor is None else executor.order_timeout
    deadline = perf_counter() + timeout
    pause = 0.0  # the first pause only lets the releasing thread have the GIL
    while conn_state.releasing is not None:
        if perf_counter() >= deadline:
            logger.warning(
                "redis_lifecycle: connection_released of connection %s was not delivered"
                " within %.1fs; its connection_acquired goes first",
                conn_state.origin.connection_id,
                timeout,
            )
            return
        sleep(pause)
        pause = min(2 * pause or 1e-5, 1e-3)


def guarded_get_connection(
    pool: Any, state: PoolState, original: Any, args: Any, kwargs: Any
) -> Any:
    """Checkout when only ``pool_exhausted`` is wanted: no per-command work
    beyond one clock read."""
    started = perf_counter()
    try:
        return original(pool, *args, **kwargs)
    except BaseException as error:
        report_exhaustion(state, started, error)
        raise


def _release_hook(original: Any) -> Any:
    """``release`` for ``original`` (``None``: the lifecycle pools')."""

    def release(self: Any, connection: Any) -> Any:
        state = pool_state_by_id(id(self))
        if state is None:
            return (original or next_method(self, SyncPoolHooks, "release"))(self, connection)
        call = original or state.redis_release
        delivery = state.delivery
        if not delivery.wants_per_command:
            return call(self, connection)
        conn_state = conn_state_of(id(connection))
        if conn_state is None or conn_state.checked_out_at is None:
            return call(self, connection)
        # Taken before the connection goes back: once it is back, another
        # thread may check it out and set checked_out_at for itself.
        checked_out_at = conn_state.checked_out_at
        conn_state.checked_out_at = None
        held_time = perf_counter() - checked_out_at
        leak = conn_state.leak
        if leak is not None:  # leak detection: reported as a leak already?
            conn_state.leak = None
            reported_leak = leak[3]
        else:
            reported_leak = False
        # Once back in the pool, the connection may be checked out by another
        # thread before its connection_released is delivered: that thread
        # waits for it (await_release), so each connection's events arrive in
        # the order they happened.
        conn_state.releasing = get_ident()
        try:
            try:
                result = call(self, connection)
            except BaseException:
                conn_state.checked_out_at = checked_out_at  # still out: released later
                conn_state.leak = leak
                raise
            if reported_leak:
                leak_returned(conn_state, leak, held_time)
            sinks = delivery.sinks
            if sinks:
                # CommandFigures.add_held, inlined (see _accumulate.py).
                figures = state.figures
                helds = figures.held
                helds.append(held_time)
                if len(helds) >= FLUSH_AT:
                    figures.flush(sinks)
            if PoolConnectionReleasedEvent in delivery.wanted:
                if state.counts is pool_counts:  # inlined for the common pool
                    active = len(self._in_use_connections)
                    idle = len(self._available_connections)
                else:
                    active, idle = state.counts(self)
                event = new_event(PoolConnectionReleasedEvent)  # as in get_connection
                event._timestamp = time()
                event._origin = conn_state.origin
                event._held_time = held_time
                event._active_connections = active
                event._idle_connections = idle
                event._reported_leak = reported_leak
                emit_released = delivery.emit_released  # as emit_acquired
                emit_released(event)
        finally:
            conn_state.releasing = None
        return result

    return release


def hooked_make_connection(pool: Any, state: PoolState, original: Any, uncounted: int = 0) -> Any:
    """A new connection: registered, and ``pool_connection_created`` with the
    pool's total, plus ``uncounted`` for pools that count it only later.

    A sync ``ConnectionPool`` runs out here ("Too many connections"): this
    reports ``pool_exhausted`` then, unless the checkout hook runs (``hot``)
    and reports it itself. So "rare events only" costs nothing per command.
    """
    started = perf_counter()
    try:
        connection = original(pool)
    except BaseException as error:
        if not state.exhausted_in_checkout and not state.delivery.wants_per_command:
            report_exhaustion(state, started, error)
        raise
    try:
        conn_state = register_connection(connection, state)
        delivery = state.delivery
        if PoolConnectionCreatedEvent in delivery.wanted:
            total = state.total(pool) + uncounted
            emit_quietly(delivery, PoolConnectionCreatedEvent(time(), conn_state.origin, total))
    except Exception:
        internal_error("make_connection")
    return connection


def hooked_reset(pool: Any, state: PoolState, original: Any) -> Any:
    forked = getattr(pool, "pid", os.getpid()) != os.getpid()
    try:
        inherited = list(_pool_connections(pool))
    except Exception:
        inherited = []
    state.resetting = True
    try:
        result = original(pool)
    finally:
        state.resetting = False
    delivery = state.delivery
    reason = "fork" if forked else "explicit"
    if forked:
        _drop_inherited(inherited, delivery)
    if PoolResetEvent in delivery.wanted:
        emit(delivery, PoolResetEvent(time(), state.origin, reason, len(inherited)))
    return result


def _drop_inherited(inherited: list[Any], delivery: Any) -> None:
    """After a fork, the child's pool let go of the parent's connections:
    ``marked_for_reconnect`` (fork) for each, then ``disconnected`` (fork) for
    each that was connected. redis-py discards them without closing; their
    sockets close whenever they are garbage-collected (after the weakref that
    tracks them has gone, if they sit in a cycle), so the close is reported
    here, once, and never as an outage."""
    now = perf_counter()
    for connection in inherited:
        conn_state = CONNECTIONS.get(id(connection))
        if conn_state is None:
            continue
        conn_state.mark_reason = "fork"
        if ConnectionMarkedForReconnectEvent in delivery.wanted:
            emit_quietly(
                delivery,
                ConnectionMarkedForReconnectEvent(time(), conn_state.origin, "fork"),
            )
        if conn_state.connected:
            report_disconnect(connection, conn_state, None, False, now)


class SyncPoolHooks:
    """The hooks as methods, for pools built as lifecycle subclasses.

    Until the pool is attached (while redis-py's ``__init__`` runs) and after
    ``uninstrument``, the methods only pass through to the next class in the
    pool's MRO. No ``__slots__`` here: a slotted mixin would change the
    instance layout.
    """

    get_connection = _checkout_hook(None)
    release = _release_hook(None)

    def make_connection(self) -> Any:
        state = POOLS.get(id(self))
        if state is None:
            return super().make_connection()  # type: ignore[misc]
        return hooked_make_connection(self, state, state.redis_make_connection)

    def reset(self) -> Any:
        state = POOLS.get(id(self))
        if state is None:
            return super().reset()  # type: ignore[misc]
        return hooked_reset(self, state, state.redis_reset)


#: Class-level patches of the sync pools, for pools attached by instrument():
#: make_connection/reset while at least one is attached; get_connection and
#: release only while at least one attached pool's delivery wants a
#: checkout-path event (``hot`` or ``watch_exhaustion``) or a release event
#: (``hot``). With no such subscriber, instrumented and bare pools run
#: redis-py's own ``get_connection`` and ``release``, untouched.
SYNC_POOL_PATCHER, SYNC_CHECKOUT_PATCHER, SYNC_RELEASE_PATCHER = pool_patchers(
    lambda: (rconn.ConnectionPool, rconn.BlockingConnectionPool),
    make_connection=hooked_make_connection,
    reset=hooked_reset,
    checkout=_checkout_hook,
    release=_release_hook,
)


def _pool_connections(pool: Any) -> Iterable[Any]:
    """Every connection object a sync pool holds (none known if this redis-py
    renamed its lists: see ``rl.capabilities()``)."""
    if isinstance(pool, rconn.BlockingConnectionPool):
        return list(getattr(pool, "_connections", ()))
    return [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]


pool_connections = _pool_connections


def pool_in_use(pool: Any) -> list[Any]:
    """The connections a sync pool has checked out now."""
    if isinstance(pool, rconn.BlockingConnectionPool):  # those not in the queue
        queue = getattr(getattr(pool, "pool", None), "queue", ())
        idle = {id(c) for c in list(queue) if c is not None}
        return [c for c in list(getattr(pool, "_connections", ())) if id(c) not in idle]
    return list(getattr(pool, "_in_use_connections", ()))


# --- connection wrappers -------------------------------------------------


def _socket_attempt(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``_connect``: one socket attempt (TCP, TLS or unix)."""
    state = CONNECTIONS.get(id(instance))
    if state is None or state.in_connect or state.pool_state is None:
        return wrapped(*args, **kwargs)
    if state.pending_close is not None:  # the close this reconnect follows
        flush_close(state, None)
    state.in_connect = True
    delivery = state.pool_state.delivery
    try:
        state.connect_started = perf_counter()
        if ConnectionCreatedEvent in delivery.wanted:
            emit_quietly(delivery, ConnectionCreatedEvent(time(), state.origin))
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            state.connect_started = None
            if ConnectionErrorEvent in delivery.wanted and isinstance(error, Exception):
                emit_quietly(delivery, ConnectionErrorEvent(time(), state.origin, error, "connect"))
            raise
    finally:
        state.in_connect = False


def _handshake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``on_connect_check_health`` (6.0+) or ``on_connect`` (5.x): the
    handshake after a socket attempt; its success means connected."""
    state = CONNECTIONS.get(id(instance))
    if state is None or state.pool_state is None or state.connected:
        return wrapped(*args, **kwargs)
    delivery = state.pool_state.delivery
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as error:
        state.connect_started = None
        flush_deferred_pings(state)  # the pings it sent came before its failure
        if ConnectionErrorEvent in delivery.wanted and isinstance(error, Exception):
            emit_quietly(delivery, ConnectionErrorEvent(time(), state.origin, error, "handshake"))
        raise
    try:
        mark_connected(state)
    finally:
        flush_deferred_pings(state)  # the checks on the new socket, after it
    return result


def mark_connected(state: Any) -> None:
    """Record a finished connect and emit ``connected`` or ``reconnected``."""
    now = perf_counter()
    started = state.connect_started
    connect_time = now - started if started is not None else 0.0
    state.connect_started = None
    state.connected = True
    state.connected_at = now
    state.last_connect_time = connect_time
    delivery = state.pool_state.delivery
    if state.ever_connected:
        if ConnectionReconnectedEvent in delivery.wanted:
            disconnected_at = state.disconnected_at
            downtime = now - disconnected_at if disconnected_at is not None else 0.0
            emit(
                delivery,
                ConnectionReconnectedEvent(time(), state.origin, connect_time, downtime),
            )
    else:
        state.ever_connected = True
        if ConnectionConnectedEvent in delivery.wanted:
            emit(delivery, ConnectionConnectedEvent(time(), state.origin, connect_time))


def _disconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``disconnect``: a connected connection's socket closing."""
    state = CONNECTIONS.get(id(instance))
    if state is None:
        return wrapped(*args, **kwargs)
    if not state.connected:
        if state.pending_close is not None:  # redis-py's failure handler
            flush_close_on_disconnect(state, args, kwargs)
        return wrapped(*args, **kwargs)
    try:
        error = disconnect_error(args, kwargs, instance)
        defer = may_be_rewrapped(error)
        # Read before the socket closes: did the server close it?
        eof = error is not None and eof_seen(getattr(instance, "_sock", None))
    except Exception:
        error, defer, eof = None, False, False
    result = wrapped(*args, **kwargs)
    try:
        if getattr(instance, "_sock", None) is None:
            report_disconnect(
                instance,
                state,
                error,
                bool(kwargs.get("health_check_failed")),
                perf_counter(),
                defer=defer,
                eof=eof,
            )
    except Exception:
        internal_error("disconnect")
    return result


def _send_ping(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``_send_ping``: redis-py's own health check. A close while it
    runs (redis-py closes on the failed read before ``_ping_failed`` does) is
    labelled ``health_check_failed``."""
    check_recursion(_SEND_PING_CODE)
    state = CONNECTIONS.get(id(instance))
    if state is None or state.pool_state is None:
        return wrapped(*args, **kwargs)
    if state.pending_close is not None:
        flush_close(state, None)
    # redis-py's check inside a (re)connect's handshake (its socket is open)
    in_handshake = state.connect_started is not None and not state.connected
    started = perf_counter()
    state.in_health_check = True
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as error:
        state.in_health_check = False
        report_ping(state, started, error, in_handshake)
        # The close the failed check caused, after the check.
        flush_close(state, error)
        raise
    finally:
        state.in_health_check = False
    report_ping(state, started, None, in_handshake)
    return result


_SEND_PING_CODE = _send_ping.__code__


def mark_reason_from_caller() -> str:
    """Why redis-py is marking a connection, from who called it."""
    frame: FrameType | None = sys._getframe(3)
    for _ in range(6):
        if frame is None:
            break
        module = frame.f_globals.get("__name__", "")
        function = frame.f_code.co_name
        if "maint_notifications" in module:
            return "maintenance"
        if "cluster" in module:
            return "topology_change"
        if function in ("reset", "_checkpid"):
            return "pool_reset"
        frame = frame.f_back
    return "requested"


def _mark_for_reconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``mark_for_reconnect`` (7.0+)."""
    result = wrapped(*args, **kwargs)
    state = CONNECTIONS.get(id(instance))
    if state is None or state.pool_state is None:
        return result
    try:
        reason = mark_reason_from_caller()
    except Exception:
        reason = "requested"
    state.mark_reason = reason
    delivery = state.pool_state.delivery
    if ConnectionMarkedForReconnectEvent in delivery.wanted:
        emit_quietly(delivery, ConnectionMarkedForReconnectEvent(time(), state.origin, reason))
    return result


def _connection_targets() -> Iterable[tuple[type, str, Any]]:
    base = rconn.AbstractConnection
    handshake = (
        "on_connect_check_health" if "on_connect_check_health" in base.__dict__ else "on_connect"
    )
    socket_classes = [rconn.Connection, rconn.SSLConnection, rconn.UnixDomainSocketConnection]
    for cls in socket_classes:
        yield cls, "_connect", _socket_attempt
    yield base, handshake, _handshake
    yield base, "disconnect", _disconnect
    yield base, "_send_ping", _send_ping
    yield base, "mark_for_reconnect", _mark_for_reconnect
    yield from pubsub_targets()
    yield from maint_targets()


#: The class-level connection wrappers, shared by every instrumented sync pool.
CONNECTION_PATCHER = ClassPatcher(_connection_targets)
