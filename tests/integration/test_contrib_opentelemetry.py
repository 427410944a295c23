"""redis_lifecycle.contrib.opentelemetry, read back through the SDK's InMemoryMetricReader."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, checkout, wait_until

pytest.importorskip("opentelemetry.sdk.metrics")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics

POOL = "db.client.connection.pool.name"


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def pool(server: RedisServer) -> Iterator[rl.LifecycleBlockingConnectionPool]:
    pool = rl.LifecycleBlockingConnectionPool(
        host=server.host, port=server.port, max_connections=2, timeout=0.05, pool_name="otel"
    )
    yield pool
    pool.disconnect()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


class TestOpenTelemetryMetrics:
    def test_records_semantic_convention_metrics_from_real_traffic(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        admin: redis.Redis,
        provider: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        """Checkouts, connects, exhaustion, server closes and health checks become the
        db.client.connection.* and redis.client.connection.closed figures, by pool name."""
        OpenTelemetryMetrics(provider).attach(pool)
        client = redis.Redis(connection_pool=pool)
        client.ping()
        held = [checkout(pool), checkout(pool)]
        with pytest.raises(redis.ConnectionError):
            checkout(pool)
        rl.health_check(pool)  # needs a free connection: fails as unhealthy
        for connection in held:
            pool.release(connection)
        admin.client_kill_filter(_id=str(client.client_id()))
        client.ping()
        rl.health_check(client)

        found = points(reader)
        (wait,) = found["db.client.connection.wait_time"]
        assert wait.attributes == {POOL: "otel"}
        assert wait.count == 6  # 2 pings, 2 held, CLIENT ID, 1 healthy check (the other failed)
        create = found["db.client.connection.create_time"]
        assert sum(p.count for p in create) == 3  # two connects and one reconnect
        (timeouts,) = found["db.client.connection.timeouts"]
        assert timeouts.value == 2  # the explicit checkout and the health check's
        (closed,) = found["redis.client.connection.closed"]
        assert closed.value == 1
        assert closed.attributes == {
            POOL: "otel",
            "redis.client.connection.close.reason": "server_closed",
        }
        health = {
            p.attributes["redis_lifecycle.health_check.healthy"]: p
            for p in found["redis_lifecycle.health_check.duration"]
        }
        assert health[True].count == 1
        assert health[False].count == 1
        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in found["db.client.connection.count"]
        }
        assert counts == {"idle": 2, "used": 0}
        (maximum,) = found["db.client.connection.max"]
        assert maximum.value == 2

    def test_connection_count_is_read_at_collection(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        provider: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        """db.client.connection.count reflects checkouts at collection time, even with
        per_command=False, which leaves the checkout path cold."""
        OpenTelemetryMetrics(provider, per_command=False).attach(pool)
        assert not pool.lifecycle.delivery.wants_per_command
        held = checkout(pool)
        try:
            counts = {
                p.attributes["db.client.connection.state"]: p.value
                for p in points(reader)["db.client.connection.count"]
            }
        finally:
            pool.release(held)
        assert counts == {"idle": 0, "used": 1}
        assert "db.client.connection.wait_time" not in points(reader)

    def test_metrics_redis_py_records_itself_are_not_recorded_twice(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        provider: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        """With redis-py's own observability on (basic + advanced groups), count, create
        time, wait time and closed are left to redis-py; max stays ours. Timeouts: a
        redis-py whose BlockingConnectionPool records them counts those, and this
        exporter counts only a plain ConnectionPool running out."""
        providers = pytest.importorskip("redis.observability.providers")
        config = pytest.importorskip("redis.observability.config")
        instance = providers.get_observability_instance()
        instance.init(
            config.OTelConfig(
                metric_groups=[
                    config.MetricGroup.CONNECTION_BASIC,
                    config.MetricGroup.CONNECTION_ADVANCED,
                ]
            )
        )
        try:
            exporter = OpenTelemetryMetrics(provider).attach(pool)
            redis.Redis(connection_pool=pool).ping()
            held = [checkout(pool), checkout(pool)]
            with pytest.raises(redis.ConnectionError):
                checkout(pool)
            for connection in held:
                pool.release(connection)
            plain = rl.LifecycleConnectionPool(
                host=pool.connection_kwargs["host"],
                port=pool.connection_kwargs["port"],
                max_connections=1,
                pool_name="plain",
            )
            exporter.attach(plain)
            first = checkout(plain)
            with pytest.raises(redis.ConnectionError):
                checkout(plain)  # "Too many connections": redis-py does not count it
            plain.release(first)
            found = points(reader)
            plain.disconnect()
        finally:
            instance.shutdown()
        native_timeouts = hasattr(redis.connection, "record_connection_timeout")
        assert exporter.skipped == {
            "db.client.connection.count",
            "db.client.connection.create_time",
            "db.client.connection.wait_time",
            "redis.client.connection.closed",
            *(["db.client.connection.timeouts"] if native_timeouts else []),
        }
        for name in exporter.skipped - {"db.client.connection.timeouts"}:
            assert (
                sum(getattr(p, "count", getattr(p, "value", 0)) for p in found.get(name, [])) == 0
            )
        timeouts = {p.attributes[POOL]: p.value for p in found["db.client.connection.timeouts"]}
        assert timeouts.get("plain") == 1
        assert timeouts.get("otel", 0) == (0 if native_timeouts else 1)
        assert {p.attributes[POOL]: p.value for p in found["db.client.connection.max"]} == {
            "otel": 2,
            "plain": 1,
        }

    def test_saturation_use_time_and_leaks(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        provider: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        """Two connections held and a thread waiting: pending_requests 1 at
        collection, the peak since the previous collection, use_time from each
        return, and a leak counted."""
        rl.uninstrument(pool)
        leaky = rl.LifecycleBlockingConnectionPool(
            host=pool.connection_kwargs["host"],
            port=pool.connection_kwargs["port"],
            max_connections=2,
            timeout=10,
            pool_name="otel",
            leak_detection=0.1,
        )
        recorder = Recorder()
        leaky.lifecycle.dispatcher.subscribe(rl.PoolConnectionLeakEvent, recorder)
        OpenTelemetryMetrics(provider).attach(leaky)
        held = [checkout(leaky), checkout(leaky)]
        waiter = threading.Thread(target=redis.Redis(connection_pool=leaky).ping)
        waiter.start()
        wait_until(lambda: leaky.lifecycle.pool_stats()[0]["waiting"] == 1, what="a waiter")
        recorder.wait_for(rl.PoolConnectionLeakEvent)
        found = points(reader)
        assert [p.value for p in found["db.client.connection.pending_requests"]] == [1]
        assert [p.value for p in found["redis_lifecycle.connection.pending_requests.peak"]] == [1]
        for connection in held:
            leaky.release(connection)
        waiter.join(10)
        found = points(reader)
        assert [p.value for p in found["db.client.connection.pending_requests"]] == [0]
        assert [p.value for p in found["redis_lifecycle.connection.pending_requests.peak"]] == [1]
        again = points(reader)  # a new collection: the peak starts anew
        assert [p.value for p in again["redis_lifecycle.connection.pending_requests.peak"]] == [0]
        (use,) = found["db.client.connection.use_time"]
        assert use.count == 3  # the two held, then the waiter's PING
        assert use.attributes == {POOL: "otel"}
        (leaks,) = found["redis_lifecycle.connection.leaks"]
        assert leaks.value >= 1
        leaky.disconnect()

    def test_detach_stops_recording(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        provider: MeterProvider,
        reader: InMemoryMetricReader,
    ) -> None:
        """After detach(), new events are not recorded."""
        exporter = OpenTelemetryMetrics(provider).attach(pool)
        exporter.detach()
        redis.Redis(connection_pool=pool).ping()
        assert "db.client.connection.create_time" not in points(reader)


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the module without opentelemetry-api says to install the otel extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    monkeypatch.delitem(sys.modules, "redis_lifecycle.contrib.opentelemetry")
    with pytest.raises(ImportError, match=r"pip install 'redis-lifecycle\[otel\]'"):
        importlib.import_module("redis_lifecycle.contrib.opentelemetry")
