"""SIGKILL the server under load from several threads, restart it on the same
port, repeat: every connection that was connected gets exactly one
``disconnected`` (error or server_closed) per outage and one ``reconnected``
when used again, and the application sees only redis-py's own errors."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from ..helpers import wait_until
from . import invariants
from .harness import (
    FEW_MODES,
    MODES,
    POOL_NAME,
    Load,
    Mode,
    Wiring,
    checked_out,
    make_client,
    touch_all,
)


def noticed(wiring: Wiring, since: float) -> bool:
    """Whether a disconnect stamped at or after ``since`` was recorded."""
    return any(e.timestamp >= since for e in wiring.recorder.of(rl.ConnectionDisconnectedEvent))


def run_outages(
    server: RedisServer,
    mode: Mode,
    kind: str,
    outages: int,
    threads: int,
    **connection_kwargs: Any,
) -> dict[str, Any]:
    wiring = Wiring(mode)
    client = make_client(server, wiring, kind, **connection_kwargs)
    bystander = redis.Redis(host=server.host, port=server.port)
    windows: list[tuple[float, float, float]] = []
    try:
        with Load(client, threads) as load, Load(bystander, 1, name="bystander") as other:
            load.progress()
            for _ in range(outages):
                fault = time.time()
                server.kill()
                injected = time.time()
                wait_until(
                    functools.partial(noticed, wiring, fault),
                    timeout=30,
                    what="the outage to be noticed",
                )
                server.restart()
                load.progress()
                load.pause()
                touch_all(client.connection_pool)
                windows.append((fault, injected, time.time()))
                load.resume()
                load.progress()
            load.pause()
            other.pause()
            still_out = checked_out(client.connection_pool)
        load.check_errors()
        other.check_errors()
        stats = wiring.finish()
        events = wiring.events
        checked = invariants.check_state_machine(events)
        checked += invariants.check_outages(events, windows)
        checked += invariants.check_pool_accounting(events, still_out)
        checked += invariants.check_only_from(events, POOL_NAME, [bystander.connection_pool])
        reconnected = sum(1 for e in events if isinstance(e, rl.ConnectionReconnectedEvent))
        assert reconnected >= outages  # every outage hit at least one connection
        errors = [e for e in events if isinstance(e, rl.ConnectionErrorEvent)]
        assert errors, "an outage under load produced no error event"
        return {
            "faults": outages,
            "events": len(events),
            "checked": checked,
            "disconnected": reconnected,
            "app_errors": dict(load.redis_errors),
            "executor": stats,
        }
    finally:
        client.close()
        bystander.close()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_kill_restart_under_load(server: RedisServer, mode: Mode) -> None:
    """Three SIGKILL/restart cycles under 6 threads via instrument(): exact accounting."""
    run_outages(server, mode, "instrument", outages=3, threads=6)


@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_kill_restart_without_retries_surfaces_only_redis_errors(
    server: RedisServer, mode: Mode
) -> None:
    """With retries off the application sees the outage, only as redis-py's ConnectionError."""
    result = run_outages(
        server, mode, "instrument", outages=3, threads=6, retry=Retry(NoBackoff(), 0)
    )
    assert result["app_errors"], "no command failed although retries were off"
    assert set(result["app_errors"]) <= {"ConnectionError", "TimeoutError"}, result


@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_kill_restart_lifecycle_blocking_pool(server: RedisServer, mode: Mode) -> None:
    """The same on a LifecycleBlockingConnectionPool: exact per-outage accounting."""
    run_outages(server, mode, "blocking", outages=3, threads=6)


@pytest.mark.soak
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_kill_restart_soak(server: RedisServer, mode: Mode) -> None:
    """Twenty-five outages under 16 threads: the accounting stays exact."""
    run_outages(server, mode, "instrument", outages=25, threads=16)
