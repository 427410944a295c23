"""``socket_timeout`` hit for real: the server stalled by ``CLIENT PAUSE`` or
``DEBUG SLEEP`` gives an ``error`` event carrying redis-py's ``TimeoutError``
and a ``disconnected`` with reason ``error``; the next command reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from ..helpers import wait_until
from . import invariants
from .harness import FEW_MODES, POOL_NAME, Mode, Wiring, make_client

SOCKET_TIMEOUT = 0.25
STALL = 1.0


def pause_with_client_pause(admin: redis.Redis) -> Callable[[], None]:
    admin.client_pause(int(STALL * 1000))
    return lambda: None


def pause_with_debug_sleep(admin: redis.Redis) -> Callable[[], None]:
    """DEBUG SLEEP blocks the caller too: run it beside the test. Returns how
    to wait for it: its reply may come after the test is done with the
    server (it starts late on a busy machine), and must come before ``admin``
    is closed under it."""
    sleeper = threading.Thread(
        target=admin.execute_command, args=("DEBUG", "SLEEP", str(STALL)), daemon=True
    )
    sleeper.start()

    def join() -> None:
        sleeper.join(STALL * 10)
        assert not sleeper.is_alive(), "DEBUG SLEEP never returned"

    return join


#: Each stalls the server for STALL seconds and returns how to wait until
#: nothing of it is left running.
STALLS: dict[str, Callable[[redis.Redis], Callable[[], None]]] = {
    "client_pause": pause_with_client_pause,
    "debug_sleep": pause_with_debug_sleep,
}


@pytest.mark.parametrize("stall", sorted(STALLS))
@pytest.mark.parametrize("mode", FEW_MODES, ids=lambda m: m.id)
def test_socket_timeout_gives_error_and_disconnected(
    server: RedisServer, admin: redis.Redis, mode: Mode, stall: str
) -> None:
    """A stalled server: error(TimeoutError, io), disconnected(error), then reconnected."""
    wiring = Wiring(mode)
    client = make_client(
        server,
        wiring,
        "instrument",
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    stall_over: Callable[[], None] = lambda: None  # noqa: E731
    try:
        assert client.ping() is True
        started = time.monotonic()
        stall_over = STALLS[stall](admin)
        seen: list[BaseException] = []

        def command_times_out() -> bool:
            try:
                client.get("faults:timeout")
            except redis.exceptions.TimeoutError as error:
                seen.append(error)
                return True
            return False

        # DEBUG SLEEP starts on another thread: until it does, commands succeed.
        wait_until(command_times_out, timeout=STALL * 0.8, what="a command to time out")
        wait_until(lambda: time.monotonic() > started + STALL, timeout=STALL * 2)
        assert client.ping() is True
        wiring.finish()
        events = wiring.events
        errors = [e for e in events if isinstance(e, rl.ConnectionErrorEvent)]
        downs = [e for e in events if isinstance(e, rl.ConnectionDisconnectedEvent)]
        assert errors, events
        assert errors[0].error is seen[0]
        assert isinstance(errors[0].error, redis.exceptions.TimeoutError)
        assert errors[0].phase == "io"
        assert downs[0].reason is rl.CloseReason.ERROR
        assert downs[0].error is seen[0]
        assert all(d.reason is rl.CloseReason.ERROR for d in downs), downs
        assert any(isinstance(e, rl.ConnectionReconnectedEvent) for e in events)
        invariants.check_state_machine(events)
        invariants.check_pool_accounting(events, 0)
        invariants.check_only_from(events, POOL_NAME, [admin.connection_pool])
    finally:
        stall_over()
        client.close()
