"""Fork under load (``multiprocessing``, fork start method): each child's first
use of the inherited pool emits ``pool_reset`` (fork) with the connections it
dropped, ``marked_for_reconnect`` (fork) and ``disconnected`` (fork) for each
of them and never an outage; the parent's events are unaffected."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from . import invariants
from .harness import POOL_NAME, Load, checked_out

#: (pid, event): appended without a lock, so that a child never waits on a
#: lock some parent thread held at the fork.
SEEN: list[tuple[int, rl.LifecycleEvent]] = []


def record(event: rl.LifecycleEvent) -> None:
    SEEN.append((os.getpid(), event))


def child(client: redis.Redis, results: Any) -> None:
    """In the forked child: use the inherited client and report what it saw."""
    try:
        pool = client.connection_pool
        inherited = len(pool._available_connections) + len(pool._in_use_connections)
        for index in range(5):
            client.set(f"faults:fork:{os.getpid()}", index)
        mine = [e for pid, e in list(SEEN) if pid == os.getpid()]
        results.put(
            {
                "inherited": inherited,
                "events": [
                    (
                        e.type.value,
                        str(getattr(e, "reason", "")),
                        e.connection_id,
                        getattr(e, "connections_dropped", None),
                    )
                    for e in mine
                ],
                "error": None,
            }
        )
    except BaseException as error:
        results.put({"error": f"{type(error).__name__}: {error}"})


def run_forks(server: RedisServer, children: int, threads: int) -> None:
    SEEN.clear()
    client = redis.Redis(host=server.host, port=server.port)
    handle = rl.instrument(client, pool_name=POOL_NAME)
    handle.dispatcher.subscribe(rl.LifecycleEvent, record)
    context = multiprocessing.get_context("fork")
    try:
        with Load(client, threads) as load:
            load.progress()
            for _ in range(children):
                results = context.Queue()
                process = context.Process(target=child, args=(client, results))
                process.start()
                report = results.get(timeout=30)
                process.join(timeout=30)
                assert process.exitcode == 0, report
                assert report["error"] is None, report
                check_child(report)
                load.progress()
            load.pause()
            still_out = checked_out(client.connection_pool)
            events = [e for pid, e in SEEN if pid == os.getpid()]
        load.check_errors()
    finally:
        client.close()
    invariants.check_state_machine(events)
    invariants.check_pool_accounting(events, still_out)
    invariants.check_only_from(events, POOL_NAME, [])
    parent_only = {e.type for e in events}
    assert rl.EventType.POOL_RESET not in parent_only
    assert rl.EventType.MARKED_FOR_RECONNECT not in parent_only
    assert rl.EventType.DISCONNECTED not in parent_only  # the children never closed ours


def check_child(report: dict[str, Any]) -> None:
    events = report["events"]
    resets = [e for e in events if e[0] == "pool_reset"]
    assert len(resets) == 1, events
    assert resets[0][1] == "fork"
    assert resets[0][3] == report["inherited"]
    dropped_ids = {e[2] for e in events if e[0] == "marked_for_reconnect"}
    assert len(dropped_ids) == report["inherited"], events
    assert all(e[1] == "fork" for e in events if e[0] == "marked_for_reconnect")
    downs = [e for e in events if e[0] == "disconnected"]
    assert all(e[1] == "fork" for e in downs), downs
    assert {e[2] for e in downs} <= dropped_ids
    assert not [e for e in events if e[0] == "error"], events
    # The child works on a connection of its own, made after the reset.
    assert any(e[0] == "connected" and e[2] not in dropped_ids for e in events), events
    assert sum(1 for e in events if e[0] == "connection_acquired") == 5, events


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_under_load(server: RedisServer) -> None:
    """Four children forked while 4 threads run commands: fork events in each child only."""
    run_forks(server, children=4, threads=4)


@pytest.mark.soak
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_under_load_soak(server: RedisServer) -> None:
    """Forty children under 8 threads."""
    run_forks(server, children=40, threads=8)
