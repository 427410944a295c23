"""Pool exhaustion storms: 32 threads on a ``LifecycleBlockingConnectionPool``
of 2 with a short timeout. Every failed checkout is exactly one
``pool_exhausted`` whose ``waited`` is the pool's timeout."""

from __future__ import annotations

import threading

import pytest
import redis
import redis.exceptions

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from . import invariants
from .harness import FEW_MODES, POOL_NAME, Mode, Wiring, checked_out, make_client

THREADS = 32
SIZE = 2
TIMEOUT = 0.2
HOLD = 0.5  # each command holds its connection longer than a waiter waits


def storm(client: redis.Redis, threads: int) -> tuple[int, int, list[BaseException]]:
    """All threads at once: BLPOP on an empty list for HOLD seconds.
    Returns (succeeded, failed checkouts, other exceptions)."""
    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    outcome = {"ok": 0, "exhausted": 0}
    foreign: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            client.blpop([f"faults:empty:{index}"], timeout=HOLD)
        except redis.exceptions.ConnectionError as error:
            with lock:
                if "No connection available" in str(error) or isinstance(
                    error, getattr(redis.exceptions, "MaxConnectionsError", ())
                ):
                    outcome["exhausted"] += 1
                else:
                    foreign.append(error)
        except BaseException as error:
            with lock:
                foreign.append(error)
        else:
            with lock:
                outcome["ok"] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers), "a storm thread hangs"
    return outcome["ok"], outcome["exhausted"], foreign


def run_storms(server: RedisServer, mode: Mode, storms: int) -> None:
    wiring = Wiring(mode)
    client = make_client(server, wiring, "blocking", max_connections=SIZE, timeout=TIMEOUT)
    try:
        failed_total = 0
        for _ in range(storms):
            ok, failed, foreign = storm(client, THREADS)
            assert not foreign, foreign
            assert ok + failed == THREADS
            assert ok >= SIZE
            assert failed > 0
            failed_total += failed
        still_out = checked_out(client.connection_pool)
        wiring.finish()
        events = wiring.events
        exhausted = [e for e in events if isinstance(e, rl.PoolExhaustedEvent)]
        assert len(exhausted) == failed_total
        for event in exhausted:
            assert (event.size, event.timeout) == (SIZE, TIMEOUT)
            # LifoQueue.get(timeout=) never returns early; lateness is scheduling.
            assert TIMEOUT * 0.99 <= event.waited == pytest.approx(TIMEOUT, abs=0.5)
        invariants.check_state_machine(events)
        invariants.check_pool_accounting(events, still_out)
        invariants.check_only_from(events, POOL_NAME, [])
        assert still_out == 0
    finally:
        client.close()


@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_exhaustion_storm(server: RedisServer, mode: Mode) -> None:
    """Two storms of 32 threads on 2 connections: one pool_exhausted per failed checkout."""
    run_storms(server, mode, storms=2)


@pytest.mark.soak
@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_exhaustion_storm_soak(server: RedisServer, mode: Mode) -> None:
    """Thirty storms: the count stays exact."""
    run_storms(server, mode, storms=30)
