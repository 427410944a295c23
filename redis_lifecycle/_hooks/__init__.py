"""Shared pieces of the sync and asyncio hooks: emitting safely, reading
errors and close reasons, and the class-level wrappers' bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from time import perf_counter, time
from typing import Any

import wrapt

from .._delivery import Delivery
from ..errors import CallbackError
from ..events import (
    CloseReason,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    LifecycleEvent,
)
from . import state as _state
from .originals import unpatched
from .state import CONNECTIONS, POOLS, ConnState

__all__ = [
    "PUBSUB_HEALTH_COMMAND",
    "ClassPatcher",
    "MethodPatcher",
    "STACK_ROOM",
    "check_recursion",
    "classify_close",
    "emit",
    "emit_quietly",
    "eof_seen",
    "error_in_flight",
    "fail_pending_pings",
    "flush_close",
    "flush_close_on_disconnect",
    "flush_deferred_pings",
    "internal_error",
    "may_be_rewrapped",
    "next_method",
    "pool_patchers",
    "report_ping",
    "unpatched",
]

logger = logging.getLogger("redis_lifecycle")

#: The command as redis-py sends PubSub's health check, and as events name it.
PUBSUB_HEALTH_COMMAND = "PING redis-py-health-check"

_SERVER_CLOSED_MESSAGES = ("Connection closed by server.",)
_SERVER_CLOSED_TYPES: tuple[type[BaseException], ...] = (
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
    EOFError,
)
_MARK_TO_CLOSE = {"fork": CloseReason.FORK, "pool_reset": CloseReason.POOL_RESET}


def internal_error(where: str) -> None:
    """Log a bug in redis_lifecycle itself; redis-py carries on regardless."""
    logger.error("redis_lifecycle internal error in %s", where, exc_info=True)


def emit(delivery: Delivery, event: LifecycleEvent) -> None:
    """Deliver ``event``; a :class:`CallbackError` (strategy ``raise``) propagates."""
    delivery.emit(event)


def emit_quietly(delivery: Delivery, event: LifecycleEvent) -> None:
    """Deliver ``event`` where raising would leave redis-py inconsistent (inside
    its pool lock, while it handles an error of its own): a
    :class:`CallbackError` is logged instead of raised."""
    try:
        delivery.emit(event)
    except CallbackError as error:
        delivery.error_handler.log(error)
    except Exception:
        internal_error(f"delivering {type(event).__name__}")


def _passes_through_redis(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module == "redis" or module.startswith("redis."):
            return True
        traceback = traceback.tb_next
    return False


def _is_idle(connection: Any) -> bool:
    """Whether ``connection`` sits idle in its instrumented pool (so no
    command of its own can have failed just now). Identity, not ``==``."""
    state = CONNECTIONS.get(id(connection))
    pool = state.pool_state.pool_ref() if state is not None and state.pool_state else None
    if pool is None:
        return False
    if isinstance(pool, deque):  # an asyncio cluster node's ``_free``
        idle: Any = pool
    else:
        idle = getattr(pool, "_available_connections", None)
        if idle is None:  # BlockingConnectionPool: a LifoQueue of connections and None
            idle = getattr(getattr(pool, "pool", None), "queue", ())
    return any(candidate is connection for candidate in list(idle))


def error_in_flight(connection: Any = None) -> BaseException | None:
    """The exception redis-py is handling right now, if it comes from redis-py
    or the socket layer below it (``sys.exc_info()`` inside a hook).

    With ``connection``, not if that connection is idle in its pool: a
    cluster client closing the *other* nodes' free connections while it
    handles one node's error must not pin that error on them.
    """
    error = sys.exc_info()[1]
    if error is None or not isinstance(error, Exception):
        return None
    if connection is not None and (_is_idle(connection) or _raised_by_another(error, connection)):
        return None
    if isinstance(error, (OSError, EOFError)) or _passes_through_redis(error):
        return error
    return None


def _raised_by_another(error: BaseException, connection: Any) -> bool:
    """Whether ``error`` was raised inside a method of another tracked
    connection and of none of ``connection``'s: an asyncio cluster client
    re-reading its topology after one node's connect failed closes the
    connections it uses meanwhile with that failure still in flight (seen on
    Python 3.10), and it is not theirs."""
    another = False
    traceback = error.__traceback__
    while traceback is not None:
        owner = traceback.tb_frame.f_locals.get("self")
        if owner is connection:
            return False
        if owner is not None and id(owner) in CONNECTIONS:
            another = True
        traceback = traceback.tb_next
    return another


def disconnect_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], connection: Any = None
) -> BaseException | None:
    """The error a ``disconnect(...)`` call carries: ``error=`` (7.2+), a
    positional exception (8.1's connect retry), or the one in flight."""
    error = kwargs.get("error")
    if isinstance(error, BaseException):
        return error
    if args and isinstance(args[0], BaseException):
        return args[0]
    return error_in_flight(connection)


def is_server_closed(error: BaseException) -> bool:
    if isinstance(error, _SERVER_CLOSED_TYPES):
        return True
    return str(error) in _SERVER_CLOSED_MESSAGES


def classify_close(
    connection: Any,
    state: ConnState,
    error: BaseException | None,
    health_check_failed: bool,
    eof: bool = False,
) -> CloseReason:
    """Why a connection is being closed, from what the hooks saw: ``eof``
    says the peer's end of the stream (a FIN) had been seen on the socket,
    which is a server close whatever message redis-py's error carries (the
    asyncio checkout probe's "Connection has data")."""
    pid = getattr(connection, "pid", None)
    if pid is not None and pid != os.getpid():
        return CloseReason.FORK
    if state.mark_reason is not None:
        return _MARK_TO_CLOSE.get(state.mark_reason, CloseReason.APPLICATION)
    pool_state = state.pool_state
    if pool_state is not None and pool_state.resetting:
        return CloseReason.POOL_RESET
    if health_check_failed or state.in_health_check:
        return CloseReason.HEALTH_CHECK_FAILED
    if error is not None:
        if eof or is_server_closed(error):
            return CloseReason.SERVER_CLOSED
        return CloseReason.ERROR
    return CloseReason.APPLICATION


def may_be_rewrapped(error: BaseException | None) -> bool:
    """Whether ``error``, read by a ``disconnect`` hook, is the exception
    redis-py is handling right now and one it may still replace with one of
    its own after closing the connection on it: ``raise TimeoutError("Timeout
    reading from HOST")`` inside ``except socket.timeout`` (every version) or
    ``except TimeoutError`` (8.2), ``raise ConnectionError(...) from e``
    inside ``except OSError``. The caller catches the new one, so the close
    is reported once it is known (see :func:`report_disconnect`)."""
    if error is None or error is not sys.exc_info()[1]:
        return False
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(error, (OSError, asyncio.TimeoutError, RedisTimeoutError))


class PendingClose:
    """A close whose report waits for the exception the caller will get."""

    __slots__ = ("error", "reason", "timestamp")

    def __init__(self, reason: CloseReason, error: BaseException, timestamp: float) -> None:
        self.reason = reason
        self.error = error
        self.timestamp = timestamp


def report_disconnect(
    connection: Any,
    state: ConnState,
    error: BaseException | None,
    health_check_failed: bool,
    now: float,
    *,
    defer: bool = False,
    eof: bool = False,
) -> None:
    """Record a close, and emit ``error`` (when the close carries one) then
    ``disconnected`` -- now, or, with ``defer``, when :func:`flush_close` is
    given the exception the caller receives.

    redis-py closes a connection inside its ``except`` block, *before* it
    raises the exception its caller gets, and may raise a new one then
    (:func:`may_be_rewrapped`): the events must carry that one (the lower
    error stays reachable as its ``__context__``/``__cause__``). Every
    redis-py path that lets such an error out (commands, pipelines, PubSub,
    health checks, cluster nodes) runs a failure handler that calls
    ``disconnect()`` again with it in flight: that call flushes the report.
    A close during a health check waits too, so that the failed check comes
    before the close it caused. Whatever comes first on the connection after
    that (a reconnect, a health check) flushes it too, so events still arrive
    in order.

    Never raises: redis-py calls disconnect from places (loops over a pool,
    ``release``, ``__del__``) that a raising callback would leave half done.
    """
    reason = classify_close(connection, state, error, health_check_failed, eof)
    state.connected = False
    state.disconnected_at = now
    state.mark_reason = None
    if state.pool_state is None:
        return
    if error is not None and (defer or state.in_health_check) and reason is not CloseReason.FORK:
        state.pending_close = PendingClose(reason, error, time())
        return
    _deliver_close(state, reason, error, time())


def flush_close(state: ConnState, caught: BaseException | None) -> None:
    """Deliver ``state``'s pending close (if any) with ``caught`` as its
    error when ``caught`` is, or was raised from, the error it closed on."""
    pending = state.pending_close
    if pending is None:
        return
    state.pending_close = None
    error = caught if caught is not None and _raised_from(caught, pending.error) else pending.error
    # A close a health check caused is stamped when reported, after the
    # check: its events then sort in the order they are delivered.
    timestamp = time() if pending.reason is CloseReason.HEALTH_CHECK_FAILED else pending.timestamp
    _deliver_close(state, pending.reason, error, timestamp)


def flush_close_on_disconnect(
    state: ConnState, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """A ``disconnect(...)`` call on a connection already closed: redis-py's
    failure handler, with the caller's exception given or in flight."""
    try:
        flush_close(state, disconnect_error(args, kwargs))
    except Exception:
        internal_error("disconnect")


def _report_forgotten_close(state: ConnState) -> None:
    try:
        flush_close(state, None)
    except Exception:
        internal_error("reporting the close of a forgotten connection")


_state.report_pending_close = _report_forgotten_close


def _raised_from(error: BaseException, cause: BaseException) -> bool:
    """Whether ``error`` is ``cause`` or was raised while handling it."""
    for _ in range(8):  # redis-py wraps once or twice; a chain is finite anyway
        if error is cause:
            return True
        following = error.__cause__ or error.__context__
        if following is None:
            return False
        error = following
    return False


def _deliver_close(
    state: ConnState, reason: CloseReason, error: BaseException | None, timestamp: float
) -> None:
    pool_state = state.pool_state
    if pool_state is None:
        return
    delivery = pool_state.delivery
    wanted = delivery.wanted
    if error is not None and reason is not CloseReason.FORK and ConnectionErrorEvent in wanted:
        phase = "health_check" if reason is CloseReason.HEALTH_CHECK_FAILED else "io"
        emit_quietly(delivery, ConnectionErrorEvent(timestamp, state.origin, error, phase))
    if state.health_pings:  # PubSub health pings this close leaves unanswered
        fail_pending_pings(state, None if reason is CloseReason.FORK else error)
    if ConnectionDisconnectedEvent in wanted:
        emit_quietly(delivery, ConnectionDisconnectedEvent(timestamp, state.origin, reason, error))


def report_ping(
    state: ConnState, started: float, error: BaseException | None, in_handshake: bool = False
) -> None:
    """Emit ``health_check`` for redis-py's own PING (``_send_ping``) on
    ``state``'s connection, begun at ``perf_counter()`` ``started``. A failed
    one is delivered quietly: redis-py is raising its error. One sent
    ``in_handshake`` (before the connection was connected) waits for
    :func:`flush_deferred_pings`."""
    pool_state = state.pool_state
    if pool_state is None:
        return
    delivery = pool_state.delivery
    if ConnectionHealthCheckEvent not in delivery.wanted:
        return
    latency = (perf_counter() - started) * 1000.0
    if in_handshake:
        # A ping inside the handshake (redis-py checks a reconnected socket's
        # health before its first command): reported, and stamped, once the
        # handshake is over, so that the checks on a new socket follow its
        # reconnect.
        if state.deferred_pings is None:
            state.deferred_pings = []
        state.deferred_pings.append((latency, error))
        return
    event = ConnectionHealthCheckEvent(time(), state.origin, error is None, latency, "PING", error)
    if error is None:
        emit(delivery, event)
    else:
        emit_quietly(delivery, event)


#: Frames of room below Python's recursion limit that the hooks keep on
#: redis-py's recursive reconnect path (see :func:`check_recursion`): more
#: than delivering an event and redis-py's deepest call from there need.
STACK_ROOM = 150


def check_recursion(wrapper: Any) -> None:
    """Raise ``RecursionError`` where redis-py is recursing through a hook.

    redis-py 5.x recurses when every handshake reply is cut under ``Retry``
    and ``health_check_interval``: connect, handshake, health check, PING,
    connect, ... until Python's recursion limit stops it. The hooks' frames
    on that path move where the limit is met: into redis-py's connect, whose
    asyncio version turns any error there into a retryable
    ``ConnectionError`` (the client then retries on, at every level, where
    bare redis-py gives up), or into a callback. So when ``wrapper`` (the
    code of a hook's function) is already on this stack, i.e. redis-py
    re-entered it, and fewer than :data:`STACK_ROOM` frames are left below
    the limit, the hook raises the ``RecursionError`` itself, which every
    redis-py version lets through to the caller, as without the hooks. The
    caller gets the same exception; the number of connects before it differs
    (docs/guides/reconnection.md). Walks the stack: only handshakes and
    redis-py's health checks ask, never a command.
    """
    frame: Any = sys._getframe(2)  # above the hook's own frame
    while frame is not None:
        if frame.f_code is wrapper:
            break
        frame = frame.f_back
    else:
        return  # not re-entered: no recursion through this hook
    # Frames alone do not tell the depth Python counts (C calls, such as
    # wrapt's, count too): try the room.
    if not _has_room(STACK_ROOM):
        raise RecursionError("maximum recursion depth exceeded (redis-py's reconnect recursion)")


def _has_room(frames: int) -> bool:
    """Whether ``frames`` more nested Python calls fit below the limit."""

    def dive(left: int) -> bool:
        return True if left <= 0 else dive(left - 1)

    try:
        return dive(frames)
    except RecursionError:
        return False


def flush_deferred_pings(state: ConnState) -> None:
    """Deliver the ``health_check`` events :func:`report_ping` held back
    during the handshake. Never raises: the handshake's outcome is already
    being reported."""
    pings = state.deferred_pings
    if not pings:
        return
    state.deferred_pings = None
    pool_state = state.pool_state
    if pool_state is None or ConnectionHealthCheckEvent not in pool_state.delivery.wanted:
        return
    for latency, error in pings:
        event = ConnectionHealthCheckEvent(
            time(), state.origin, error is None, latency, "PING", error
        )
        emit_quietly(pool_state.delivery, event)


def eof_seen(sock: Any) -> bool:
    """Whether the peer closed its end of a sync socket (a FIN waits to be
    read): a peek that returns no byte. Never blocks, never consumes data."""
    if sock is None:
        return False
    try:
        # A socket with a timeout waits for data before any recv: ask first.
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        peeked: bytes = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except Exception:  # no data yet, a reset, a TLS socket (no peeking): not an EOF
        return False
    return peeked == b""


class ClassPatcher:
    """Installs ``wrapt`` function wrappers on redis-py classes while at least
    one pool uses them, and removes each exactly when the last one goes.

    ``targets`` lists ``(class, method name, wrapper function)``; a method a
    class does not define itself (feature detection: ``connect_check_health``
    from 6.0, ``mark_for_reconnect`` from 7.0) is skipped.
    """

    def __init__(self, targets: Callable[[], Iterable[tuple[type, str, Any]]]) -> None:
        self._targets = targets
        self._lock = threading.Lock()
        self._users = 0
        self._installed: list[tuple[type, str, Any]] = []

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    def add_user(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._install()

    def remove_user(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                self._uninstall()

    def _install(self) -> None:
        for cls, name, wrapper in self._targets():
            original = cls.__dict__.get(name)
            if original is None:
                continue
            wrapped = wrapt.FunctionWrapper(original, wrapper)
            setattr(cls, name, wrapped)
            self._installed.append((cls, name, wrapped))

    def _uninstall(self) -> None:
        for cls, name, wrapped in reversed(self._installed):
            if cls.__dict__.get(name) is wrapped:
                setattr(cls, name, wrapped.__wrapped__)
            else:  # someone wrapped on top of us: leave theirs working
                logger.warning(
                    "redis_lifecycle: %s.%s was wrapped again by another library; "
                    "leaving the wrapper chain in place (it is inert now)",
                    cls.__qualname__,
                    name,
                )
        self._installed.clear()


#: Per (pool class, mixin, method name): see next_method.
_next_methods: dict[tuple[type, type, str], Any] = {}


def next_method(pool: Any, mixin: type, name: str) -> Any:
    """``name`` as defined after ``mixin`` in ``pool``'s MRO (what ``super()``
    would find there), through our class-level patches: what a lifecycle
    pool's hook calls while the pool is not attached (during redis-py's
    ``__init__``, after ``uninstrument``). Cached per class."""
    cls = type(pool)
    key = (cls, mixin, name)
    try:
        return _next_methods[key]
    except KeyError:
        pass
    mro = cls.__mro__
    method = None
    for klass in mro[mro.index(mixin) + 1 :]:
        if name in klass.__dict__:
            function = klass.__dict__[name]
            method = getattr(function, "__rl_original__", function)
            break
    _next_methods[key] = method
    return method


class MethodPatcher:
    """Replaces methods of redis-py classes with plain functions (cheaper to
    call than ``wrapt`` wrappers: this is for the per-command pool methods)
    while at least one pool uses them, and restores each original exactly.

    ``targets`` lists ``(class, method name, factory)``; ``factory(original)``
    returns the replacement. Methods a class does not define itself are
    skipped (feature detection).
    """

    def __init__(self, targets: Callable[[], Iterable[tuple[type, str, Any]]]) -> None:
        self._targets = targets
        self._lock = threading.Lock()
        self._users = 0
        self._installed: list[tuple[type, str, Any, Any]] = []

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    def add_user(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                for cls, name, factory in self._targets():
                    original = cls.__dict__.get(name)
                    if original is None:
                        continue
                    replacement = factory(original)
                    replacement.__rl_original__ = original
                    replacement.__wrapped__ = original
                    replacement.__doc__ = getattr(original, "__doc__", None)
                    replacement.__qualname__ = f"{cls.__qualname__}.{name}"
                    setattr(cls, name, replacement)
                    self._installed.append((cls, name, original, replacement))

    def remove_user(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            for cls, name, original, replacement in reversed(self._installed):
                if cls.__dict__.get(name) is replacement:
                    setattr(cls, name, original)
                else:
                    logger.warning(
                        "redis_lifecycle: %s.%s was replaced again by another library; "
                        "leaving it in place (our part of it is inert now)",
                        cls.__qualname__,
                        name,
                    )
            self._installed.clear()


def _attached_only(name: str, body: Callable[[Any, Any, Any], Any]) -> Any:
    """A patch factory for a rare pool method: ``body(pool, state, original)``
    for the pools in ``POOLS``, redis-py's ``original`` for every other pool."""

    def factory(original: Any) -> Any:
        def method(self: Any) -> Any:
            state = POOLS.get(id(self))
            if state is None:
                return original(self)
            return body(self, state, original)

        method.__name__ = method.__qualname__ = name
        return method

    return factory


def pool_patchers(
    classes: Callable[[], tuple[type, ...]],
    *,
    make_connection: Callable[[Any, Any, Any], Any],
    reset: Callable[[Any, Any, Any], Any],
    checkout: Callable[[Any], Any],
    release: Callable[[Any], Any],
) -> tuple[MethodPatcher, MethodPatcher, MethodPatcher]:
    """The class-level patches of one family of pools (sync or asyncio), for
    the pools ``instrument()`` attached (looked up in ``POOLS`` by id):

    * ``make_connection`` and ``reset`` (the hook bodies given), installed
      while at least one such pool is attached;
    * ``get_connection`` and ``release`` (``checkout(original)`` and
      ``release(original)`` make them), each installed only while some
      attached pool's delivery wants them (see ``attach._HotPatches``).
    """
    make_factory = _attached_only("make_connection", make_connection)
    reset_factory = _attached_only("reset", reset)

    def rare() -> Iterable[tuple[type, str, Any]]:
        for cls in classes():
            yield cls, "make_connection", make_factory
            yield cls, "reset", reset_factory

    def checkouts() -> Iterable[tuple[type, str, Any]]:
        for cls in classes():
            yield cls, "get_connection", checkout

    def releases() -> Iterable[tuple[type, str, Any]]:
        for cls in classes():
            yield cls, "release", release

    return MethodPatcher(rare), MethodPatcher(checkouts), MethodPatcher(releases)


def fail_pending_pings(state: ConnState, error: BaseException | None) -> None:
    """A connection closed: its unanswered pings will never be answered.

    With an ``error`` each is reported unhealthy with it; a close without one
    (the application's ``PubSub.close()``) just forgets them. Never raises.
    """
    pending = state.health_pings
    if not pending:
        return
    state.health_pings = None
    pool_state = state.pool_state
    if error is None or pool_state is None:
        return
    delivery = pool_state.delivery
    if ConnectionHealthCheckEvent not in delivery.wanted:
        return
    now = perf_counter()
    for started in pending:
        emit_quietly(
            delivery,
            ConnectionHealthCheckEvent(
                time(),
                state.origin,
                False,
                (now - started) * 1000.0,
                PUBSUB_HEALTH_COMMAND,
                error,
            ),
        )
