"""Explicit health checks for ``redis.asyncio`` clients and pools.

    >>> import redis.asyncio, redis_lifecycle as rl
    >>> from redis_lifecycle._async_health import async_health_check
    >>> async def check():
    ...     client = redis.asyncio.Redis(host="localhost")
    ...     result = await async_health_check(client)      # HealthCheckResult
    ...     await client.aclose()
    ...     return result.healthy

``redis_lifecycle.health_check(async_client)`` returns this coroutine, so the
public spelling is ``await rl.health_check(async_client)``. The check takes a
connection from the pool (so it also reports the pool's usual events), sends
``command``, reads the reply, and emits a
:class:`~redis_lifecycle.ConnectionHealthCheckEvent` (``command`` is the
command's name, never its arguments) when the pool is instrumented. Its
callbacks run inline in the awaiting task, like every other asyncio event.
"""

from __future__ import annotations

import inspect
import shlex
from time import perf_counter, time
from typing import Any

import redis.asyncio as aredis
import redis.asyncio.connection as aconn

from ._attach import pool_state_of
from ._hooks import emit_quietly
from ._state import CONNECTIONS
from .events import ConnectionHealthCheckEvent
from .health import HealthCheckResult

__all__ = ["async_health_check"]


def _needs_command_name() -> bool:
    """redis-py 5.x's asyncio ``get_connection`` requires a command name; 6.0+
    deprecates passing one."""
    try:
        signature = inspect.signature(aconn.ConnectionPool.get_connection)
    except (TypeError, ValueError):
        return False
    parameter = signature.parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


_NEEDS_COMMAND_NAME = _needs_command_name()


def _pool_of(target: Any) -> Any:
    if isinstance(target, aconn.ConnectionPool):
        return target
    pool = getattr(target, "connection_pool", None)
    if isinstance(target, aredis.Redis) and isinstance(pool, aconn.ConnectionPool):
        return pool
    cls = type(target)
    msg = (
        "async_health_check() expects a redis.asyncio.Redis or a redis.asyncio connection "
        f"pool; got {cls.__module__}.{cls.__qualname__}. For sync clients use "
        "redis_lifecycle.health_check()"
    )
    raise TypeError(msg)


async def async_health_check(target: Any, command: str = "PING") -> HealthCheckResult:
    """Run ``command`` (default ``PING``) on a pooled connection of ``target``.

    Returns :class:`~redis_lifecycle.HealthCheckResult` (``healthy``,
    ``latency_ms``, ``error``); a failed check (no connection, an error
    reply, a timeout) is a result with ``healthy=False``, never an exception.
    Raises :class:`TypeError` for a target that is not an asyncio client or
    pool and :class:`ValueError` for an empty command; cancellation propagates.
    """
    pool = _pool_of(target)
    args = shlex.split(command) if isinstance(command, str) else []
    if not args:
        msg = f"command must be a non-empty Redis command string such as 'PING', got {command!r}"
        raise ValueError(msg)
    started = perf_counter()
    connection: Any = None
    error: BaseException | None = None
    try:
        if _NEEDS_COMMAND_NAME:
            connection = await pool.get_connection(args[0])
        else:
            connection = await pool.get_connection()
        started = perf_counter()
        await connection.send_command(*args, check_health=False)
        await connection.read_response()
    except Exception as failure:
        error = failure
    latency = (perf_counter() - started) * 1000.0
    try:
        _emit(connection, pool, error is None, latency, args[0].upper(), error)
    finally:
        if connection is not None:
            await pool.release(connection)
    return HealthCheckResult(error is None, latency, error)


def _emit(
    connection: Any,
    pool: Any,
    healthy: bool,
    latency: float,
    command: str,
    error: BaseException | None,
) -> None:
    """Report the check on the connection used, or on the pool when none could
    be had (the command name only: never its arguments)."""
    state = CONNECTIONS.get(id(connection)) if connection is not None else None
    pool_state = state.pool_state if state is not None else pool_state_of(pool)
    if pool_state is None:
        return
    origin = state.origin if state is not None else pool_state.origin
    delivery = pool_state.delivery
    if ConnectionHealthCheckEvent in delivery.wanted:
        emit_quietly(
            delivery,
            ConnectionHealthCheckEvent(time(), origin, healthy, latency, command, error),
        )
