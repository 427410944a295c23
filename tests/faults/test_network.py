"""The network misbehaving, through :class:`~tests.faults.proxy.FaultProxy`.

Each test puts a bare client and an instrumented one side by side (two
threads, or two asyncio tasks) behind the same proxy, warms them up, injects
one fault into both at once, runs the same command on both, resumes, and
runs it again. Then:

* **redis-py's behaviour is unchanged**: both got the same outcome (the value,
  or the exception's class) and made the same number of ``socket.connect``
  attempts, counted by an audit hook, not by the library;
* **the story is true**, per ``connection_id``: the fault's error, the close
  it caused with the reason it had, a ``connection_created`` per connect
  attempt, a connect-phase ``error`` per refused attempt, the checks that
  failed before the close they caused and those on a new socket after its
  ``reconnected``, and a ``reconnected`` whose downtime covers the outage;
* the fault suite's invariants hold (state machine, pool accounting, only
  the instrumented pool's connections, the executor lost nothing).

Faults: ``blackhole`` (silent partition: timeouts), ``latency`` (a slow link),
``reset`` (RST in the middle of a reply), ``fin`` (a load balancer closing
idle connections), ``refuse`` (nothing listening). Configurations: ``plain``
(no retries), ``retry_hc`` (``Retry`` with 2 retries and a health check due
before the command), ``executor`` (callbacks on an
:class:`~redis_lifecycle.AsyncCallbackExecutor`), ``raising`` (a callback
that raises on every event).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from . import invariants
from .harness import POOL_NAME, Mode, Wiring
from .proxy import CONNECTS, FaultProxy

#: Socket (and connect) timeout of both clients, seconds.
TIMEOUT = 0.2
#: Latency the proxy adds to each chunk, each way, seconds.
DELAY = 0.05
KEY = "netfaults:key"
FAULTS = ("blackhole", "latency", "reset", "fin", "refuse")
#: redis-py 5.x recurses (connect, handshake, health check, PING, connect,
#: ...) when every handshake reply is cut under Retry and a due health
#: check, until Python's recursion limit: a RecursionError, on both clients.
RECURSES = redis.__version__.startswith("5.")


def recursion_case(fault: str, config: Config) -> bool:
    return RECURSES and fault == "reset" and config.health_check


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    mode: Mode
    retries: int = 0
    health_check: bool = False


CONFIGS = [
    Config("plain", Mode()),
    Config("retry_hc", Mode(), retries=2, health_check=True),
    Config("executor", Mode(executor="block")),
    Config("raising", Mode(raising=True)),
]


@dataclasses.dataclass
class Outcome:
    """What one client got from one command under the fault."""

    value: Any = None
    error: BaseException | None = None
    connects: int = 0

    @property
    def kind(self) -> str:
        return type(self.error).__name__ if self.error is not None else repr(self.value)


@dataclasses.dataclass
class Run:
    """Everything a scenario hands to the checks."""

    fault: str
    config: Config
    faulted: dict[str, Outcome]
    resumed: dict[str, Outcome]
    events: list[rl.LifecycleEvent]
    fault_at: float  # time() just before the fault
    resumed_at: float  # time() just before resume
    port: int


def client_kwargs(proxy: FaultProxy, config: Config, retry_class: type) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": proxy.host,
        "port": proxy.port,
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        "retry": retry_class(NoBackoff(), config.retries),
    }
    if config.health_check:
        kwargs["health_check_interval"] = 30
    return kwargs


# --- checks ----------------------------------------------------------------


def story(events: Sequence[rl.LifecycleEvent]) -> dict[int, list[rl.LifecycleEvent]]:
    """Per connection, its events without the per-command pool ones."""
    return {
        cid: [
            e
            for e in stream
            if not isinstance(e, rl.PoolConnectionAcquiredEvent)
            and not isinstance(e, rl.PoolConnectionReleasedEvent)
        ]
        for cid, stream in invariants.by_connection(events).items()
    }


def fmt(stream: Sequence[rl.LifecycleEvent]) -> str:
    return "\n  ".join(
        f"{e.type.value} reason={getattr(e, 'reason', '')} phase={getattr(e, 'phase', '')}"
        f" healthy={getattr(e, 'healthy', '')} error={getattr(e, 'error', None)!r}"
        for e in stream
    )


def check_same_behaviour(run: Run) -> None:
    for phase, outcomes in (("under the fault", run.faulted), ("after resume", run.resumed)):
        bare, instrumented = outcomes["bare"], outcomes["instrumented"]
        if phase == "under the fault" and recursion_case(run.fault, run.config):
            # The same exception; the hooks stop the recursion a few levels
            # before Python's limit would (docs/guides/reconnection.md), and
            # a bare asyncio client in the same process has none of their
            # frames: fewer connects, never more.
            assert bare.kind == instrumented.kind == "RecursionError", (bare, instrumented)
            assert 0 < instrumented.connects <= bare.connects, (bare, instrumented)
            continue
        assert (bare.kind, bare.connects) == (instrumented.kind, instrumented.connects), (
            f"{phase}: bare {bare.kind} after {bare.connects} connects, instrumented"
            f" {instrumented.kind} after {instrumented.connects}"
        )
    for outcome in run.resumed.values():
        assert outcome.error is None, outcome
        assert outcome.value == b"v", outcome


def check_expected_outcome(run: Run) -> None:
    """What redis-py itself does under each fault (the bare client's outcome)."""
    bare = run.faulted["bare"]
    expected: type[BaseException] | None = {
        "blackhole": redis.exceptions.TimeoutError,
        "latency": None,
        "reset": redis.exceptions.ConnectionError,
        "fin": None,
        "refuse": redis.exceptions.ConnectionError,
    }[run.fault]
    if recursion_case(run.fault, run.config):
        expected = RecursionError
    if expected is None:
        assert bare.error is None, bare
        assert bare.value == b"v", bare
    else:
        assert isinstance(bare.error, expected), bare
    if run.fault in ("latency", "fin"):
        assert run.faulted["bare"].connects == (1 if run.fault == "fin" else 0)


def check_story(run: Run) -> None:
    events = run.events
    invariants.check_state_machine(events)
    invariants.check_pool_accounting(events, 0)
    streams = story(events)
    caught = run.faulted["instrumented"].error
    during = [e for e in events if run.fault_at <= e.timestamp < run.resumed_at]
    created = [e for e in during if isinstance(e, rl.ConnectionCreatedEvent)]
    # One connection_created per socket attempt, as many as redis-py made.
    assert len(created) == run.faulted["instrumented"].connects, fmt(during)
    if recursion_case(run.fault, run.config):
        return  # the story of a recursion: its depth is in the connects above
    errors = [e for e in during if isinstance(e, rl.ConnectionErrorEvent)]
    downs = [e for e in during if isinstance(e, rl.ConnectionDisconnectedEvent)]
    checks = [e for e in during if isinstance(e, rl.ConnectionHealthCheckEvent)]

    for cid, stream in streams.items():
        connected = False
        for index, event in enumerate(stream):
            if isinstance(event, (rl.ConnectionConnectedEvent, rl.ConnectionReconnectedEvent)):
                connected = True
            elif isinstance(event, rl.ConnectionDisconnectedEvent):
                connected = False
                if event.error is not None:
                    # The close's error event right before it, with the same error.
                    before = stream[index - 1]
                    assert isinstance(before, rl.ConnectionErrorEvent), fmt(stream)
                    assert before.error is event.error, fmt(stream)
                    if event.reason is rl.CloseReason.HEALTH_CHECK_FAILED:
                        # ... and the failed check that caused it before that.
                        check = stream[index - 2]
                        assert isinstance(check, rl.ConnectionHealthCheckEvent), fmt(stream)
                        assert not check.healthy, fmt(stream)
                        assert before.phase == "health_check", fmt(stream)
            elif isinstance(event, rl.ConnectionHealthCheckEvent) and event.healthy:
                # A passing check is one on a connected socket: never before
                # the (re)connect it follows.
                assert connected, f"connection {cid}: a check before its connect\n  {fmt(stream)}"

    if run.fault == "blackhole":
        assert downs, fmt(during)
        assert all(d.reason in _TIMEOUT_REASONS[run.config.health_check] for d in downs)
        # redis-py's TimeoutError; a connect attempt's own error is the socket's.
        timeouts = (redis.exceptions.TimeoutError, TimeoutError)
        assert all(isinstance(e.error, timeouts) for e in errors), fmt(errors)
        assert all(isinstance(d.error, redis.exceptions.TimeoutError) for d in downs)
        if not run.config.retries:
            [down] = downs
            assert down.error is caught, fmt(during)
            assert down.reason is rl.CloseReason.ERROR, fmt(during)
        else:
            assert checks, fmt(during)
            assert not checks[0].healthy, fmt(during)
            assert downs[0].reason is rl.CloseReason.HEALTH_CHECK_FAILED, fmt(during)
    elif run.fault == "latency":
        assert not downs, fmt(during)
        assert not errors, fmt(during)
        if run.config.health_check:
            [check] = checks
            # The ping and its PONG each waited DELAY in the proxy.
            assert check.healthy, check
            assert check.latency >= 2 * DELAY * 1000, check
    elif run.fault == "reset":
        assert downs, fmt(during)
        first = downs[0]
        if run.config.health_check:
            assert first.reason is rl.CloseReason.HEALTH_CHECK_FAILED, fmt(during)
            assert checks, fmt(during)
            assert not checks[0].healthy, fmt(during)
        else:
            [down] = downs
            assert down.reason is rl.CloseReason.SERVER_CLOSED, fmt(during)
            assert down.error is caught, fmt(during)
            assert any(isinstance(e, ConnectionResetError) for e in _chain(down.error))
    elif run.fault == "fin":
        [down] = downs  # the idle connection the proxy closed, nothing else
        assert down.reason is rl.CloseReason.SERVER_CLOSED, fmt(during)
        assert [e.phase for e in errors] == ["io"], fmt(during)
        assert len(created) == 1
    elif run.fault == "refuse":
        [down] = downs  # the FIN, seen by the checkout probe
        assert down.reason is rl.CloseReason.SERVER_CLOSED, fmt(during)
        connect_errors = [e for e in errors if e.phase == "connect"]
        # One connect-phase error per refused attempt, as many as redis-py made.
        assert len(connect_errors) == run.faulted["instrumented"].connects > 0, fmt(during)
        assert all(
            isinstance(e.error, ConnectionRefusedError)
            or any(isinstance(x, ConnectionRefusedError) for x in _chain(e.error))
            or "refused" in str(e.error)
            for e in connect_errors
        ), fmt(connect_errors)

    # The connection that went down comes back: at once after a FIN (the
    # checkout probe reconnects it), otherwise only after resume, with a
    # downtime that covers the outage (it went down before resume was called).
    if downs:
        last_down = downs[-1]
        assert last_down.connection_id is not None
        stream = streams[last_down.connection_id]
        back = [
            e
            for e in stream
            if isinstance(e, rl.ConnectionReconnectedEvent) and e.timestamp >= last_down.timestamp
        ]
        assert back, fmt(stream)
        if run.fault != "fin":
            assert back[0].timestamp >= run.resumed_at, fmt(stream)
            assert back[0].downtime >= run.resumed_at - last_down.timestamp - 0.001, back[0]


_TIMEOUT_REASONS = {
    False: {rl.CloseReason.ERROR},
    True: {rl.CloseReason.ERROR, rl.CloseReason.HEALTH_CHECK_FAILED},
}


def _chain(error: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and len(seen) < 10:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


# --- the fault, applied and waited for ------------------------------------


def inject(proxy: FaultProxy, fault: str) -> None:
    if fault == "blackhole":
        proxy.blackhole()
    elif fault == "latency":
        proxy.latency(DELAY)
    elif fault == "reset":
        proxy.reset_replies()
    elif fault == "fin":
        assert proxy.close_idle() == 2
    elif fault == "refuse":
        proxy.refuse()
        assert proxy.close_idle() == 2


# --- sync ------------------------------------------------------------------


def side_by_side(
    clients: dict[str, Any], command: Callable[[Any], Any], port: int
) -> dict[str, Outcome]:
    """``command`` on each client at the same time, each on its own thread,
    counting its connects."""
    outcomes = {label: Outcome() for label in clients}

    def run(label: str) -> None:
        with CONNECTS.counting(label):
            before = CONNECTS.get(label, port)
            try:
                outcomes[label].value = command(clients[label])
            except Exception as error:
                outcomes[label].error = error
            outcomes[label].connects = CONNECTS.get(label, port) - before

    threads = [threading.Thread(target=run, args=(label,)) for label in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a command hangs"
    return outcomes


def wait_for_fin(clients: dict[str, Any], fault: str) -> None:
    """Nothing to wait for on sync sockets: the proxy's close on loopback
    has queued the FIN by the time ``close_idle`` returns."""


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("fault", FAULTS)
def test_sync_network_fault(server: RedisServer, fault: str, config: Config) -> None:
    wiring = Wiring(config.mode)
    with FaultProxy(server.host, server.port) as proxy:
        bare = redis.Redis(**client_kwargs(proxy, config, Retry))
        instrumented = redis.Redis(**client_kwargs(proxy, config, Retry))
        handle = rl.instrument(instrumented, pool_name=POOL_NAME, **wiring.kwargs())
        wiring.subscribe(handle.dispatcher)
        clients = {"bare": bare, "instrumented": instrumented}
        try:
            for client in clients.values():
                assert client.set(KEY, "v") is True
                if config.health_check:
                    [connection] = client.connection_pool._available_connections
                    connection.next_health_check = 0  # due now: 0 is in the past
            fault_at = time.time()
            inject(proxy, fault)
            faulted = side_by_side(clients, lambda c: c.get(KEY), proxy.port)
            resumed_at = time.time()
            proxy.resume()
            resumed = side_by_side(clients, lambda c: c.get(KEY), proxy.port)
            wiring.finish()
            run = Run(
                fault, config, faulted, resumed, wiring.events, fault_at, resumed_at, proxy.port
            )
            check_same_behaviour(run)
            check_expected_outcome(run)
            check_story(run)
            invariants.check_only_from(run.events, POOL_NAME, [bare.connection_pool])
        finally:
            proxy.resume()
            for client in clients.values():
                client.close()


# --- asyncio ---------------------------------------------------------------


async def async_side_by_side(
    clients: dict[str, Any], command: Callable[[Any], Any], port: int
) -> dict[str, Outcome]:
    outcomes = {label: Outcome() for label in clients}

    async def run(label: str) -> None:
        CONNECTS.set_label(label)  # this task's own context
        before = CONNECTS.get(label, port)
        try:
            outcomes[label].value = await command(clients[label])
        except Exception as error:
            outcomes[label].error = error
        outcomes[label].connects = CONNECTS.get(label, port) - before

    await asyncio.wait_for(asyncio.gather(*(run(label) for label in clients)), 60)
    return outcomes


async def async_wait_for_eof(clients: dict[str, Any]) -> None:
    """Let the loop read the FIN the proxy sent to each idle connection."""
    deadline = time.monotonic() + 5
    readers = [
        c._reader
        for client in clients.values()
        for c in client.connection_pool._available_connections
    ]
    while not all(r is not None and r.at_eof() for r in readers):
        assert time.monotonic() < deadline, "the FIN never reached the idle connections"
        await asyncio.sleep(0.005)


async def _aclose(client: Any) -> None:
    await (client.aclose() if hasattr(client, "aclose") else client.close())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("fault", FAULTS)
async def test_asyncio_network_fault(server: RedisServer, fault: str, config: Config) -> None:
    wiring = Wiring(config.mode)
    with FaultProxy(server.host, server.port) as proxy:
        # RESP2: the asyncio checkout probe's path on every redis-py (8.x
        # skips it under RESP3 with maintenance notifications).
        bare = redis.asyncio.Redis(protocol=2, **client_kwargs(proxy, config, AsyncRetry))
        instrumented = redis.asyncio.Redis(protocol=2, **client_kwargs(proxy, config, AsyncRetry))
        handle = rl.instrument(instrumented, pool_name=POOL_NAME, **wiring.kwargs())
        wiring.subscribe(handle.dispatcher)
        clients = {"bare": bare, "instrumented": instrumented}
        try:
            for client in clients.values():
                assert await client.set(KEY, "v") is True
                if config.health_check:
                    [connection] = client.connection_pool._available_connections
                    connection.next_health_check = 0
            fault_at = time.time()
            inject(proxy, fault)
            if fault in ("fin", "refuse"):
                await async_wait_for_eof(clients)
            if recursion_case(fault, config):
                # Bare redis-py 5.x's asyncio client meets the recursion limit
                # wherever the caller's stack depth puts it: inside its
                # connect it becomes a retryable ConnectionError and the
                # retries multiply at every level (minutes, under pytest).
                # The instrumented client stops with RecursionError.
                faulted = await async_side_by_side(
                    {"instrumented": instrumented}, lambda c: c.get(KEY), proxy.port
                )
                assert isinstance(faulted["instrumented"].error, RecursionError), faulted
                faulted["bare"] = faulted["instrumented"]
            else:
                faulted = await async_side_by_side(clients, lambda c: c.get(KEY), proxy.port)
            resumed_at = time.time()
            proxy.resume()
            resumed = await async_side_by_side(clients, lambda c: c.get(KEY), proxy.port)
            wiring.finish()
            run = Run(
                fault, config, faulted, resumed, wiring.events, fault_at, resumed_at, proxy.port
            )
            check_same_behaviour(run)
            check_expected_outcome(run)
            check_story(run)
            invariants.check_only_from(run.events, POOL_NAME, [bare.connection_pool])
        finally:
            proxy.resume()
            for client in clients.values():
                await _aclose(client)
