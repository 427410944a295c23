"""Every redis-py name the hooks depend on, and which events need it.

One row per name, read top to bottom: where it lives in redis-py, whether it
is a class attribute (a method the hooks wrap) or an attribute set on each
instance (a list the pool counts are read from), the events that cannot be
produced without it, and the first redis-py version that has it. ``"a|b"``
means either name will do (redis-py renamed it between versions).

:mod:`redis_lifecycle._capabilities` checks the installed redis-py against
this table; a missing name switches off its events and is reported once,
instead of failing silently or raising into the application.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COUNTS", "REDIS_NAMES", "RedisName"]

#: The pseudo-event name for the ``active_connections`` / ``idle_connections``
#: fields of ``connection_acquired`` / ``connection_released`` and for
#: ``pool_stats()``: they are read from the pool's private lists.
COUNTS = "pool counts"


@dataclass(frozen=True)
class RedisName:
    """One redis-py name the library depends on."""

    module: str
    owner: str
    name: str
    events: tuple[str, ...]
    instance: bool = False
    since: tuple[int, int] = (5, 0)
    private: bool = False

    @property
    def path(self) -> str:
        return f"{self.module}.{self.owner}.{self.name}"


#: Where a connection keeps its open socket: read to tell open from closed.
SOCKET_ATTRIBUTE = {"redis.connection": "_sock", "redis.asyncio.connection": "_writer"}

_CONNECTION_EVENTS = ("connection_created", "error")
_HANDSHAKE_EVENTS = ("connected", "reconnected", "error")
_CLOSE_EVENTS = ("disconnected", "error")
_MAINT_EVENTS = (
    "maintenance_notification",
    "maintenance_timeout_relaxed",
    "maintenance_timeout_restored",
)
_RETRY_EVENTS = ("retry", "retries_exhausted")


def _connection_rows(module: str) -> tuple[RedisName, ...]:
    rows = [
        RedisName(module, cls, "_connect", _CONNECTION_EVENTS, private=True)
        for cls in ("Connection", "UnixDomainSocketConnection")
    ]
    rows += [
        RedisName(
            module, "AbstractConnection", "on_connect_check_health|on_connect", _HANDSHAKE_EVENTS
        ),
        RedisName(module, "AbstractConnection", "disconnect", _CLOSE_EVENTS),
        RedisName(module, "AbstractConnection", "_send_ping", ("health_check",), private=True),
        RedisName(
            module, "Connection", SOCKET_ATTRIBUTE[module], _CLOSE_EVENTS, True, private=True
        ),
        RedisName(
            module,
            "AbstractConnection",
            "mark_for_reconnect",
            ("marked_for_reconnect",),
            since=(7, 0),
        ),
    ]
    return tuple(rows)


def _pool_rows(module: str, *, blocking_list: bool) -> tuple[RedisName, ...]:
    rows: tuple[RedisName, ...] = (
        RedisName(module, "ConnectionPool", "get_connection", ("connection_acquired",)),
        RedisName(module, "ConnectionPool", "release", ("connection_released",)),
        RedisName(
            module,
            "ConnectionPool",
            "make_connection",
            ("pool_connection_created", "pool_exhausted"),
        ),
        RedisName(module, "ConnectionPool", "reset", ("pool_reset",)),
        RedisName(
            module, "ConnectionPool", "_available_connections", (COUNTS,), True, private=True
        ),
        RedisName(module, "ConnectionPool", "_in_use_connections", (COUNTS,), True, private=True),
    )
    if blocking_list:  # the sync pools: a created counter, and the blocking pool's own list
        rows += (
            RedisName(
                module, "ConnectionPool", "_created_connections", (COUNTS,), True, private=True
            ),
            RedisName(
                module, "BlockingConnectionPool", "_connections", (COUNTS,), True, private=True
            ),
        )
    return rows


#: The table, sync first, then asyncio, then PubSub, cluster and sentinel.
REDIS_NAMES: tuple[RedisName, ...] = (
    *_connection_rows("redis.connection"),
    *_pool_rows("redis.connection", blocking_list=True),
    *_connection_rows("redis.asyncio.connection"),
    RedisName(
        "redis.asyncio.connection", "AbstractConnection", "_close", _CLOSE_EVENTS, private=True
    ),
    *_pool_rows("redis.asyncio.connection", blocking_list=False),
    RedisName("redis.client", "PubSub", "check_health", ("health_check",)),
    RedisName("redis.asyncio.client", "PubSub", "check_health", ("health_check",)),
    RedisName(
        "redis.cluster",
        "NodesManager",
        "create_redis_node",
        ("pool_created", "connection_acquired", "connection_released"),
    ),
    RedisName(
        "redis.asyncio.cluster",
        "ClusterNode",
        "acquire_connection",
        ("connection_acquired",),
    ),
    # ``release`` from 6.2; before it, releases are seen after ``execute_*``.
    RedisName(
        "redis.asyncio.cluster",
        "ClusterNode",
        "release|execute_command",
        ("connection_released",),
    ),
    RedisName("redis.sentinel", "SentinelManagedConnection", "connect_to", _CONNECTION_EVENTS),
    RedisName(
        "redis.asyncio.sentinel", "SentinelManagedConnection", "connect_to", _CONNECTION_EVENTS
    ),
    # Maintenance notifications (redis-py 7.0+ sync, 8.1+ asyncio): every push
    # frame goes through the parser's handle_push_response. The relaxed
    # timeouts come from redis-py's own MaintenanceStartedEvent /
    # MaintenanceCompletedEvent on 8.2+; before, a MOVING's expiry is seen here.
    RedisName(
        "redis._parsers.base",
        "PushNotificationsParser",
        "handle_push_response",
        _MAINT_EVENTS,
        since=(7, 0),
        private=True,
    ),
    RedisName(
        "redis._parsers.base",
        "AsyncPushNotificationsParser",
        "handle_push_response",
        _MAINT_EVENTS,
        since=(7, 0),
        private=True,
    ),
    RedisName(
        "redis.maint_notifications",
        "MaintNotificationsPoolHandler",
        "handle_node_moved_notification",
        ("maintenance_timeout_restored",),
        since=(7, 0),
    ),
    # Topology (_hooks/topology.py). A sync cluster node's redis.Redis reads
    # every reply through parse_response; the asyncio ClusterNode has its own.
    RedisName("redis.client", "Redis", "parse_response", ("cluster_redirect",)),
    RedisName("redis.asyncio.cluster", "ClusterNode", "parse_response", ("cluster_redirect",)),
    *(
        RedisName(module, "NodesManager", name, ("cluster_topology_changed",))
        for module in ("redis.cluster", "redis.asyncio.cluster")
        # the full refresh; the single-slot patch after a MOVED (8.x: move_slot)
        for name in ("initialize", "move_slot|_update_moved_slots")
    ),
    RedisName(
        "redis.sentinel",
        "SentinelConnectionPoolProxy",
        "get_master_address",
        ("sentinel_master_changed",),
    ),
    RedisName(
        "redis.asyncio.sentinel",
        "SentinelConnectionPool",
        "get_master_address",
        ("sentinel_master_changed",),
    ),
    # Retries: the loop itself, and the backoff it computes each sleep from
    # (lent a recording stand-in between a failure and its retry).
    RedisName("redis.retry", "Retry", "call_with_retry", _RETRY_EVENTS),
    RedisName("redis.asyncio.retry", "Retry", "call_with_retry", _RETRY_EVENTS),
    RedisName("redis.retry", "Retry", "_backoff", ("retry",), True, private=True),
    RedisName("redis.retry", "Retry", "_retries", _RETRY_EVENTS, True, private=True),
    RedisName("redis.backoff", "AbstractBackoff", "compute", ("retry",)),
)
