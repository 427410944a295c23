"""Typed lifecycle events for redis-py connections and pools.

>>> import redis, redis_lifecycle as rl
>>> client = redis.Redis(host="localhost", port=6379)
>>> handle = rl.instrument(client)
>>> _ = handle.register_connection_callback("connected", print)
>>> rl.uninstrument(client)
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._capabilities import (
        CapabilityReport,
        EventCapability,
        RedisPyCompatibilityWarning,
        capabilities,
    )
    from ._instrument_all import instrument_all, uninstrument_all
    from ._version import __version__
    from .dispatcher import EventDispatcher, Subscription
    from .errors import CallbackError, CallbackErrorHandler
    from .events import (
        CloseReason,
        ClusterRedirectEvent,
        ClusterTopologyChangedEvent,
        ConnectionConnectedEvent,
        ConnectionCreatedEvent,
        ConnectionDisconnectedEvent,
        ConnectionErrorEvent,
        ConnectionHealthCheckEvent,
        ConnectionMarkedForReconnectEvent,
        ConnectionReconnectedEvent,
        ConnectionRetriesExhaustedEvent,
        ConnectionRetryEvent,
        ErrorCategory,
        EventOrigin,
        EventType,
        LifecycleEvent,
        MaintenanceNotificationEvent,
        MaintenanceTimeoutRelaxedEvent,
        MaintenanceTimeoutRestoredEvent,
        PoolConnectionAcquiredEvent,
        PoolConnectionCreatedEvent,
        PoolConnectionLeakEvent,
        PoolConnectionReleasedEvent,
        PoolCreatedEvent,
        PoolExhaustedEvent,
        PoolResetEvent,
        SentinelMasterChangedEvent,
        SlotMove,
    )
    from .executor import AsyncCallbackExecutor
    from .health import HealthCheckResult, health_check
    from .instrument import LifecycleHandle, instrument, uninstrument
    from .metrics import Instrumentation
    from .pool import LifecycleBlockingConnectionPool, LifecycleConnectionPool, pooled

# `redis_lifecycle.instrument` is also a submodule: importing it first (as tests
# and users do: `from redis_lifecycle.instrument import ...`) would bind the
# package attribute to the module, shadowing the function, for good. So these
# three load eagerly (they pull in wrapt, not redis).
# What redis-py's own events announce, instrumented (registers with the dispatcher).
from . import _native  # noqa: F401
from .instrument import LifecycleHandle, instrument, uninstrument

__all__ = [
    "AsyncCallbackExecutor",
    "CallbackError",
    "CallbackErrorHandler",
    "CapabilityReport",
    "CloseReason",
    "ClusterRedirectEvent",
    "ClusterTopologyChangedEvent",
    "ConnectionConnectedEvent",
    "ConnectionCreatedEvent",
    "ConnectionDisconnectedEvent",
    "ConnectionErrorEvent",
    "ConnectionHealthCheckEvent",
    "ConnectionMarkedForReconnectEvent",
    "ConnectionReconnectedEvent",
    "ConnectionRetriesExhaustedEvent",
    "ConnectionRetryEvent",
    "ErrorCategory",
    "EventCapability",
    "EventDispatcher",
    "EventOrigin",
    "EventType",
    "HealthCheckResult",
    "Instrumentation",
    "LifecycleBlockingConnectionPool",
    "LifecycleConnectionPool",
    "LifecycleEvent",
    "LifecycleHandle",
    "MaintenanceNotificationEvent",
    "MaintenanceTimeoutRelaxedEvent",
    "MaintenanceTimeoutRestoredEvent",
    "PoolConnectionAcquiredEvent",
    "PoolConnectionCreatedEvent",
    "PoolConnectionLeakEvent",
    "PoolConnectionReleasedEvent",
    "PoolCreatedEvent",
    "PoolExhaustedEvent",
    "PoolResetEvent",
    "RedisPyCompatibilityWarning",
    "SentinelMasterChangedEvent",
    "SlotMove",
    "Subscription",
    "__version__",
    "capabilities",
    "health_check",
    "instrument",
    "instrument_all",
    "pooled",
    "uninstrument",
    "uninstrument_all",
]

# Submodules load on first use: `import redis_lifecycle` (done by the pytest
# plugin in every test run of every project that installs us) costs ~1 ms
# instead of importing redis and the whole package.
_EXPORTS: dict[str, str] = {
    "__version__": "._version",
    "AsyncCallbackExecutor": ".executor",
    "CallbackError": ".errors",
    "CallbackErrorHandler": ".errors",
    "capabilities": "._capabilities",
    "CapabilityReport": "._capabilities",
    "CloseReason": ".events",
    "ClusterRedirectEvent": ".events",
    "ClusterTopologyChangedEvent": ".events",
    "ConnectionConnectedEvent": ".events",
    "ConnectionCreatedEvent": ".events",
    "ConnectionDisconnectedEvent": ".events",
    "ConnectionErrorEvent": ".events",
    "ConnectionHealthCheckEvent": ".events",
    "ConnectionMarkedForReconnectEvent": ".events",
    "ConnectionReconnectedEvent": ".events",
    "ConnectionRetriesExhaustedEvent": ".events",
    "ConnectionRetryEvent": ".events",
    "ErrorCategory": ".events",
    "EventCapability": "._capabilities",
    "EventDispatcher": ".dispatcher",
    "EventOrigin": ".events",
    "EventType": ".events",
    "health_check": ".health",
    "HealthCheckResult": ".health",
    "instrument": ".instrument",
    "instrument_all": "._instrument_all",
    "Instrumentation": ".metrics",
    "LifecycleBlockingConnectionPool": ".pool",
    "LifecycleConnectionPool": ".pool",
    "LifecycleEvent": ".events",
    "LifecycleHandle": ".instrument",
    "MaintenanceNotificationEvent": ".events",
    "MaintenanceTimeoutRelaxedEvent": ".events",
    "MaintenanceTimeoutRestoredEvent": ".events",
    "PoolConnectionAcquiredEvent": ".events",
    "PoolConnectionCreatedEvent": ".events",
    "PoolConnectionLeakEvent": ".events",
    "PoolConnectionReleasedEvent": ".events",
    "PoolCreatedEvent": ".events",
    "pooled": ".pool",
    "PoolExhaustedEvent": ".events",
    "PoolResetEvent": ".events",
    "RedisPyCompatibilityWarning": "._capabilities",
    "SentinelMasterChangedEvent": ".events",
    "SlotMove": ".events",
    "Subscription": ".dispatcher",
    "uninstrument": ".instrument",
    "uninstrument_all": "._instrument_all",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'redis_lifecycle' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
