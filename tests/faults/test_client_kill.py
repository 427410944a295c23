"""``CLIENT KILL ID`` of the test's own connections while commands run: each
kill is exactly one ``disconnected`` and, once the connection is used again,
one ``reconnected``; the application sees no error (redis-py retries)."""

from __future__ import annotations

import time

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

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

VICTIM = "faults-victim"


def own_ids(admin: redis.Redis) -> list[int]:
    """Server-side ids of this test's instrumented connections (by client name)."""
    return [int(c["id"]) for c in admin.client_list() if c.get("name") == VICTIM]


def run_kills(server: RedisServer, admin: redis.Redis, mode: Mode, rounds: int) -> None:
    wiring = Wiring(mode)
    client = make_client(server, wiring, "instrument", client_name=VICTIM)
    bystander = redis.Redis(host=server.host, port=server.port)
    try:
        with Load(client, 6) as load, Load(bystander, 1, name="bystander") as other:
            load.progress()
            for number in range(1, rounds + 1):
                start = time.time()
                killed = sum(int(admin.client_kill_filter(_id=str(i))) for i in own_ids(admin))
                assert killed > 0
                load.progress()
                load.pause()
                touch_all(client.connection_pool)
                end = time.time()
                load.resume()
                inside = [e for e in wiring.recorder.events if start <= e.timestamp <= end]
                if wiring.executor is None:  # inline: every event is already recorded
                    downs = [e for e in inside if isinstance(e, rl.ConnectionDisconnectedEvent)]
                    ups = [e for e in inside if isinstance(e, rl.ConnectionReconnectedEvent)]
                    assert len(downs) == killed, f"round {number}: {killed} killed, {downs}"
                    assert len(ups) == killed, f"round {number}: {killed} killed, {ups}"
                    assert all(e.reason in invariants.FAULT_REASONS for e in downs), downs
            load.pause()
            other.pause()
            still_out = checked_out(client.connection_pool)
        load.check_errors()
        other.check_errors()
        wiring.finish()
        events = wiring.events
        invariants.check_state_machine(events)
        invariants.check_pool_accounting(events, still_out)
        invariants.check_only_from(events, POOL_NAME, [bystander.connection_pool])
        downs = [e for e in events if isinstance(e, rl.ConnectionDisconnectedEvent)]
        ups = [e for e in events if isinstance(e, rl.ConnectionReconnectedEvent)]
        assert len(downs) == len(ups) >= rounds
        assert {e.reason for e in downs} <= invariants.FAULT_REASONS
    finally:
        client.close()
        bystander.close()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.id)
def test_client_kill_while_commands_run(
    server: RedisServer, admin: redis.Redis, mode: Mode
) -> None:
    """Five rounds of CLIENT KILL of all own connections: one disconnected + reconnected each."""
    run_kills(server, admin, mode, rounds=5)


@pytest.mark.soak
@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_client_kill_soak(server: RedisServer, admin: redis.Redis, mode: Mode) -> None:
    """Two hundred rounds: the accounting stays exact."""
    run_kills(server, admin, mode, rounds=200)
