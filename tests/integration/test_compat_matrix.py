"""The sync hook points on every supported redis-py (5.0 to 8.x), against a real server.

This file is what the tox matrix (``tox.ini``) leans on: each test drives one
lifecycle point through redis-py's public API and asserts the events that come
out, with nothing that depends on the redis-py version except where a feature
is missing (``mark_for_reconnect`` before 7.0), which is detected with
``hasattr`` exactly as the hooks do.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.connection as rconn
from redis.backoff import NoBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer
from tests.helpers import Recorder, checkout, wait_until

HAS_MARK_FOR_RECONNECT = hasattr(rconn.AbstractConnection, "mark_for_reconnect")


def no_retry() -> dict[str, Any]:
    """Client arguments for exactly one attempt on every redis-py (8.x retries 10 times)."""
    return {"retry": Retry(NoBackoff(), 0)}


def one_retry() -> dict[str, Any]:
    """Client arguments for one retry on ConnectionError, the same on every redis-py."""
    return {"retry": Retry(NoBackoff(), 1), "retry_on_error": [redis.ConnectionError]}


def kill_client(admin: redis.Redis, client_id: int) -> None:
    """``CLIENT KILL ID`` one of this test's connections and wait until it is gone."""
    assert admin.client_kill_filter(_id=str(client_id)) == 1
    wait_until(
        lambda: all(int(c["id"]) != client_id for c in admin.client_list()),
        what=f"client {client_id} to leave CLIENT LIST",
    )


@pytest.fixture
def client(server: RedisServer, recorder: Recorder) -> Iterator[redis.Redis]:
    """An instrumented client of the test's own server; every event goes to ``recorder``."""
    instance = redis.Redis(**server.connection_kwargs(), **no_retry())
    handle = rl.instrument(instance)
    handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
    yield instance
    rl.uninstrument(instance)
    instance.close()


class TestConnect:
    def test_first_command_emits_created_then_connected(
        self, client: redis.Redis, recorder: Recorder, server: RedisServer
    ) -> None:
        """The first command opens a socket: connection_created, then connected with the address."""
        assert client.ping() is True
        connected = recorder.wait_for(rl.ConnectionConnectedEvent)
        created = recorder.wait_for(rl.ConnectionCreatedEvent)
        assert recorder.events.index(created) < recorder.events.index(connected)
        assert (connected.host, connected.port) == (server.host, server.port)
        assert connected.first_connection is True
        assert connected.connect_time >= 0.0
        assert connected.connection_id == created.connection_id

    def test_refused_connect_is_an_error_in_phase_connect(
        self, client: redis.Redis, recorder: Recorder, server: RedisServer
    ) -> None:
        """A connect to a port nobody listens on reports ConnectionErrorEvent(phase="connect")."""
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        error = recorder.wait_for(rl.ConnectionErrorEvent)
        assert error.phase == "connect"
        assert isinstance(error.error, (redis.ConnectionError, OSError))
        assert recorder.of(rl.ConnectionConnectedEvent) == []

    def test_failed_auth_is_a_handshake_error_without_the_password(
        self, password_server: RedisServer, recorder: Recorder
    ) -> None:
        """A wrong password fails the handshake: an error in phase "handshake", never connected,
        and neither password appears in any event."""
        wrong = "not-the-Pa55word"
        instance = redis.Redis(
            host=password_server.host, port=password_server.port, password=wrong, **no_retry()
        )
        rl.instrument(instance).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        with pytest.raises(redis.AuthenticationError):
            instance.ping()
        error = recorder.wait_for(rl.ConnectionErrorEvent)
        assert error.phase == "handshake"
        assert recorder.of(rl.ConnectionConnectedEvent) == []
        for event in recorder.events:
            text = repr(event) + repr(event.to_dict())
            assert wrong not in text
            assert str(password_server.password) not in text

    def test_unix_socket_connection_reports_its_path(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """Over a unix socket, connected carries ``path`` and no host or port."""
        instance = redis.Redis(unix_socket_path=server.unix_path, **no_retry())
        rl.instrument(instance).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert instance.ping() is True
        connected = recorder.wait_for(rl.ConnectionConnectedEvent)
        assert connected.path == server.unix_path
        assert (connected.host, connected.port) == (None, None)
        assert connected.to_dict()["path"] == server.unix_path
        instance.close()


class TestReconnect:
    def test_killed_idle_connection_reconnects_at_checkout(
        self, client: redis.Redis, recorder: Recorder, admin: redis.Redis
    ) -> None:
        """The pool's checkout probe finds a killed connection: disconnected (with the error),
        then the same connection reconnects before the command runs."""
        client_id = client.client_id()
        connected = recorder.wait_for(rl.ConnectionConnectedEvent)
        kill_client(admin, client_id)
        assert client.ping() is True
        disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
        reconnected = recorder.wait_for(rl.ConnectionReconnectedEvent)
        assert recorder.events.index(disconnected) < recorder.events.index(reconnected)
        assert disconnected.reason in (rl.CloseReason.SERVER_CLOSED, rl.CloseReason.ERROR)
        assert disconnected.error is not None
        assert reconnected.connection_id == connected.connection_id
        assert reconnected.first_connection is False
        assert reconnected.downtime >= 0.0
        assert client.client_id() != client_id

    def test_single_connection_client_reconnects_lazily_on_retry(
        self, server: RedisServer, recorder: Recorder, admin: redis.Redis
    ) -> None:
        """A single-connection client with one retry survives a kill: the lazy reconnect
        inside send_packed_command (``connect`` on 5.x, ``connect_check_health`` on 6.0+)
        is seen as disconnected then reconnected."""
        instance = redis.Redis(
            **server.connection_kwargs(),
            single_connection_client=True,
            **one_retry(),
        )
        rl.instrument(instance).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        try:
            client_id = instance.client_id()
            kill_client(admin, client_id)
            assert instance.ping() is True
            disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
            reconnected = recorder.wait_for(rl.ConnectionReconnectedEvent)
            assert recorder.events.index(disconnected) < recorder.events.index(reconnected)
            assert disconnected.error is not None
            assert len(recorder.exactly(rl.ConnectionReconnectedEvent)) == 1
        finally:
            rl.uninstrument(instance)
            instance.close()

    def test_pool_disconnect_is_an_application_close(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """``pool.disconnect()`` closes idle connections with reason application and no error."""
        client.ping()
        recorder.wait_for(rl.ConnectionConnectedEvent)
        client.connection_pool.disconnect()
        disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION
        assert disconnected.error is None
        assert recorder.of(rl.ConnectionErrorEvent) == []


class TestHealthCheck:
    def test_health_check_interval_ping_is_reported_healthy(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """redis-py's own health check (``health_check_interval``) is a healthy health_check
        event with a latency in milliseconds."""
        pool = redis.ConnectionPool(**server.connection_kwargs(), health_check_interval=30)
        rl.instrument(pool).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        connection = checkout(pool)
        recorder.clear()
        connection.next_health_check = 0  # due now, instead of in 30 s
        connection.check_health()
        check = recorder.wait_for(rl.ConnectionHealthCheckEvent)
        assert check.healthy is True
        assert check.command == "PING"
        assert check.error is None
        assert check.latency >= 0.0
        pool.release(connection)
        pool.disconnect()

    def test_failed_health_check_then_reconnect(
        self, server: RedisServer, recorder: Recorder, admin: redis.Redis
    ) -> None:
        """A health check on a killed connection is unhealthy and closes it; the retry
        reconnects and its check passes, on every redis-py."""
        pool = redis.ConnectionPool(
            **server.connection_kwargs(), health_check_interval=30, **one_retry()
        )
        rl.instrument(pool).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        connection = checkout(pool)
        connection.send_command("CLIENT", "ID")
        kill_client(admin, int(connection.read_response()))
        recorder.clear()
        connection.next_health_check = 0
        connection.check_health()
        failed = recorder.wait_for(rl.ConnectionHealthCheckEvent, lambda e: not e.healthy)
        assert failed.error is not None
        disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
        reconnected = recorder.wait_for(rl.ConnectionReconnectedEvent)
        # redis-py closes the socket inside the failing PING, before the check reports; 5.x
        # also pings inside the reconnect's handshake, so look at the last check.
        recorder.wait_for(rl.ConnectionHealthCheckEvent, lambda e: e.healthy)
        passed = recorder.exactly(rl.ConnectionHealthCheckEvent)[-1]
        assert passed.healthy is True
        order = [recorder.events.index(e) for e in (failed, reconnected, passed)]
        assert order == sorted(order), recorder.types()
        assert recorder.events.index(disconnected) < recorder.events.index(reconnected)
        pool.release(connection)
        pool.disconnect()


class TestMarkForReconnect:
    @pytest.mark.skipif(
        not HAS_MARK_FOR_RECONNECT, reason="redis-py < 7.0 has no mark_for_reconnect"
    )
    def test_mark_for_reconnect_then_release_closes_and_reconnects(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """redis-py 7.0+: ``mark_for_reconnect()`` emits marked_for_reconnect; the release
        closes the connection (application) and the next command reconnects it."""
        pool = client.connection_pool
        connection = checkout(pool)
        connection.mark_for_reconnect()
        marked = recorder.wait_for(rl.ConnectionMarkedForReconnectEvent)
        assert marked.reason == "requested"
        pool.release(connection)
        disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION
        assert client.ping() is True
        reconnected = recorder.wait_for(rl.ConnectionReconnectedEvent)
        assert reconnected.connection_id == marked.connection_id

    @pytest.mark.skipif(HAS_MARK_FOR_RECONNECT, reason="redis-py >= 7.0 has mark_for_reconnect")
    def test_without_mark_for_reconnect_the_hook_is_absent_and_harmless(
        self, client: redis.Redis
    ) -> None:
        """redis-py < 7.0: there is nothing to wrap, instrumenting adds no such method,
        and commands work."""
        assert client.ping() is True
        assert not hasattr(rconn.AbstractConnection, "mark_for_reconnect")

    def test_fork_marks_inherited_connections_and_resets_the_pool(
        self, client: redis.Redis
    ) -> None:
        """In a forked child, the pool resets (reason fork) and each inherited connection gets
        marked_for_reconnect(reason="fork"), synthesized where redis-py has no such method."""
        seen: list[tuple[str, str]] = []

        def record(event: rl.LifecycleEvent) -> None:
            reason = getattr(event, "reason", "")
            seen.append((event.type.value, str(reason)))

        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.ConnectionMarkedForReconnectEvent, record)
        handle.dispatcher.subscribe(rl.PoolResetEvent, record)
        handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, record)
        assert client.ping() is True
        seen.clear()
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() when other tests left threads running.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: one command, report what it saw, exit at once
            status = 0
            try:
                client.ping()
                os.write(write_end, json.dumps(seen).encode())
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            payload = reader.read()
        _, status = os.waitpid(pid, 0)
        assert status == 0
        child_seen = [tuple(item) for item in json.loads(payload)]
        assert ("marked_for_reconnect", "fork") in child_seen
        assert ("pool_reset", "fork") in child_seen
        assert ("connected", "") in child_seen
        assert child_seen.index(("pool_reset", "fork")) < child_seen.index(("connected", ""))
        assert seen == []  # the parent saw nothing of the child's work


class TestPoolExhaustion:
    def test_connection_pool_fails_fast_when_full(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """A full ``ConnectionPool`` raises at once (ConnectionError, MaxConnectionsError on
        newer redis-py) and reports pool_exhausted with its size."""
        pool = redis.ConnectionPool(**server.connection_kwargs(), max_connections=1)
        rl.instrument(pool).dispatcher.subscribe(rl.PoolExhaustedEvent, recorder)
        held = checkout(pool)
        with pytest.raises(redis.ConnectionError):
            checkout(pool)
        exhausted = recorder.wait_for(rl.PoolExhaustedEvent)
        assert exhausted.size == 1
        assert exhausted.waited >= 0.0
        pool.release(held)
        pool.disconnect()

    def test_blocking_pool_times_out_and_reports_the_wait(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """A full ``BlockingConnectionPool`` waits ``timeout`` and then reports pool_exhausted
        with that timeout; its counts stay right afterwards."""
        pool = redis.BlockingConnectionPool(
            **server.connection_kwargs(), max_connections=1, timeout=0.05
        )
        handle = rl.instrument(pool)
        handle.dispatcher.subscribe(rl.PoolExhaustedEvent, recorder)
        held = checkout(pool)
        with pytest.raises(redis.ConnectionError):
            checkout(pool)
        exhausted = recorder.wait_for(rl.PoolExhaustedEvent)
        assert exhausted.size == 1
        assert exhausted.timeout == 0.05
        assert exhausted.waited > 0.0
        pool.release(held)
        (stats,) = handle.pool_stats()
        assert (stats["active"], stats["idle"], stats["total"]) == (0, 1, 1)
        pool.disconnect()

    def test_acquire_and_release_counts(self, client: redis.Redis, recorder: Recorder) -> None:
        """Each command checks out and returns one connection, with active/idle counts."""
        client.ping()
        acquired = recorder.wait_for(rl.PoolConnectionAcquiredEvent)
        released = recorder.wait_for(rl.PoolConnectionReleasedEvent)
        assert (acquired.active_connections, acquired.idle_connections) == (1, 0)
        assert (released.active_connections, released.idle_connections) == (0, 1)
        assert released.held_time >= 0.0
        assert acquired.wait_time >= 0.0

    def test_explicit_reset_is_reported(self, client: redis.Redis, recorder: Recorder) -> None:
        """``pool.reset()`` reports pool_reset(reason="explicit") with the dropped count."""
        client.ping()
        client.connection_pool.reset()
        reset = recorder.wait_for(rl.PoolResetEvent)
        assert reset.reason == "explicit"
        assert reset.connections_dropped == 1
