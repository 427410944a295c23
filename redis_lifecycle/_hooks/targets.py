"""What ``instrument()`` accepts, and how each kind of client is attached.

Each supported client type maps to a :class:`Target` that knows where its
pools are. Resolving happens before anything is changed, so a ``TypeError``
for an unsupported object leaves nothing half-instrumented.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
import redis.connection as rconn

from .._redact import redact

if TYPE_CHECKING:
    from ..instrument import LifecycleHandle

__all__ = ["Target", "resolve_target", "register_target_kind"]


class Target:
    """One client or pool to instrument."""

    def __init__(
        self, obj: Any, attach: Callable[[Any, LifecycleHandle, str | None], None]
    ) -> None:
        self.obj = obj
        self._attach = attach

    def attach(self, handle: LifecycleHandle, pool_name: str | None) -> None:
        self._attach(self.obj, handle, pool_name)


def _attach_sync_pool(pool: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    from .sync_kinds import attach_sync_pool

    attach_sync_pool(handle, pool, pool_name)


def _attach_sync_client(client: Any, handle: LifecycleHandle, pool_name: str | None) -> None:
    _attach_sync_pool(client.connection_pool, handle, pool_name)


def _attach_sync_connection(
    connection: Any, handle: LifecycleHandle, pool_name: str | None
) -> None:
    from .connection import attach_connection
    from .sync import CONNECTION_PATCHER

    attach_connection(connection, handle, pool_name, patcher=CONNECTION_PATCHER, is_async=False)


def _is_sync_connection(obj: Any) -> bool:
    base = getattr(rconn, "AbstractConnection", None) or rconn.Connection
    return isinstance(obj, base)


# The index of what ``instrument()`` accepts: (predicate, attach) rows, tried
# in order, first match wins. The sync rows are here; the cluster and Sentinel
# rows (``cluster_targets.KINDS``) and the asyncio ones (``aio_targets.KINDS``)
# go in front of them on the first resolve, in that order.
_SYNC_KINDS: list[tuple[Callable[[Any], bool], Callable[[Any, Any, str | None], None]]] = [
    (lambda obj: isinstance(obj, rconn.ConnectionPool), _attach_sync_pool),
    (
        lambda obj: (
            isinstance(obj, redis.Redis)
            and isinstance(getattr(obj, "connection_pool", None), rconn.ConnectionPool)
        ),
        _attach_sync_client,
    ),
    (_is_sync_connection, _attach_sync_connection),
]
_KINDS = list(_SYNC_KINDS)
_loaded_optional = False


def register_target_kind(
    predicate: Callable[[Any], bool], attach: Callable[[Any, Any, str | None], None]
) -> None:
    """Teach ``instrument()`` another kind of client (asyncio, cluster, ...)."""
    _KINDS.insert(0, (predicate, attach))


def _load_optional_kinds() -> None:
    """Put the cluster, Sentinel and asyncio rows in front of the sync ones
    (imported on the first ``instrument()``: importing redis.asyncio and
    redis.cluster is not free)."""
    global _loaded_optional
    if _loaded_optional:
        return
    _loaded_optional = True
    from . import aio_targets, cluster_targets

    # first match wins: a Sentinel-managed client *is* a redis.Redis, an
    # asyncio one is not a sync one, so the special kinds come first
    position = len(_KINDS) - len(_SYNC_KINDS)  # after any register_target_kind()
    _KINDS[position:position] = [*cluster_targets.KINDS, *aio_targets.KINDS]


SUPPORTED = (
    "redis.Redis, redis.asyncio.Redis, redis.cluster.RedisCluster, "
    "redis.asyncio.cluster.RedisCluster, a client from Sentinel.master_for()/"
    "slave_for(), a redis-py connection pool, or a single redis-py connection"
)


def resolve_target(obj: Any) -> Target:
    """The :class:`Target` for ``obj``; :class:`TypeError` naming its type if
    it is not something redis_lifecycle can instrument."""
    _load_optional_kinds()
    for predicate, attach in _KINDS:
        if predicate(obj):
            return Target(obj, attach)
    cls = type(obj)
    shown = redact(repr(obj))[:80]  # masked before it is cut, so no half URL slips through
    msg = f"instrument() expects {SUPPORTED}; got {cls.__module__}.{cls.__qualname__} ({shown})"
    raise TypeError(msg)
