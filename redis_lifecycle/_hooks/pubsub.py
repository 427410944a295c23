"""PubSub's own health ping, reported as ``health_check`` events.

    >>> import redis, redis_lifecycle as rl
    >>> client = redis.Redis(host="localhost", health_check_interval=1)
    >>> handle = rl.instrument(client)
    >>> sub = handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, print)
    >>> pubsub = client.pubsub()                          # doctest: +SKIP
    >>> pubsub.subscribe("news")                          # doctest: +SKIP
    >>> pubsub.get_message(timeout=2)                     # doctest: +SKIP

A subscribed connection cannot answer a plain ``PING`` inline, so redis-py's
``PubSub.check_health`` sends ``PING redis-py-health-check`` and recognises
the reply later, among the messages (``is_health_check_response``). These
wrappers pair each reply with its request, oldest first: ``latency`` is the
time from sending the ping to reading its reply (an upper bound when the
application reads late). A ping that cannot be sent is reported unhealthy at
once, before the close its send ran into; pings still unanswered when the
connection closes on an error are reported unhealthy with that error (see
:func:`fail_pending_pings`).

asyncio's ``PubSub`` has neither the counter nor the method: its
``check_health`` is watched for a ping it is about to send (redis-py's own
test, read just before: the interval has passed), and its ``_execute`` for a
read that returns the reply, which ``parse_response`` then drops.

Callbacks run inline on the thread that reads the PubSub, unless the pool
delivers through an :class:`~redis_lifecycle.AsyncCallbackExecutor`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from time import perf_counter, time
from typing import Any

from ..events import ConnectionHealthCheckEvent
from . import PUBSUB_HEALTH_COMMAND, emit, emit_quietly, fail_pending_pings, flush_close
from .state import CONNECTIONS, ConnState

__all__ = [
    "PUBSUB_HEALTH_COMMAND",
    "async_pubsub_targets",
    "fail_pending_pings",
    "pubsub_targets",
]


def _state_of(pubsub: Any) -> ConnState | None:
    connection = getattr(pubsub, "connection", None)
    if connection is None:
        return None
    state = CONNECTIONS.get(id(connection))
    if state is None or state.pool_state is None:
        return None
    if ConnectionHealthCheckEvent not in state.pool_state.delivery.wanted:
        return None
    return state


def _flush_close_of(pubsub: Any, error: BaseException) -> None:
    """Report the close that ``pubsub``'s failed ping ran into (no ping is
    reported: nobody listens to health checks)."""
    state = CONNECTIONS.get(id(getattr(pubsub, "connection", None)))
    if state is not None and state.pending_close is not None:
        flush_close(state, error)


def _ping_failed(state: ConnState, started: float, error: BaseException) -> None:
    """A health ping could not be sent: unhealthy at once."""
    pool_state = state.pool_state
    if pool_state is not None:
        latency = (perf_counter() - started) * 1000.0
        emit_quietly(
            pool_state.delivery,
            ConnectionHealthCheckEvent(
                time(), state.origin, False, latency, PUBSUB_HEALTH_COMMAND, error
            ),
        )


def _ping_sent(state: ConnState, started: float) -> None:
    pending = state.health_pings
    if pending is None:
        pending = state.health_pings = deque()
    pending.append(started)


def _reply_read(state: ConnState) -> None:
    """The reply to the oldest unanswered ping was read: healthy."""
    if not state.health_pings or state.pool_state is None:
        return
    try:
        started = state.health_pings.popleft()
    except IndexError:  # another thread took it
        return
    latency = (perf_counter() - started) * 1000.0
    emit(
        state.pool_state.delivery,
        ConnectionHealthCheckEvent(
            time(), state.origin, True, latency, PUBSUB_HEALTH_COMMAND, None
        ),
    )


def _check_health(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``PubSub.check_health``: note when a health ping is sent."""
    state = _state_of(instance)
    if state is None:
        try:
            return wrapped(*args, **kwargs)
        except Exception as error:
            _flush_close_of(instance, error)
            raise
    before = getattr(instance, "health_check_response_counter", 0)
    started = perf_counter()
    try:
        result = wrapped(*args, **kwargs)
    except Exception as error:
        _ping_failed(state, started, error)
        flush_close(state, error)  # the close its send ran into, after it
        raise
    if getattr(instance, "health_check_response_counter", 0) > before:
        _ping_sent(state, started)
    return result


def _is_health_check_response(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around ``PubSub.is_health_check_response``: a reply to a ping we saw sent."""
    result = wrapped(*args, **kwargs)
    if result:
        state = _state_of(instance)
        if state is not None:
            _reply_read(state)
    return result


# --- asyncio ---------------------------------------------------------------


def _check_health_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around asyncio ``PubSub.check_health``: redis-py's coroutine untouched
    unless it is about to send a ping (the same test redis-py makes)."""
    state = _state_of(instance)
    if state is None:
        return _check_health_quietly(wrapped, instance, args, kwargs)
    connection = instance.connection
    try:
        due = bool(connection.health_check_interval) and (
            asyncio.get_running_loop().time() > connection.next_health_check
        )
    except (AttributeError, RuntimeError, TypeError):  # not a connection we know how to read
        due = False
    if not due:
        return wrapped(*args, **kwargs)
    return _check_health_sending(wrapped, state, args, kwargs)


async def _check_health_quietly(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    except Exception as error:
        _flush_close_of(instance, error)
        raise


async def _check_health_sending(wrapped: Any, state: ConnState, args: Any, kwargs: Any) -> Any:
    started = perf_counter()
    try:
        result = await wrapped(*args, **kwargs)
    except Exception as error:
        _ping_failed(state, started, error)
        flush_close(state, error)  # the close its send ran into, after it
        raise
    _ping_sent(state, started)
    return result


def _execute_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Around asyncio ``PubSub._execute``: while a ping is unanswered, a read
    that returns its reply (``parse_response`` drops it next)."""
    state = _state_of(instance)
    if state is None or not state.health_pings:
        return wrapped(*args, **kwargs)
    return _execute_watching(wrapped, instance, state, args, kwargs)


async def _execute_watching(
    wrapped: Any, instance: Any, state: ConnState, args: Any, kwargs: Any
) -> Any:
    response = await wrapped(*args, **kwargs)
    if response is not None:
        try:
            is_reply = response in instance.health_check_response
        except Exception:  # an odd response type: not the reply
            is_reply = False
        if is_reply:
            _reply_read(state)
    return response


def pubsub_targets() -> Iterable[tuple[type, str, Any]]:
    """The ``(class, method, wrapper)`` triples for sync ``PubSub``."""
    import redis.client

    pubsub = getattr(redis.client, "PubSub", None)
    if pubsub is None:
        return
    if "check_health" in pubsub.__dict__ and "is_health_check_response" in pubsub.__dict__:
        yield pubsub, "check_health", _check_health
        yield pubsub, "is_health_check_response", _is_health_check_response


def async_pubsub_targets() -> Iterable[tuple[type, str, Any]]:
    """The ``(class, method, wrapper)`` triples for asyncio ``PubSub``."""
    import redis.asyncio.client

    pubsub = getattr(redis.asyncio.client, "PubSub", None)
    if pubsub is None:
        return
    if "check_health" in pubsub.__dict__ and "_execute" in pubsub.__dict__:
        yield pubsub, "check_health", _check_health_async
        yield pubsub, "_execute", _execute_async
