"""``redis-lifecycle watch URL``: live lifecycle events of one server.

    $ redis-lifecycle watch redis://localhost:6379/0 --interval 2
    $ redis-lifecycle watch redis://localhost:6379/0 --json | jq .
    $ redis-lifecycle watch redis://10.0.0.1:7000 --cluster        # every node
    $ redis-lifecycle watch redis://10.0.0.9:26379 --sentinel mymaster

Connects, runs a health check every ``--interval`` seconds, prints every event
as it happens (``--json``: one JSON object per line) and carries on while the
server goes away and comes back. ``Ctrl-C`` (SIGINT) or SIGTERM stops it with
a summary. Callbacks run inline on the watching thread.

``--cluster`` watches the whole Redis Cluster the URL's node belongs to
(every node; redirects and slot-map changes), ``--sentinel SERVICE`` the
master that the sentinel at URL names for ``SERVICE`` (and the failovers
it sees).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

import redis

from ._cli_common import CliError, Target, describe_failure, first_contact
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
    cluster: bool = False,
    sentinel: str | None = None,
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
    try:
        client = _client(target, dispatcher, timeout, cluster, sentinel)
    except redis.RedisError as error:  # a cluster client connects at once
        raise CliError(describe_failure(error, target)) from None
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
                if cluster:
                    _refresh_slot_map(client)
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
        client.close()
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


def _refresh_slot_map(client: Any) -> None:
    """Ask the cluster for its slot map, as redis-py does after an error, so
    that ``cluster_topology_changed`` shows every change while watching."""
    with contextlib.suppress(redis.RedisError):  # the next health check reports it
        client.nodes_manager.initialize()


def _client(
    target: Target,
    dispatcher: EventDispatcher,
    timeout: float,
    cluster: bool,
    sentinel: str | None,
) -> Any:
    """The client to watch: one server, a whole cluster, or a Sentinel master."""
    timeouts: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if cluster:
        from redis.cluster import RedisCluster

        from .instrument import instrument

        nodes = RedisCluster.from_url(target.url, **timeouts)
        instrument(nodes, event_dispatcher=dispatcher)
        return nodes
    if sentinel is not None:
        from redis.sentinel import Sentinel

        from .instrument import instrument

        kwargs = redis.ConnectionPool.from_url(target.url).connection_kwargs
        address = (kwargs.get("host", "localhost"), kwargs.get("port", 26379))
        auth: dict[str, Any] = {k: kwargs[k] for k in ("username", "password") if kwargs.get(k)}
        manager = Sentinel([address], sentinel_kwargs={**auth, **timeouts})
        master = manager.master_for(sentinel, **auth, **timeouts)
        instrument(master, event_dispatcher=dispatcher)
        return master
    pool = LifecycleConnectionPool.from_url(
        target.url, event_dispatcher=dispatcher, pool_name=target.address, **timeouts
    )
    return redis.Redis(connection_pool=pool)


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
