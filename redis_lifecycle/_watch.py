"""``redis-lifecycle watch URL``: live lifecycle events of one server.

    $ redis-lifecycle watch redis://localhost:6379/0 --interval 2
    $ redis-lifecycle watch redis://localhost:6379/0 --json | jq .

Connects, runs a health check every ``--interval`` seconds, prints every event
as it happens (``--json``: one JSON object per line) and carries on while the
server goes away and comes back. A leaked connection prints in red with the
innermost lines of the stack that checked it out; a checkout that waited
behind others prints in yellow with ``pending=N`` (the callers already
waiting); ``--leak-detection SECONDS`` turns leak detection on for the
watching pool. ``Ctrl-C`` (SIGINT) or SIGTERM stops it with
a summary. Callbacks run inline on the watching thread.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

import redis

from ._cli_common import Target, first_contact
from ._cli_output import Printer
from .dispatcher import EventDispatcher
from .events import ConnectionHealthCheckEvent, LifecycleEvent
from .health import health_check
from .pool import LifecycleConnectionPool

__all__ = ["watch"]


def watch(
    target: Target,
    printer: Printer,
    *,
    interval: float,
    count: int | None,
    command: str,
    leak_detection: float | None = None,
) -> int:
    """Watch until a signal (or ``count`` health checks); returns the exit status."""
    dispatcher = EventDispatcher()
    counts: Counter[str] = Counter()
    outages: list[float] = []
    state: dict[str, Any] = {"down_since": None, "healthy": 0, "unhealthy": 0, "live": False}
    pending: list[LifecycleEvent] = []

    def on_event(event: LifecycleEvent) -> None:
        counts[event.type.value] += 1
        if isinstance(event, ConnectionHealthCheckEvent):
            if event.healthy:
                state["healthy"] += 1
                if state["down_since"] is not None:
                    outages.append(time.monotonic() - state["down_since"])
                    state["down_since"] = None
            else:
                state["unhealthy"] += 1
                if state["down_since"] is None:
                    state["down_since"] = time.monotonic()
        if state["live"]:
            printer.event(event)
        else:  # held back until the first PING proves the URL good
            pending.append(event)

    dispatcher.subscribe(LifecycleEvent, on_event)
    timeout = max(min(interval, 5.0), 0.5)
    pool = LifecycleConnectionPool.from_url(
        target.url,
        event_dispatcher=dispatcher,
        pool_name=target.address,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        leak_detection=leak_detection,
    )
    client = redis.Redis(connection_pool=pool)
    try:
        first_contact(client, target)
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        started = time.monotonic()
        if not printer.as_json:
            printer.line(
                printer.style(
                    f"watching {target.address}: health check every {interval:g}s (Ctrl-C to stop)",
                    "bold",
                )
            )
        for event in pending:
            printer.event(event)
        pending.clear()
        state["live"] = True
        checks = 0
        try:
            while not stop.is_set():
                health_check(client, command)
                checks += 1
                if count is not None and checks >= count:
                    break
                stop.wait(interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        _summary(printer, target, time.monotonic() - started, counts, state, outages)
        return 0
    finally:
        dispatcher.clear()  # the summary is the last line printed
        pool.disconnect()


def _summary(
    printer: Printer,
    target: Target,
    elapsed: float,
    counts: Counter[str],
    state: dict[str, Any],
    outages: list[float],
) -> None:
    if printer.as_json:
        printer.json_line(
            {
                "type": "summary",
                "address": target.address,
                "seconds": round(elapsed, 3),
                "health_checks": {"healthy": state["healthy"], "unhealthy": state["unhealthy"]},
                "outages": len(outages) + (1 if state["down_since"] is not None else 0),
                "still_down": state["down_since"] is not None,
                "events": dict(sorted(counts.items())),
            }
        )
        return
    printer.line()
    printer.line(printer.style(f"summary for {target.address} after {elapsed:.1f}s", "bold"))
    printer.line(f"  health checks: {state['healthy']} healthy, {state['unhealthy']} unhealthy")
    if outages:
        longest = max(outages)
        printer.line(f"  outages: {len(outages)} recovered (longest {longest:.1f}s)")
    if state["down_since"] is not None:
        printer.line(printer.style("  the server is still unreachable", "red"))
    for name, number in sorted(counts.items()):
        printer.line(f"  {name:<24} {number}")
