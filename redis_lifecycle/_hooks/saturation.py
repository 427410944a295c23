"""Pool saturation: how many callers wait for a connection, now and at most.

A caller is counted as waiting while it is inside the checkout of a
blocking pool that had no free connection when it came (a thread in a sync
``BlockingConnectionPool``, a task in an asyncio one): the checkout hook
calls :func:`wait_sync` / :func:`wait_async` instead of redis-py's checkout
then. A pool with a free connection pays one test on its checkout; pools
that never wait (``ConnectionPool``) none. ``PoolState.waiting_peak`` is the
most at once since the last ``pool_stats()`` of the pool.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["must_wait_async", "saturation", "take_peak", "wait_async", "wait_sync"]

_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _enter(state: Any) -> None:
    with _lock:
        waiting = state.waiting + 1
        state.waiting = waiting
        peaks = state.waiting_peak
        for reader, peak in peaks.items():
            if waiting > peak:
                peaks[reader] = waiting


def _leave(state: Any) -> None:
    with _lock:
        state.waiting = max(state.waiting - 1, 0)


def wait_sync(pool: Any, state: Any, call: Any, args: Any, kwargs: Any) -> Any:
    """A sync checkout that will wait: counted while it does."""
    _enter(state)
    try:
        return call(pool, *args, **kwargs)
    finally:
        _leave(state)


async def wait_async(pool: Any, state: Any, call: Any, args: Any, kwargs: Any) -> Any:
    """An asyncio checkout that will wait: counted while it does."""
    _enter(state)
    try:
        return await call(pool, *args, **kwargs)
    finally:
        _leave(state)


def must_wait_async(pool: Any) -> bool:
    """Whether an asyncio blocking pool has no connection to give now."""
    can_get = getattr(pool, "can_get_connection", None)
    if can_get is None:  # a redis-py without it: never counted
        return False
    return not can_get()


def take_peak(state: Any, reader: int | None = None) -> int:
    """The most callers waiting at once since ``reader`` (``None``:
    ``pool_stats()``; an exporter: its id) last called; starts anew from
    those waiting now. Each reader has its own, so that two exporters do
    not reset each other's."""
    with _lock:
        waiting = state.waiting
        peak = max(state.waiting_peak.get(reader, waiting), waiting)
        state.waiting_peak[reader] = waiting
    return int(peak)


def saturation(
    state: Any, reader: int | None = None, *, take: bool = True
) -> tuple[int | None, int | None]:
    """``(waiting, waiting_peak)`` of a pool for ``reader``: ``(0, 0)`` for
    a pool that never waits, ``(None, None)`` when its checkout is not
    hooked (no per-command event wanted, no leak detection). With
    ``take=False`` the peak is not read (``None``) and not started anew."""
    if not state.blocking:
        return 0, 0 if take else None
    if not state.delivery.wants_per_command:
        return None, None
    peak = take_peak(state, reader) if take else None
    return int(state.waiting), peak
