"""redis_lifecycle.contrib.prometheus, scraped from a real prometheus_client registry."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder, checkout, wait_until

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from redis_lifecycle.contrib.prometheus import LifecycleCollector  # noqa: E402


@pytest.fixture
def pool(server: RedisServer) -> Iterator[rl.LifecycleBlockingConnectionPool]:
    pool = rl.LifecycleBlockingConnectionPool(
        host=server.host, port=server.port, max_connections=2, timeout=0.05, pool_name="prom"
    )
    yield pool
    pool.disconnect()


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, by name and sorted labels."""
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class TestLifecycleCollector:
    def test_scrape_exposes_saturation_use_time_and_leaks(self, server: RedisServer) -> None:
        """Both connections held past leak_detection and a thread waiting: a
        scrape shows one pending request, the peak, a leak; after the returns,
        the use-time histogram and a peak that starts anew at each scrape."""
        pool = rl.LifecycleBlockingConnectionPool(
            host=server.host,
            port=server.port,
            max_connections=2,
            timeout=10,
            pool_name="prom",
            leak_detection=0.1,
        )
        recorder = Recorder()
        pool.lifecycle.dispatcher.subscribe(rl.PoolConnectionLeakEvent, recorder)
        registry = CollectorRegistry()
        registry.register(LifecycleCollector(pool))
        held = [checkout(pool), checkout(pool)]
        waiter = threading.Thread(target=redis.Redis(connection_pool=pool).ping)
        waiter.start()
        wait_until(lambda: pool.lifecycle.pool_stats()[0]["waiting"] == 1, what="a waiter")
        recorder.wait_for(rl.PoolConnectionLeakEvent)
        prom = (("pool_name", "prom"),)
        samples = scrape(registry)
        assert samples[("db_client_connection_pending_requests", prom)] == 1
        assert samples[("redis_lifecycle_connection_pending_requests_peak", prom)] == 1
        assert samples[("redis_lifecycle_connection_leaks_total", prom)] >= 1
        for connection in held:
            pool.release(connection)
        waiter.join(10)
        samples = scrape(registry)
        assert samples[("db_client_connection_pending_requests", prom)] == 0
        assert samples[("redis_lifecycle_connection_pending_requests_peak", prom)] == 1
        assert samples[("db_client_connection_use_time_seconds_count", prom)] == 3
        assert scrape(registry)[("redis_lifecycle_connection_pending_requests_peak", prom)] == 0
        pool.disconnect()

    def test_scrape_exposes_pool_figures(
        self, pool: rl.LifecycleBlockingConnectionPool, admin: redis.Redis
    ) -> None:
        """A scrape shows counts, max, wait/create histograms, timeouts, closes by reason,
        health-check latency and event totals, labelled with the pool name."""
        registry = CollectorRegistry()
        registry.register(LifecycleCollector(pool))
        client = redis.Redis(connection_pool=pool)
        client.ping()
        held = [checkout(pool), checkout(pool)]
        with pytest.raises(redis.ConnectionError):
            checkout(pool)
        for connection in held:
            pool.release(connection)
        admin.client_kill_filter(_id=str(client.client_id()))
        client.ping()
        assert rl.health_check(client).healthy

        samples = scrape(registry)
        prom = (("pool_name", "prom"),)
        assert samples[("db_client_connection_max", prom)] == 2
        assert (
            samples[("db_client_connection_count", (("pool_name", "prom"), ("state", "idle")))] == 2
        )
        assert (
            samples[("db_client_connection_count", (("pool_name", "prom"), ("state", "used")))] == 0
        )
        assert samples[("db_client_connection_timeouts_total", prom)] == 1
        closed = (("pool_name", "prom"), ("reason", "server_closed"))
        assert samples[("redis_client_connection_closed_total", closed)] == 1
        assert samples[("db_client_connection_wait_time_seconds_count", prom)] == 6
        inf = (("le", "+Inf"), ("pool_name", "prom"))
        assert samples[("db_client_connection_wait_time_seconds_bucket", inf)] == 6
        assert samples[("db_client_connection_create_time_seconds_count", prom)] == 3
        assert samples[("db_client_connection_create_time_seconds_sum", prom)] > 0
        healthy = (("healthy", "true"), ("pool_name", "prom"))
        assert samples[("redis_lifecycle_health_check_duration_seconds_count", healthy)] == 1
        exhausted = (("pool_name", "prom"), ("type", "pool_exhausted"))
        assert samples[("redis_lifecycle_events_total", exhausted)] == 1

    def test_buckets_are_cumulative(self, pool: rl.LifecycleBlockingConnectionPool) -> None:
        """Histogram buckets only grow with le, and +Inf equals the count."""
        registry = CollectorRegistry()
        registry.register(LifecycleCollector(pool))
        client = redis.Redis(connection_pool=pool)
        for _ in range(5):
            client.ping()
        samples = scrape(registry)
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in samples.items()
            if name == "db_client_connection_wait_time_seconds_bucket"
        )
        values = [value for _, value in buckets]
        assert values == sorted(values)
        assert (
            values[-1]
            == samples[("db_client_connection_wait_time_seconds_count", (("pool_name", "prom"),))]
            == 5
        )

    def test_per_command_false_leaves_checkouts_alone(
        self, pool: rl.LifecycleBlockingConnectionPool
    ) -> None:
        """per_command=False subscribes no per-command event, so the hot path stays cold."""
        registry = CollectorRegistry()
        registry.register(LifecycleCollector(pool, per_command=False))
        assert not pool.lifecycle.delivery.wants_per_command
        redis.Redis(connection_pool=pool).ping()
        samples = scrape(registry)
        assert (
            "db_client_connection_wait_time_seconds_count",
            (("pool_name", "prom"),),
        ) not in samples
        connected = (("pool_name", "prom"), ("type", "connected"))
        assert samples[("redis_lifecycle_events_total", connected)] == 1

    def test_detach_keeps_figures_and_stops_counting(
        self, pool: rl.LifecycleBlockingConnectionPool
    ) -> None:
        """After detach() the totals stay as they were and new events are not counted."""
        registry = CollectorRegistry()
        collector = LifecycleCollector(pool)
        registry.register(collector)
        client = redis.Redis(connection_pool=pool)
        client.ping()
        collector.detach()
        client.ping()
        acquired = (("pool_name", "prom"), ("type", "connection_acquired"))
        assert scrape(registry)[("redis_lifecycle_events_total", acquired)] == 1

    def test_empty_buckets_are_rejected(self) -> None:
        """buckets=() raises ValueError saying what is expected."""
        with pytest.raises(ValueError, match="at least one upper bound"):
            LifecycleCollector(buckets=())


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the module without prometheus_client says to install the prometheus extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    monkeypatch.delitem(sys.modules, "redis_lifecycle.contrib.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'redis-lifecycle\[prometheus\]'"):
        importlib.import_module("redis_lifecycle.contrib.prometheus")
