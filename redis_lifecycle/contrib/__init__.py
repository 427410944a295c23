"""Integrations with the tools applications already use.

    >>> import logging, redis_lifecycle as rl
    >>> from redis_lifecycle.contrib.logging import log_events
    >>> dispatcher = rl.EventDispatcher()
    >>> subscription = log_events(dispatcher, logging.getLogger("redis"))

* :mod:`redis_lifecycle.contrib.logging`: every event as a log record
  (standard :mod:`logging` or ``structlog``); no extra needed.
* :mod:`redis_lifecycle.contrib.opentelemetry`: OpenTelemetry metrics with
  the semantic-convention names redis-py 8 uses (extra ``otel``).
* :mod:`redis_lifecycle.contrib.prometheus`: a ``prometheus_client``
  collector exposing the same figures (extra ``prometheus``).

Each integration is a subscriber: its callbacks run wherever the pool
delivers events (inline on the thread that caused them, or on an
:class:`~redis_lifecycle.AsyncCallbackExecutor`). Importing one without its
extra raises :class:`ImportError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..dispatcher import EventDispatcher

__all__ = ["dispatcher_of", "pool_stats_for", "require", "slow_callbacks_for"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        msg = (
            f"{what} needs the optional dependency {module.split('.')[0]!r}, which is not "
            f"installed; install it with: pip install 'redis-lifecycle[{extra}]'"
        )
        raise ImportError(msg, name=module) from error


def dispatcher_of(source: Any) -> EventDispatcher:
    """The :class:`~redis_lifecycle.EventDispatcher` behind ``source``: a
    dispatcher, a :class:`~redis_lifecycle.LifecycleHandle`, a lifecycle pool,
    or a client or pool already passed to :func:`~redis_lifecycle.instrument`."""
    if isinstance(source, EventDispatcher):
        return source
    dispatcher = getattr(source, "dispatcher", None)
    if isinstance(dispatcher, EventDispatcher):
        return dispatcher
    from ..instrument import handle_for

    handle = handle_for(source)
    if handle is None and hasattr(source, "connection_pool"):
        handle = handle_for(source.connection_pool)
    if handle is None:
        from .._hooks.attach import pool_state_of

        state = pool_state_of(getattr(source, "connection_pool", source))
        handle = state.handle if state is not None else None
    if handle is not None:
        return handle.dispatcher
    msg = (
        "expected a redis_lifecycle.EventDispatcher, a LifecycleHandle, a lifecycle pool "
        f"or an instrumented client; got {type(source).__module__}."
        f"{type(source).__qualname__}. Call redis_lifecycle.instrument(client) first, "
        "and pass the handle it returns"
    )
    raise TypeError(msg)


def pool_stats_for(dispatcher: EventDispatcher, reader: object = None) -> list[dict[str, Any]]:
    """:meth:`~redis_lifecycle.LifecycleHandle.pool_stats` of every live pool
    whose events go to ``dispatcher``, read now (each pool once);
    ``waiting_peak`` is the most since ``reader`` (an exporter) last read
    (``None`` without a reader)."""
    from .._hooks.saturation import saturation
    from ..instrument import _handles

    seen: set[int] = set()
    stats: list[dict[str, Any]] = []
    for handle in list(_handles.values()):
        if handle.dispatcher is not dispatcher:
            continue
        for pool in handle.pools():
            if id(pool) in seen:
                continue
            seen.add(id(pool))
            from .._hooks.attach import pool_state_of

            state = pool_state_of(pool)
            if state is None:
                continue
            active, idle = state.counts(pool)
            if reader is None:  # the peak is not wanted: leave it to its readers
                waiting, peak = saturation(state, take=False)
            else:
                waiting, peak = saturation(state, id(reader))
            stats.append(
                {
                    "pool_name": state.name,
                    "max_connections": state.size,
                    "active": active,
                    "idle": idle,
                    "waiting": waiting,
                    "waiting_peak": peak,
                }
            )
    return stats


def slow_callbacks_for(dispatchers: Any) -> dict[str, int]:
    """Slow callback runs by event name, summed over every
    :class:`~redis_lifecycle.Instrumentation` (each once) that measures the
    pools or handles delivering to ``dispatchers``: the ``slow`` counts of
    its :meth:`~redis_lifecycle.Instrumentation.callback_metrics`. Empty
    when none was given ``slow_callback=``."""
    seen: set[int] = set()
    totals: dict[str, int] = {}
    for dispatcher in dispatchers:
        for delivery in list(dispatcher._deliveries):
            instrumentation = delivery.instrumentation
            if instrumentation is None or id(instrumentation) in seen:
                continue
            seen.add(id(instrumentation))
            if instrumentation.slow_callback is None:
                continue
            for event_type, stats in list(instrumentation._callbacks.items()):
                if stats.slow:
                    name = event_type.value
                    totals[name] = totals.get(name, 0) + stats.slow
    return totals
