"""Retries: ``retry`` and ``retries_exhausted`` from redis-py's ``Retry``.

redis-py retries through ``Retry.call_with_retry(do, fail, ...)`` (sync
``redis.retry.Retry``, asyncio ``redis.asyncio.retry.Retry``): it calls
``do()``; on a supported error it counts a failure, calls ``fail(error)``
(redis-py's failure handler: it closes the connection), raises once the
failures outnumber ``retries``, else sleeps ``backoff.compute(failures)``
seconds and calls ``do()`` again. The same loop on 5.0, 7.4 and 8.x; 7.4
adds ``is_retryable=`` (an error it refuses raises without ``fail``), 8.x
``with_failure_count=`` (``fail(error, count)``) and the instance checker
``_is_retryable`` (an error it refuses runs ``fail`` and raises).

Each connection holds its own ``Retry`` (redis-py deep-copies the one it is
given), and every caller passes closures that hold the connection: the
client's ``do`` is ``lambda: self._send_command_parse_response(conn,
command_name, ...)``, the connect's ``lambda: self.connect_check_health(...)``
or the bound ``self._connect``, PubSub's ``fail`` holds ``conn``. So the
connection, and the command's name, are read from ``do`` and ``fail`` --
only when an attempt fails.

The hook replaces ``call_with_retry`` on the two classes with a function
that passes ``fail`` wrapped, and nothing else, while some attached pool
wants either event (:class:`RetryWatch`); a call that never fails costs
one extra frame and one closure (redis-py 7+ makes two such calls per
pooled command: the checkout's ``connect()`` and the command), with
parameters spelled out per redis-py signature, since forwarding a keyword
through ``**kwargs`` would cost several times more. When the wrapped ``fail`` has run
redis-py's handler and ``Retry`` may go on, it lends the ``Retry`` a
one-shot backoff (:class:`_BackoffProbe`) that records the value
``compute`` returns, puts the real backoff back, and emits ``retry``
before redis-py sleeps: exactly one event per retry made, never one for a
failure that is not retried. Lending is safe because a connection's
``Retry`` serves one thread or task at a time, and nothing runs between
the handler's return and ``compute`` but redis-py's own budget check (a
``Retry`` that raises there gets its backoff back in the same call's
``except``). ``retries_exhausted`` is emitted when
``Retry`` raises the error of a failure that outnumbered its ``retries``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable
from time import time
from typing import Any

from ..events import ConnectionRetriesExhaustedEvent, ConnectionRetryEvent
from . import MethodPatcher, emit_quietly, internal_error
from .state import CONNECTIONS, ConnState

__all__ = ["PATCHER", "RetryWatch", "unwatch", "watch"]

RETRY_EVENTS = frozenset({ConnectionRetryEvent, ConnectionRetriesExhaustedEvent})

#: ``do`` callables (bound methods, or the function a lambda calls) that
#: open a connection, and the one that pings it.
_CONNECT_NAMES = frozenset({"_connect", "connect", "connect_check_health", "_connect_retry"})
_PING_NAMES = frozenset({"_send_ping"})


def _cells(function: Any) -> dict[str, Any]:
    """A closure's free variables by name (empty for anything else)."""
    code = getattr(function, "__code__", None)
    closure = getattr(function, "__closure__", None)
    if code is None or not closure:
        return {}
    values: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars, closure, strict=False):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return values


def _state_of(candidate: Any) -> ConnState | None:
    state = CONNECTIONS.get(id(candidate))
    if state is None:  # redis-py's client-side-cache proxy holds the real one
        inner = getattr(candidate, "_conn", None)
        if inner is not None:
            state = CONNECTIONS.get(id(inner))
    return state


def _connection_state(do: Any, fail: Any) -> ConnState | None:
    """The tracked connection ``do`` or ``fail`` works on, if any."""
    for function in (fail, do):
        owner = getattr(function, "__self__", None)
        if owner is not None:
            state = _state_of(owner)
            if state is not None:
                return state
        cells = _cells(function)
        for name in ("conn", "connection", "self"):
            if name in cells:
                state = _state_of(cells[name])
                if state is not None:
                    return state
        for value in cells.values():
            state = _state_of(value)
            if state is not None:
                return state
    return None


def _command_name(value: Any) -> str | None:
    """The command's name, never its arguments (``"AUTH user pw"`` given as
    one string is ``"AUTH"``)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    words = value.split()
    return words[0].upper() if words else None


def describe_operation(do: Any) -> tuple[str, str | None]:
    """``(operation, command)`` for what ``do`` runs (see
    :attr:`ConnectionRetryEvent.operation`)."""
    name = getattr(do, "__name__", "")
    if name in _CONNECT_NAMES:
        return "connect", None
    if name in _PING_NAMES:
        return "health_check", "PING"
    cells = _cells(do)
    if "command_name" in cells:
        return "command", _command_name(cells["command_name"])
    if "stack" in cells or "commands" in cells:
        return "pipeline", None
    code = getattr(do, "__code__", None)
    called = set(code.co_names) if code is not None else set()
    if called & _CONNECT_NAMES:
        return "connect", None
    if called & _PING_NAMES:
        return "health_check", "PING"
    command = cells.get("command")
    args = cells.get("args")
    if getattr(command, "__name__", "") == "send_command" and isinstance(args, tuple) and args:
        return "command", _command_name(args[0])  # PubSub's subscribe & co.
    return "other", None


class _RetryCall:
    """One ``call_with_retry`` call that failed at least once."""

    __slots__ = ("command", "error", "failures", "operation", "probe", "retry", "state")

    def __init__(self, retry: Any, do: Any, fail: Any) -> None:
        self.retry = retry
        self.state = _connection_state(do, fail)
        self.operation, self.command = (
            describe_operation(do) if self.state is not None else ("other", None)
        )
        self.failures = 0
        self.error: BaseException | None = None
        self.probe: _BackoffProbe | None = None

    def wanted(self) -> Any:
        """The delivery of the connection's pool if it wants a retry event."""
        state = self.state
        pool_state = state.pool_state if state is not None else None
        if pool_state is None:
            return None
        delivery = pool_state.delivery
        return delivery if not RETRY_EVENTS.isdisjoint(delivery.wanted) else None

    def failed(self, error: BaseException) -> None:
        """redis-py's failure handler ran for ``error`` (it did not raise)."""
        self.failures += 1
        self.error = error
        retries = _retries(self.retry)
        if retries is not None and self.failures > retries:
            return  # Retry raises now: see finished()
        if self.wanted() is None:
            return
        backoff = getattr(self.retry, "_backoff", None)
        if backoff is None or isinstance(backoff, _BackoffProbe):
            return
        self.probe = _BackoffProbe(backoff, self)
        self.retry._backoff = self.probe

    def retrying(self, backoff: float) -> None:
        """``Retry`` computed its backoff: it retries after it."""
        delivery = self.wanted()
        if delivery is None or ConnectionRetryEvent not in delivery.wanted:
            return
        assert self.state is not None
        assert self.error is not None
        event = ConnectionRetryEvent(
            time(),
            self.state.origin,
            self.failures,
            _retries(self.retry),
            float(backoff),
            self.error,
            self.operation,
            self.command,
        )
        emit_quietly(delivery, event)

    def finished(self, raised: BaseException) -> None:
        """``call_with_retry`` raised ``raised``."""
        self.restore()
        retries = _retries(self.retry)
        if raised is not self.error or not retries or self.failures <= retries:
            # Not given up for want of retries: not retried at all
            # (is_retryable, a raising handler), or a policy that allows no
            # retry (``retries=0``, as redis-py gives cluster nodes) or
            # retries forever.
            return
        delivery = self.wanted()
        if delivery is None or ConnectionRetriesExhaustedEvent not in delivery.wanted:
            return
        assert self.state is not None
        event = ConnectionRetriesExhaustedEvent(
            time(), self.state.origin, self.failures, raised, self.operation, self.command
        )
        emit_quietly(delivery, event)

    def restore(self) -> None:
        """Give the ``Retry`` its own backoff back, if the probe is still lent."""
        probe = self.probe
        if probe is None:
            return
        self.probe = None
        original = probe.backoff
        if getattr(self.retry, "_backoff", None) is probe:
            self.retry._backoff = original


def _retries(retry: Any) -> int | None:
    """The most retries ``retry`` makes; ``None`` if it retries forever."""
    retries = getattr(retry, "_retries", None)
    if not isinstance(retries, int) or retries < 0:
        return None
    return retries


class _BackoffProbe:
    """Stands in for a ``Retry``'s backoff between a failure handler and the
    ``compute`` call that follows it; gives the backoff back on that call."""

    __slots__ = ("backoff", "call")

    def __init__(self, backoff: Any, call: _RetryCall) -> None:
        self.backoff = backoff
        self.call = call

    def compute(self, failures: int) -> float:
        call = self.call
        call.restore()
        value = self.backoff.compute(failures)
        try:
            call.retrying(value)
        except Exception:
            internal_error("reporting a retry")
        return value  # type: ignore[no-any-return]

    def reset(self) -> None:
        self.backoff.reset()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backoff, name)


def _start(call: _RetryCall | None, retry: Any, do: Any, fail: Any) -> _RetryCall | None:
    if call is not None:
        return call
    try:
        return _RetryCall(retry, do, fail)
    except Exception:
        internal_error("reading a retried operation")
        return None


def _after_failure(call: _RetryCall | None, error: BaseException) -> None:
    if call is None:
        return
    try:
        call.failed(error)
    except Exception:
        internal_error("reporting a retry")


def _after_raise(call: _RetryCall | None, error: BaseException) -> None:
    if call is None:
        return
    try:
        call.finished(error)
    except Exception:
        internal_error("reporting exhausted retries")


def _signature(original: Any) -> tuple[str, ...] | None:
    """The parameters after ``fail`` of a ``call_with_retry``, when they are
    the ones a redis-py release has: ``()`` (5.x), ``("is_retryable",)``
    (7.x) or ``("is_retryable", "with_failure_count")`` (8.x); else ``None``.
    A replacement with the same explicit parameters forwards them far more
    cheaply than ``*args, **kwargs`` (a keyword argument through
    ``**kwargs`` costs about a microsecond here)."""
    try:
        parameters = list(inspect.signature(original).parameters.values())
    except (TypeError, ValueError):
        return None
    names = tuple(p.name for p in parameters)
    if names[:3] != ("self", "do", "fail"):
        return None
    rest = names[3:]
    if rest in _KNOWN_SIGNATURES:
        return rest
    return None


_KNOWN_SIGNATURES = ((), ("is_retryable",), ("is_retryable", "with_failure_count"))


def _defaults(original: Any) -> tuple[Any, ...]:
    return tuple(original.__defaults__ or ())


def _sync_factory(original: Any) -> Any:
    rest = _signature(original)

    if rest == ("is_retryable", "with_failure_count"):
        is_retryable_default, count_default = _defaults(original)

        def call_with_retry_8(
            self: Any,
            do: Any,
            fail: Any,
            is_retryable: Any = is_retryable_default,
            with_failure_count: Any = count_default,
        ) -> Any:
            call: _RetryCall | None = None

            def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return original(self, do, tracked_fail, is_retryable, with_failure_count)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_8

    if rest == ("is_retryable",):
        (is_retryable_default,) = _defaults(original)

        def call_with_retry_7(
            self: Any, do: Any, fail: Any, is_retryable: Any = is_retryable_default
        ) -> Any:
            call: _RetryCall | None = None

            def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return original(self, do, tracked_fail, is_retryable)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_7

    if rest == ():

        def call_with_retry_5(self: Any, do: Any, fail: Any) -> Any:
            call: _RetryCall | None = None

            def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return original(self, do, tracked_fail)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_5

    def call_with_retry(self: Any, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        call: _RetryCall | None = None

        def tracked_fail(error: Any, *count: Any) -> Any:
            nonlocal call
            call = _start(call, self, do, fail)
            result = fail(error, *count)
            _after_failure(call, error)
            return result

        try:
            return original(self, do, tracked_fail, *args, **kwargs)
        except BaseException as error:
            _after_raise(call, error)
            raise

    return call_with_retry


def _async_factory(original: Any) -> Any:
    rest = _signature(original)

    if rest == ("is_retryable", "with_failure_count"):
        is_retryable_default, count_default = _defaults(original)

        async def call_with_retry_8(
            self: Any,
            do: Any,
            fail: Any,
            is_retryable: Any = is_retryable_default,
            with_failure_count: Any = count_default,
        ) -> Any:
            call: _RetryCall | None = None

            async def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = await fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return await original(self, do, tracked_fail, is_retryable, with_failure_count)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_8

    if rest == ("is_retryable",):
        (is_retryable_default,) = _defaults(original)

        async def call_with_retry_7(
            self: Any, do: Any, fail: Any, is_retryable: Any = is_retryable_default
        ) -> Any:
            call: _RetryCall | None = None

            async def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = await fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return await original(self, do, tracked_fail, is_retryable)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_7

    if rest == ():

        async def call_with_retry_5(self: Any, do: Any, fail: Any) -> Any:
            call: _RetryCall | None = None

            async def tracked_fail(error: Any, *count: Any) -> Any:
                nonlocal call
                call = _start(call, self, do, fail)
                result = await fail(error, *count)
                _after_failure(call, error)
                return result

            try:
                return await original(self, do, tracked_fail)
            except BaseException as error:
                _after_raise(call, error)
                raise

        return call_with_retry_5

    async def call_with_retry(self: Any, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        call: _RetryCall | None = None

        async def tracked_fail(error: Any, *count: Any) -> Any:
            nonlocal call
            call = _start(call, self, do, fail)
            result = await fail(error, *count)
            _after_failure(call, error)
            return result

        try:
            return await original(self, do, tracked_fail, *args, **kwargs)
        except BaseException as error:
            _after_raise(call, error)
            raise

    return call_with_retry


def _targets() -> Iterable[tuple[type, str, Any]]:
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.retry import Retry

    yield Retry, "call_with_retry", _sync_factory
    yield AsyncRetry, "call_with_retry", _async_factory


#: The two ``call_with_retry`` replacements, installed while some attached
#: pool's delivery wants a retry event.
PATCHER = MethodPatcher(_targets)


class RetryWatch:
    """Holds :data:`PATCHER` for one attached pool while its delivery wants
    ``retry`` or ``retries_exhausted``; re-evaluated on every subscription
    change (a delivery watcher)."""

    def __init__(self, delivery: Any) -> None:
        self.delivery = delivery
        self.holds = False
        self._lock = threading.Lock()

    def update(self) -> None:
        with self._lock:
            want = not RETRY_EVENTS.isdisjoint(self.delivery.wanted)
            if want != self.holds:
                (PATCHER.add_user if want else PATCHER.remove_user)()
                self.holds = want

    def close(self) -> None:
        with self._lock:
            if self.holds:
                PATCHER.remove_user()
                self.holds = False
        if self.update in self.delivery.watchers:
            self.delivery.watchers.remove(self.update)


_watches: dict[int, RetryWatch] = {}


def watch(pool_state: Any) -> None:
    """Start holding the retry hooks for ``pool_state`` while it wants them."""
    delivery = pool_state.delivery
    holder = _watches[id(pool_state)] = RetryWatch(delivery)
    delivery.watchers.append(holder.update)
    holder.update()


def unwatch(pool_state: Any) -> None:
    """Stop holding them for ``pool_state`` (detached or gone)."""
    holder = _watches.pop(id(pool_state), None)
    if holder is not None:
        holder.close()
