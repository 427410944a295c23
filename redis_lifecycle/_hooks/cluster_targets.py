"""Teach ``instrument()`` about cluster and Sentinel clients.

Imported by :mod:`redis_lifecycle._hooks.targets` when it first resolves a target;
registering puts these kinds in front of the plain ``redis.Redis`` one (a
Sentinel-managed client *is* a ``redis.Redis``).
"""

from __future__ import annotations

from typing import Any

import redis.cluster as rcluster

from .cluster import attach_cluster
from .sentinel import attach_sentinel_client, attach_sentinel_pool, attach_sentinel_pool_target
from .targets import register_target_kind

__all__: list[str] = []


def _is_sync_sentinel_pool(obj: Any) -> bool:
    import redis.sentinel as rsentinel

    return isinstance(obj, rsentinel.SentinelConnectionPool)


register_target_kind(lambda obj: isinstance(obj, rcluster.RedisCluster), attach_cluster)
register_target_kind(_is_sync_sentinel_pool, attach_sentinel_pool_target)
register_target_kind(
    lambda obj: _is_sync_sentinel_pool(getattr(obj, "connection_pool", None)),
    attach_sentinel_client,
)


def _register_asyncio_kinds() -> None:
    """The asyncio cluster and Sentinel clients (if the asyncio hooks exist)."""
    try:
        import redis.asyncio.cluster as acluster
        import redis.asyncio.sentinel as asentinel

        from .aio_cluster import attach_async_cluster
        from .aio_targets import attach_async_pool
    except ImportError:  # pragma: no cover - redis-py without asyncio support
        return

    def is_async_sentinel_pool(obj: Any) -> bool:
        return isinstance(obj, asentinel.SentinelConnectionPool)

    def attach_pool(pool: Any, handle: Any, pool_name: str | None) -> None:
        attach_sentinel_pool(handle, pool, pool_name, attach=attach_async_pool)

    def attach_client(client: Any, handle: Any, pool_name: str | None) -> None:
        attach_sentinel_pool(
            handle, client.connection_pool, pool_name, attach=attach_async_pool, owner=client
        )

    register_target_kind(lambda obj: isinstance(obj, acluster.RedisCluster), attach_async_cluster)
    register_target_kind(is_async_sentinel_pool, attach_pool)
    register_target_kind(
        lambda obj: is_async_sentinel_pool(getattr(obj, "connection_pool", None)), attach_client
    )


_register_asyncio_kinds()
