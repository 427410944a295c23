"""Health checks on a real server: explicit ``health_check()``, redis-py's
``health_check_interval`` pings and PubSub's own health ping.

Faults are real: ``CLIENT KILL ID`` of the test's own connections, a killed
server, a wrong password, an unknown command.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle._hooks.state import CONNECTIONS
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, checkout, wait_until


def listen(target: Any, recorder: Recorder, **kwargs: Any) -> rl.LifecycleHandle:
    handle = rl.instrument(target, **kwargs)
    handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return handle


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=server.host, port=server.port, retry=no_retry())
    yield c
    c.close()


def own_client_id(client: redis.Redis) -> int:
    """The server-side id of the (only) pooled connection of ``client``."""
    return int(client.client_id())


def pool_active(pool: Any) -> int:
    return len(pool._in_use_connections)


class TestExplicitHealthCheck:
    def test_healthy_ping_returns_latency_and_emits_one_event(
        self, client: redis.Redis, server: RedisServer, recorder: Recorder
    ) -> None:
        """A PING that gets PONG is healthy; the event carries the same latency, in ms."""
        listen(client, recorder)
        result = rl.health_check(client)
        assert result.healthy is True
        assert bool(result) is True
        assert result.error is None
        assert result.latency_ms > 0
        [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert event.healthy is True
        assert event.latency == result.latency_ms
        assert event.command == "PING"
        assert event.error is None
        assert (event.host, event.port) == ("127.0.0.1", server.port)
        assert event.connection_id is not None
        assert pool_active(client.connection_pool) == 0

    def test_pool_connection_and_handle_are_accepted_targets(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A pool, a connection and LifecycleHandle.health_check() all check and emit."""
        handle = listen(client, recorder)
        assert rl.health_check(client.connection_pool).healthy
        assert handle.health_check().healthy
        connection = checkout(client.connection_pool)
        try:
            assert rl.health_check(connection).healthy
        finally:
            client.connection_pool.release(connection)
        events = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert [e.healthy for e in events] == [True, True, True]
        assert len({e.connection_id for e in events}) == 1  # one pooled connection, reused

    def test_other_commands_and_ping_with_a_message(self, client: redis.Redis) -> None:
        """Any command answered without an error is healthy; PING must echo its message."""
        assert rl.health_check(client, "INFO server").healthy
        assert rl.health_check(client, "PING hello").healthy

    def test_error_reply_is_unhealthy_and_returned_not_raised(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """An error reply gives healthy=False with the ResponseError, in result and event."""
        listen(client, recorder)
        result = rl.health_check(client, "NO-SUCH-COMMAND")
        assert result.healthy is False
        assert bool(result) is False
        assert isinstance(result.error, redis.exceptions.ResponseError)
        [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert event.healthy is False
        assert event.error is result.error
        assert event.command == "NO-SUCH-COMMAND"
        assert client.ping() is True  # the connection is still usable
        assert pool_active(client.connection_pool) == 0

    def test_server_down_is_unhealthy_and_the_pool_stays_consistent(
        self, client: redis.Redis, server: RedisServer, recorder: Recorder
    ) -> None:
        """With the server killed, the check returns the ConnectionError; no connection leaks."""
        listen(client, recorder)
        assert client.ping() is True
        server.kill()
        result = rl.health_check(client)
        assert result.healthy is False
        assert isinstance(result.error, redis.exceptions.ConnectionError)
        assert pool_active(client.connection_pool) == 0
        [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert event.healthy is False
        assert event.error is result.error
        server.start()
        assert rl.health_check(client).healthy

    def test_killed_connection_fails_its_check_then_reconnects(
        self, client: redis.Redis, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """Checking a connection the server killed is unhealthy; the next check reconnects."""
        listen(client, recorder)
        connection = checkout(client.connection_pool)
        try:
            connection.send_command("CLIENT", "ID")
            client_id = int(connection.read_response())
            assert admin.client_kill_filter(_id=str(client_id)) == 1
            failed = rl.health_check(connection)
            assert failed.healthy is False
            assert isinstance(failed.error, redis.exceptions.ConnectionError)
            recovered = rl.health_check(connection)
            assert recovered.healthy is True
        finally:
            client.connection_pool.release(connection)
        types = recorder.types()
        first_check = types.index("health_check")
        assert "disconnected" in types[:first_check]
        assert "reconnected" in types[first_check:]
        checks = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert [c.healthy for c in checks] == [False, True]

    def test_single_connection_client_checks_its_own_connection(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """A single_connection_client is checked on the connection it holds, not a new one."""
        client = redis.Redis(host=server.host, port=server.port, single_connection_client=True)
        try:
            listen(client, recorder)
            assert rl.health_check(client).healthy
            [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
            assert client.connection is not None
            assert client.connection_pool._created_connections == 1
            assert not recorder.exactly(rl.PoolConnectionAcquiredEvent)
            assert event.connection_id is not None
        finally:
            client.close()

    def test_uninstrumented_client_emits_nothing(
        self, client: redis.Redis, server: RedisServer, recorder: Recorder
    ) -> None:
        """An uninstrumented client is checked but no dispatcher hears about it."""
        other = redis.Redis(host=server.host, port=server.port)
        try:
            listen(other, recorder)  # wrappers installed, but not for `client`
            assert rl.health_check(client).healthy
            assert recorder.events == []
        finally:
            other.close()

    def test_wrong_password_never_appears_in_the_result_or_event(
        self, password_server: RedisServer, recorder: Recorder
    ) -> None:
        """A failed AUTH is unhealthy, and the password is in no repr or dict."""
        secret = "wrong-Pa55-for-health"
        client = redis.Redis(
            host=password_server.host,
            port=password_server.port,
            password=secret,
            retry=no_retry(),
        )
        try:
            listen(client, recorder)
            result = rl.health_check(client)
            assert result.healthy is False
            assert isinstance(result.error, redis.exceptions.AuthenticationError)
            [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
            for text in (repr(result), repr(event), repr(event.to_dict())):
                assert secret not in text
        finally:
            client.close()


class TestCallbacksDuringHealthChecks:
    def test_raising_callback_is_logged_and_the_result_stands(
        self, client: redis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Under the default 'log' strategy a raising callback does not change the result."""
        handle = rl.instrument(client)

        def boom(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("callback failed")

        handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, boom)
        with caplog.at_level("WARNING"):
            result = rl.health_check(client)
        assert result.healthy is True
        assert "callback failed" in caplog.text
        assert pool_active(client.connection_pool) == 0

    def test_raise_strategy_raises_after_the_connection_is_back(self, client: redis.Redis) -> None:
        """Strategy 'raise' re-raises as CallbackError only once the pool is consistent."""
        handle = rl.instrument(client, callback_error_handler=rl.CallbackErrorHandler("raise"))

        def boom(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("callback failed")

        handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, boom)
        with pytest.raises(rl.CallbackError):
            rl.health_check(client)
        assert pool_active(client.connection_pool) == 0
        assert client.ping() is True


class TestBadInput:
    def test_unsupported_target_names_what_it_got(self) -> None:
        """A target that is not a client, pool or connection is a TypeError naming its type."""
        with pytest.raises(TypeError, match=r"expects a redis\.Redis.*got builtins\.dict"):
            rl.health_check({"host": "localhost"})

    @pytest.mark.parametrize("command", ["", "   ", 5, None])
    def test_command_must_be_a_non_empty_string(self, client: redis.Redis, command: Any) -> None:
        """An empty or non-string command is a TypeError showing the value given."""
        with pytest.raises(TypeError, match="non-empty str"):
            rl.health_check(client, command)


class TestAutomaticHealthChecks:
    def test_health_check_interval_ping_emits_health_check(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """redis-py's own interval PING emits a healthy health_check with a latency in ms."""
        client = redis.Redis(host=server.host, port=server.port, health_check_interval=1)
        try:
            listen(client, recorder)
            client.ping()
            recorder.clear()
            connection = client.connection_pool._available_connections[0]
            # The interval has passed (0 is before "now" whether redis-py keeps
            # time.time(), as 5.x does, or time.monotonic(), as 6.0+ does).
            connection.next_health_check = 0
            client.ping()
            [event] = recorder.exactly(rl.ConnectionHealthCheckEvent)
            assert event.healthy is True
            assert event.command == "PING"
            assert event.latency > 0
        finally:
            client.close()

    def test_interval_ping_on_a_killed_connection(
        self, server: RedisServer, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """Killed: unhealthy check, disconnected(health_check_failed), reconnected, healthy.

        A single-connection client, so that no checkout probe finds the dead
        socket before the interval PING does.
        """
        client = redis.Redis(
            host=server.host,
            port=server.port,
            health_check_interval=1,
            single_connection_client=True,
        )
        try:
            listen(client, recorder)
            client_id = own_client_id(client)
            connection = client.connection
            assert connection is not None
            assert admin.client_kill_filter(_id=str(client_id)) == 1
            recorder.clear()
            # The interval has passed (0 is before "now" whether redis-py keeps
            # time.time(), as 5.x does, or time.monotonic(), as 6.0+ does).
            connection.next_health_check = 0
            try:
                recovered = client.ping()  # 6.0+: redis-py retries and recovers on its own
            except redis.exceptions.ConnectionError:
                recovered = client.ping()  # 5.x: the command fails; the next reconnects
            assert recovered is True
            checks = recorder.exactly(rl.ConnectionHealthCheckEvent)
            assert checks[0].healthy is False
            assert all(c.healthy for c in checks[1:])
            assert isinstance(checks[0].error, redis.exceptions.ConnectionError)
            [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
            assert disconnected.reason is rl.CloseReason.HEALTH_CHECK_FAILED
            types = recorder.types()
            # The healthy check comes after the reconnect (6.0+) or inside its
            # handshake, just before it is reported (5.x): after the close, always.
            assert types.index("disconnected") < types.index("reconnected")
            assert types.index("disconnected") < len(types) - types[::-1].index("health_check")
        finally:
            client.close()


def ping_then_kill(
    subscriber: tuple[redis.Redis, Any], admin: redis.Redis, recorder: Recorder
) -> Any:
    """Subscribe, send a health ping whose reply is left unread, clear the
    recorder and CLIENT KILL the connection; returns the connection."""
    client, pubsub = subscriber
    listen(client, recorder)
    pubsub.subscribe("health-news")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    connection = pubsub.connection
    kill_id = next(
        int(c["id"]) for c in admin.client_list(_type="pubsub") if c["cmd"] == "subscribe"
    )
    # The interval has passed (0 is before "now" whether redis-py keeps
    # time.time(), as 5.x does, or time.monotonic(), as 6.0+ does).
    connection.next_health_check = 0
    pubsub.check_health()  # sends the ping; its reply is read later
    assert pubsub.health_check_response_counter == 1
    recorder.clear()
    assert admin.client_kill_filter(_id=str(kill_id)) == 1
    return connection


class TestPubSubHealthPing:
    @pytest.fixture
    def subscriber(self, server: RedisServer) -> Iterator[tuple[redis.Redis, Any]]:
        client = redis.Redis(host=server.host, port=server.port, health_check_interval=1)
        pubsub = client.pubsub()
        yield client, pubsub
        pubsub.close()
        client.close()

    def test_health_ping_reply_is_paired_with_its_request(
        self, subscriber: tuple[redis.Redis, Any], recorder: Recorder
    ) -> None:
        """PubSub's PING redis-py-health-check emits a healthy check when its reply is read."""
        client, pubsub = subscriber
        listen(client, recorder)
        pubsub.subscribe("health-news")
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        recorder.clear()

        def reply_seen() -> bool:
            pubsub.get_message(timeout=0.1)
            return bool(recorder.exactly(rl.ConnectionHealthCheckEvent))

        wait_until(reply_seen, timeout=10, what="a PubSub health ping and its reply")
        event = recorder.exactly(rl.ConnectionHealthCheckEvent)[0]
        assert event.command == "PING redis-py-health-check"
        assert event.healthy is True
        assert event.latency > 0
        assert pubsub.health_check_response_counter == 0  # redis-py saw the reply too
        from redis_lifecycle._hooks.state import CONNECTIONS

        assert event.connection_id == CONNECTIONS[id(pubsub.connection)].origin.connection_id

    def test_unanswered_ping_is_unhealthy_when_the_connection_dies(
        self, subscriber: tuple[redis.Redis, Any], admin: redis.Redis, recorder: Recorder
    ) -> None:
        """Ping sent, then CLIENT KILL: one unhealthy check with the error, then reconnected."""
        _, pubsub = subscriber
        ping_then_kill(subscriber, admin, recorder)

        def reconnected() -> bool:
            try:
                message = pubsub.get_message(timeout=0.1)
            except redis.exceptions.ConnectionError:
                return False  # redis-py 5.x raises once; the next read reconnects
            return message is None and bool(recorder.exactly(rl.ConnectionReconnectedEvent))

        wait_until(reconnected, timeout=10, what="the PubSub to reconnect")
        checks = recorder.exactly(rl.ConnectionHealthCheckEvent)
        failed = [c for c in checks if not c.healthy]
        # Ours, plus the one get_message may send before its read fails: all
        # unanswered, all reported with the one error that closed the socket;
        # except when that send itself fails (the server reset the socket
        # first): that ping carries the ConnectionError redis-py raises for it,
        # chained from the error that closed the socket.
        assert 1 <= len(failed) <= 2, checks
        assert {c.command for c in failed} == {"PING redis-py-health-check"}
        # redis-py's "closed by server", or the socket's own reset, by timing
        closed_by = failed[0].error
        assert isinstance(closed_by, (redis.exceptions.ConnectionError, ConnectionError))
        assert all(
            c.error is closed_by or (c.error is not None and c.error.__context__ is closed_by)
            for c in failed
        )
        types = recorder.types()
        assert types.index("health_check") < types.index("disconnected")
        assert types.index("disconnected") < types.index("reconnected")

    @pytest.mark.skipif(not hasattr(select, "poll"), reason="needs select.poll")
    def test_a_ping_sent_into_a_reset_socket_carries_the_error_of_its_send(
        self, subscriber: tuple[redis.Redis, Any], admin: redis.Redis, recorder: Recorder
    ) -> None:
        """Ping sent, CLIENT KILL, and the server's kernel resets the socket
        (it answers one stray write with a RST, if it did not reset it when
        it closed) before the next ping goes out:
        that send fails. The failed send is reported first, then the close
        it ran into, which leaves the first ping unanswered: every event
        carries the ConnectionError redis-py raised to the caller, chained
        from the socket's error. (The race the test above allows for, forced
        here every run.)"""
        _, pubsub = subscriber
        connection = ping_then_kill(subscriber, admin, recorder)
        sock = connection._sock
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLRDHUP)
        flags: Callable[[], int] = lambda: sum(mask for _, mask in poller.poll(0))  # noqa: E731
        wait_until(lambda: flags() & select.POLLRDHUP, what="the server's close")
        # To a closed socket: its kernel answers with a RST. It may have sent
        # one already (it closed with our ping unread): then this write fails.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.send(b"\r\n")
        wait_until(lambda: flags() & select.POLLHUP, what="the RST")
        connection.next_health_check = 0  # due again: the next read sends a ping first
        with pytest.raises(redis.exceptions.ConnectionError) as raised:
            pubsub.get_message(timeout=0.1)
        closed_by = raised.value.__context__
        assert isinstance(closed_by, (BrokenPipeError, ConnectionResetError))
        second, first = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert not first.healthy
        assert not second.healthy
        assert first.error is raised.value
        assert second.error is raised.value
        [error] = recorder.exactly(rl.ConnectionErrorEvent)
        assert error.error is raised.value
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.SERVER_CLOSED
        assert disconnected.error is raised.value
        assert recorder.types() == ["health_check", "error", "health_check", "disconnected"]
        # and it comes back
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        # reconnected, then (redis-py 5.x pings inside the handshake) the
        # check on the new socket
        after = recorder.types()[4:]
        assert "reconnected" in after, after
        assert after[after.index("reconnected") + 1 :] in ([], ["health_check"]), after


class TestAsyncPubSubHealthPing:
    """The same on ``redis.asyncio``, whose PubSub drops the reply inside
    ``parse_response``."""

    @pytest.fixture
    async def subscriber(self, server: RedisServer) -> AsyncIterator[tuple[Any, Any]]:
        client = aredis.Redis(host=server.host, port=server.port, health_check_interval=1)
        pubsub = client.pubsub()
        yield client, pubsub
        await pubsub.aclose()
        await client.aclose()

    async def poll(self, pubsub: Any, until: Callable[[], bool], what: str) -> None:
        """Read messages until ``until()`` holds (10 s at most)."""
        deadline = time.monotonic() + 10
        while not until():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            # A killed connection raises once; the next read reconnects.
            with contextlib.suppress(redis.exceptions.ConnectionError):
                await pubsub.get_message(timeout=0.1)

    async def test_health_ping_reply_is_paired_with_its_request(
        self, subscriber: tuple[Any, Any], recorder: Recorder
    ) -> None:
        """PING redis-py-health-check emits a healthy check when its reply is read."""
        client, pubsub = subscriber
        listen(client, recorder)
        await pubsub.subscribe("health-news")
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        recorder.clear()
        checks: Callable[[], list[rl.ConnectionHealthCheckEvent]]
        checks = lambda: recorder.exactly(rl.ConnectionHealthCheckEvent)  # noqa: E731
        await self.poll(pubsub, lambda: bool(checks()), "a health ping and its reply")
        [event] = checks()
        assert event.command == "PING redis-py-health-check"
        assert event.healthy is True
        assert 0 < event.latency < 10_000
        assert event.connection_id == CONNECTIONS[id(pubsub.connection)].origin.connection_id
        # The reply was paired with its ping: none is left waiting.
        assert CONNECTIONS[id(pubsub.connection)].health_pings == deque()

    async def test_unanswered_ping_is_unhealthy_when_the_connection_dies(
        self, subscriber: tuple[Any, Any], admin: redis.Redis, recorder: Recorder
    ) -> None:
        """Ping sent, then CLIENT KILL: an unhealthy check carrying the error."""
        client, pubsub = subscriber
        listen(client, recorder)
        await pubsub.subscribe("health-news")
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        connection = pubsub.connection
        kill_id = next(
            int(c["id"]) for c in admin.client_list(_type="pubsub") if c["cmd"] == "subscribe"
        )
        connection.next_health_check = 0  # due: the loop's clock is past 0
        await pubsub.check_health()  # sends the ping; its reply is read later
        assert len(CONNECTIONS[id(connection)].health_pings or ()) == 1
        recorder.clear()
        assert admin.client_kill_filter(_id=str(kill_id)) == 1
        failed: Callable[[], list[rl.ConnectionHealthCheckEvent]] = lambda: [  # noqa: E731
            c for c in recorder.exactly(rl.ConnectionHealthCheckEvent) if not c.healthy
        ]
        await self.poll(pubsub, lambda: bool(failed()), "the unanswered ping to fail")
        assert {c.command for c in failed()} == {"PING redis-py-health-check"}
        assert all(
            isinstance(c.error, (redis.exceptions.ConnectionError, ConnectionError))
            for c in failed()
        )
        types = recorder.types()
        assert types.index("health_check") < types.index("disconnected")
