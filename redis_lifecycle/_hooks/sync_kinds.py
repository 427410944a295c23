"""The families of pools redis_lifecycle knows how to hook and count."""

from __future__ import annotations

from typing import Any

import redis.connection as rconn

from .attach import PoolKind, attach_pool, has_attributes
from .sync import (
    CONNECTION_PATCHER,
    SYNC_CHECKOUT_PATCHER,
    SYNC_POOL_PATCHER,
    SYNC_RELEASE_PATCHER,
    SyncPoolHooks,
    blocking_counts,
    blocking_total,
    pool_connections,
    pool_counts,
    pool_in_use,
    pool_total,
)

__all__ = ["SYNC_BLOCKING_POOL", "SYNC_POOL", "attach_sync_pool", "sync_kind_for"]

SYNC_POOL = PoolKind(
    hooks=SyncPoolHooks,
    patcher=CONNECTION_PATCHER,
    counts=pool_counts,
    total=pool_total,
    connections=pool_connections,
    in_use=pool_in_use,
    pool_patcher=SYNC_POOL_PATCHER,
    hot_patchers=(SYNC_CHECKOUT_PATCHER, SYNC_RELEASE_PATCHER),
    exhausted_in_checkout=False,  # "Too many connections" comes from make_connection
)
SYNC_BLOCKING_POOL = PoolKind(
    hooks=SyncPoolHooks,
    patcher=CONNECTION_PATCHER,
    counts=blocking_counts,
    total=blocking_total,
    connections=pool_connections,
    in_use=pool_in_use,
    pool_patcher=SYNC_POOL_PATCHER,
    hot_patchers=(SYNC_CHECKOUT_PATCHER, SYNC_RELEASE_PATCHER),
    blocking=True,
)


def sync_kind_for(pool: Any) -> PoolKind:
    """The kind of a sync ``ConnectionPool`` (blocking or not)."""
    if isinstance(pool, rconn.BlockingConnectionPool):
        kind, lists = SYNC_BLOCKING_POOL, ("_connections", "pool")
    else:
        kind, lists = SYNC_POOL, ("_in_use_connections", "_available_connections")
    if has_attributes(pool, lists):
        return kind
    return kind.without_counts()  # this redis-py renamed them: see rl.capabilities()


def attach_sync_pool(handle: Any, pool: Any, pool_name: str | None = None, **extra: Any) -> None:
    """Attach one sync pool to ``handle`` (a :class:`~redis_lifecycle.LifecycleHandle`)."""
    state = attach_pool(pool, sync_kind_for(pool), handle.delivery, pool_name=pool_name, **extra)
    state.handle = handle
    handle._add_pool(pool)
