"""Explicit health checks: one command's round trip, timed, never raising.

    >>> import redis, redis_lifecycle as rl
    >>> client = redis.Redis(host="localhost", port=6379)
    >>> result = rl.health_check(client)                    # doctest: +SKIP
    >>> result.healthy, result.latency_ms, result.error     # doctest: +SKIP
    (True, 0.21, None)

:func:`health_check` takes a sync client, pool or connection (an asyncio one
returns a coroutine to await). It checks out a connection (a pool's own
checkout, so the dirty-connection probe and a reconnect happen as for any
command), sends ``command`` (``"PING"`` by default) and reads the reply. A
failed check returns ``healthy=False`` with the exception instead of raising.

When the target's pool is instrumented, a
:class:`~redis_lifecycle.ConnectionHealthCheckEvent` (``latency`` in
milliseconds) is emitted after the connection is back in the pool. Its
callbacks run inline on the calling thread, unless the pool delivers through
an :class:`~redis_lifecycle.AsyncCallbackExecutor`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Coroutine
from time import perf_counter
from typing import TYPE_CHECKING, Any, overload

import redis
import redis.connection as rconn
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
from ._hooks.state import real_connection

if TYPE_CHECKING:
    import redis.asyncio
    from redis.asyncio.connection import AbstractConnection as AsyncConnection
    from redis.asyncio.connection import ConnectionPool as AsyncConnectionPool

__all__ = ["HealthCheckResult", "health_check"]

# Defined in _health_shared (the asyncio check needs it too); documented here.
HealthCheckResult.__module__ = __name__

_CONNECTION_TYPES: tuple[type, ...] = tuple(
    cls
    for cls in (
        getattr(rconn, "ConnectionInterface", None),
        getattr(rconn, "AbstractConnection", None),
    )
    if cls is not None
)


@overload
def health_check(
    target: redis.asyncio.Redis | AsyncConnectionPool | AsyncConnection, command: str = "PING"
) -> Coroutine[Any, Any, HealthCheckResult]: ...


@overload
def health_check(target: Any, command: str = "PING") -> HealthCheckResult: ...


def health_check(target: Any, command: str = "PING") -> Any:
    """Run ``command`` against ``target``; never raises for a failed check.

    ``target``: a ``redis.Redis`` (its pool, or its own connection when it is
    a ``single_connection_client``), a connection pool, a connection, or a
    ``redis.cluster.RedisCluster`` (every node is checked: healthy only if all
    are; the latency is the slowest node's). asyncio targets return a
    coroutine of the same result.

    ``command`` is split on whitespace (``"PING"``, ``"INFO server"``). A
    ``PING`` is healthy only if the reply is ``PONG`` (or its message echoed);
    any other command is healthy if the server answers without an error.

    Raises :class:`TypeError` for a target or command it cannot use. Under
    :class:`~redis_lifecycle.CallbackErrorHandler` strategy ``"raise"``, a
    failing callback's :class:`~redis_lifecycle.CallbackError` propagates
    after the connection is back in its pool.
    """
    args = _parse_command(command)
    if _is_async(target):
        module = importlib.import_module("redis_lifecycle._health_asyncio")
        coroutine: Coroutine[Any, Any, HealthCheckResult] = module.async_health_check(
            target, command
        )
        return coroutine
    if isinstance(target, rconn.ConnectionPool):
        return _check_pool(target, args, command)
    if isinstance(target, redis.Redis):
        connection = getattr(target, "connection", None)
        if connection is not None:  # single_connection_client
            lock = getattr(target, "single_connection_lock", None)
            with lock if lock is not None else contextlib.nullcontext():
                return _check_connection(connection, args, command)
        return _check_pool(target.connection_pool, args, command)
    if _CONNECTION_TYPES and isinstance(target, _CONNECTION_TYPES):
        return _check_connection(target, args, command)
    if hasattr(target, "get_nodes") and type(target).__module__.startswith("redis.cluster"):
        return _check_cluster(target, command)
    cls = type(target)
    msg = (
        "health_check() expects a redis.Redis, redis.asyncio.Redis, redis.cluster.RedisCluster, "
        f"a connection pool or a connection; got {cls.__module__}.{cls.__qualname__}. "
        "Pass the client (or its connection_pool) instead."
    )
    raise TypeError(msg)


# --- input -----------------------------------------------------------------


def _is_async(target: Any) -> bool:
    return any(cls.__module__.startswith("redis.asyncio") for cls in type(target).__mro__)


# --- the checks ------------------------------------------------------------


def _round_trip(connection: Any, args: list[str]) -> tuple[float, BaseException | None]:
    """Connect if needed, then send ``args`` and read the reply.

    Returns ``(milliseconds, error)``; the milliseconds are the command's
    round trip (a needed connect is not counted, unless it is what failed).
    redis-py itself disconnects the connection if the I/O fails.
    """
    started = perf_counter()
    try:
        if not _has_socket(connection):
            connection.connect()
            started = perf_counter()
        connection.send_command(*args, check_health=False)
        response = connection.read_response()
    except Exception as error:
        return (perf_counter() - started) * 1000.0, error
    latency = (perf_counter() - started) * 1000.0
    expected = _expected_reply(args)
    if expected is not None and not _reply_matches(response, expected):
        reply = response if isinstance(response, (str, bytes)) else type(response).__name__
        return latency, rexc.ConnectionError(f"Bad response from PING health check: {reply!r}")
    return latency, None


def _has_socket(connection: Any) -> bool:
    inner = real_connection(connection)
    return getattr(inner, "_sock", None) is not None


def _check_connection(connection: Any, args: list[str], command: str) -> HealthCheckResult:
    latency, error = _round_trip(connection, args)
    return _report(_where(connection), latency, error, command)


def _check_pool(pool: Any, args: list[str], command: str) -> HealthCheckResult:
    started = perf_counter()
    try:
        if _get_connection_needs_command(type(pool)):
            connection = pool.get_connection(args[0])
        else:
            connection = pool.get_connection()
    except Exception as checkout_error:
        latency = (perf_counter() - started) * 1000.0
        state = pool_state_of(pool)
        where = (state.delivery, state.origin) if state is not None else None
        return _report(where, latency, checkout_error, command)
    try:
        latency, error = _round_trip(connection, args)
        where = _where(connection)
    finally:
        pool.release(connection)
    return _report(where, latency, error, command)


def _check_cluster(cluster: Any, command: str) -> HealthCheckResult:
    results = []
    for node in cluster.get_nodes():
        client = getattr(node, "redis_connection", None)
        if client is None:
            error = rexc.ConnectionError(f"cluster node {node.name} has no client yet")
            results.append(HealthCheckResult(False, 0.0, error))
            continue
        results.append(health_check(client, command))
    if not results:
        return HealthCheckResult(False, 0.0, rexc.ConnectionError("cluster has no nodes"))
    failed = [r for r in results if not r.healthy]
    latency = max(r.latency_ms for r in results)
    return HealthCheckResult(not failed, latency, failed[0].error if failed else None)


_NEEDS_COMMAND: dict[Any, bool] = {}


def _get_connection_needs_command(pool_class: type) -> bool:
    """Whether redis-py's ``get_connection`` still requires ``command_name``
    (5.x); later versions take none and warn when given one."""
    for cls in pool_class.__mro__:
        method = cls.__dict__.get("get_connection")
        if method is None or not cls.__module__.startswith("redis."):
            continue
        needs = _NEEDS_COMMAND.get(method)
        if needs is None:
            needs = _NEEDS_COMMAND[method] = _requires_first_argument(method)
        return needs
    return False


def _requires_first_argument(method: Any) -> bool:
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return False
    return (
        len(parameters) > 1
        and parameters[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and parameters[1].default is inspect.Parameter.empty
    )
