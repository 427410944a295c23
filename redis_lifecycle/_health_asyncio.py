"""Explicit health checks for ``redis.asyncio`` clients, pools and connections.

    >>> import redis.asyncio, redis_lifecycle as rl
    >>> async def check():
    ...     client = redis.asyncio.Redis(host="localhost")
    ...     result = await rl.health_check(client)          # HealthCheckResult
    ...     await client.aclose()
    ...     return result.healthy

:func:`redis_lifecycle.health_check` returns :func:`async_health_check`'s
coroutine for any ``redis.asyncio`` target, so the public spelling is
``await rl.health_check(async_client)``. Same semantics as the sync check:
``command`` is split on whitespace; a ``PING`` is healthy only if the reply
is ``PONG`` (or its message echoed), any other command if the server answers
without an error; the latency is the command's round trip in milliseconds (a
connect it needs is not counted, unless the connect is what failed). An
instrumented target also emits a
:class:`~redis_lifecycle.ConnectionHealthCheckEvent`, whose callbacks run
inline in the awaiting task (``async def`` ones as tasks), like every other
asyncio event.
"""

from __future__ import annotations

import contextlib
import inspect
from time import perf_counter
from typing import Any

import redis.asyncio as aredis
import redis.asyncio.connection as aconn
import redis.exceptions as rexc

from ._health_shared import (
    HealthCheckResult,
    _expected_reply,
    _parse_command,
    _reply_matches,
    _report,
    _where,
)
from ._hooks.attach import pool_state_of

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


async def async_health_check(target: Any, command: str = "PING") -> HealthCheckResult:
    """Run ``command`` (default ``PING``) against an asyncio ``target``.

    ``target`` is a ``redis.asyncio.Redis`` (a pooled connection, or its own
    with ``single_connection_client``), an asyncio connection pool or
    connection, or a ``redis.asyncio.cluster.RedisCluster`` (every node is
    checked: healthy only if all are; the latency is the slowest node's).
    Returns :class:`~redis_lifecycle.HealthCheckResult`; a failed check (no
    connection, an error reply, a timeout) is a result with ``healthy=False``,
    never an exception. Raises :class:`TypeError` for a target or command it
    cannot use; cancellation propagates. Under strategy ``"raise"`` a failing
    callback's :class:`~redis_lifecycle.CallbackError` propagates after the
    connection is back in its pool.
    """
    args = _parse_command(command)
    if isinstance(target, aconn.ConnectionPool):
        return await _check_pool(target, args, command)
    if isinstance(target, aredis.Redis):
        connection = getattr(target, "connection", None)
        if connection is not None:  # single_connection_client
            lock = getattr(target, "_single_conn_lock", None)
            async with lock if lock is not None else contextlib.nullcontext():
                return await _check_connection(connection, args, command)
        return await _check_pool(target.connection_pool, args, command)
    if isinstance(target, aconn.AbstractConnection):
        return await _check_connection(target, args, command)
    if callable(getattr(target, "get_nodes", None)) and type(target).__module__.startswith(
        "redis.asyncio.cluster"
    ):
        return await _check_cluster(target, args, command)
    cls = type(target)
    msg = (
        "health_check() of an asyncio target expects a redis.asyncio.Redis, an asyncio "
        "connection pool or connection, or a redis.asyncio.cluster.RedisCluster; got "
        f"{cls.__module__}.{cls.__qualname__}"
    )
    raise TypeError(msg)


async def _round_trip(connection: Any, args: list[str]) -> tuple[float, BaseException | None]:
    """Connect if needed, send ``args``, read the reply: ``(milliseconds, error)``."""
    started = perf_counter()
    try:
        if not connection.is_connected:
            await connection.connect()
            started = perf_counter()
        await connection.send_command(*args, check_health=False)
        response = await connection.read_response()
    except Exception as error:
        return (perf_counter() - started) * 1000.0, error
    latency = (perf_counter() - started) * 1000.0
    expected = _expected_reply(args)
    if expected is not None and not _reply_matches(response, expected):
        reply = response if isinstance(response, (str, bytes)) else type(response).__name__
        return latency, rexc.ConnectionError(f"Bad response from PING health check: {reply!r}")
    return latency, None


async def _check_connection(connection: Any, args: list[str], command: str) -> HealthCheckResult:
    latency, error = await _round_trip(connection, args)
    return _report(_where(connection), latency, error, command)


async def _check_pool(pool: Any, args: list[str], command: str) -> HealthCheckResult:
    started = perf_counter()
    try:
        if _NEEDS_COMMAND_NAME:
            connection = await pool.get_connection(args[0])
        else:
            connection = await pool.get_connection()
    except Exception as checkout_error:
        latency = (perf_counter() - started) * 1000.0
        state = pool_state_of(pool)
        where = (state.delivery, state.origin) if state is not None else None
        return _report(where, latency, checkout_error, command)
    try:
        latency, error = await _round_trip(connection, args)
        where = _where(connection)
    finally:
        await pool.release(connection)
    return _report(where, latency, error, command)


async def _check_cluster(cluster: Any, args: list[str], command: str) -> HealthCheckResult:
    results = []
    for node in cluster.get_nodes():
        try:
            connection = node.acquire_connection()
        except Exception as acquire_error:
            results.append(HealthCheckResult(False, 0.0, acquire_error))
            continue
        try:
            latency, error = await _round_trip(connection, args)
            where = _where(connection)
        finally:
            release = getattr(node, "release", None)
            if release is not None:  # redis-py 6.2+
                release(connection)
            else:
                node._free.append(connection)
        results.append(_report(where, latency, error, command))
    if not results:
        return HealthCheckResult(False, 0.0, rexc.ConnectionError("cluster has no nodes"))
    failed = [r for r in results if not r.healthy]
    latency = max(r.latency_ms for r in results)
    return HealthCheckResult(not failed, latency, failed[0].error if failed else None)
