"""The ``error`` and ``disconnected`` events carry the very exception the
caller catches, even where redis-py closes the connection on a lower error
and then raises a new one (a socket reset wrapped in ``ConnectionError``, a
socket timeout wrapped in ``TimeoutError``): the lower error stays reachable
through the caught one's ``__context__`` / ``__cause__``.

Real faults only: a connection killed with ``CLIENT KILL`` whose socket the
server's kernel then resets, and a server stalled by ``CLIENT PAUSE``."""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable, Iterator
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

from ..helpers import Recorder, wait_until

pytestmark = pytest.mark.skipif(not hasattr(select, "poll"), reason="needs select.poll")

TRANSPORTS = ["tcp", "unix"]


def address(server: RedisServer, transport: str) -> dict[str, Any]:
    if transport == "unix":
        return {"unix_socket_path": server.unix_path}
    return {"host": server.host, "port": server.port}


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or while handling."""
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def reset_under(sock: Any, admin: redis.Redis, client_id: int) -> None:
    """``CLIENT KILL`` the connection behind ``sock`` and wait until its
    socket is reset (TCP: a stray write draws the server kernel's RST) or
    hung up (unix), so that the next send fails in the socket layer."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLRDHUP)
    flags: Callable[[], int] = lambda: sum(mask for _, mask in poller.poll(0))  # noqa: E731
    assert admin.client_kill_filter(_id=str(client_id)) == 1
    wait_until(lambda: flags() & select.POLLRDHUP, what="the server's close")
    if sock.family != socket.AF_UNIX:
        # A duplicate of the descriptor: asyncio's own socket refuses send().
        with (
            socket.fromfd(sock.fileno(), sock.family, sock.type) as raw,
            contextlib.suppress(ConnectionResetError, BrokenPipeError),
        ):
            raw.send(b"\r\n")
        wait_until(lambda: flags() & select.POLLHUP, what="the RST")


def assert_story(recorder: Recorder, caught: BaseException, reason: rl.CloseReason) -> None:
    [error] = recorder.exactly(rl.ConnectionErrorEvent)
    [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
    assert error.error is caught, (error.error, caught)
    assert error.phase == "io"
    assert disconnected.error is caught, (disconnected.error, caught)
    assert disconnected.reason is reason
    assert recorder.types() == ["error", "disconnected"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reset_socket_reports_the_error_the_caller_catches(
    server: RedisServer, admin: redis.Redis, recorder: Recorder, transport: str
) -> None:
    """The send into a reset socket fails with an OSError, which redis-py
    raises again as a ConnectionError: the events carry the ConnectionError,
    the reset is its cause, and the close is ``server_closed``."""
    client = redis.Redis(
        **address(server, transport), single_connection_client=True, retry=Retry(NoBackoff(), 0)
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        client_id = client.client_id()
        connection = client.connection
        assert connection is not None
        reset_under(connection._sock, admin, client_id)
        recorder.clear()
        with pytest.raises(redis.exceptions.ConnectionError) as raised:
            client.get("caller-error")
        caught = raised.value
        assert any(isinstance(e, OSError) for e in chain(caught)), list(chain(caught))
        assert_story(recorder, caught, rl.CloseReason.SERVER_CLOSED)
        assert client.ping() is True
        assert recorder.types()[-1] == "reconnected"
    finally:
        rl.uninstrument(client)
        client.close()


def test_a_timeout_reports_the_error_the_caller_catches(
    server: RedisServer, admin: redis.Redis, recorder: Recorder
) -> None:
    """A read that times out: the events carry the TimeoutError the caller
    catches (on redis-py 8.2 a new one, raised over the socket's own)."""
    client = redis.Redis(
        host=server.host, port=server.port, socket_timeout=0.25, retry=Retry(NoBackoff(), 0)
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert client.ping() is True
        recorder.clear()
        admin.client_pause(1000)
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            client.get("caller-error")
        assert_story(recorder_without_pool_events(recorder), raised.value, rl.CloseReason.ERROR)
    finally:
        admin.client_unpause()
        rl.uninstrument(client)
        client.close()


def recorder_without_pool_events(recorder: Recorder) -> Recorder:
    kept = Recorder()
    for event in recorder.events:
        if not isinstance(event, rl.PoolConnectionAcquiredEvent | rl.PoolConnectionReleasedEvent):
            kept(event)
    return kept


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_asyncio_reset_reports_the_error_the_caller_catches(
    server: RedisServer, admin: redis.Redis, recorder: Recorder, transport: str
) -> None:
    """The same on ``redis.asyncio``: whatever the read or the write meets
    first, the events carry the exception the caller catches."""
    client = redis.asyncio.Redis(
        **address(server, transport),
        single_connection_client=True,
        retry=AsyncRetry(NoBackoff(), 0),
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        client_id = await client.client_id()
        connection = client.connection
        assert connection is not None
        assert connection._writer is not None
        sock = connection._writer.transport.get_extra_info("socket")
        reset_under(sock, admin, client_id)
        recorder.clear()
        with pytest.raises(redis.exceptions.ConnectionError) as raised:
            await client.get("caller-error")
        assert_story(recorder, raised.value, rl.CloseReason.SERVER_CLOSED)
        assert await client.ping() is True
        assert recorder.types()[-1] == "reconnected"
    finally:
        rl.uninstrument(client)
        await client.aclose() if hasattr(client, "aclose") else await client.close()


async def test_asyncio_timeout_reports_the_error_the_caller_catches(
    server: RedisServer, admin: redis.Redis, recorder: Recorder
) -> None:
    """An asyncio read that times out: redis-py raises its TimeoutError over
    asyncio's; the events carry redis-py's, the one the caller catches."""
    client = redis.asyncio.Redis(
        host=server.host, port=server.port, socket_timeout=0.25, retry=AsyncRetry(NoBackoff(), 0)
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert await client.ping() is True
        recorder.clear()
        admin.client_pause(1000)
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            await client.get("caller-error")
        assert_story(recorder_without_pool_events(recorder), raised.value, rl.CloseReason.ERROR)
    finally:
        admin.client_unpause()
        rl.uninstrument(client)
        await client.aclose() if hasattr(client, "aclose") else await client.close()


def assert_failed_check_then_close(recorder: Recorder, caught: BaseException) -> None:
    """The failed check, then the close it caused, all with the caller's error."""
    story = recorder_without_pool_events(recorder)
    assert story.types() == ["health_check", "error", "disconnected"], story.types()
    [check] = story.exactly(rl.ConnectionHealthCheckEvent)
    [error] = story.exactly(rl.ConnectionErrorEvent)
    [disconnected] = story.exactly(rl.ConnectionDisconnectedEvent)
    assert not check.healthy
    assert check.error is caught
    assert error.error is caught
    assert error.phase == "health_check"
    assert disconnected.error is caught
    assert disconnected.reason is rl.CloseReason.HEALTH_CHECK_FAILED


def test_a_health_check_that_times_out_comes_before_its_close(
    server: RedisServer, admin: redis.Redis, recorder: Recorder
) -> None:
    """redis-py's own ping (``health_check_interval``) times out: the failed
    check is reported, then the close it caused."""
    client = redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=0.25,
        health_check_interval=30,
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert client.ping() is True
        recorder.clear()
        admin.client_pause(1000)
        assert client.connection is not None
        client.connection.next_health_check = 0  # due now: 0 is in the past on every redis-py
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            client.get("caller-error")
        assert_failed_check_then_close(recorder, raised.value)
    finally:
        admin.client_unpause()
        rl.uninstrument(client)
        client.close()


async def test_asyncio_health_check_that_times_out_comes_before_its_close(
    server: RedisServer, admin: redis.Redis, recorder: Recorder
) -> None:
    """The same on ``redis.asyncio``."""
    client = redis.asyncio.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=0.25,
        health_check_interval=30,
        single_connection_client=True,
        retry=AsyncRetry(NoBackoff(), 0),
    )
    handle = rl.instrument(client)
    try:
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert await client.ping() is True
        recorder.clear()
        admin.client_pause(1000)
        assert client.connection is not None
        client.connection.next_health_check = 0
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            await client.get("caller-error")
        assert_failed_check_then_close(recorder, raised.value)
    finally:
        admin.client_unpause()
        rl.uninstrument(client)
        await client.aclose() if hasattr(client, "aclose") else await client.close()
