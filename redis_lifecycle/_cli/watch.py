"""``redis-lifecycle watch URL``: live lifecycle events of one server.

    $ redis-lifecycle watch redis://localhost:6379/0 --interval 2
    $ redis-lifecycle watch redis://localhost:6379/0 --json | jq .
    $ redis-lifecycle watch redis://10.0.0.1:7000 --cluster        # every node
    $ redis-lifecycle watch redis://10.0.0.9:26379 --sentinel mymaster

Connects, runs a health check every ``--interval`` seconds, prints every event
as it happens (``--json``: one JSON object per line) and carries on while the
server goes away and comes back. A leaked connection prints in red with the
innermost lines of the stack that checked it out; a checkout that waited
behind others prints in yellow with ``pending=N`` (the callers already
waiting); ``--leak-detection SECONDS`` turns leak detection on for the
watching pool. ``Ctrl-C`` (SIGINT) or SIGTERM stops it with
a summary. A health-check command the server answers with an error (an
unknown command, say) is not an outage: on the first check it stops ``watch``
with that error (exit status 2); later, the summary reports it and the exit
status is 1. Callbacks run inline on the watching thread.

With ``?protocol=3`` in the URL, redis-py 7.0+ asks the server for its
maintenance notifications: each one is printed (``maintenance_notification``,
with its kind), and the summary counts them by kind.

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
import redis.exceptions as rexc

from .._redact import MASK, command_secrets, redact_command
from ..dispatcher import EventDispatcher
from ..events import (
    ConnectionHealthCheckEvent,
    LifecycleEvent,
    MaintenanceNotificationEvent,
    describe_error,
)
from ..health import health_check
from ..pool import LifecycleConnectionPool
from .common import CliError, CliTarget, describe_failure, first_contact
from .output import Printer

__all__ = ["watch"]


def watch(
    target: CliTarget,
    printer: Printer,
    *,
    interval: float,
    count: int | None,
    command: str,
    leak_detection: float | None = None,
    cluster: bool = False,
    sentinel: str | None = None,
) -> int:
    """Watch until a signal (or ``count`` health checks); returns the exit status."""
    dispatcher = EventDispatcher()
    counts: Counter[str] = Counter()
    outages: list[float] = []
    state: dict[str, Any] = {
        "down_since": None,
        "healthy": 0,
        "unhealthy": 0,
        "live": False,
        "command_errors": 0,
        "last_command_error": None,
    }
    state["maintenance"] = Counter()  # maintenance notifications by kind
    pending: list[LifecycleEvent] = []

    def on_event(event: LifecycleEvent) -> None:
        counts[event.type.value] += 1
        if isinstance(event, MaintenanceNotificationEvent):
            state["maintenance"][event.kind] += 1
        if isinstance(event, ConnectionHealthCheckEvent):
            if event.healthy:
                state["healthy"] += 1
                if state["down_since"] is not None:
                    outages.append(time.monotonic() - state["down_since"])
                    state["down_since"] = None
            elif _is_command_error(event.error):
                # The server answered, with an error: the command failed, not the server.
                state["unhealthy"] += 1
                state["command_errors"] += 1
                state["last_command_error"] = _command_error(event.error, target, command)
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
        client = _client(target, dispatcher, timeout, cluster, sentinel, leak_detection)
    except redis.RedisError as error:  # a cluster client connects at once
        raise CliError(describe_failure(error, target)) from None
    try:
        first_contact(client, target)
        first = health_check(client, command)  # its event is printed once live
        if _is_command_error(first.error):
            shown = _shown_command(command, target)
            msg = (
                f"the health-check command {shown!r} failed at {target.address}: "
                f"{_command_error(first.error, target, command)}; give --command a command "
                "this server accepts (the default is PING)"
            )
            raise CliError(msg)
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
        checks = 1  # the first one, above
        try:
            while not stop.is_set():
                if count is not None and checks >= count:
                    break
                stop.wait(interval)
                if stop.is_set():
                    break
                health_check(client, command)
                if cluster:
                    _refresh_slot_map(client)
                checks += 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        _summary(printer, target, time.monotonic() - started, counts, state, outages)
        return 1 if state["command_errors"] else 0
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
    target: CliTarget,
    dispatcher: EventDispatcher,
    timeout: float,
    cluster: bool,
    sentinel: str | None,
    leak_detection: float | None,
) -> Any:
    """The client to watch: one server, a whole cluster, or a Sentinel master."""
    timeouts: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if cluster:
        from redis.cluster import RedisCluster

        from ..instrument import instrument

        nodes = RedisCluster.from_url(target.url, **timeouts)
        instrument(nodes, event_dispatcher=dispatcher, leak_detection=leak_detection)
        return nodes
    if sentinel is not None:
        from redis.sentinel import Sentinel

        from ..instrument import instrument

        kwargs = redis.ConnectionPool.from_url(target.url).connection_kwargs
        address = (kwargs.get("host", "localhost"), kwargs.get("port", 26379))
        auth: dict[str, Any] = {k: kwargs[k] for k in ("username", "password") if kwargs.get(k)}
        manager = Sentinel([address], sentinel_kwargs={**auth, **timeouts})
        master = manager.master_for(sentinel, **auth, **timeouts)
        instrument(master, event_dispatcher=dispatcher, leak_detection=leak_detection)
        return master
    pool = LifecycleConnectionPool.from_url(
        target.url,
        event_dispatcher=dispatcher,
        pool_name=target.address,
        leak_detection=leak_detection,
        **timeouts,
    )
    return redis.Redis(connection_pool=pool)


def _summary(
    printer: Printer,
    target: CliTarget,
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
                "command_errors": state["command_errors"],
                "last_command_error": state["last_command_error"],
                "events": dict(sorted(counts.items())),
                "maintenance_notifications": dict(sorted(state["maintenance"].items())),
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
    if state["command_errors"]:
        printer.line(
            printer.style(
                f"  the health-check command failed {state['command_errors']} time(s), "
                f"last: {state['last_command_error']}",
                "red",
            )
        )
    for name, number in sorted(counts.items()):
        printer.line(f"  {name:<24} {number}")
    if state["maintenance"]:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(state["maintenance"].items()))
        printer.line(f"  maintenance notifications by kind: {kinds}")


def _shown_command(command: str, target: CliTarget) -> str:
    """``command`` as it may be printed (its secrets and the URL's masked)."""
    return target.mask(redact_command(command))


def _command_error(error: BaseException | None, target: CliTarget, command: str) -> str:
    """The server's error for the health-check command, with the URL's password
    and the command's secret arguments masked (the server may echo them)."""
    text = target.mask(describe_error(error) or "")
    for secret in command_secrets(command):
        text = text.replace(secret, MASK)
    return text


#: Errors that are the server's answer to the command (it is up and talking).
_COMMAND_ERRORS: tuple[type[BaseException], ...] = (
    rexc.ResponseError,
    *((rexc.AuthenticationError,) if hasattr(rexc, "AuthenticationError") else ()),
)


def _is_command_error(error: BaseException | None) -> bool:
    """Whether the server answered the health-check command with an error
    (unknown command, wrong arguments, no permission, wrong password)."""
    return isinstance(error, _COMMAND_ERRORS)
