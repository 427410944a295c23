"""Every event of the catalogue, provoked for real on ``redis.asyncio``.

Connection-level tests run twice: over TCP and over the server's unix
socket. Each test causes the lifecycle point for real (commands, CLIENT KILL
of its own connection, a refused address, a wrong password, a small pool,
``update_active_connections_for_reconnect``) and checks the event's fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aredis
import redis.asyncio.connection as aconn
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import redis_lifecycle as rl
from redis_lifecycle._health_asyncio import async_health_check
from redis_lifecycle._hooks.aio import ASYNC_POOL_PATCHER
from redis_lifecycle.asyncio import LifecycleBlockingConnectionPool, LifecycleConnectionPool
from redis_lifecycle.server import RedisServer, free_port

from ..helpers import Recorder, async_checkout

TRANSPORTS = ["tcp", "unix"]


def connection_kwargs(server: RedisServer, transport: str) -> dict[str, Any]:
    if transport == "unix":
        return {"unix_socket_path": server.unix_path}
    return {"host": server.host, "port": server.port}


def pool_kwargs(server: RedisServer, transport: str) -> dict[str, Any]:
    if transport == "unix":
        return {"connection_class": aconn.UnixDomainSocketConnection, "path": server.unix_path}
    return {"host": server.host, "port": server.port}


def assert_address(event: rl.LifecycleEvent, server: RedisServer, transport: str) -> None:
    if transport == "unix":
        assert (event.path, event.host, event.port) == (server.unix_path, None, None)
        assert event.to_dict()["path"] == server.unix_path
        assert "host" not in event.to_dict()
    else:
        assert (event.host, event.port, event.path) == (server.host, server.port, None)
        assert event.to_dict()["port"] == server.port
    assert event.db == 0


async def check_out_one_too_many(pool: Any) -> None:
    """Hold the only connection of a ``max_connections=1`` pool, check that
    one more checkout fails with redis-py's error, then close the pool."""
    held = await async_checkout(pool)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await async_checkout(pool)
    finally:
        await pool.release(held)
        await pool.aclose()


def listen(target: object, recorder: Recorder, **kwargs: Any) -> rl.LifecycleHandle:
    handle = rl.instrument(target, **kwargs)
    handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return handle


async def ping_through_a_dropped_connection(client: aredis.Redis) -> None:
    """PING after the connection was dropped: redis-py 6.0+ retries on a fresh
    socket by default; 5.x has no default retry on asyncio clients, so the
    first PING fails with the close and the next one reconnects."""
    try:
        assert await client.ping() is True
    except redis.exceptions.ConnectionError:
        if (retry := client.get_retry()) is not None and retry._retries > 0:
            raise
        assert await client.ping() is True


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(server: RedisServer, transport: str) -> AsyncIterator[aredis.Redis]:
    c = aredis.Redis(**connection_kwargs(server, transport))
    yield c
    await c.aclose()


class TestConnectionEvents:
    async def test_first_command_creates_and_connects(
        self, client: aredis.Redis, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """connection_created then connected, with the address, db and a connect time."""
        listen(client, recorder)
        assert await client.ping() is True
        [created] = recorder.exactly(rl.ConnectionCreatedEvent)
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert_address(connected, server, transport)
        assert_address(created, server, transport)
        assert connected.first_connection is True
        assert 0 < connected.connect_time < 10
        assert connected.connection_id == created.connection_id
        types = recorder.types()
        assert types.index("connection_created") < types.index("connected")
        assert types.index("connected") < types.index("connection_acquired")

    async def test_server_closing_the_connection_gives_error_disconnected_reconnected(
        self,
        client: aredis.Redis,
        server: RedisServer,
        transport: str,
        admin: redis.Redis,
        recorder: Recorder,
    ) -> None:
        """CLIENT KILL of our connection: error(io) and disconnected(server_closed) with
        the same exception, then the same connection object reconnects."""
        listen(client, recorder)
        own_id = await client.client_id()
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        recorder.clear()
        assert admin.client_kill_filter(_id=str(own_id)) == 1
        await ping_through_a_dropped_connection(client)
        [error] = recorder.exactly(rl.ConnectionErrorEvent)
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        [reconnected] = recorder.exactly(rl.ConnectionReconnectedEvent)
        assert error.phase == "io"
        assert disconnected.reason is rl.CloseReason.SERVER_CLOSED
        # redis-py's ConnectionError, or (unix socket) the socket error it wraps
        assert isinstance(disconnected.error, (redis.exceptions.ConnectionError, OSError))
        assert error.error is disconnected.error
        assert reconnected.connection_id == connected.connection_id == disconnected.connection_id
        assert reconnected.first_connection is False
        assert reconnected.downtime >= 0
        assert reconnected.connect_time > 0
        assert_address(reconnected, server, transport)
        types = recorder.types()
        # redis-py 8.1 with RESP3 hands the killed idle connection out (no dirty
        # probe): then acquired comes first. Either way the close precedes the reconnect.
        assert types.index("error") < types.index("disconnected") < types.index("reconnected")
        assert types.index("connection_created") < types.index("reconnected")

    async def test_application_close_gives_disconnected_without_error(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """aclose() of the client closes its connection: disconnected(application), no error."""
        c = aredis.Redis(**connection_kwargs(server, transport))
        listen(c, recorder)
        await c.set("k", "v")
        await c.aclose()
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION
        assert disconnected.error is None
        assert recorder.exactly(rl.ConnectionErrorEvent) == []
        assert_address(disconnected, server, transport)

    async def test_refused_connect_gives_error_in_connect_phase(
        self, tmp_path: Any, transport: str, recorder: Recorder
    ) -> None:
        """Nothing listening: connection_created and error(phase=connect) per attempt,
        never connected; the command still raises redis-py's ConnectionError."""
        if transport == "unix":
            kwargs: dict[str, Any] = {"unix_socket_path": str(tmp_path / "nobody.sock")}
        else:
            kwargs = {"host": "127.0.0.1", "port": free_port()}
        c = aredis.Redis(retry=Retry(NoBackoff(), 1), **kwargs)
        listen(c, recorder)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                await c.ping()
        finally:
            await c.aclose()
        errors = recorder.exactly(rl.ConnectionErrorEvent)
        created = recorder.exactly(rl.ConnectionCreatedEvent)
        assert errors
        assert {e.phase for e in errors} == {"connect"}
        assert len(created) == len(errors)
        assert all(isinstance(e.error, OSError) for e in errors)
        assert recorder.of(rl.ConnectionConnectedEvent) == []
        assert recorder.exactly(rl.ConnectionDisconnectedEvent) == []

    async def test_wrong_password_gives_handshake_error_and_no_password_in_events(
        self, password_server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """AUTH fails: error(phase=handshake) only, never connected; the password appears
        in no event, repr or dict. (Over a unix socket redis-py 8.1 runs the handshake
        inside ``_connect`` and re-raises it as a plain ConnectionError.)"""
        c = aredis.Redis(
            password="wrong-Pa55word",
            retry=Retry(NoBackoff(), 1),
            **connection_kwargs(password_server, transport),
        )
        listen(c, recorder)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                await c.ping()
        finally:
            await c.aclose()
        errors = recorder.exactly(rl.ConnectionErrorEvent)
        assert errors
        assert {e.phase for e in errors} == {"handshake"}
        assert all(isinstance(e.error, redis.exceptions.AuthenticationError) for e in errors)
        assert recorder.of(rl.ConnectionConnectedEvent) == []
        for event in recorder.events:
            text = repr(event) + repr(event.to_dict())
            assert "wrong-Pa55word" not in text
            assert password_server.password not in text  # type: ignore[operator]

    async def test_health_check_interval_pings_before_a_command(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """redis-py's own health check (health_check_interval) gives health_check(healthy),
        latency in milliseconds, command PING."""
        c = aredis.Redis(
            health_check_interval=cast(int, 0.05), **connection_kwargs(server, transport)
        )
        listen(c, recorder)
        try:
            await c.ping()
            recorder.clear()
            await asyncio.sleep(0.06)  # let the 50 ms health-check deadline pass (redis-py 5.2
            # pings mid-handshake, between pipelined replies, if it passes during one)
            await c.ping()
        finally:
            await c.aclose()
        [check] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert check.healthy is True
        assert check.command == "PING"
        assert check.error is None
        assert 0 < check.latency < 10_000
        assert_address(check, server, transport)

    async def test_explicit_health_check_reports_healthy_then_unhealthy(
        self, client: aredis.Redis, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """await health_check(async client): healthy with a latency, then after the server
        is killed a result with healthy=False and the error, never an exception."""
        listen(client, recorder)
        result = await async_health_check(client)
        assert result.healthy is True
        assert result.error is None
        assert result.latency_ms > 0
        [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert (event.healthy, event.command, event.error) == (True, "PING", None)
        assert event.latency == result.latency_ms
        assert_address(event, server, transport)
        server.kill()
        recorder.clear()
        failed = await async_health_check(client)
        assert failed.healthy is False
        assert isinstance(failed.error, redis.exceptions.ConnectionError)
        [bad] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert bad.healthy is False
        assert bad.error is failed.error

    async def test_public_health_check_dispatches_to_asyncio(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """rl.health_check(async_client) and handle.health_check() return an awaitable
        giving the same result type."""
        handle = listen(client, recorder)
        result = await rl.health_check(client)
        assert isinstance(result, rl.HealthCheckResult)
        assert result.healthy is True
        again = await handle.health_check()  # type: ignore[misc]  # annotated for sync only
        assert again.healthy is True
        assert len(recorder.exactly(rl.ConnectionHealthCheckEvent)) == 2

    async def test_health_check_of_single_connection_client_and_error_reply(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """A single-connection client is checked on its own connection; an error reply
        is an unhealthy result (with redis-py's ResponseError), not an exception."""
        c = aredis.Redis(single_connection_client=True, **connection_kwargs(server, transport))
        listen(c, recorder)
        try:
            assert await c.ping() is True
            acquired = len(recorder.exactly(rl.PoolConnectionAcquiredEvent))
            ok = await rl.health_check(c, "PING hello")
            bad = await rl.health_check(c, "NOSUCHCOMMAND")
        finally:
            await c.aclose()
        assert ok.healthy is True
        assert bad.healthy is False
        assert isinstance(bad.error, redis.exceptions.ResponseError)
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == acquired
        events = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert [(e.healthy, e.command) for e in events] == [
            (True, "PING hello"),
            (False, "NOSUCHCOMMAND"),
        ]
        assert_address(events[0], server, transport)


class TestPoolEvents:
    async def test_pool_created_on_instrument_and_on_lifecycle_pool(
        self, server: RedisServer, transport: str
    ) -> None:
        """instrument() reports the pool it first sees; a lifecycle pool reports itself,
        with size and (blocking) timeout."""
        dispatcher = rl.EventDispatcher()
        recorder = Recorder()
        dispatcher.subscribe(rl.PoolCreatedEvent, recorder)
        c = aredis.Redis(max_connections=7, **connection_kwargs(server, transport))
        rl.instrument(c, event_dispatcher=dispatcher)
        pool = LifecycleBlockingConnectionPool(
            max_connections=3,
            timeout=2.5,
            event_dispatcher=dispatcher,
            pool_name="blocking",
            **pool_kwargs(server, transport),
        )
        try:
            first, second = recorder.exactly(rl.PoolCreatedEvent)
            assert (first.size, first.timeout) == (7, None)
            assert_address(first, server, transport)
            assert first.connection_id is None
            assert (second.size, second.timeout, second.pool_name) == (3, 2.5, "blocking")
            assert_address(second, server, transport)
        finally:
            await c.aclose()
            await pool.aclose()

    async def test_pool_connection_created_acquired_released(
        self, client: aredis.Redis, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """A command checks out a new connection and returns it, with the pool counts."""
        listen(client, recorder)
        await client.set("k", "v")
        [made] = recorder.exactly(rl.PoolConnectionCreatedEvent)
        [acquired] = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        [released] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert made.total_connections == 1
        assert (acquired.active_connections, acquired.idle_connections) == (1, 0)
        assert (released.active_connections, released.idle_connections) == (0, 1)
        assert acquired.wait_time >= 0
        assert released.held_time >= 0
        assert made.connection_id == acquired.connection_id == released.connection_id
        for event in (made, acquired, released):
            assert_address(event, server, transport)
        assert recorder.types().index("pool_connection_created") < recorder.types().index(
            "connection_acquired"
        )

    async def test_concurrent_commands_grow_the_pool(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """Concurrent tasks make several connections: one pool_connection_created each,
        totals counting up, and every acquire matched by a release."""
        listen(client, recorder)
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.05) for _ in range(4)))
        made = recorder.exactly(rl.PoolConnectionCreatedEvent)
        assert len(made) == 4
        assert sorted(e.total_connections for e in made) == [1, 2, 3, 4]
        acquired = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        released = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert len(acquired) == len(released) == 4
        assert max(e.active_connections for e in acquired) == 4
        assert released[-1].active_connections == 0
        assert released[-1].idle_connections == 4

    async def test_blocking_pool_release_is_one_event(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """Async BlockingConnectionPool.release calls super().release: still exactly one
        connection_released per command."""
        pool = LifecycleBlockingConnectionPool(max_connections=2, **pool_kwargs(server, transport))
        pool.lifecycle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        c = aredis.Redis(connection_pool=pool)
        try:
            await c.set("a", 1)
            await c.get("a")
        finally:
            await c.aclose()
            await pool.aclose()
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 2
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == 2

    async def test_pool_exhausted_on_a_full_pool(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """max_connections=1 with the one connection held: the next checkout fails with
        redis-py's error and pool_exhausted(size=1) fires."""
        pool = LifecycleConnectionPool(max_connections=1, **pool_kwargs(server, transport))
        pool.lifecycle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        await check_out_one_too_many(pool)
        [exhausted] = recorder.exactly(rl.PoolExhaustedEvent)
        assert (exhausted.size, exhausted.timeout) == (1, None)
        assert exhausted.waited >= 0
        assert_address(exhausted, server, transport)
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1

    @pytest.mark.parametrize("lifecycle_pool", [False, True], ids=["instrumented", "lifecycle"])
    async def test_pool_exhausted_alone_is_reported(
        self, server: RedisServer, transport: str, lifecycle_pool: bool
    ) -> None:
        """With pool_exhausted the only event wanted (no per-command events),
        a failed checkout still reports it: the checkout is guarded, not hooked."""
        recorder = Recorder()
        kwargs = pool_kwargs(server, transport)
        if lifecycle_pool:
            pool: Any = LifecycleConnectionPool(max_connections=1, **kwargs)
            handle = pool.lifecycle
        else:
            pool = aconn.ConnectionPool(max_connections=1, **kwargs)
            handle = rl.instrument(pool)
        handle.dispatcher.subscribe(rl.PoolExhaustedEvent, recorder)
        await check_out_one_too_many(pool)
        [exhausted] = recorder.events
        assert isinstance(exhausted, rl.PoolExhaustedEvent)
        assert exhausted.size == 1
        assert_address(exhausted, server, transport)

    async def test_pool_exhausted_on_a_blocking_pool_timeout(
        self, server: RedisServer, transport: str, recorder: Recorder
    ) -> None:
        """A blocking pool waits its timeout, then raises: pool_exhausted with the
        timeout and the time waited."""
        pool = LifecycleBlockingConnectionPool(
            max_connections=1, timeout=0.05, **pool_kwargs(server, transport)
        )
        pool.lifecycle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        held = await async_checkout(pool)
        try:
            with pytest.raises(redis.exceptions.ConnectionError, match="No connection"):
                await async_checkout(pool)
        finally:
            await pool.release(held)
            await pool.aclose()
        [exhausted] = recorder.exactly(rl.PoolExhaustedEvent)
        assert (exhausted.size, exhausted.timeout) == (1, 0.05)
        assert exhausted.waited >= 0.05

    async def test_explicit_reset_gives_pool_reset(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """pool.reset() (async pools never reset themselves): pool_reset(explicit) with the
        number of connections dropped."""
        listen(client, recorder)
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.05) for _ in range(2)))
        pool = client.connection_pool
        await pool.disconnect()  # close them first: reset() drops without closing
        pool.reset()
        [reset] = recorder.exactly(rl.PoolResetEvent)
        assert reset.reason == "explicit"
        assert reset.connections_dropped == 2
        assert await client.ping() is True

    @pytest.mark.skipif(
        not hasattr(aconn.AbstractConnection, "mark_for_reconnect"),
        reason="redis-py < 7.0 has no mark_for_reconnect",
    )
    async def test_marked_for_reconnect_then_closed_on_release(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """update_active_connections_for_reconnect marks the checked-out connection; its
        release closes it (disconnected, application) and the next command reconnects."""
        listen(client, recorder)
        pool = client.connection_pool
        connection = await async_checkout(pool)
        await pool.update_active_connections_for_reconnect()
        [marked] = recorder.exactly(rl.ConnectionMarkedForReconnectEvent)
        assert isinstance(marked.reason, str)
        assert marked.reason
        await pool.release(connection)
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.connection_id == marked.connection_id
        assert disconnected.error is None
        assert await client.ping() is True
        [reconnected] = recorder.exactly(rl.ConnectionReconnectedEvent)
        assert reconnected.connection_id == marked.connection_id


class TestClientsAndPools:
    async def test_pipeline_is_one_checkout(self, client: aredis.Redis, recorder: Recorder) -> None:
        """A pipeline of three commands is one acquired and one released."""
        listen(client, recorder)
        async with client.pipeline() as pipe:
            pipe.set("a", 1)
            pipe.incr("a")
            pipe.get("a")
            assert await pipe.execute() == [True, 2, b"2"]
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == 1

    async def test_pubsub_holds_its_connection_until_closed(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """PubSub checks out on subscribe and, on aclose, disconnects then releases."""
        listen(client, recorder)
        pubsub = client.pubsub()
        await pubsub.subscribe("news")
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1
        assert recorder.exactly(rl.PoolConnectionReleasedEvent) == []
        await pubsub.aclose()
        types = recorder.types()
        assert types.index("disconnected") < types.index("connection_released")
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION

    async def test_from_url_lifecycle_pool(self, server: RedisServer, transport: str) -> None:
        """LifecycleConnectionPool.from_url builds the lifecycle class (TCP and unix URLs)
        and keeps the lifecycle arguments out of the connections."""
        recorder = Recorder()
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        url = server.unix_url if transport == "unix" else server.url
        pool = LifecycleConnectionPool.from_url(url, event_dispatcher=dispatcher, pool_name="u")
        assert isinstance(pool, LifecycleConnectionPool)
        assert isinstance(pool, aconn.ConnectionPool)
        assert "pool_name" not in pool.connection_kwargs
        c = aredis.Redis(connection_pool=pool)
        try:
            assert await c.ping() is True
        finally:
            await c.aclose()
            await pool.aclose()
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert connected.pool_name == "u"
        assert_address(connected, server, transport)

    async def test_pooled_returns_an_asyncio_client_on_a_blocking_pool(
        self, server: RedisServer
    ) -> None:
        """redis_lifecycle.asyncio.pooled(): an asyncio Redis on a lifecycle blocking pool
        of the given size; closing the client closes the pool."""
        from redis_lifecycle.asyncio import pooled

        dispatcher = rl.EventDispatcher()
        recorder = Recorder()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        c = pooled(
            server.host, server.port, pool={"size": 4, "timeout": 1, "event_dispatcher": dispatcher}
        )
        assert isinstance(c, aredis.Redis)
        assert isinstance(c.connection_pool, LifecycleBlockingConnectionPool)
        assert await c.ping() is True
        await c.aclose()
        [created] = recorder.exactly(rl.PoolCreatedEvent)
        assert (created.size, created.timeout) == (4, 1)
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION

    async def test_pooled_rejects_unknown_pool_options(self) -> None:
        """pool= with an unknown key raises TypeError naming it."""
        from redis_lifecycle.asyncio import pooled

        with pytest.raises(TypeError, match="maxsize"):
            pooled(pool={"maxsize": 3})

    async def test_uninstrument_stops_events_and_removes_the_pool_patches(
        self, client: aredis.Redis, recorder: Recorder
    ) -> None:
        """The pool keeps its own class throughout (class-level patches, looked
        up by id, never a per-instance subclass); after uninstrument the patches
        are gone, the client works and no event arrives; instrumenting again works."""
        pool = client.connection_pool
        original = type(pool)
        original_get = aconn.ConnectionPool.get_connection
        listen(client, recorder)
        assert type(pool) is original
        assert aconn.ConnectionPool.get_connection is not original_get  # hot: patched
        await client.ping()
        assert recorder.exactly(rl.PoolConnectionAcquiredEvent)
        assert rl.uninstrument(client) is True
        assert type(pool) is original
        assert aconn.ConnectionPool.get_connection is original_get
        assert not ASYNC_POOL_PATCHER.installed
        recorder.clear()
        await client.ping()
        await client.connection_pool.disconnect()
        await client.ping()
        assert recorder.events == []
        listen(client, recorder)
        await client.connection_pool.disconnect()
        assert await client.ping() is True
        assert bool(recorder.exactly(rl.ConnectionReconnectedEvent)) or recorder.exactly(
            rl.ConnectionConnectedEvent
        )

    async def test_instrument_is_idempotent(self, client: aredis.Redis) -> None:
        """A second instrument() of the same asyncio client returns the same handle."""
        assert rl.instrument(client) is rl.instrument(client)

    async def test_instrumented_existing_blocking_pool_reports_one_release(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """instrument() of an existing asyncio BlockingConnectionPool (whose release
        calls super().release): one acquired and one released per command."""
        pool = aredis.BlockingConnectionPool(host=server.host, port=server.port, max_connections=2)
        c = aredis.Redis(connection_pool=pool)
        listen(pool, recorder)
        try:
            await c.set("a", 1)
            await c.get("a")
        finally:
            await c.aclose()
            await pool.aclose()
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 2
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == 2

    async def test_lifecycle_pool_handle_aclose_leaves_a_working_pool(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """await pool.lifecycle.aclose() stops the lifecycle pool's events; the pool (a
        real subclass) keeps serving commands."""
        pool = LifecycleConnectionPool(host=server.host, port=server.port)
        handle = pool.lifecycle
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        c = aredis.Redis(connection_pool=pool)
        try:
            await c.ping()
            await handle.aclose()
            count = len(recorder.events)
            await pool.disconnect()
            assert await c.ping() is True
            assert len(recorder.events) == count
            with pytest.raises(RuntimeError, match="uninstrumented"):
                pool.lifecycle  # noqa: B018
        finally:
            await c.aclose()
            await pool.aclose()
