"""Per-command figures recorded by the hooks without events (redis_lifecycle/_accumulate.py).

Each inlined copy of ``CommandFigures.add_wait`` / ``add_held`` is driven
through its real hook (sync ``get_connection``/``release`` as a class-level
patch and as a lifecycle pool's method, asyncio ``_get_connection``/``_release``),
and the exporters' figures are compared with counts kept by the test, under
8 threads and in asyncio.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import redis_lifecycle as rl
from redis_lifecycle._accumulate import FLUSH_AT, CommandFigures
from redis_lifecycle._hooks.attach import pool_state_of
from redis_lifecycle.server import RedisServer

prometheus_client = pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk.metrics")
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics  # noqa: E402
from redis_lifecycle.contrib.prometheus import DEFAULT_BUCKETS, LifecycleCollector  # noqa: E402

THREADS = 8
#: Commands per thread or task: several flushes of FLUSH_AT, and a remainder.
PER_WORKER = 3 * FLUSH_AT + 17


class RawSink:
    """The test's own reader: every value the hooks hand to the sinks."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.helds: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, name: str | None, waits: list[float], helds: list[float]) -> None:
        with self.lock:
            self.waits.extend(waits)
            self.helds.extend(helds)


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def otel_points(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found[metric.name] = point
    return found


def expected_buckets(values: list[float]) -> list[float]:
    """Cumulative Prometheus bucket counts of ``values``, computed here."""
    counts = [0] * (len(DEFAULT_BUCKETS) + 1)
    for value in values:
        counts[bisect.bisect_left(DEFAULT_BUCKETS, value)] += 1
    cumulative, total = [], 0
    for count in counts:
        total += count
        cumulative.append(float(total))
    return cumulative


class Exporters:
    """Instrumentation, the Prometheus collector and the OpenTelemetry
    exporter on one handle, plus the test's own sink."""

    def __init__(self, handle: rl.LifecycleHandle, metrics: rl.Instrumentation) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry()
        self.collector = LifecycleCollector(handle)
        self.registry.register(self.collector)
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.otel = OpenTelemetryMetrics(self.provider).attach(handle)
        self.raw = RawSink()
        self.dispatcher = handle.dispatcher
        self.dispatcher._add_sink(self.raw)

    def close(self) -> None:
        self.collector.detach()
        self.otel.detach()
        self.dispatcher._remove_sink(self.raw)
        self.provider.shutdown()

    def check(self, pool_name: str, commands: int) -> None:
        """Every figure equals the test's count, and the buckets those of the
        values the hooks measured."""
        label = (("pool_name", pool_name),)
        samples = scrape(self.registry)
        pool = self.metrics.pool_metrics()[pool_name]
        points = otel_points(self.reader)
        raw = self.raw
        assert len(raw.waits) == len(raw.helds) == commands
        assert pool["acquisitions"] == pool["releases"] == commands
        acquired = (("pool_name", pool_name), ("type", "connection_acquired"))
        released = (("pool_name", pool_name), ("type", "connection_released"))
        assert samples[("redis_lifecycle_events_total", acquired)] == commands
        assert samples[("redis_lifecycle_events_total", released)] == commands
        for name, values in (
            ("db_client_connection_wait_time_seconds", raw.waits),
            ("db_client_connection_use_time_seconds", raw.helds),
        ):
            assert samples[(f"{name}_count", label)] == commands
            assert samples[(f"{name}_sum", label)] == pytest.approx(sum(values), rel=1e-9)
            bounds = [*(repr(b) for b in DEFAULT_BUCKETS), "+Inf"]
            found = [samples[(f"{name}_bucket", (("le", le), *label))] for le in bounds]
            assert found == expected_buckets(values)
        for name, values in (
            ("db.client.connection.wait_time", raw.waits),
            ("db.client.connection.use_time", raw.helds),
        ):
            point = points[name]
            assert point.count == commands
            assert point.sum == pytest.approx(sum(values), rel=1e-9)
        assert pool["wait_time"]["total"] == pytest.approx(sum(raw.waits), rel=1e-9)
        assert pool["held_time"]["max"] == max(raw.helds)


@pytest.fixture
def provider_cleanup() -> Iterator[list[Exporters]]:
    made: list[Exporters] = []
    yield made
    for exporters in made:
        exporters.close()


class TestSync:
    @pytest.mark.parametrize("kind", ["patched", "lifecycle"])
    def test_eight_threads_every_command_counted_exactly(
        self, server: RedisServer, kind: str, provider_cleanup: list[Exporters]
    ) -> None:
        """8 threads run GETs through the class-level patch (instrument()) or
        a lifecycle pool's own methods: the figures of Instrumentation, the
        Prometheus collector and the OpenTelemetry exporter equal the test's
        count, with the buckets of the very values measured."""
        metrics = rl.Instrumentation()
        if kind == "patched":
            pool: Any = redis.BlockingConnectionPool(
                host=server.host, port=server.port, max_connections=4, timeout=10
            )
            client = redis.Redis(connection_pool=pool)
            handle = rl.instrument(client, instrumentation=metrics, pool_name="acc")
        else:
            pool = rl.LifecycleBlockingConnectionPool(
                host=server.host,
                port=server.port,
                max_connections=4,
                timeout=10,
                pool_name="acc",
                instrumentation=metrics,
            )
            client = redis.Redis(connection_pool=pool)
            handle = pool.lifecycle
        exporters = Exporters(handle, metrics)
        provider_cleanup.append(exporters)
        state = pool_state_of(pool)
        assert state is not None
        # Measured, but nobody listens: no per-command event is built.
        assert rl.PoolConnectionAcquiredEvent not in state.delivery.wanted
        assert rl.PoolConnectionReleasedEvent not in state.delivery.wanted
        assert len(state.delivery.sinks) == 4  # instrumentation, 2 exporters, the test's
        done = []

        def work() -> None:
            for _ in range(PER_WORKER):
                client.get("k")
            done.append(1)

        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(done) == THREADS
        exporters.check("acc", THREADS * PER_WORKER)
        client.close()
        if kind == "patched":
            rl.uninstrument(client)
        pool.disconnect()

    def test_uninstrument_flushes_then_frees_the_figures(self, server: RedisServer) -> None:
        """What a pool buffered reaches the readers at uninstrument; then
        the pool's figures are freed with its state."""
        metrics = rl.Instrumentation()
        client = redis.Redis(host=server.host, port=server.port)
        rl.instrument(client, instrumentation=metrics, pool_name="gone")
        commands = FLUSH_AT // 2 + 3  # fewer than a batch: still buffered
        for _ in range(commands):
            client.get("k")
        state = pool_state_of(client.connection_pool)
        assert state is not None
        figures_ref = weakref.ref(state.figures)
        assert len(state.figures.wait) == commands
        del state
        assert rl.uninstrument(client)
        gc.collect()
        assert figures_ref() is None
        assert metrics.pool_metrics()["gone"]["acquisitions"] == commands
        client.close()

    def test_a_raising_sink_neither_fails_a_command_nor_starves_the_others(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sink that raises is logged; the command succeeds, and the other
        sinks get every value."""
        metrics = rl.Instrumentation()
        client = redis.Redis(host=server.host, port=server.port)
        handle = rl.instrument(client, instrumentation=metrics, pool_name="bad")

        def broken(name: str | None, waits: list[float], helds: list[float]) -> None:
            raise RuntimeError("sink down")

        handle.dispatcher._add_sink(broken)
        try:
            for _ in range(FLUSH_AT + 1):
                assert client.get("k") is None
        finally:
            handle.dispatcher._remove_sink(broken)
        assert metrics.pool_metrics()["bad"]["acquisitions"] == FLUSH_AT + 1
        assert "a per-command metrics sink failed" in caplog.text
        rl.uninstrument(client)
        client.close()


class TestAsyncio:
    def test_eight_tasks_every_command_counted_exactly(
        self, server: RedisServer, provider_cleanup: list[Exporters]
    ) -> None:
        """8 tasks run GETs through the asyncio hooks: exact figures, as in the
        sync test."""
        metrics = rl.Instrumentation()

        async def main() -> Exporters:
            client = redis.asyncio.Redis(host=server.host, port=server.port)
            handle = rl.instrument(client, instrumentation=metrics, pool_name="aacc")
            exporters = Exporters(handle, metrics)
            provider_cleanup.append(exporters)

            async def work() -> None:
                for _ in range(PER_WORKER):
                    await client.get("k")

            await asyncio.gather(*(work() for _ in range(THREADS)))
            state = pool_state_of(client.connection_pool)
            assert state is not None
            assert rl.PoolConnectionAcquiredEvent not in state.delivery.wanted
            exporters.check("aacc", THREADS * PER_WORKER)
            await client.aclose()
            rl.uninstrument(client)
            return exporters

        asyncio.run(main())


def test_the_original_recorder_counts_and_flushes() -> None:
    """CommandFigures.add_wait / add_held, the original the hooks inline:
    a batch at FLUSH_AT, the rest on flush."""
    raw = RawSink()
    figures = CommandFigures("p")
    for index in range(FLUSH_AT - 1):
        figures.add_wait(index / 1000, (raw,))
    figures.add_held(0.5, (raw,))
    assert raw.waits == raw.helds == []  # buffered
    figures.add_wait(1.0, (raw,))  # the FLUSH_AT-th: one batch of both kinds
    assert len(raw.waits) == FLUSH_AT
    assert raw.waits[-1] == 1.0
    assert raw.helds == [0.5]
    figures.add_held(2.0, (raw,))
    figures.flush((raw,))
    assert raw.helds == [0.5, 2.0]
    assert figures.wait == figures.held == []
