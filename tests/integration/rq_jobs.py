"""What RQ's test job runs in RQ's work horse, a child forked per job.

The test subscribes :func:`record` in the worker's process; the horse
inherits the subscription and starts with an empty list (cleared after every
fork), so :func:`events_in_this_process` returns what the horse alone saw
before its job ran: RQ stores that return value in Redis for the parent.
"""

from __future__ import annotations

import os

import redis_lifecycle as rl

_seen: list[rl.LifecycleEvent] = []


def record(event: rl.LifecycleEvent) -> None:
    _seen.append(event)


os.register_at_fork(after_in_child=_seen.clear)


def events_in_this_process() -> list[tuple[str, str | None]]:
    """``(event type, reason)`` of each event this process emitted since its fork."""
    seen = []
    for event in _seen:
        reason = getattr(event, "reason", None)
        seen.append((event.type.value, None if reason is None else str(reason)))
    return seen
