"""``Instrumentation(slow_callback=...)``: callbacks that really sleep are
counted in ``callback_metrics()['slow']`` and logged once per callback and
event name per minute; inline (sync and asyncio clients) and on an
``AsyncCallbackExecutor``'s workers. The threshold is far below the sleep."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis
import redis.asyncio

import redis_lifecycle as rl
from redis_lifecycle import metrics as metrics_module
from redis_lifecycle.server import RedisServer

SLEEP = 0.05
THRESHOLD = 0.001  # fifty times below the sleep
COMMANDS = 3


def sleepy_callback(event: rl.LifecycleEvent) -> None:
    time.sleep(SLEEP)


def quick_callback(event: rl.LifecycleEvent) -> None:
    return None


def _slow_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "slow callback" in r.getMessage()]


def _check(metrics: rl.Instrumentation, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    acquired = metrics.callback_metrics("connection_acquired")
    assert acquired["count"] >= COMMANDS
    assert acquired["slow"] == acquired["count"]  # every run slept
    assert metrics.callback_metrics("connection_released")["slow"] == 0  # a quick one
    [line] = _slow_lines(caplog)  # once for the minute, however many runs
    assert "sleepy_callback" in line
    assert "'connection_acquired'" in line
    assert secret not in line


def test_sync_inline(password_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="redis_lifecycle")
    metrics = rl.Instrumentation(slow_callback=THRESHOLD)
    client = redis.Redis(**password_server.connection_kwargs())
    handle = rl.instrument(client, instrumentation=metrics)
    handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
    handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, quick_callback)
    for _ in range(COMMANDS):
        client.ping()
    _check(metrics, caplog, "s3cr3t-Pa55word")
    client.close()


def test_asyncio_inline(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="redis_lifecycle")
    metrics = rl.Instrumentation(slow_callback=THRESHOLD)

    async def main() -> None:
        client = redis.asyncio.Redis(host=server.host, port=server.port)
        handle = rl.instrument(client, instrumentation=metrics)
        handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
        handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, quick_callback)
        for _ in range(COMMANDS):
            await client.ping()
        await client.aclose()

    asyncio.run(main())
    _check(metrics, caplog, "no-secret-here")


def test_executor(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="redis_lifecycle")
    metrics = rl.Instrumentation(slow_callback=THRESHOLD)
    executor = rl.AsyncCallbackExecutor(pool_size=2)
    client = redis.Redis(host=server.host, port=server.port)
    handle = rl.instrument(client, instrumentation=metrics, async_callbacks=executor)
    handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
    handle.dispatcher.subscribe(rl.PoolConnectionReleasedEvent, quick_callback)
    for _ in range(COMMANDS):
        client.ping()
    assert executor.shutdown(timeout=30)
    _check(metrics, caplog, "no-secret-here")
    client.close()


def test_logged_again_after_a_minute_with_the_runs_in_between(
    server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="redis_lifecycle")
    clock = [1000.0]
    monkeypatch.setattr(metrics_module, "monotonic", lambda: clock[0])
    metrics = rl.Instrumentation(slow_callback=THRESHOLD)
    client = redis.Redis(host=server.host, port=server.port)
    handle = rl.instrument(client, instrumentation=metrics)
    handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
    for _ in range(COMMANDS):
        client.ping()
    assert len(_slow_lines(caplog)) == 1
    clock[0] += metrics_module.SLOW_LOG_INTERVAL
    client.ping()
    lines = _slow_lines(caplog)
    assert len(lines) == 2
    assert f"({COMMANDS - 1} more slow runs in the last minute)" in lines[1]
    assert metrics.callback_metrics("connection_acquired")["slow"] == COMMANDS + 1
    metrics.reset()
    assert metrics.callback_metrics("connection_acquired")["slow"] == 0
    client.close()


def test_off_by_default(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="redis_lifecycle")
    metrics = rl.Instrumentation()
    client = redis.Redis(host=server.host, port=server.port)
    handle = rl.instrument(client, instrumentation=metrics)
    handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
    client.ping()
    assert metrics.callback_metrics("connection_acquired")["slow"] == 0
    assert _slow_lines(caplog) == []
    client.close()


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "1", True])
def test_invalid_threshold(value: Any) -> None:
    with pytest.raises(ValueError, match="slow_callback"):
        rl.Instrumentation(slow_callback=value)


def test_exporters_count_slow_callbacks(server: RedisServer) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
    from redis_lifecycle.contrib.prometheus import LifecycleCollector

    metrics = rl.Instrumentation(slow_callback=THRESHOLD)
    client = redis.Redis(host=server.host, port=server.port)
    handle = rl.instrument(client, instrumentation=metrics)
    handle.dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, sleepy_callback)
    registry = prometheus_client.CollectorRegistry()
    registry.register(LifecycleCollector(handle))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OpenTelemetryMetrics(provider).attach(handle)
    for _ in range(COMMANDS):
        client.ping()
    value = registry.get_sample_value(
        "redis_lifecycle_slow_callbacks_total", {"type": "connection_acquired"}
    )
    assert value == COMMANDS
    data = reader.get_metrics_data()
    assert data is not None
    slow = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "redis_lifecycle.callback.slow"
        for point in metric.data.data_points
    ]
    assert [
        ((p.attributes or {})["redis_lifecycle.event.type"], getattr(p, "value", -1)) for p in slow
    ] == [("connection_acquired", COMMANDS)]
    provider.shutdown()
    client.close()
