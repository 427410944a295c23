"""Invariants every fault scenario checks afterwards, on the events it recorded.

Each check raises ``AssertionError`` with the offending connection's events,
and returns how many events it looked at (the fault report counts them).

* :func:`check_state_machine`: per connection, ``connected`` once, then
  ``(disconnected -> reconnected)*``; ``connection_created`` only while not
  connected; no ``disconnected`` of a connection that is not connected.
* :func:`check_pool_accounting`: ``acquired == released + still checked out``.
* :func:`check_only_from`: every event names the instrumented pool, and no
  connection of an uninstrumented client is tracked.
* :func:`check_outages`: per outage window, each connection connected when
  the fault hit gets exactly one ``disconnected`` (with an allowed reason) and
  then one ``reconnected``; the others get none.
* :func:`check_executor`: ``completed + dropped == submitted``, and nothing
  dropped when the policy cannot drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import redis_lifecycle as rl
from redis_lifecycle._hooks.state import CONNECTIONS

CONNECTION_EVENTS = (
    rl.ConnectionCreatedEvent,
    rl.ConnectionConnectedEvent,
    rl.ConnectionDisconnectedEvent,
)
FAULT_REASONS = frozenset({rl.CloseReason.ERROR, rl.CloseReason.SERVER_CLOSED})


def _fmt(events: Iterable[rl.LifecycleEvent]) -> str:
    return "\n  ".join(repr(e) for e in events)


def by_connection(events: Sequence[rl.LifecycleEvent]) -> dict[int, list[rl.LifecycleEvent]]:
    """Connection-scoped events grouped by ``connection_id``, in the order they happened."""
    grouped: dict[int, list[rl.LifecycleEvent]] = defaultdict(list)
    for event in events:
        if event.connection_id is not None:
            grouped[event.connection_id].append(event)
    for stream in grouped.values():
        # Through an executor, an event run inline on overflow (caller_runs)
        # may arrive before that connection's queued ones: order by when each
        # happened (stable: ties keep arrival order).
        stream.sort(key=lambda e: e.timestamp)
    return grouped


def check_state_machine(events: Sequence[rl.LifecycleEvent]) -> int:
    """created -> connected -> (disconnected -> reconnected)* for every connection."""
    checked = 0
    for connection_id, stream in by_connection(events).items():
        connected = False
        ever = False
        for index, event in enumerate(stream):
            if not isinstance(event, CONNECTION_EVENTS):
                continue
            checked += 1
            bad = None
            if isinstance(event, rl.ConnectionReconnectedEvent):
                if connected or not ever:
                    bad = "reconnected while connected or before a first connect"
                connected = True
            elif isinstance(event, rl.ConnectionConnectedEvent):
                if ever:
                    bad = "a second first-time 'connected'"
                connected = ever = True
            elif isinstance(event, rl.ConnectionDisconnectedEvent):
                if not connected:
                    bad = "disconnected while not connected"
                connected = False
            elif connected:  # ConnectionCreatedEvent
                bad = "connection_created while connected"
            if bad is not None:
                raise AssertionError(
                    f"connection {connection_id}: {bad} at event {index}:\n  "
                    + _fmt(stream[max(0, index - 6) : index + 1])
                )
    return checked


def check_pool_accounting(events: Sequence[rl.LifecycleEvent], checked_out: int) -> int:
    """acquired == released + still checked out (``checked_out`` read from the pool)."""
    acquired = sum(1 for e in events if type(e) is rl.PoolConnectionAcquiredEvent)
    released = sum(1 for e in events if type(e) is rl.PoolConnectionReleasedEvent)
    assert acquired == released + checked_out, (
        f"acquired {acquired} != released {released} + checked out {checked_out}"
    )
    return acquired + released


def check_only_from(
    events: Sequence[rl.LifecycleEvent], pool_name: str, uninstrumented_pools: Iterable[Any]
) -> int:
    """Every event comes from ``pool_name``; no connection of the uninstrumented
    pools is tracked at all."""
    strangers = [e for e in events if e.pool_name != pool_name]
    assert not strangers, f"events from other pools:\n  {_fmt(strangers[:10])}"
    for pool in uninstrumented_pools:
        connections = [*pool._available_connections, *pool._in_use_connections]
        tracked = [c for c in connections if id(c) in CONNECTIONS]
        assert not tracked, f"uninstrumented connections are tracked: {tracked}"
    return len(events)


def state_at(events: Sequence[rl.LifecycleEvent], when: float) -> dict[int, bool]:
    """Per connection: connected or not, replaying the events stamped before ``when``."""
    state: dict[int, bool] = {}
    for event in events:
        if event.timestamp >= when or event.connection_id is None:
            continue
        if isinstance(event, rl.ConnectionConnectedEvent):
            state[event.connection_id] = True
        elif isinstance(event, rl.ConnectionDisconnectedEvent):
            state[event.connection_id] = False
    return state


def check_outages(
    events: Sequence[rl.LifecycleEvent],
    windows: Sequence[tuple[float, float, float]],
    reasons: frozenset[rl.CloseReason] = FAULT_REASONS,
) -> int:
    """Per ``(fault_started, fault_done, recovered)`` window: each connection
    connected when the fault hit gets exactly one ``disconnected`` (reason in
    ``reasons``) and then exactly one ``reconnected`` inside the window; the
    others get none. A connection that (re)connected while the fault was being
    injected counts as connected. Every ``error`` event carries an exception.
    No ``disconnected`` happens outside the windows."""
    checked = 0
    grouped = by_connection(events)
    for number, (start, injected, end) in enumerate(windows, 1):
        connected = state_at(events, start)
        for connection_id, stream in grouped.items():
            inside = [e for e in stream if start <= e.timestamp <= end]
            downs = [e for e in inside if isinstance(e, rl.ConnectionDisconnectedEvent)]
            ups = [e for e in inside if isinstance(e, rl.ConnectionReconnectedEvent)]
            errors = [e for e in inside if isinstance(e, rl.ConnectionErrorEvent)]
            checked += len(downs) + len(ups) + len(errors)
            context = f"outage {number}, connection {connection_id}:\n  {_fmt(inside)}"
            for error in errors:
                assert isinstance(error.error, BaseException), context
                assert error.phase in ("connect", "handshake", "io", "health_check"), context
            raced = any(
                isinstance(e, rl.ConnectionConnectedEvent) and e.timestamp <= injected
                for e in inside
            )
            if not connected.get(connection_id, False) and not raced:
                assert not downs, "disconnected although not connected at the fault: " + context
                continue
            assert len(downs) == 1, f"{len(downs)} disconnected (want 1): " + context
            assert downs[0].reason in reasons, "unexpected reason: " + context
            after = [e for e in ups if e.timestamp >= downs[0].timestamp]
            assert len(after) == 1, f"{len(after)} reconnected after it (want 1): " + context
    outside = [
        e
        for e in events
        if isinstance(e, rl.ConnectionDisconnectedEvent)
        and not any(start <= e.timestamp <= end for start, _, end in windows)
    ]
    assert not outside, f"disconnected outside every fault window:\n  {_fmt(outside)}"
    return checked


def check_executor(executor: rl.AsyncCallbackExecutor, *, may_drop: bool) -> dict[str, int]:
    """After ``shutdown``: completed + dropped == submitted; dropped == 0 unless allowed."""
    stats = dict(executor.stats())
    assert stats["completed"] + stats["dropped"] == stats["submitted"], stats
    assert stats["queued"] == 0, stats
    if not may_drop:
        assert stats["dropped"] == 0, stats
    return stats
