"""instrument_all()/uninstrument_all(): pools built afterwards, by anyone, emit events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.connection as rconn

import redis_lifecycle as rl
from redis_lifecycle._instrument_all import is_instrumenting_all
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, wait_until


@pytest.fixture
def everything(recorder: Recorder) -> Iterator[rl.EventDispatcher]:
    dispatcher = rl.instrument_all()
    dispatcher.subscribe(rl.LifecycleEvent, recorder)
    try:
        yield dispatcher
    finally:
        rl.uninstrument_all()


@pytest.fixture
def django_cache() -> Iterator[Callable[[str], Any]]:
    """Makes Django Redis cache backends (Django builds its own pool and
    client); their connections are closed after the test."""
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django.core.cache.backends.redis import RedisCache

    caches: list[Any] = []

    def make(url: str) -> Any:
        cache = RedisCache(url, {})
        caches.append(cache)
        return cache

    yield make
    for cache in caches:  # Django never closes them; their sockets would leak
        for pool in cache._cache._pools.values():
            pool.disconnect()


class TestFrameworkClients:
    def test_django_cache_backend_emits_events(
        self,
        server: RedisServer,
        everything: rl.EventDispatcher,
        recorder: Recorder,
        django_cache: Callable[[str], Any],
    ) -> None:
        """A Django cache backend's own pool is instrumented: its commands emit events."""
        cache = django_cache(server.url)
        cache.set("greeting", "hello")
        assert cache.get("greeting") == "hello"
        created = recorder.wait_for(rl.PoolCreatedEvent)
        assert created.port == server.port
        connected = recorder.wait_for(rl.ConnectionConnectedEvent)
        assert connected.port == server.port
        assert len(recorder.exactly(rl.PoolConnectionAcquiredEvent)) >= 2

    def test_django_cache_backend_reports_a_server_restart(
        self,
        server: RedisServer,
        everything: rl.EventDispatcher,
        recorder: Recorder,
        django_cache: Callable[[str], Any],
    ) -> None:
        """Killing and restarting the server shows up as disconnected then reconnected."""
        cache = django_cache(server.url)
        cache.set("k", 1)
        server.restart()
        cache.set("k", 2)
        disconnected = recorder.wait_for(rl.ConnectionDisconnectedEvent)
        assert disconnected.reason in (rl.CloseReason.SERVER_CLOSED, rl.CloseReason.ERROR)
        reconnected = recorder.wait_for(rl.ConnectionReconnectedEvent)
        assert reconnected.connection_id == disconnected.connection_id

    def test_rq_forking_worker_runs_its_job_and_the_horse_sees_the_fork(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """RQ's default Worker forks a work horse per job: the job succeeds, the
        worker's pool reports its commands, and in the horse the inherited pool
        is reset with reason "fork" before the job's own commands."""
        rq = pytest.importorskip("rq")
        from . import rq_jobs

        dispatcher = rl.instrument_all()
        try:
            dispatcher.subscribe(rl.LifecycleEvent, recorder)
            dispatcher.subscribe(rl.LifecycleEvent, rq_jobs.record)
            connection = redis.Redis.from_url(server.url)
            queue = rq.Queue("lifecycle", connection=connection)
            job = queue.enqueue(rq_jobs.events_in_this_process)
            worker = rq.Worker([queue], connection=connection)
            assert worker.work(burst=True) is True
            job.refresh()
            assert job.get_status() == "finished", job.latest_result()
            in_the_horse = job.return_value()
        finally:
            rl.uninstrument_all()
        # In the horse: the inherited connections let go, the pool reset, then
        # a connection of its own for the job's commands.
        reset_at = in_the_horse.index(("pool_reset", "fork"))
        assert set(in_the_horse[:reset_at]) == {
            ("marked_for_reconnect", "fork"),
            ("disconnected", "fork"),
        }
        assert ("connected", None) in in_the_horse[reset_at:]
        assert ("connection_acquired", None) in in_the_horse[reset_at:]
        # In the worker: one pool for the URL, and every checkout returned.
        [created] = recorder.exactly(rl.PoolCreatedEvent)
        assert created.port == server.port
        acquired = recorder.exactly(rl.PoolConnectionAcquiredEvent)
        assert len(acquired) >= 5  # registration, dequeue, bookkeeping
        assert len(recorder.exactly(rl.PoolConnectionReleasedEvent)) == len(acquired)
        connection.close()

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_celery_worker_reports_a_broker_restart(
        self, server: RedisServer, everything: rl.EventDispatcher, recorder: Recorder
    ) -> None:
        """Celery's Redis broker (kombu's own pools) is instrumented by
        instrument_all(): a task runs through a worker, and a restart of the
        server shows up as connections closed by the server and reconnected,
        after which the next task runs too. (No result backend: its result
        consumer would go on reconnecting in a thread after the test.)"""
        celery = pytest.importorskip("celery")
        from celery.contrib.testing.worker import start_worker

        app = celery.Celery("lifecycle", broker=server.url)
        app.conf.broker_connection_retry_on_startup = True
        results: list[int] = []

        @app.task  # type: ignore[untyped-decorator]  # celery has no type information
        def add(x: int, y: int) -> None:
            results.append(x + y)

        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            add.delay(2, 3)
            wait_until(lambda: results == [5], timeout=10, what="the first task")
            created = recorder.exactly(rl.PoolCreatedEvent)
            assert created, recorder.types()
            assert {event.port for event in created} == {server.port}
            assert recorder.exactly(rl.ConnectionConnectedEvent)
            assert all(check.healthy for check in recorder.exactly(rl.ConnectionHealthCheckEvent))
            recorder.clear()
            server.restart()
            add.delay(3, 4)
            wait_until(lambda: results == [5, 7], timeout=30, what="the task after the restart")
        app.close()
        closed = recorder.exactly(rl.ConnectionDisconnectedEvent)
        assert rl.CloseReason.SERVER_CLOSED in {event.reason for event in closed}
        reconnected = recorder.exactly(rl.ConnectionReconnectedEvent)
        assert reconnected, recorder.types()
        assert {event.port for event in reconnected} == {server.port}

    def test_from_url_client_is_instrumented(
        self, server: RedisServer, everything: rl.EventDispatcher, recorder: Recorder
    ) -> None:
        """redis.Redis.from_url() builds a pool, which gets a handle of its own."""
        client = redis.Redis.from_url(server.url)
        client.ping()
        handle = rl.instrument(client.connection_pool)
        assert handle.dispatcher is everything
        assert recorder.exactly(rl.ConnectionConnectedEvent)
        client.close()


class TestScope:
    def test_blocking_pool_is_attached_after_its_init(
        self, server: RedisServer, everything: rl.EventDispatcher, recorder: Recorder
    ) -> None:
        """A BlockingConnectionPool is instrumented once, with its own size and timeout."""
        pool = redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=3, timeout=0.5
        )
        (created,) = recorder.exactly(rl.PoolCreatedEvent)
        assert created.size == 3
        assert created.timeout == 0.5
        pool.disconnect()

    def test_pools_created_before_are_left_alone(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """instrument_all() does not touch a pool that already existed."""
        before = redis.Redis(host=server.host, port=server.port)
        dispatcher = rl.instrument_all()
        try:
            dispatcher.subscribe(rl.LifecycleEvent, recorder)
            before.ping()
            assert recorder.events == []
        finally:
            rl.uninstrument_all()
        before.close()

    def test_lifecycle_pools_keep_their_own_dispatcher(
        self, server: RedisServer, everything: rl.EventDispatcher, recorder: Recorder
    ) -> None:
        """A LifecycleConnectionPool built while instrument_all() is active reports to its own
        dispatcher only."""
        own = Recorder()
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, own)
        pool = rl.LifecycleConnectionPool(
            host=server.host, port=server.port, event_dispatcher=dispatcher
        )
        redis.Redis(connection_pool=pool).ping()
        assert own.exactly(rl.ConnectionConnectedEvent)
        assert recorder.events == []
        pool.disconnect()

    def test_second_call_returns_the_same_dispatcher(self, everything: rl.EventDispatcher) -> None:
        """Calling instrument_all() again while active returns the active dispatcher."""
        assert rl.instrument_all() is everything
        assert rl.instrument_all(event_dispatcher=rl.EventDispatcher()) is everything

    def test_bad_argument_changes_nothing(self) -> None:
        """A dispatcher of the wrong type raises TypeError and wraps nothing."""
        original = rconn.ConnectionPool.__dict__["__init__"]
        with pytest.raises(TypeError, match=r"expects a redis_lifecycle\.EventDispatcher"):
            rl.instrument_all(event_dispatcher=object())  # type: ignore[arg-type]
        assert rconn.ConnectionPool.__dict__["__init__"] is original
        assert not is_instrumenting_all()


class TestSymmetry:
    def test_uninstrument_all_unwraps_and_silences(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """uninstrument_all() restores every __init__, silences the pools it instrumented
        (which keep working) and leaves new pools uninstrumented."""
        originals = {
            cls: cls.__dict__["__init__"]
            for cls in (rconn.ConnectionPool, rconn.BlockingConnectionPool)
        }
        dispatcher = rl.instrument_all()
        dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert all(cls.__dict__["__init__"] is not f for cls, f in originals.items())
        client = redis.Redis(host=server.host, port=server.port)
        client.ping()
        assert recorder.events
        assert rl.uninstrument_all() is True
        assert all(cls.__dict__["__init__"] is f for cls, f in originals.items())
        recorder.clear()
        client.ping()
        redis.Redis(host=server.host, port=server.port).ping()
        assert recorder.events == []
        assert rl.uninstrument_all() is False
        client.close()

    def test_instrument_uninstrument_instrument(
        self, server: RedisServer, recorder: Recorder
    ) -> None:
        """instrument_all → uninstrument_all → instrument_all works like the first time."""
        for _ in range(2):
            dispatcher = rl.instrument_all()
            try:
                seen = Recorder()
                dispatcher.subscribe(rl.ConnectionConnectedEvent, seen)
                client = redis.Redis(host=server.host, port=server.port)
                client.ping()
                assert len(seen.events) == 1
                client.close()
            finally:
                rl.uninstrument_all()


class TestAsyncio:
    async def test_asyncio_client_is_instrumented(
        self, server: RedisServer, everything: rl.EventDispatcher, recorder: Recorder
    ) -> None:
        """A redis.asyncio client built after instrument_all() emits events from its pool."""
        import redis.asyncio as aredis

        client = aredis.Redis(host=server.host, port=server.port)
        await client.ping()
        connected = recorder.wait_for(rl.ConnectionConnectedEvent)
        assert connected.port == server.port
        assert rl.instrument(client.connection_pool).dispatcher is everything
        close = getattr(client, "aclose", None) or client.close
        await close()
