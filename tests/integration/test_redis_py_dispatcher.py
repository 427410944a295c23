"""A redis_lifecycle.EventDispatcher handed to redis-py itself, instrumenting
again with other arguments, and single connections: on a real server."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aredis
import redis.asyncio.connection as aconn
import redis.connection as rconn
from redis.credentials import CredentialProvider

import redis_lifecycle as rl
from redis_lifecycle.instrument import find_handle
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder

event_module = pytest.importorskip("redis.event", reason="redis-py before 5.3 has no redis.event")


def scenario(client: redis.Redis) -> None:
    client.set("k", "v")
    assert client.get("k") == b"v"


def recorded(dispatcher: rl.EventDispatcher) -> Recorder:
    recorder = Recorder()
    dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return recorder


class TestSyncClient:
    def test_same_events_as_instrument(self, server: RedisServer) -> None:
        """``Redis(event_dispatcher=d)`` alone gives the events that
        ``instrument(Redis(...))`` gives, with the same pool name."""
        through_redis_py = rl.EventDispatcher()
        seen = recorded(through_redis_py)
        client = redis.Redis(host=server.host, port=server.port, event_dispatcher=through_redis_py)
        scenario(client)

        plain = redis.Redis(host=server.host, port=server.port)
        by_instrument = rl.EventDispatcher()
        expected = recorded(by_instrument)
        rl.instrument(plain, event_dispatcher=by_instrument)
        scenario(plain)

        assert seen.types() == expected.types()
        assert seen.types()[:4] == [
            "pool_created",
            "pool_connection_created",
            "connection_created",
            "connected",
        ]
        assert {e.pool_name for e in seen.events} == {f"{server.host}:{server.port}/0"}
        client.close()
        plain.close()

    def test_the_handle_is_found_and_uninstrument_undoes_it(self, server: RedisServer) -> None:
        """``instrument(client)`` returns the handle the dispatcher made;
        ``uninstrument(client)`` stops the events and the client keeps working."""
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = redis.Redis(host=server.host, port=server.port, event_dispatcher=dispatcher)
        handle = rl.instrument(client)
        assert handle.dispatcher is dispatcher
        assert rl.instrument(client, event_dispatcher=dispatcher) is handle
        assert rl.uninstrument(client) is True
        seen.clear()
        scenario(client)
        assert seen.types() == []
        assert rl.uninstrument(client) is False
        client.close()

    def test_a_pool_passed_with_the_dispatcher(self, server: RedisServer) -> None:
        """A pool handed to ``Redis(connection_pool=..., event_dispatcher=d)``
        is announced and instrumented too."""
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        pool = redis.ConnectionPool(host=server.host, port=server.port)
        client = redis.Redis(connection_pool=pool, event_dispatcher=dispatcher)
        scenario(client)
        assert "connected" in seen.types()
        assert find_handle(pool) is rl.instrument(client)
        pool.disconnect()

    def test_single_connection_client(self, server: RedisServer, admin: redis.Redis) -> None:
        """A ``single_connection_client``'s connection reports a kill and its
        reconnection (redis-py 6.0+ reconnects; 5.x raises)."""
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = redis.Redis(
            host=server.host,
            port=server.port,
            single_connection_client=True,
            event_dispatcher=dispatcher,
        )
        client.client_setname("rl-single")
        assert "connected" in seen.types()
        admin.client_kill_filter(_id=str(client.client_id()))
        try:
            client.ping()
        except redis.ConnectionError:
            client.ping()
        seen.wait_for(rl.ConnectionDisconnectedEvent)
        seen.wait_for(rl.ConnectionReconnectedEvent)
        client.close()

    def test_pubsub(self, server: RedisServer, admin: redis.Redis) -> None:
        """A PubSub of the client reports its own connection being killed."""
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = redis.Redis(host=server.host, port=server.port, event_dispatcher=dispatcher)
        pubsub = client.pubsub()
        pubsub.subscribe("rl-channel")
        assert pubsub.get_message(timeout=1.0) is not None
        admin.client_kill_filter(_type="pubsub")
        deadline = time.monotonic() + 5.0
        while not seen.exactly(rl.ConnectionDisconnectedEvent) and time.monotonic() < deadline:
            # redis-py reconnects and resubscribes, or raises
            with contextlib.suppress(redis.ConnectionError):
                pubsub.get_message(timeout=0.1)
        event = seen.wait_for(rl.ConnectionDisconnectedEvent, timeout=0)
        assert event.port == server.port
        pubsub.close()
        client.close()

    def test_redis_py_listeners_still_served(self, server: RedisServer) -> None:
        """A listener registered the redis-py way runs, and is removed again
        (where redis-py has register/unregister_listeners)."""

        class Listener(event_module.EventListenerInterface):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                self.events: list[Any] = []

            def listen(self, event: object) -> None:
                self.events.append(event)

        dispatcher = rl.EventDispatcher()
        if not hasattr(event_module.EventDispatcher, "register_listeners"):
            with pytest.raises(NotImplementedError, match="register_listeners"):
                dispatcher.register_listeners({})
            return
        listener = Listener()
        released = event_module.AfterConnectionReleasedEvent
        dispatcher.register_listeners({released: [listener]})
        client = redis.Redis(
            connection_pool=redis.ConnectionPool(
                host=server.host, port=server.port, event_dispatcher=dispatcher
            ),
            event_dispatcher=dispatcher,
        )
        client.ping()
        assert [type(e) for e in listener.events] == [released]
        if hasattr(event_module.EventDispatcher, "unregister_listeners"):
            dispatcher.unregister_listeners({released: [listener]})
            client.ping()
            assert len(listener.events) == 1
        client.connection_pool.disconnect()

    def test_is_a_redis_py_dispatcher(self) -> None:
        assert isinstance(rl.EventDispatcher(), event_module.EventDispatcherInterface)


class _RotatingProvider:
    """A streaming credential provider: redis-py registers its re-auth
    callback with ``on_next``; ``rotate`` hands it a new user's token."""

    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username, password)
        self.callbacks: list[Callable[[Any], Any]] = []

    def get_credentials(self) -> tuple[str, str]:
        return self.credentials

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.credentials

    def on_next(self, callback: Callable[[Any], Any]) -> None:
        self.callbacks.append(callback)

    def on_error(self, callback: Callable[[Exception], Any]) -> None:
        pass

    def is_streaming(self) -> bool:
        return True

    def rotate(self, username: str, password: str) -> None:
        from redis.auth.token import SimpleToken

        self.credentials = (username, password)
        token = SimpleToken(password, -1, -1, {"oid": username})
        for callback in self.callbacks:
            callback(token)


@pytest.fixture
def two_users(admin: redis.Redis) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    users = (f"rl-alice-{suffix}", f"rl-bob-{suffix}")
    for user in users:
        admin.acl_setuser(user, enabled=True, passwords=[f"+pw-{user}"], commands=["+@all"])
    yield users
    for user in users:
        admin.acl_deluser(user)


class TestReAuthentication:
    def test_rotated_credentials_reauthenticate_pooled_connections(
        self, server: RedisServer, two_users: tuple[str, str]
    ) -> None:
        """redis-py's own re-authentication runs with our dispatcher: after
        the provider streams another user's token, the pooled connection is
        that user (``ACL WHOAMI``), and lifecycle events flow meanwhile."""
        if not hasattr(redis.ConnectionPool, "re_auth_callback"):
            pytest.skip("this redis-py has no streaming re-authentication")
        from redis.credentials import StreamingCredentialProvider

        alice, bob = two_users
        provider = _RotatingProvider(alice, f"pw-{alice}")
        StreamingCredentialProvider.register(_RotatingProvider)
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = redis.Redis(
            host=server.host,
            port=server.port,
            credential_provider=cast(CredentialProvider, provider),  # duck-typed
            event_dispatcher=dispatcher,
        )
        assert client.acl_whoami() == alice
        assert provider.callbacks, "redis-py registered no re-auth callback"
        provider.rotate(bob, f"pw-{bob}")
        assert client.acl_whoami() == bob
        assert "connected" in seen.types()
        client.close()


class TestAsyncio:
    async def test_same_events_as_instrument(self, server: RedisServer) -> None:
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = aredis.Redis(host=server.host, port=server.port, event_dispatcher=dispatcher)
        await client.set("k", "v")
        plain = aredis.Redis(host=server.host, port=server.port)
        by_instrument = rl.EventDispatcher()
        expected = recorded(by_instrument)
        rl.instrument(plain, event_dispatcher=by_instrument)
        await plain.set("k", "v")
        assert seen.types() == expected.types()
        assert "connected" in seen.types()
        assert rl.uninstrument(client) is True
        seen.clear()
        await client.get("k")
        assert seen.types() == []
        await client.aclose()
        await plain.aclose()

    async def test_single_connection_client(self, server: RedisServer) -> None:
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = aredis.Redis(
            host=server.host,
            port=server.port,
            single_connection_client=True,
            event_dispatcher=dispatcher,
        )
        await client.ping()
        await client.ping()
        assert seen.types().count("connected") == 1
        await client.aclose()


class TestInstrumentAgain:
    @pytest.mark.parametrize(
        ("name", "make"),
        [
            ("event_dispatcher", rl.EventDispatcher),
            ("async_callbacks", lambda: rl.AsyncCallbackExecutor(pool_size=1)),
            ("callback_error_handler", lambda: rl.CallbackErrorHandler("ignore")),
            ("instrumentation", rl.Instrumentation),
            ("pool_name", lambda: "other"),
        ],
    )
    def test_a_different_argument_is_refused(
        self, server: RedisServer, name: str, make: Callable[[], Any]
    ) -> None:
        """Each argument that differs from the first instrumentation raises
        ValueError naming it, and the first handle stays as it was."""
        client = redis.Redis(host=server.host, port=server.port)
        first = rl.instrument(client, pool_name="first")
        value = make()
        with pytest.raises(ValueError, match=f"different {name} .*uninstrument"):
            rl.instrument(client, **{name: value})
        assert find_handle(client) is first
        assert [s["pool_name"] for s in first.pool_stats()] == ["first"]
        if isinstance(value, rl.AsyncCallbackExecutor):
            value.shutdown()
        client.close()

    def test_the_same_arguments_return_the_handle(self, server: RedisServer) -> None:
        dispatcher, metrics = rl.EventDispatcher(), rl.Instrumentation()
        handler = rl.CallbackErrorHandler("log")
        client = redis.Redis(host=server.host, port=server.port)
        kwargs: dict[str, Any] = {
            "event_dispatcher": dispatcher,
            "callback_error_handler": handler,
            "instrumentation": metrics,
            "pool_name": "cache",
        }
        with rl.AsyncCallbackExecutor(pool_size=1) as executor:
            handle = rl.instrument(client, async_callbacks=executor, **kwargs)
            assert rl.instrument(client, async_callbacks=executor, **kwargs) is handle
            assert rl.instrument(client) is handle
            assert rl.instrument(client.connection_pool, pool_name="cache") is handle
            assert rl.uninstrument(client)
        client.close()

    def test_a_lifecycle_pool_keeps_its_arguments(self, server: RedisServer) -> None:
        pool = rl.LifecycleConnectionPool(host=server.host, port=server.port, pool_name="cache")
        assert rl.instrument(pool, pool_name="cache") is pool.lifecycle
        with pytest.raises(ValueError, match="pool_name"):
            rl.instrument(pool, pool_name="other")
        pool.disconnect()


@pytest.fixture(params=["tcp", "unix"])
def connection_kwargs(request: pytest.FixtureRequest, server: RedisServer) -> dict[str, Any]:
    if request.param == "unix":
        return {"path": server.unix_path}
    return {"host": server.host, "port": server.port}


class TestSingleConnection:
    def test_health_check_on_a_connection(self, connection_kwargs: dict[str, Any]) -> None:
        """``instrument(connection).health_check()`` emits health_check with
        the connection's address, and its connect events."""
        cls = rconn.UnixDomainSocketConnection if "path" in connection_kwargs else rconn.Connection
        # redis-py marks UnixDomainSocketConnection abstract (it inherits an abstract `host`)
        connection = cast("type[rconn.AbstractConnection]", cls)(**connection_kwargs)
        handle = rl.instrument(connection)
        seen = recorded(handle.dispatcher)
        result = handle.health_check(command="PING")
        assert result.healthy
        check = seen.wait_for(rl.ConnectionHealthCheckEvent)
        assert (check.healthy, check.command, check.error) == (True, "PING", None)
        assert check.latency == pytest.approx(result.latency_ms)
        assert check.path == connection_kwargs.get("path")
        assert check.port == connection_kwargs.get("port")
        assert seen.types()[:2] == ["connection_created", "connected"]
        assert check.connection_id == seen.events[0].connection_id is not None
        connection.disconnect()
        seen.wait_for(rl.ConnectionDisconnectedEvent)
        assert rl.uninstrument(connection) is True
        seen.clear()
        assert rl.health_check(connection).healthy
        assert seen.types() == []

    def test_a_failing_check(self, server: RedisServer) -> None:
        connection = rconn.Connection(host=server.host, port=server.port)
        handle = rl.instrument(connection, pool_name="lone")
        seen = recorded(handle.dispatcher)
        result = handle.health_check(command="NOSUCHCOMMAND")
        assert not result.healthy
        check = seen.wait_for(rl.ConnectionHealthCheckEvent)
        assert (check.healthy, check.pool_name) == (False, "lone")
        assert isinstance(check.error, redis.ResponseError)
        connection.disconnect()

    def test_a_connection_of_an_instrumented_pool(self, server: RedisServer) -> None:
        """``rl.health_check(conn)`` on a pooled connection reports to the
        pool's handle; ``instrument(conn)`` returns that handle."""
        pool = redis.ConnectionPool(host=server.host, port=server.port)
        handle = rl.instrument(pool, pool_name="shared")
        seen = recorded(handle.dispatcher)
        connection = pool.get_connection()
        try:
            assert rl.instrument(connection) is handle
            assert rl.health_check(connection, "PING").healthy
        finally:
            pool.release(connection)
        check = seen.wait_for(rl.ConnectionHealthCheckEvent)
        assert check.pool_name == "shared"
        pool.disconnect()

    def test_ssl_connection_is_accepted(self, tls_server: tuple[RedisServer, int, str]) -> None:
        server, tls_port, ca_file = tls_server
        connection = rconn.SSLConnection(
            host=server.host, port=tls_port, ssl_ca_certs=ca_file, ssl_check_hostname=False
        )
        handle = rl.instrument(connection)
        seen = recorded(handle.dispatcher)
        assert handle.health_check().healthy
        assert seen.wait_for(rl.ConnectionHealthCheckEvent).port == tls_port
        connection.disconnect()

    async def test_asyncio_connection(self, connection_kwargs: dict[str, Any]) -> None:
        cls = aconn.UnixDomainSocketConnection if "path" in connection_kwargs else aconn.Connection
        connection = cls(**connection_kwargs)
        handle = rl.instrument(connection)
        seen = recorded(handle.dispatcher)
        result = await handle.health_check(command="PING")  # type: ignore[misc]  # annotated for sync only
        assert result.healthy
        check = seen.wait_for(rl.ConnectionHealthCheckEvent)
        assert check.healthy
        assert check.path == connection_kwargs.get("path")
        await connection.disconnect()
        seen.wait_for(rl.ConnectionDisconnectedEvent)
