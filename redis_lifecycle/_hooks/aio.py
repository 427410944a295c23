"""Hooks on ``redis.asyncio``: its connections and connection pools.

    >>> import redis.asyncio, redis_lifecycle as rl
    >>> client = redis.asyncio.Redis(host="localhost", port=6379)
    >>> handle = rl.instrument(client)          # attaches these hooks
    >>> rl.uninstrument(client)
    True

The same two techniques as the sync hooks (:mod:`redis_lifecycle._hooks.sync`):

* **Pools** get the same kind of plain-function patches, looked up in
  ``POOLS`` (the lifecycle pools have them as methods of
  :class:`AsyncPoolHooks`). ``get_connection`` and ``release`` return
  redis-py's own coroutine untouched when no per-command event is wanted, so
  an instrumented pool with only rare-event subscribers adds no coroutine
  frame per command.
* **Connections** get class-level ``wrapt`` wrappers (their own
  :data:`CONNECTION_PATCHER`, independent of the sync one) on ``_connect``,
  the handshake, ``disconnect``, ``_close``, ``_send_ping`` and
  ``mark_for_reconnect``. A wrapper decides synchronously whether the
  connection is instrumented and, if not, returns redis-py's coroutine as is.

Callbacks run inline, on the event loop's thread, inside the task whose
command caused the event (``async def`` callbacks are scheduled as tasks, see
:mod:`redis_lifecycle._coroutine_callbacks`), unless an
:class:`~redis_lifecycle.AsyncCallbackExecutor` is given.

Differences from sync redis-py that the hooks account for: a connection is
connected when its ``_reader``/``_writer`` are set; async pools have no fork
detection (``pool_reset`` fires only for an explicit ``reset()``); async
``BlockingConnectionPool.release`` calls ``super().release``, which resolves
past the lifecycle override, so one release is one event.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine, Iterable
from time import perf_counter, time
from typing import Any

import redis.asyncio.connection as aconn

from .._accumulate import FLUSH_AT
from .._coroutine_callbacks import remember_loop
from ..errors import CallbackError
from ..events import (
    ConnectionCreatedEvent,
    ConnectionErrorEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionReleasedEvent,
    PoolResetEvent,
)
from . import (
    ClassPatcher,
    check_recursion,
    disconnect_error,
    emit,
    emit_quietly,
    error_in_flight,
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
from .attach import PoolKind, has_attributes
from .leaks import leak_returned, record_async
from .maint import maint_targets_async
from .pubsub import async_pubsub_targets
from .saturation import must_wait_async, wait_async
from .state import (
    CONNECTIONS,
    POOLS,
    ConnState,
    PoolState,
    conn_state_of,
    pool_state_by_id,
    register_connection,
)
from .sync import _mark_for_reconnect, mark_connected, new_event, report_exhaustion
from .sync import hooked_make_connection as sync_make_connection

__all__ = [
    "ASYNC_BLOCKING_POOL",
    "ASYNC_POOL",
    "CONNECTION_PATCHER",
    "AsyncPoolHooks",
    "async_kind_for",
    "async_pool_connections",
    "async_pool_counts",
    "async_pool_in_use",
    "async_pool_total",
]


# --- pool counts ---------------------------------------------------------


def async_pool_counts(pool: Any) -> tuple[int, int]:
    """``(active, idle)`` of an asyncio pool (plain or blocking)."""
    return len(pool._in_use_connections), len(pool._available_connections)


def async_pool_total(pool: Any) -> int:
    """Connections the pool holds now (asyncio pools keep no created counter)."""
    return len(async_pool_connections(pool))


def async_pool_connections(pool: Any) -> list[Any]:
    """Every connection object an asyncio pool holds (none known if this
    redis-py renamed its lists: see ``rl.capabilities()``)."""
    return [*getattr(pool, "_available_connections", ()), *async_pool_in_use(pool)]


def async_pool_in_use(pool: Any) -> list[Any]:
    """The connections an asyncio pool has checked out now."""
    return list(getattr(pool, "_in_use_connections", ()))


# --- pool overrides ------------------------------------------------------


def _checkout_hook(original: Any) -> Any:
    """``get_connection`` for ``original`` (``None``: the lifecycle pools'):
    a plain function that returns redis-py's own coroutine, untouched, when
    no checkout event is wanted, and a coroutine of ours around it otherwise."""

    def get_connection(self: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        state = pool_state_by_id(id(self))
        if state is None:
            method = original or next_method(self, AsyncPoolHooks, "get_connection")
            return method(self, *args, **kwargs)  # type: ignore[no-any-return]
        call = original or state.redis_get_connection
        delivery = state.delivery
        if delivery.wants_per_command:
            return _get_connection(self, state, call, args, kwargs)
        if delivery.watch_exhaustion:
            return _guarded_get_connection(self, state, call, args, kwargs)
        return call(self, *args, **kwargs)  # type: ignore[no-any-return]

    return get_connection


def _release_hook(original: Any) -> Any:
    """``release`` for ``original`` (``None``: the lifecycle pools'), as
    :func:`_checkout_hook`."""

    def release(self: Any, connection: Any) -> Coroutine[Any, Any, None]:
        state = pool_state_by_id(id(self))
        if state is None:
            method = original or next_method(self, AsyncPoolHooks, "release")
            return method(self, connection)  # type: ignore[no-any-return]
        call = original or state.redis_release
        if not state.delivery.wants_per_command:
            return call(self, connection)  # type: ignore[no-any-return]
        return _release(self, state, call, connection)

    return release


def hooked_make_connection(pool: Any, state: PoolState, original: Any) -> Any:
    # Not yet in the pool's sets: get_available_connection adds it next.
    return sync_make_connection(pool, state, original, uncounted=1)


def hooked_reset(pool: Any, state: PoolState, original: Any) -> None:
    try:
        dropped = len(async_pool_connections(pool))
    except Exception:  # reset() before the pool's lists exist
        dropped = 0
    state.resetting = True
    try:
        original(pool)
    finally:
        state.resetting = False
    delivery = state.delivery
    if PoolResetEvent in delivery.wanted:
        emit(delivery, PoolResetEvent(time(), state.origin, "explicit", dropped))


class AsyncPoolHooks:
    """The pool hooks as methods, for the lifecycle pools of
    :mod:`redis_lifecycle.asyncio` (real subclasses built with it).

    ``get_connection`` and ``release`` are the functions the class-level
    patches use too (their state is looked up in ``POOLS``); until the pool is
    attached (while redis-py's ``__init__`` runs) and after ``uninstrument``
    they only pass through to the next class in the pool's MRO.
    No ``__slots__``: a slotted mixin would change the instance layout.
    """

    get_connection = _checkout_hook(None)
    release = _release_hook(None)

    def make_connection(self) -> Any:
        state = POOLS.get(id(self))
        if state is None:
            return super().make_connection()  # type: ignore[misc]
        return hooked_make_connection(self, state, state.redis_make_connection)

    def reset(self) -> None:
        state = POOLS.get(id(self))
        if state is None:
            return super().reset()  # type: ignore[misc, no-any-return]
        hooked_reset(self, state, state.redis_reset)
        return None


async def _get_connection(
    pool: Any, state: PoolState, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    delivery = state.delivery
    started = perf_counter()
    pending = state.waiting
    try:
        if state.blocking and must_wait_async(pool):  # nothing free: it waits
            connection = await wait_async(pool, state, call, args, kwargs)
        else:
            connection = await (call(pool, *args, **kwargs) if args or kwargs else call(pool))
    except BaseException as error:
        report_exhaustion(state, started, error)
        raise
    now = perf_counter()
    conn_state = conn_state_of(id(connection)) or register_connection(connection, state)
    conn_state.checked_out_at = now
    if delivery.leak_threshold is not None:
        conn_state.leak = record_async()
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
        # PoolConnectionAcquiredEvent(...), built as the sync hook does.
        event = new_event(PoolConnectionAcquiredEvent)
        event._timestamp = time()
        event._origin = conn_state.origin
        event._wait_time = wait_time
        event._pending = pending
        if state.counts is async_pool_counts:  # inlined for the common pool
            event._active_connections = len(pool._in_use_connections)
            event._idle_connections = len(pool._available_connections)
        else:
            event._active_connections, event._idle_connections = state.counts(pool)
        emit_acquired = delivery.emit_acquired  # as in the sync hook
        try:
            emit_acquired(event)
        except CallbackError:
            await pool.release(connection)
            raise
    return connection


async def _guarded_get_connection(
    pool: Any, state: PoolState, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Checkout when only ``pool_exhausted`` is wanted."""
    started = perf_counter()
    try:
        return await call(pool, *args, **kwargs)
    except BaseException as error:
        report_exhaustion(state, started, error)
        raise


async def _release(pool: Any, state: PoolState, call: Any, connection: Any) -> None:
    conn_state = conn_state_of(id(connection))
    if conn_state is None or conn_state.checked_out_at is None:
        # Not ours, or being reported already (BlockingConnectionPool's
        # super().release).
        await call(pool, connection)
        return
    # Taken before the connection goes back, as in the sync release.
    checked_out_at = conn_state.checked_out_at
    conn_state.checked_out_at = None
    held_time = perf_counter() - checked_out_at
    leak = conn_state.leak
    conn_state.leak = None
    try:
        await call(pool, connection)
    except BaseException:
        conn_state.checked_out_at = checked_out_at  # still out: its release comes later
        conn_state.leak = leak
        raise
    reported_leak = leak is not None and leak[3]
    if reported_leak:
        leak_returned(conn_state, leak, held_time)
    delivery = state.delivery
    sinks = delivery.sinks
    if sinks:
        # CommandFigures.add_held, inlined (see _accumulate.py).
        figures = state.figures
        helds = figures.held
        helds.append(held_time)
        if len(helds) >= FLUSH_AT:
            figures.flush(sinks)
    if PoolConnectionReleasedEvent in delivery.wanted:
        event = new_event(PoolConnectionReleasedEvent)  # as in _get_connection
        event._timestamp = time()
        event._origin = conn_state.origin
        event._held_time = held_time
        event._reported_leak = reported_leak
        if state.counts is async_pool_counts:  # inlined for the common pool
            event._active_connections = len(pool._in_use_connections)
            event._idle_connections = len(pool._available_connections)
        else:
            event._active_connections, event._idle_connections = state.counts(pool)
        emit_released = delivery.emit_released
        emit_released(event)


#: Class-level patches of the asyncio pools for the pools instrument()
#: attached, as in the sync hooks: make_connection/reset while one is
#: attached; get_connection/release only while a delivery wants them.
ASYNC_POOL_PATCHER, ASYNC_CHECKOUT_PATCHER, ASYNC_RELEASE_PATCHER = pool_patchers(
    lambda: (aconn.ConnectionPool, aconn.BlockingConnectionPool),
    make_connection=hooked_make_connection,
    reset=hooked_reset,
    checkout=_checkout_hook,
    release=_release_hook,
)


# --- connection wrappers -------------------------------------------------
#
# Each wrapper is a plain function: it looks the connection up and, when the
# connection is not instrumented (or the hook has nothing to do), returns
# redis-py's coroutine unchanged. Only instrumented calls get a coroutine of
# ours around redis-py's.


def _socket_attempt(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``_connect``: one socket attempt (TCP, TLS or unix)."""
    state = CONNECTIONS.get(id(instance))
    if state is None or state.in_connect or state.pool_state is None:
        return wrapped(*args, **kwargs)
    return _socket_attempt_async(wrapped, state, args, kwargs)


async def _socket_attempt_async(wrapped: Any, state: ConnState, args: Any, kwargs: Any) -> Any:
    pool_state = state.pool_state
    assert pool_state is not None
    delivery = pool_state.delivery
    remember_loop(delivery)
    if state.pending_close is not None:  # the close this reconnect follows
        flush_close(state, None)
    state.in_connect = True
    try:
        state.connect_started = perf_counter()
        if ConnectionCreatedEvent in delivery.wanted:
            emit_quietly(delivery, ConnectionCreatedEvent(time(), state.origin))
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as error:
            # redis-py 8.1's unix ``_connect`` runs the handshake itself: a failure
            # there was reported (phase handshake, which clears connect_started).
            reported = state.connect_started is None
            state.connect_started = None
            if (
                not reported
                and ConnectionErrorEvent in delivery.wanted
                and isinstance(error, Exception)
            ):
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
    return _handshake_async(wrapped, state, args, kwargs)


async def _handshake_async(wrapped: Any, state: ConnState, args: Any, kwargs: Any) -> Any:
    pool_state = state.pool_state
    assert pool_state is not None
    delivery = pool_state.delivery
    try:
        result = await wrapped(*args, **kwargs)
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


def _disconnect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``disconnect``: a connected connection's streams closing.

    The error is read here, synchronously, because redis-py calls
    ``disconnect`` from inside its ``except`` blocks: ``sys.exc_info()`` is
    the failure that made it close the connection.
    """
    state = CONNECTIONS.get(id(instance))
    if state is None:
        return wrapped(*args, **kwargs)
    if not state.connected:
        if state.pending_close is not None:  # redis-py's failure handler
            flush_close_on_disconnect(state, args, kwargs)
        return wrapped(*args, **kwargs)
    try:
        error = disconnect_error(args, kwargs, instance) or _probe_error(instance)
        defer = may_be_rewrapped(error)
        eof = error is not None and _eof_seen(instance)
    except Exception:
        error, defer, eof = None, False, False
    return _disconnect_async(wrapped, instance, state, error, (defer, eof), args, kwargs)


def _eof_seen(connection: Any) -> bool:
    """Whether the server's end of the stream (a FIN) reached the
    connection's reader, all data before it read: a server close, whatever
    the error says (the checkout probe raises "Connection has data" then)."""
    reader = getattr(connection, "_reader", None)
    return reader is not None and bool(reader.at_eof())


def _probe_error(connection: Any) -> BaseException | None:
    """The checkout probe's verdict on ``connection``: the pool's
    ``ensure_connection`` raises ``ConnectionError("Connection has data")``
    itself (a killed unix socket reads as data), then disconnects it. The
    error went through no method of the connection, so
    :func:`disconnect_error` cannot tell it is about this one; the probe's own
    frame (its ``connection`` argument) can."""
    error = sys.exc_info()[1]
    if not isinstance(error, Exception):
        return None
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        if (
            frame.f_code.co_name in _PROBES
            and frame.f_globals.get("__name__") == aconn.__name__
            and frame.f_locals.get("connection") is connection
        ):
            return error
        traceback = traceback.tb_next
    return None


_PROBES = frozenset({"ensure_connection", "get_connection"})


async def _disconnect_async(
    wrapped: Any,
    instance: Any,
    state: ConnState,
    error: BaseException | None,
    flags: tuple[bool, bool],
    args: Any,
    kwargs: Any,
) -> Any:
    defer, eof = flags
    try:
        return await wrapped(*args, **kwargs)
    finally:
        # Also when closing timed out or was cancelled: redis-py drops the
        # streams in a ``finally`` of its own.
        try:
            if state.connected and getattr(instance, "_writer", None) is None:
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


def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``_close``: the synchronous close used by ``__del__``, by
    ``Redis.__del__`` and (8.1) by ``disconnect`` outside a task."""
    state = CONNECTIONS.get(id(instance))
    if state is None:
        return wrapped(*args, **kwargs)
    if not state.connected:
        if state.pending_close is not None:
            try:
                flush_close(state, error_in_flight())
            except Exception:
                internal_error("_close")
        return wrapped(*args, **kwargs)
    try:
        error = error_in_flight(instance)
    except Exception:
        error = None
    result = wrapped(*args, **kwargs)
    try:
        if state.connected and getattr(instance, "_writer", None) is None:
            report_disconnect(instance, state, error, False, perf_counter())
    except Exception:
        internal_error("_close")
    return result


def _send_ping(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``_send_ping``: redis-py's own health check. A close while it
    runs (redis-py closes on the failed read before ``_ping_failed`` does) is
    labelled ``health_check_failed``, as for sync connections."""
    state = CONNECTIONS.get(id(instance))
    if state is None or state.pool_state is None:
        return wrapped(*args, **kwargs)
    return _send_ping_async(wrapped, state, args, kwargs)


async def _send_ping_async(wrapped: Any, state: ConnState, args: Any, kwargs: Any) -> Any:
    check_recursion(_send_ping_async.__code__)
    if state.pending_close is not None:
        flush_close(state, None)
    # redis-py's check inside a (re)connect's handshake (its socket is open)
    in_handshake = state.connect_started is not None and not state.connected
    started = perf_counter()
    state.in_health_check = True
    try:
        result = await wrapped(*args, **kwargs)
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


def _connection_targets() -> Iterable[tuple[type, str, Any]]:
    base = aconn.AbstractConnection
    handshake = (
        "on_connect_check_health" if "on_connect_check_health" in base.__dict__ else "on_connect"
    )
    # SSLConnection inherits Connection._connect (ClassPatcher skips a class
    # that does not define the method itself).
    for cls in (aconn.Connection, aconn.SSLConnection, aconn.UnixDomainSocketConnection):
        yield cls, "_connect", _socket_attempt
    yield base, handshake, _handshake
    yield base, "disconnect", _disconnect
    yield base, "_close", _close
    yield base, "_send_ping", _send_ping
    # mark_for_reconnect is a plain method in both flavours: the sync wrapper fits.
    yield base, "mark_for_reconnect", _mark_for_reconnect
    yield from async_pubsub_targets()
    yield from maint_targets_async()


#: The class-level asyncio connection wrappers, shared by every instrumented asyncio pool.
CONNECTION_PATCHER = ClassPatcher(_connection_targets)

ASYNC_POOL = PoolKind(
    hooks=AsyncPoolHooks,
    patcher=CONNECTION_PATCHER,
    counts=async_pool_counts,
    total=async_pool_total,
    connections=async_pool_connections,
    in_use=async_pool_in_use,
    is_async=True,
    pool_patcher=ASYNC_POOL_PATCHER,
    hot_patchers=(ASYNC_CHECKOUT_PATCHER, ASYNC_RELEASE_PATCHER),
)
#: Blocking pools count the same way; only their class differs (the lifecycle
#: pool puts the hooks in front of ``BlockingConnectionPool``).
ASYNC_BLOCKING_POOL = PoolKind(
    hooks=AsyncPoolHooks,
    patcher=CONNECTION_PATCHER,
    counts=async_pool_counts,
    total=async_pool_total,
    connections=async_pool_connections,
    in_use=async_pool_in_use,
    is_async=True,
    pool_patcher=ASYNC_POOL_PATCHER,
    hot_patchers=(ASYNC_CHECKOUT_PATCHER, ASYNC_RELEASE_PATCHER),
    blocking=True,
)


def async_kind_for(pool: Any) -> PoolKind:
    """The kind of an asyncio ``ConnectionPool`` (blocking or not)."""
    kind = ASYNC_BLOCKING_POOL if isinstance(pool, aconn.BlockingConnectionPool) else ASYNC_POOL
    if has_attributes(pool, ("_in_use_connections", "_available_connections")):
        return kind
    return kind.without_counts()
