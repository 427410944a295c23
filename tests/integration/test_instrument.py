"""instrument() / uninstrument(), legacy callbacks, error isolation, bad input,
and secrets: on a real server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.connection
import wrapt

import redis_lifecycle as rl
from redis_lifecycle._hooks.attach import pool_state_of
from redis_lifecycle._hooks.sync import CONNECTION_PATCHER, SYNC_POOL_PATCHER
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=server.host, port=server.port)
    yield c
    c.close()


def no_class_wrappers() -> bool:
    """redis-py's connection classes carry none of our wrappers."""
    base = redis.connection.AbstractConnection
    methods = [
        (base, "disconnect"),
        (base, "_send_ping"),
        (
            base,
            "on_connect_check_health" if hasattr(base, "on_connect_check_health") else "on_connect",
        ),
        (redis.connection.Connection, "_connect"),
        (redis.connection.UnixDomainSocketConnection, "_connect"),
    ]
    pools = redis.connection.ConnectionPool, redis.connection.BlockingConnectionPool
    methods += [(cls, name) for cls in pools for name in ("get_connection", "release", "reset")]
    return (
        not CONNECTION_PATCHER.installed
        and not SYNC_POOL_PATCHER.installed
        and all(not hasattr(cls.__dict__[name], "__rl_original__") for cls, name in methods)
        and all(not isinstance(cls.__dict__[name], wrapt.FunctionWrapper) for cls, name in methods)
    )


class TestInstrument:
    def test_instrument_is_idempotent(self, client: redis.Redis) -> None:
        """A second call, on the client or its pool, returns the same handle."""
        handle = rl.instrument(client)
        assert rl.instrument(client) is handle
        assert rl.instrument(client.connection_pool) is handle

    def test_uninstrument_stops_events_and_keeps_the_client_working(
        self, client: redis.Redis, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """After uninstrument: no events, the pool is its own class again, no wrappers."""
        original_class = type(client.connection_pool)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        client.ping()
        assert recorder.events
        assert type(client.connection_pool) is original_class  # never swapped
        assert SYNC_POOL_PATCHER.installed
        assert rl.uninstrument(client) is True
        assert type(client.connection_pool) is original_class
        assert pool_state_of(client.connection_pool) is None
        assert no_class_wrappers()
        recorder.clear()
        admin.client_kill_filter(_id=str(client.client_id()))
        assert client.ping() is True
        assert recorder.events == []
        assert rl.uninstrument(client) is False

    @pytest.mark.parametrize("blocking", [False, True], ids=["pool", "blocking"])
    def test_subclassed_lifecycle_pool_reaches_every_class_in_its_mro(
        self, server: RedisServer, blocking: bool
    ) -> None:
        """A user's pool class between the lifecycle mixin and redis-py's pool
        still runs on every checkout and release: while instrumented (one
        acquired/released pair per command, never two) and after
        ``uninstrument``, when the lifecycle methods only pass through."""
        base = redis.BlockingConnectionPool if blocking else redis.ConnectionPool
        lifecycle = rl.LifecycleBlockingConnectionPool if blocking else rl.LifecycleConnectionPool
        calls: list[str] = []

        class Counting(base):  # type: ignore[misc, valid-type]
            def get_connection(self, *args: Any, **kwargs: Any) -> Any:
                calls.append("get")
                return super().get_connection(*args, **kwargs)

            def release(self, connection: Any) -> None:
                calls.append("release")
                super().release(connection)

        class Pool(lifecycle, Counting):  # type: ignore[misc, valid-type]
            pass

        recorder = Recorder()
        pool = Pool(host=server.host, port=server.port, max_connections=4)
        pool.event_dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        pool.event_dispatcher.subscribe(rl.PoolConnectionReleasedEvent, recorder)
        client = redis.Redis(connection_pool=pool)
        try:
            assert client.ping() is True
            assert calls == ["get", "release"]
            assert recorder.types() == ["connection_acquired", "connection_released"]
            assert rl.uninstrument(pool) is True
            calls.clear()
            recorder.clear()
            assert client.set("k", "v") is True
            assert calls == ["get", "release"]
            assert recorder.events == []
            assert pool_state_of(pool) is None
        finally:
            client.close()
            pool.disconnect()

    def test_uninstrument_by_pool_after_instrument_by_client(self, client: redis.Redis) -> None:
        """The pool of an instrumented client can be uninstrumented directly."""
        handle = rl.instrument(client)
        assert rl.uninstrument(client.connection_pool) is True
        assert pool_state_of(client.connection_pool) is None
        assert no_class_wrappers()
        assert rl.uninstrument(client) is False
        assert rl.instrument(client) is not handle

    def test_uninstrument_refuses_what_is_not_a_client(self, client: redis.Redis) -> None:
        """A typo must not pass as "not instrumented": TypeError naming what was
        given; a real client never instrumented still answers False."""
        url = "redis://:s3cret-pw@localhost:6379/0"
        with pytest.raises(TypeError, match=r"uninstrument\(\) expects") as caught:
            rl.uninstrument(url)
        assert "s3cret-pw" not in str(caught.value)
        assert "builtins.str" in str(caught.value)
        with pytest.raises(TypeError, match=r"builtins\.object"):
            rl.uninstrument(object())
        assert rl.uninstrument(client) is False
        assert rl.uninstrument(client.connection_pool) is False

    def test_instrument_uninstrument_instrument(self, client: redis.Redis) -> None:
        """The cycle can repeat: each instrument works, each uninstrument undoes it."""
        for _ in range(3):
            recorder = Recorder()
            handle = rl.instrument(client)
            handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
            client.ping()
            assert len(recorder.events) == 1
            assert rl.uninstrument(client)
            assert no_class_wrappers()

    def test_wrappers_stay_while_another_client_is_instrumented(self, server: RedisServer) -> None:
        """Class wrappers go only when the last instrumented pool goes."""
        first = redis.Redis(host=server.host, port=server.port)
        second = redis.Redis(host=server.host, port=server.port)
        rl.instrument(first)
        rl.instrument(second)
        rl.uninstrument(first)
        assert CONNECTION_PATCHER.installed
        rl.uninstrument(second)
        assert no_class_wrappers()

    def test_uninstrumented_client_never_emits(
        self, server: RedisServer, admin: redis.Redis, recorder: Recorder
    ) -> None:
        """A second, uninstrumented client in the same process produces no events."""
        instrumented = redis.Redis(host=server.host, port=server.port)
        plain = redis.Redis(host=server.host, port=server.port)
        rl.instrument(instrumented).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        instrumented.ping()
        recorder.clear()
        plain.ping()
        admin.client_kill_filter(_id=str(plain.client_id()))
        plain.ping()
        plain.connection_pool.disconnect()
        plain.connection_pool.reset()
        assert recorder.events == []

    def test_garbage_collected_pool_releases_the_wrappers(self, server: RedisServer) -> None:
        """Dropping an instrumented client without uninstrument still unwraps redis-py."""
        import gc

        client = redis.Redis(host=server.host, port=server.port)
        rl.instrument(client)
        client.ping()
        client.close()
        del client
        gc.collect()
        assert no_class_wrappers()


class TestLegacyCallbacks:
    def test_legacy_callback_receives_a_dict(
        self, client: redis.Redis, server: RedisServer
    ) -> None:
        """register_connection_callback passes event.to_dict(): type, timestamp, host, port."""
        handle = rl.instrument(client)
        seen: list[dict[str, Any]] = []
        assert handle.register_connection_callback("connected", seen.append) == seen.append
        client.ping()
        [data] = seen
        assert data["type"] == "connected"
        assert (data["host"], data["port"]) == ("127.0.0.1", server.port)
        assert isinstance(data["timestamp"], float)
        assert data["first_connection"] is True

    def test_connected_legacy_name_excludes_reconnects(
        self, client: redis.Redis, admin: redis.Redis
    ) -> None:
        """'connected' gets first connections, 'reconnected' the rest."""
        handle = rl.instrument(client)
        connected: list[dict[str, Any]] = []
        reconnected: list[dict[str, Any]] = []
        handle.register_connection_callback(rl.EventType.CONNECTED, connected.append)
        handle.register_connection_callback("reconnected", reconnected.append)
        client.ping()
        admin.client_kill_filter(_id=str(client.client_id()))
        client.ping()
        assert [d["type"] for d in connected] == ["connected"]
        assert [d["type"] for d in reconnected] == ["reconnected"]

    def test_decorator_and_deregister(self, client: redis.Redis) -> None:
        """The decorator form registers; deregister removes and reports it."""
        handle = rl.instrument(client)
        seen: list[dict[str, Any]] = []

        @handle.register_connection_callback("connection_acquired")
        def on_acquired(data: dict[str, Any]) -> None:
            seen.append(data)

        client.ping()
        assert len(seen) == 1
        assert handle.deregister_connection_callback("connection_acquired", on_acquired) is True
        assert handle.deregister_connection_callback("connection_acquired", on_acquired) is False
        client.ping()
        assert len(seen) == 1

    def test_lifecycle_pool_registers_legacy_callbacks(self, server: RedisServer) -> None:
        """The drop-in pools take legacy callbacks too."""
        pool = rl.LifecycleConnectionPool(host=server.host, port=server.port)
        seen: list[dict[str, Any]] = []
        pool.register_connection_callback("connection_released", seen.append)
        redis.Redis(connection_pool=pool).ping()
        assert [d["type"] for d in seen] == ["connection_released"]
        assert pool.deregister_connection_callback("connection_released", seen.append)
        pool.disconnect()


class TestErrorIsolation:
    def test_raising_callback_is_logged_and_the_command_succeeds(
        self, client: redis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Default strategy: the command's result is unchanged, the failure logged."""
        handle = rl.instrument(client)
        later: list[rl.LifecycleEvent] = []

        def broken(event: rl.LifecycleEvent) -> None:
            raise ValueError("callback bug")

        for cls in (
            rl.ConnectionConnectedEvent,
            rl.PoolConnectionAcquiredEvent,
            rl.PoolConnectionReleasedEvent,
        ):
            handle.dispatcher.subscribe(cls, broken)
            handle.dispatcher.subscribe(cls, later.append)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            assert client.set("k", "v") is True
            assert client.get("k") == b"v"
        assert len(later) == 5  # connected + 2 x (acquired, released): nothing skipped
        warnings = [r for r in caplog.records if r.name == "redis_lifecycle"]
        assert len(warnings) == 5
        assert all(r.exc_info and r.exc_info[0] is ValueError for r in warnings)
        stats = handle.pool_stats()[0]
        assert (stats["active"], stats["idle"]) == (0, 1)


class TestBadInput:
    def test_instrumenting_something_else_is_a_type_error(self) -> None:
        """The message names the type given and what is accepted."""
        with pytest.raises(
            TypeError, match=r"instrument\(\) expects redis.Redis.*got builtins.int"
        ):
            rl.instrument(42)
        with pytest.raises(TypeError, match=r"got builtins\.dict"):
            rl.instrument({"host": "localhost"})
        assert no_class_wrappers()

    def test_a_bad_argument_leaves_nothing_instrumented(self, client: redis.Redis) -> None:
        """A refused argument changes nothing: same pool class, no wrappers."""
        original = type(client.connection_pool)
        with pytest.raises(TypeError, match="event_dispatcher must be a redis_lifecycle"):
            rl.instrument(client, event_dispatcher="not a dispatcher")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callback_error_handler must be a"):
            rl.instrument(client, callback_error_handler="raise")  # type: ignore[arg-type]
        assert type(client.connection_pool) is original
        assert no_class_wrappers()
        assert rl.uninstrument(client) is False

    def test_unknown_event_name_lists_the_valid_ones(self, client: redis.Redis) -> None:
        """ValueError with every valid name."""
        handle = rl.instrument(client)
        with pytest.raises(ValueError, match="unknown event name 'conected'") as info:
            handle.register_connection_callback("conected", print)
        for name in rl.EventType:
            assert repr(name.value) in str(info.value)

    def test_non_callable_callback_is_a_type_error(self, client: redis.Redis) -> None:
        """TypeError naming what was given."""
        handle = rl.instrument(client)
        with pytest.raises(TypeError, match="callback must be callable, got str"):
            handle.register_connection_callback("connected", "print")  # type: ignore[call-overload]

    def test_invalid_error_strategy(self) -> None:
        """CallbackErrorHandler lists the valid strategies."""
        with pytest.raises(ValueError, match="'ignore', 'log', 'raise'"):
            rl.CallbackErrorHandler("explode")  # type: ignore[arg-type]

    def test_pooled_rejects_unknown_pool_options(self) -> None:
        """pooled(pool={...}) names the unknown keys."""
        with pytest.raises(TypeError, match=r"got unknown \['max'\]"):
            rl.pooled(pool={"max": 3})


class TestSecrets:
    def test_no_password_in_events_reprs_dicts_logs_or_pool_names(
        self, password_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The password appears nowhere the library produces text or data."""
        secret = password_server.password
        assert secret
        client = redis.Redis(
            host=password_server.host,
            port=password_server.port,
            password=secret,
            username="default",
        )
        wrong = redis.Redis(
            host=password_server.host, port=password_server.port, password=secret[::-1]
        )
        recorder = Recorder()
        for target in (client, wrong):
            handle = rl.instrument(target)
            handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
            handle.dispatcher.subscribe(rl.LifecycleEvent, lambda e: 1 / 0)
        with caplog.at_level(logging.DEBUG, logger="redis_lifecycle"):
            client.ping()
            with pytest.raises(redis.exceptions.AuthenticationError):
                wrong.ping()
            client.connection_pool.disconnect()
        assert len(recorder.events) >= 6
        texts = [repr(e) for e in recorder.events]
        texts += [repr(e.to_dict()) for e in recorder.events]
        texts += [str(e.origin) for e in recorder.events]
        texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
        texts += [logging.Formatter().format(r) for r in caplog.records]
        texts += [repr(rl.instrument(client)), repr(rl.instrument(client).pool_stats())]
        assert caplog.records
        assert not [t for t in texts if secret in t or secret[::-1] in t]
