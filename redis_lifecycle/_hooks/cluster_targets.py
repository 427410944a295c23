"""Teach ``instrument()`` about cluster and Sentinel clients.

Imported by :mod:`redis_lifecycle._hooks.targets` when it first resolves a target;
registering puts these kinds in front of the plain ``redis.Redis`` one (a
Sentinel-managed client *is* a ``redis.Redis``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.cluster as rcluster

from .cluster import attach_cluster
from .sentinel import attach_sentinel_client, attach_sentinel_pool, attach_sentinel_pool_target

__all__ = ["KINDS"]

Kind = tuple[Callable[[Any], bool], Callable[[Any, Any, str | None], None]]


def _is_sync_sentinel_pool(obj: Any) -> bool:
    import redis.sentinel as rsentinel

    return isinstance(obj, rsentinel.SentinelConnectionPool)


def _is_sync_sentinel_client(obj: Any) -> bool:
    return _is_sync_sentinel_pool(getattr(obj, "connection_pool", None))


def _asyncio_kinds() -> list[Kind]:
    """The asyncio cluster and Sentinel clients (if the asyncio hooks exist)."""
    try:
        import redis.asyncio.cluster as acluster
        import redis.asyncio.sentinel as asentinel

        from .aio_cluster import attach_async_cluster
        from .aio_targets import attach_async_pool
    except ImportError:  # pragma: no cover - redis-py without asyncio support
        return []

    def is_async_sentinel_pool(obj: Any) -> bool:
        return isinstance(obj, asentinel.SentinelConnectionPool)

    def attach_pool(pool: Any, handle: Any, pool_name: str | None) -> None:
        attach_sentinel_pool(handle, pool, pool_name, attach=attach_async_pool)

    def attach_client(client: Any, handle: Any, pool_name: str | None) -> None:
        attach_sentinel_pool(
            handle, client.connection_pool, pool_name, attach=attach_async_pool, owner=client
        )

    return [
        (lambda obj: is_async_sentinel_pool(getattr(obj, "connection_pool", None)), attach_client),
        (is_async_sentinel_pool, attach_pool),
        (lambda obj: isinstance(obj, acluster.RedisCluster), attach_async_cluster),
    ]


#: What ``instrument()`` accepts of the cluster and Sentinel clients, as
#: ``(predicate, attach)`` rows of the index in
#: :mod:`redis_lifecycle._hooks.targets`, first match wins.
KINDS: list[Kind] = [
    *_asyncio_kinds(),
    (
        lambda obj: _is_sync_sentinel_pool(getattr(obj, "connection_pool", None)),
        attach_sentinel_client,
    ),
    (_is_sync_sentinel_pool, attach_sentinel_pool_target),
    (lambda obj: isinstance(obj, rcluster.RedisCluster), attach_cluster),
]
