"""Every event of the catalogue, provoked for real on a sync redis-py client.

Each test starts from a server it owns (``server``) or the session server,
causes the lifecycle point for real (commands, CLIENT KILL of its own
connection, a refused port, a wrong password, a small pool) and checks the
event's fields.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
import redis.exceptions
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer, free_port

from ..helpers import Recorder, checkout, wait_until


def listen(client_or_pool: object, recorder: Recorder) -> rl.LifecycleHandle:
    handle = rl.instrument(client_or_pool)
    handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return handle


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=server.host, port=server.port)
    yield c
    c.close()


class TestConnectionEvents:
    def test_first_command_creates_and_connects(
        self, client: redis.Redis, server: RedisServer, recorder: Recorder
    ) -> None:
        """connection_created then connected, with the address, db and a connect time."""
        listen(client, recorder)
        assert client.ping() is True
        created = recorder.exactly(rl.ConnectionCreatedEvent)
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert len(created) == 1
        assert (connected.host, connected.port, connected.db) == ("127.0.0.1", server.port, 0)
        assert connected.path is None
        assert connected.first_connection is True
        assert 0 < connected.connect_time < 10
        assert connected.connection_id == created[0].connection_id
        assert connected.pool_name == f"127.0.0.1:{server.port}/0"
        types = recorder.types()
        assert types.index("connection_created") < types.index("connected")
        assert types.index("connected") < types.index("connection_acquired")

    def test_server_closing_the_connection_gives_disconnected_then_reconnected(
        self, client: redis.Redis, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """CLIENT KILL of our connection: disconnected(server_closed), then the same
        connection object reconnects on the next command."""
        listen(client, recorder)
        own_id = client.client_id()
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        recorder.clear()
        assert admin.client_kill_filter(_id=str(own_id)) == 1
        assert client.ping() is True
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        [reconnected] = recorder.exactly(rl.ConnectionReconnectedEvent)
        assert disconnected.reason is rl.CloseReason.SERVER_CLOSED
        assert isinstance(disconnected.error, redis.exceptions.ConnectionError)
        assert reconnected.connection_id == connected.connection_id
        assert reconnected.first_connection is False
        assert reconnected.downtime >= 0
        assert reconnected.connect_time > 0
        [error] = recorder.exactly(rl.ConnectionErrorEvent)
        assert error.phase == "io"
        assert error.error is disconnected.error
        assert recorder.types()[:4] == [
            "error",
            "disconnected",
            "connection_created",
            "reconnected",
        ]

    def test_close_gives_disconnected_with_reason_application(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """Closing the client's pool closes its connection: reason application, no error."""
        listen(client, recorder)
        client.ping()
        client.connection_pool.disconnect()
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason is rl.CloseReason.APPLICATION
        assert disconnected.error is None
        assert recorder.exactly(rl.ConnectionErrorEvent) == []

    def test_socket_timeout_gives_error_and_disconnected(
        self, server: RedisServer, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """A read timeout (server paused) is an io error and closes with reason error."""
        client = redis.Redis(
            host=server.host, port=server.port, socket_timeout=0.2, retry=cast(Retry, None)
        )
        listen(client, recorder)
        client.ping()
        admin.client_pause(1000)
        with pytest.raises(redis.exceptions.TimeoutError):
            client.get("key")
        [error] = recorder.exactly(rl.ConnectionErrorEvent)
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert error.phase == "io"
        assert isinstance(error.error, (TimeoutError, redis.exceptions.TimeoutError))
        assert disconnected.reason is rl.CloseReason.ERROR
        assert disconnected.error is error.error
        client.close()

    def test_refused_connect_gives_error_in_phase_connect(self, recorder: Recorder) -> None:
        """Nothing listening: one created and one connect error per attempt, never connected."""
        port = free_port()
        client = redis.Redis(host="127.0.0.1", port=port, retry=cast(Retry, None))
        listen(client, recorder)
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        errors = recorder.exactly(rl.ConnectionErrorEvent)
        created = recorder.exactly(rl.ConnectionCreatedEvent)
        assert errors
        assert len(created) == len(errors)
        assert all(e.phase == "connect" and isinstance(e.error, OSError) for e in errors)
        assert all(e.port == port for e in errors)
        assert recorder.of(rl.ConnectionConnectedEvent) == []
        assert recorder.exactly(rl.ConnectionDisconnectedEvent) == []

    def test_failed_handshake_gives_error_but_never_connected(
        self, password_server: RedisServer, recorder: Recorder
    ) -> None:
        """A wrong password fails in phase handshake: no connected, no disconnected."""
        client = redis.Redis(host=password_server.host, port=password_server.port, password="wrong")
        listen(client, recorder)
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
        errors = recorder.exactly(rl.ConnectionErrorEvent)
        assert errors
        assert all(e.phase == "handshake" for e in errors)
        assert isinstance(errors[0].error, redis.exceptions.AuthenticationError)
        assert recorder.of(rl.ConnectionConnectedEvent) == []
        assert recorder.exactly(rl.ConnectionDisconnectedEvent) == []

    def test_health_check_interval_emits_health_checks_with_latency_in_ms(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """redis-py's own health check (health_check_interval) is reported with its latency."""
        client = redis.Redis(
            host=server.host, port=server.port, health_check_interval=cast(int, 0.001)
        )
        listen(client, recorder)
        for _ in range(5):
            client.ping()
        checks = recorder.exactly(rl.ConnectionHealthCheckEvent)
        assert checks
        assert all(c.healthy and c.error is None and c.command == "PING" for c in checks)
        assert all(0 < c.latency < 10_000 for c in checks)
        client.close()

    def test_mark_for_reconnect_is_reported_and_closes_on_release(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A connection marked by redis-py is reported, and closed when released."""
        if not hasattr(redis.connection.AbstractConnection, "mark_for_reconnect"):
            pytest.skip("redis-py < 7.0 has no mark_for_reconnect")
        listen(client, recorder)
        pool = client.connection_pool
        connection = checkout(pool)
        connection.mark_for_reconnect()
        pool.release(connection)
        [marked] = recorder.exactly(rl.ConnectionMarkedForReconnectEvent)
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert marked.reason == "requested"
        assert marked.connection_id == disconnected.connection_id
        assert disconnected.reason is rl.CloseReason.APPLICATION
        types = recorder.types()
        assert types.index("marked_for_reconnect") < types.index("disconnected")


class TestUnixSocket:
    def test_unix_socket_events_carry_the_path(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """Over a unix socket, events have path and no host or port."""
        client = redis.Redis(unix_socket_path=server.unix_path)
        listen(client, recorder)
        client.set("k", "v")
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert connected.path == server.unix_path
        assert (connected.host, connected.port) == (None, None)
        data = recorder.exactly(rl.PoolConnectionAcquiredEvent)[0].to_dict()
        assert data["path"] == server.unix_path
        assert "host" not in data
        client.close()

    def test_unix_socket_kill_and_reconnect(
        self, server: RedisServer, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """A killed unix-socket connection reconnects like a TCP one."""
        client = redis.Redis(unix_socket_path=server.unix_path)
        listen(client, recorder)
        admin.client_kill_filter(_id=str(client.client_id()))
        client.ping()
        [disconnected] = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert disconnected.path == server.unix_path
        assert len(recorder.exactly(rl.ConnectionReconnectedEvent)) == 1
        client.close()


class TestPoolEvents:
    def test_pool_created_reports_size_and_timeout(self, server: RedisServer) -> None:
        """A lifecycle pool announces itself with its limits and name."""
        dispatcher = rl.EventDispatcher()
        recorder = Recorder()
        dispatcher.subscribe(rl.PoolCreatedEvent, recorder)
        pool = rl.LifecycleBlockingConnectionPool(
            host=server.host,
            port=server.port,
            max_connections=3,
            timeout=2,
            event_dispatcher=dispatcher,
            pool_name="cache",
        )
        [created] = recorder.exactly(rl.PoolCreatedEvent)
        assert (created.size, created.timeout, created.pool_name) == (3, 2, "cache")
        assert created.connection_id is None
        assert (created.host, created.port) == ("127.0.0.1", server.port)
        pool.disconnect()

    def test_pool_connection_created_counts_connections(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """Each new connection object is announced with the running total."""
        pool = redis.ConnectionPool(host=server.host, port=server.port)
        listen(pool, recorder)
        first, second = checkout(pool), checkout(pool)
        totals = [e.total_connections for e in recorder.exactly(rl.PoolConnectionCreatedEvent)]
        assert totals == [1, 2]
        pool.release(first)
        pool.release(second)
        pool.disconnect()

    def test_acquired_and_released_carry_counts_wait_and_held_time(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """Checkout and return report active/idle counts and the time held."""
        pool = redis.ConnectionPool(host=server.host, port=server.port)
        listen(pool, recorder)
        first = checkout(pool)
        second = checkout(pool)
        started = time.perf_counter()
        first.send_command("PING")
        first.read_response()
        held_at_least = time.perf_counter() - started  # held until release() is called
        pool.release(first)
        acquired = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        [released] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert [(a.active_connections, a.idle_connections) for a in acquired] == [(1, 0), (2, 0)]
        assert all(a.wait_time >= 0 for a in acquired)
        assert (released.active_connections, released.idle_connections) == (1, 1)
        assert released.held_time >= held_at_least
        assert released.connection_id == acquired[0].connection_id
        pool.release(second)
        pool.disconnect()

    def test_blocking_pool_counts(self, server: RedisServer, recorder: Recorder) -> None:
        """BlockingConnectionPool counts are read right from its queue."""
        pool = redis.BlockingConnectionPool(host=server.host, port=server.port, max_connections=4)
        listen(pool, recorder)
        connections = [checkout(pool) for _ in range(3)]
        pool.release(connections[0])
        pool.release(connections[1])
        counts = [
            (e.type.value, e.active_connections, e.idle_connections)
            for e in recorder.of(rl.events._PoolCountsEvent)
        ]
        assert counts == [
            ("connection_acquired", 1, 0),
            ("connection_acquired", 2, 0),
            ("connection_acquired", 3, 0),
            ("connection_released", 2, 1),
            ("connection_released", 1, 2),
        ]
        assert rl.instrument(pool).pool_stats()[0]["total"] == 3
        pool.release(connections[2])
        pool.disconnect()

    def test_too_many_connections_is_pool_exhausted(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """ConnectionPool at max_connections fails at once: exhausted with waited ~ 0."""
        pool = redis.ConnectionPool(host=server.host, port=server.port, max_connections=1)
        listen(pool, recorder)
        held = checkout(pool)
        with pytest.raises(redis.exceptions.ConnectionError):
            checkout(pool)
        [exhausted] = recorder.exactly(rl.PoolExhaustedEvent)
        assert exhausted.size == 1
        assert exhausted.timeout is None
        assert 0 <= exhausted.waited < 5
        pool.release(held)
        assert checkout(pool) is held  # the pool still works
        pool.disconnect()

    @pytest.mark.parametrize("blocking", [False, True], ids=["plain", "blocking"])
    @pytest.mark.parametrize("lifecycle_pool", [False, True], ids=["instrumented", "lifecycle"])
    def test_pool_exhausted_alone_is_reported(
        self, server: RedisServer, blocking: bool, lifecycle_pool: bool
    ) -> None:
        """With pool_exhausted the only event wanted, a checkout that finds the
        pool used up still reports it, once: from make_connection for a plain
        pool, from the guarded checkout for a blocking one."""
        recorder = Recorder()
        kwargs: dict[str, Any] = {"host": server.host, "port": server.port, "max_connections": 1}
        if blocking:
            kwargs["timeout"] = 0.05
        pool: Any
        cls: type[redis.ConnectionPool]
        if lifecycle_pool:
            cls = rl.LifecycleBlockingConnectionPool if blocking else rl.LifecycleConnectionPool
            pool = cls(**kwargs)
            handle = pool.lifecycle
        else:
            cls = redis.BlockingConnectionPool if blocking else redis.ConnectionPool
            pool = cls(**kwargs)
            handle = rl.instrument(pool)
        handle.dispatcher.subscribe(rl.PoolExhaustedEvent, recorder)
        held = checkout(pool)
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                checkout(pool)
        finally:
            pool.release(held)
        [exhausted] = recorder.events
        assert isinstance(exhausted, rl.PoolExhaustedEvent)
        assert (exhausted.size, exhausted.port) == (1, server.port)
        assert exhausted.waited >= (0.05 if blocking else 0.0)
        assert checkout(pool) is held  # the pool still works
        pool.disconnect()

    def test_blocking_pool_timeout_is_pool_exhausted_after_waiting(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """BlockingConnectionPool gives up after its timeout: waited >= timeout."""
        pool = redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=1, timeout=0.2
        )
        listen(pool, recorder)
        held = checkout(pool)
        with pytest.raises(redis.exceptions.ConnectionError, match="No connection available"):
            checkout(pool)
        [exhausted] = recorder.exactly(rl.PoolExhaustedEvent)
        assert (exhausted.size, exhausted.timeout) == (1, 0.2)
        assert exhausted.waited >= 0.2
        pool.release(held)
        pool.disconnect()

    def test_waiting_checkout_reports_its_wait_time(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """A checkout that waits for another thread's release reports that wait."""
        pool = redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=1, timeout=10
        )
        listen(pool, recorder)
        held = checkout(pool)
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(checkout(pool)))
        started = time.perf_counter()
        waiter.start()
        wait_until(lambda: pool.pool.not_empty._waiters, what="the waiter to block")
        pool.release(held)
        waiter.join(10)
        blocked_for = time.perf_counter() - started
        second = recorder.exactly(rl.PoolConnectionAcquiredEvent)[1]
        assert got == [held]
        assert 0 < second.wait_time <= blocked_for
        pool.release(held)
        pool.disconnect()

    def test_threads_racing_for_a_small_pool_get_one_release_per_checkout(
        self, server: RedisServer, recorder: Recorder, fast_thread_switches: None
    ) -> None:
        """8 threads share 2 connections: a connection handed to another
        thread the moment it is returned still gets its own released event,
        with its own held time (none lost, none measured from the wrong
        checkout)."""
        pool = redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=2, timeout=30
        )
        client = redis.Redis(connection_pool=pool)
        listen(pool, recorder)
        threads, commands = 8, 300
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(commands):
                    client.ping()
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert errors == []
        acquired = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        released = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert len(acquired) == threads * commands
        assert len(released) == threads * commands
        assert all(0 <= e.active_connections <= 2 for e in acquired + released)
        assert pool.pool.qsize() == 2  # every connection is back in the queue
        pool.disconnect()

    def test_pool_reset_reports_dropped_connections(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """An explicit reset drops the connections the pool held."""
        listen(client, recorder)
        pool = client.connection_pool
        connections = [checkout(pool) for _ in range(2)]
        for connection in connections:
            pool.release(connection)
        pool.reset()
        [reset] = recorder.exactly(rl.PoolResetEvent)
        assert (reset.reason, reset.connections_dropped) == ("explicit", 2)
        assert client.ping() is True  # and it keeps working


class TestClientShapes:
    def test_pipeline_with_transaction_and_watch(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """A pipeline holds one connection for WATCH...EXEC: one acquire, one release."""
        listen(client, recorder)
        with client.pipeline(transaction=True) as pipe:
            pipe.watch("counter")
            pipe.multi()
            pipe.incr("counter")
            assert pipe.execute() == [1]
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == 1

    def test_pipeline_without_transaction(self, client: redis.Redis, recorder: Recorder) -> None:
        """A plain pipeline takes one connection for the whole batch."""
        listen(client, recorder)
        with client.pipeline(transaction=False) as pipe:
            for i in range(10):
                pipe.set(f"k{i}", i)
            pipe.execute()
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == 1

    def test_pubsub_holds_its_connection_until_closed(
        self, client: redis.Redis, recorder: Recorder
    ) -> None:
        """PubSub checks out on subscribe; close disconnects it, then releases it."""
        listen(client, recorder)
        pubsub = client.pubsub()
        pubsub.subscribe("news")
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) == 1
        assert recorder.exactly(rl.PoolConnectionReleasedEvent) == []
        client.publish("news", "hello")
        message = None
        deadline = time.monotonic() + 5
        while message is None or message["type"] != "message":
            message = pubsub.get_message(timeout=1)
            assert time.monotonic() < deadline
        pubsub.close()
        assert recorder.types()[-2:] == ["disconnected", "connection_released"]
        assert recorder.exactly(rl.ConnectionDisconnectedEvent)[0].reason is (
            rl.CloseReason.APPLICATION
        )

    def test_single_connection_client_releases_only_on_close(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """single_connection_client takes its connection once, before instrument():
        no per-command checkout, and close() returns it (held since instrumentation)."""
        client = redis.Redis(host=server.host, port=server.port, single_connection_client=True)
        listen(client, recorder)
        instrumented_at = time.perf_counter()
        for _ in range(5):
            client.ping()
        assert recorder.exactly(rl.PoolConnectionAcquiredEvent) == []
        held_at_least = time.perf_counter() - instrumented_at
        client.close()
        [released] = recorder.exactly(rl.PoolConnectionReleasedEvent)
        assert released.held_time >= held_at_least
        assert (released.active_connections, released.idle_connections) == (0, 1)

    def test_single_connection_client_reconnects_after_kill(
        self, server: RedisServer, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """The held connection, killed by the server, is seen to reconnect (6.0+)."""
        client = redis.Redis(host=server.host, port=server.port, single_connection_client=True)
        listen(client, recorder)
        admin.client_kill_filter(_id=str(client.client_id()))
        # redis-py 5.x has no retry here and raises; the events still tell the truth
        with contextlib.suppress(redis.exceptions.ConnectionError):
            client.ping()
        assert len(recorder.exactly(rl.ConnectionDisconnectedEvent)) == 1
        client.ping()
        assert len(recorder.exactly(rl.ConnectionReconnectedEvent)) == 1
        client.close()


class TestFromUrl:
    def test_redis_url(self, server: RedisServer, recorder: Recorder) -> None:
        """LifecycleConnectionPool.from_url keeps host, port and db."""
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        pool = rl.LifecycleConnectionPool.from_url(
            f"redis://127.0.0.1:{server.port}/3", event_dispatcher=dispatcher
        )
        client = redis.Redis(connection_pool=pool)
        client.ping()
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert (connected.port, connected.db) == (server.port, 3)
        assert connected.pool_name == f"127.0.0.1:{server.port}/3"
        pool.disconnect()

    def test_unix_url(self, server: RedisServer, recorder: Recorder) -> None:
        """unix:// URLs give unix-socket connections with path in events."""
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        pool = rl.LifecycleBlockingConnectionPool.from_url(
            f"unix://{server.unix_path}?db=1", event_dispatcher=dispatcher, pool_name="local"
        )
        assert issubclass(pool.connection_class, redis.UnixDomainSocketConnection)
        redis.Redis(connection_pool=pool).ping()
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert (connected.path, connected.db, connected.pool_name) == (server.unix_path, 1, "local")
        pool.disconnect()

    def test_rediss_url_keeps_tls(
        self, tls_server: tuple[RedisServer, int, str], recorder: Recorder
    ) -> None:
        """rediss:// stays TLS through the lifecycle pool, and connects for real."""
        _, tls_port, ca_file = tls_server
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        pool = rl.LifecycleConnectionPool.from_url(
            f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca_file}",
            event_dispatcher=dispatcher,
        )
        assert issubclass(pool.connection_class, redis.SSLConnection)
        client = redis.Redis(connection_pool=pool)
        assert client.ping() is True
        [connected] = recorder.exactly(rl.ConnectionConnectedEvent)
        assert connected.port == tls_port
        pool.disconnect()
        assert recorder.exactly(rl.ConnectionDisconnectedEvent)[0].reason is (
            rl.CloseReason.APPLICATION
        )

    def test_redis_py_event_dispatcher_is_passed_through(self, server: RedisServer) -> None:
        """redis-py's own event_dispatcher= argument still reaches redis-py."""
        native = pytest.importorskip("redis.event")
        theirs = native.EventDispatcher()
        pool = rl.LifecycleConnectionPool(
            host=server.host, port=server.port, event_dispatcher=theirs
        )
        assert pool._event_dispatcher is theirs
        assert isinstance(pool.event_dispatcher, rl.EventDispatcher)
        pool.disconnect()

    def test_pooled_builds_a_blocking_lifecycle_client(self, server: RedisServer) -> None:
        """pooled() returns redis.Redis on a LifecycleBlockingConnectionPool."""
        dispatcher = rl.EventDispatcher()
        recorder = Recorder()
        dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        client = rl.pooled(
            server.host,
            server.port,
            pool={"size": 2, "timeout": 1, "event_dispatcher": dispatcher},
        )
        pool = client.connection_pool
        assert isinstance(pool, rl.LifecycleBlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (2, 1)
        client.ping()
        assert len(recorder.events) == 1
        client.close()
