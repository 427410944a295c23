"""Typed lifecycle events for redis-py connections and pools.

>>> import redis, redis_lifecycle as rl
>>> client = redis.Redis(host="localhost", port=6379)
>>> handle = rl.instrument(client)
>>> _ = handle.register_connection_callback("connected", print)
>>> rl.uninstrument(client)
True
"""

from __future__ import annotations

from ._auto import instrument_all, uninstrument_all
from ._version import __version__
from .dispatcher import EventDispatcher, Subscription
from .errors import CallbackError, CallbackErrorHandler
from .events import (
    CloseReason,
    ConnectionConnectedEvent,
    ConnectionCreatedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    ConnectionReconnectedEvent,
    EventOrigin,
    EventType,
    LifecycleEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionReleasedEvent,
    PoolCreatedEvent,
    PoolExhaustedEvent,
    PoolResetEvent,
)
from .executor import AsyncCallbackExecutor
from .health import HealthCheckResult, health_check
from .instrument import LifecycleHandle, instrument, uninstrument
from .metrics import Instrumentation
from .pool import LifecycleBlockingConnectionPool, LifecycleConnectionPool, pooled

__all__ = [
    "AsyncCallbackExecutor",
    "CallbackError",
    "CallbackErrorHandler",
    "CloseReason",
    "ConnectionConnectedEvent",
    "ConnectionCreatedEvent",
    "ConnectionDisconnectedEvent",
    "ConnectionErrorEvent",
    "ConnectionHealthCheckEvent",
    "ConnectionMarkedForReconnectEvent",
    "ConnectionReconnectedEvent",
    "EventDispatcher",
    "EventOrigin",
    "EventType",
    "HealthCheckResult",
    "Instrumentation",
    "LifecycleBlockingConnectionPool",
    "LifecycleConnectionPool",
    "LifecycleEvent",
    "LifecycleHandle",
    "PoolConnectionAcquiredEvent",
    "PoolConnectionCreatedEvent",
    "PoolConnectionReleasedEvent",
    "PoolCreatedEvent",
    "PoolExhaustedEvent",
    "PoolResetEvent",
    "Subscription",
    "__version__",
    "health_check",
    "instrument",
    "instrument_all",
    "pooled",
    "uninstrument",
    "uninstrument_all",
]
