"""Log every lifecycle event through :mod:`logging` or ``structlog``.

    >>> import logging, redis, redis_lifecycle as rl
    >>> from redis_lifecycle.contrib.logging import log_events
    >>> client = redis.Redis(host="localhost", port=6379)
    >>> subscription = log_events(rl.instrument(client))   # logger "redis_lifecycle.events"
    >>> subscription.unsubscribe()
    True

Each event becomes one record: a one-line message such as
``connected cache 127.0.0.1:6379/0 conn#3 connect_time=1.2ms`` and structured
fields, all prefixed ``redis_`` so that they never collide with a log
record's own attributes: ``redis_type``, ``redis_pool_name``, ``redis_host``,
``redis_port`` (or ``redis_path``), ``redis_db``, ``redis_connection_id``,
``redis_timestamp`` and the event's own fields (``redis_connect_time``,
``redis_reason``, ``redis_error`` as ``"Type: message"``, ...). A standard
logger receives them as ``extra``; a ``structlog`` logger as keyword
arguments.

Levels: ``DEBUG`` for the per-command and per-attempt events
(``connection_acquired``, ``connection_released``, ``connection_created``,
``pool_connection_created``); ``WARNING`` for trouble (``error``,
``pool_exhausted``, a failed health check, a close caused by an error or by
the server, ``retry``, ``retries_exhausted``); ``INFO`` for the rest.
Override any of them with ``levels=``.

The subscriber runs where the pool delivers events: inline on the thread
that caused the event unless the pool has an
:class:`~redis_lifecycle.AsyncCallbackExecutor`. Subscribing it to the
per-command events costs a log call per command even when ``DEBUG`` is off,
so by default it asks ``isEnabledFor`` once per event first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .._format import is_problem, json_dict, summary
from ..dispatcher import Subscription
from ..events import (
    EventType,
    LifecycleEvent,
)
from . import dispatcher_of

__all__ = ["DEFAULT_LOGGER_NAME", "EventLogger", "event_level", "log_events"]

#: The logger used when none is given.
DEFAULT_LOGGER_NAME = "redis_lifecycle.events"

_DEBUG_EVENTS = frozenset(
    {
        EventType.CONNECTION_ACQUIRED,
        EventType.CONNECTION_RELEASED,
        EventType.CONNECTION_CREATED,
        EventType.POOL_CONNECTION_CREATED,
    }
)


def event_level(event: LifecycleEvent) -> int:
    """The default level of ``event``: see the module docstring."""
    if is_problem(event):
        return logging.WARNING
    if event.type in _DEBUG_EVENTS:
        return logging.DEBUG
    return logging.INFO


def _is_stdlib(logger: Any) -> bool:
    return isinstance(logger, (logging.Logger, logging.LoggerAdapter))


class EventLogger:
    """The callback :func:`log_events` subscribes: logs one event per call.

    ``logger`` is a :class:`logging.Logger` (or ``LoggerAdapter``), or any
    ``structlog`` logger (anything with ``debug``/``info``/``warning``
    methods taking keyword arguments). ``levels`` maps event names (or
    :class:`~redis_lifecycle.EventType`) to levels, overriding
    :func:`event_level`.
    """

    def __init__(
        self,
        logger: Any = None,
        *,
        levels: Mapping[EventType | str, int] | None = None,
    ) -> None:
        if logger is None:
            logger = logging.getLogger(DEFAULT_LOGGER_NAME)
        self.logger = logger
        self._stdlib = _is_stdlib(logger)
        overrides: dict[str, int] = {}
        for name, level in (levels or {}).items():
            try:
                key = EventType(name).value
            except ValueError:
                valid = ", ".join(t.value for t in EventType)
                msg = f"levels= has unknown event name {name!r}; expected one of: {valid}"
                raise ValueError(msg) from None
            if not isinstance(level, int):
                msg = (
                    f"levels[{name!r}] must be a logging level such as logging.INFO, got {level!r}"
                )
                raise TypeError(msg)
            overrides[key] = level
        self._levels = overrides

    def level_for(self, event: LifecycleEvent) -> int:
        """The level ``event`` is logged at."""
        level = self._levels.get(event.type.value)
        return event_level(event) if level is None else level

    def __call__(self, event: LifecycleEvent) -> None:
        level = self.level_for(event)
        logger = self.logger
        if self._stdlib:
            if not logger.isEnabledFor(level):
                return
            fields = {f"redis_{key}": value for key, value in json_dict(event).items()}
            logger.log(level, "%s", summary(event), extra=fields)
            return
        fields = {f"redis_{key}": value for key, value in json_dict(event).items()}
        method = getattr(logger, logging.getLevelName(level).lower(), None)
        if method is None:
            logger.log(level, summary(event), **fields)
        else:
            method(summary(event), **fields)

    def __repr__(self) -> str:
        name = getattr(self.logger, "name", None) or type(self.logger).__name__
        return f"<EventLogger {name}>"


def log_events(
    source: Any,
    logger: Any = None,
    *,
    levels: Mapping[EventType | str, int] | None = None,
    events: type[LifecycleEvent] = LifecycleEvent,
) -> Subscription:
    """Log every event of ``source`` (a dispatcher, handle, lifecycle pool or
    instrumented client) to ``logger`` (default ``redis_lifecycle.events``).

    ``events`` narrows what is logged to one class and its subclasses (for
    example :class:`~redis_lifecycle.ConnectionDisconnectedEvent`). Returns
    the :class:`~redis_lifecycle.Subscription`; ``unsubscribe()`` it to stop.
    """
    return dispatcher_of(source).subscribe(events, EventLogger(logger, levels=levels))
