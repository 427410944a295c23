"""Teach ``instrument()`` about cluster and Sentinel clients.

Imported by :mod:`redis_lifecycle._targets` when it first resolves a target;
registering puts these kinds in front of the plain ``redis.Redis`` one (a
Sentinel-managed client *is* a ``redis.Redis``).
"""

from __future__ import annotations

from typing import Any

import redis.cluster as rcluster

from ._cluster import attach_cluster
from ._sentinel import attach_sentinel_client, attach_sentinel_pool_target, is_sentinel_pool
from ._targets import register_target_kind

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

_ = is_sentinel_pool  # asyncio kinds below use it once the asyncio hooks exist
