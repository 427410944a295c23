"""Which events the installed redis-py lets the library produce.

The hooks wrap redis-py methods, some of them private, and read pool counts
from private lists. A redis-py release may rename any of them; bare redis-py
keeps working, and the hooks skip what they cannot find. This module checks
the installed redis-py against :data:`~redis_lifecycle._hooks.redis_names.REDIS_NAMES`
once per process and says which events cannot be produced and why: through
:func:`capabilities` and, the first time something is instrumented, one
:class:`RedisPyCompatibilityWarning` (also logged).
"""

from __future__ import annotations

import importlib
import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from ._hooks.redis_names import COUNTS, REDIS_NAMES, RedisName
from .events import EVENT_CLASSES, LifecycleEvent

__all__ = [
    "CapabilityReport",
    "EventCapability",
    "RedisPyCompatibilityWarning",
    "capabilities",
    "check_redis_py",
]

logger = logging.getLogger("redis_lifecycle")


class RedisPyCompatibilityWarning(UserWarning):
    """The installed redis-py lacks a name the library hooks: some events
    cannot be produced. Issued once per process; the message names them."""


@dataclass(frozen=True)
class EventCapability:
    """Whether one event class can be produced on the installed redis-py."""

    event: type[LifecycleEvent]
    available: bool
    reason: str | None = None

    @property
    def name(self) -> str:
        return str(self.event.type.value)


@dataclass(frozen=True)
class CapabilityReport:
    """What :func:`capabilities` returns: the installed redis-py's version,
    one :class:`EventCapability` per event class, and the pool-count fields."""

    redis_py_version: str
    events: tuple[EventCapability, ...]
    pool_counts: bool = True
    pool_counts_reason: str | None = None
    missing: tuple[str, ...] = field(default=())

    @property
    def unavailable(self) -> tuple[EventCapability, ...]:
        """The events that cannot be produced, each with its reason."""
        return tuple(cap for cap in self.events if not cap.available)

    def for_event(self, event: type[LifecycleEvent]) -> EventCapability:
        """The entry for ``event`` (an event class)."""
        for cap in self.events:
            if cap.event is event:
                return cap
        raise KeyError(f"{event!r} is not an event class of redis_lifecycle")

    def to_dict(self) -> dict[str, Any]:
        return {
            "redis_py_version": self.redis_py_version,
            "events": {
                cap.name: {"available": cap.available, "reason": cap.reason} for cap in self.events
            },
            "pool_counts": {"available": self.pool_counts, "reason": self.pool_counts_reason},
        }

    def summary(self) -> str:
        """One paragraph naming what cannot be produced and why (empty if all is)."""
        lines = [f"{cap.name}: {cap.reason}" for cap in self.unavailable]
        if not self.pool_counts:
            lines.append(f"{COUNTS} (active/idle fields are -1): {self.pool_counts_reason}")
        if not lines:
            return ""
        return (
            f"redis_lifecycle cannot produce some events on redis-py {self.redis_py_version}; "
            "commands are unaffected. " + "; ".join(lines)
        )


def _redis_version() -> str:
    # Imported here: `import redis_lifecycle` does not import redis.
    import redis

    return str(getattr(redis, "__version__", "unknown"))


def _version() -> tuple[int, int]:
    parts = _redis_version().split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return (0, 0)


def _present(row: RedisName) -> bool:
    """Whether ``row``'s name exists in the installed redis-py."""
    try:
        module = importlib.import_module(row.module)
        owner = getattr(module, row.owner)
    except (ImportError, AttributeError):
        return False
    names = row.name.split("|")
    if not row.instance:
        return any(hasattr(owner, name) for name in names)
    try:
        instance = owner()  # a pool: opens no connection
    except Exception:  # a constructor that needs arguments: cannot tell
        return True
    return any(hasattr(instance, name) for name in names)


def build_report(rows: tuple[RedisName, ...] = REDIS_NAMES) -> CapabilityReport:
    """Check ``rows`` against the installed redis-py (no caching)."""
    installed = _version()
    version = _redis_version()
    reasons: dict[str, list[str]] = {}
    missing: list[str] = []
    for row in rows:
        if _present(row):
            continue
        if installed < row.since:
            why = f"needs redis-py {row.since[0]}.{row.since[1]} or newer"
        else:
            why = f"{row.path} is missing"
            missing.append(row.path)
        for event in row.events:
            if why not in reasons.setdefault(event, []):
                reasons[event].append(why)
    events = tuple(
        EventCapability(
            cls,
            cls.type.value not in reasons,
            "; ".join(reasons[cls.type.value]) if cls.type.value in reasons else None,
        )
        for cls in EVENT_CLASSES
    )
    counts_reason = "; ".join(reasons[COUNTS]) if COUNTS in reasons else None
    return CapabilityReport(version, events, counts_reason is None, counts_reason, tuple(missing))


_lock = threading.Lock()
_report: CapabilityReport | None = None
_warned = False


def capabilities() -> CapabilityReport:
    """Which events the installed redis-py lets redis_lifecycle produce.

    Checked once per process against the table of every redis-py name the
    library hooks. An event is unavailable when a name it depends on is
    missing (a redis-py release renamed it) or when the installed redis-py is
    older than the feature; ``reason`` says which.

    >>> import redis_lifecycle as rl
    >>> report = rl.capabilities()
    >>> report.for_event(rl.ConnectionHealthCheckEvent).available
    True
    """
    global _report
    with _lock:
        if _report is None:
            _report = build_report()
        return _report


def check_redis_py() -> None:
    """Called when something is instrumented: warn once per process if some
    events cannot be produced. Never raises."""
    global _warned
    if _warned:
        return
    try:
        report = capabilities()
        with _lock:
            if _warned:
                return
            _warned = True
        # Only names missing from a redis-py new enough to have them are news.
        if not report.missing:
            return
        message = report.summary()
        logger.warning("%s", message)
        warnings.warn(message, RedisPyCompatibilityWarning, stacklevel=3)
    except RedisPyCompatibilityWarning:
        raise  # a warnings filter set to "error" by the application
    except Exception:  # never break the host over a report
        logger.debug("redis_lifecycle: capability check failed", exc_info=True)
