"""Maintenance notifications in Instrumentation, both exporters, ``watch``
and the pytest helpers: a real server behind the injecting proxy."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.testing import EventRecorder

from ..helpers import wait_until
from .conftest import SYNC
from .proxy import MaintProxy

pytestmark = pytest.mark.skipif(not SYNC, reason="redis-py hands notifications over from 7.0")

PUSHES: list[tuple[Any, ...]] = [
    ("MIGRATING", 1, 10),
    ("MIGRATED", 1),
    ("FAILING_OVER", 2, 10),
    ("FAILED_OVER", 2),
    ("MIGRATING", 3, 10),
]


def make_client(proxy: MaintProxy) -> redis.Redis:
    from redis.maint_notifications import MaintNotificationsConfig

    return redis.Redis(
        host=proxy.host,
        port=proxy.port,
        protocol=3,
        socket_timeout=2.0,
        maint_notifications_config=MaintNotificationsConfig(enabled=True, relaxed_timeout=5.0),
    )


def drive(proxy: MaintProxy, client: redis.Redis) -> None:
    assert client.ping()
    for push in PUSHES:
        assert proxy.push(*push) == 1
        assert client.ping()


def test_instrumentation_counts_by_kind(proxy: MaintProxy) -> None:
    metrics = rl.Instrumentation()
    client = make_client(proxy)
    try:
        rl.instrument(client, instrumentation=metrics, pool_name="maint")
        drive(proxy, client)
        pool = metrics.pool_metrics()["maint"]
        assert pool["maintenance_notifications"] == {
            "failed_over": 1,
            "failing_over": 1,
            "migrated": 1,
            "migrating": 2,
        }
        assert pool["maintenance_timeouts_relaxed"] == 3
        assert pool["maintenance_timeouts_restored"] == 2
    finally:
        client.close()


def test_prometheus_counters_by_kind(proxy: MaintProxy) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry

    from redis_lifecycle.contrib.prometheus import LifecycleCollector

    client = make_client(proxy)
    try:
        handle = rl.instrument(client, pool_name="maint")
        registry = CollectorRegistry()
        registry.register(LifecycleCollector(handle, per_command=False))
        drive(proxy, client)

        def sample(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, {"pool_name": "maint", **labels})

        name = "redis_lifecycle_maintenance_notifications_total"
        assert sample(name, kind="migrating") == 2
        assert sample(name, kind="migrated") == 1
        assert sample(name, kind="failing_over") == 1
        assert sample(name, kind="failed_over") == 1
        relaxed = "redis_lifecycle_maintenance_timeouts_relaxed_total"
        restored = "redis_lifecycle_maintenance_timeouts_restored_total"
        assert sample(relaxed, scope="connection") == 3
        assert sample(restored, scope="connection") == 2
    finally:
        client.close()


def test_opentelemetry_counters_by_kind(proxy: MaintProxy) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics

    reader = InMemoryMetricReader()
    exporter = OpenTelemetryMetrics(MeterProvider(metric_readers=[reader]), per_command=False)
    client = make_client(proxy)
    try:
        exporter.attach(rl.instrument(client, pool_name="maint"))
        drive(proxy, client)
        points: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
        data = reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        value = getattr(point, "value", None)  # histograms have none
                        points.setdefault(metric.name, {})[key] = value
        counts = {
            dict(key)["redis.client.connection.notification"]: value
            for key, value in points["redis.client.maintenance.notifications"].items()
        }
        assert counts == {"MIGRATING": 2, "MIGRATED": 1, "FAILING_OVER": 1, "FAILED_OVER": 1}
        relaxed = points["redis_lifecycle.maintenance.relaxed_timeouts"]
        assert list(relaxed.values()) == [1]  # 3 relaxed, 2 restored: one in force
    finally:
        exporter.detach()
        client.close()


def test_pytest_helpers_wait_for_them(proxy: MaintProxy) -> None:
    client = make_client(proxy)
    try:
        with EventRecorder(timeout=10) as recorder:
            recorder.attach(client)
            drive(proxy, client)
            event = recorder.wait_for(rl.MaintenanceNotificationEvent, kind="failing_over")
            assert event.notification_id == 2
            assert event.ttl == 10
            recorder.wait_for(rl.MaintenanceTimeoutRestoredEvent, count=2)
            recorder.assert_emitted(rl.MaintenanceNotificationEvent, count=5)
            recorder.assert_emitted(rl.MaintenanceNotificationEvent, count=2, kind="migrating")
            recorder.assert_emitted(rl.MaintenanceTimeoutRelaxedEvent, count=3, scope="connection")
    finally:
        client.close()


def test_watch_shows_them(proxy: MaintProxy) -> None:
    url = f"redis://{proxy.host}:{proxy.port}/0?protocol=3"
    process = subprocess.Popen(
        [sys.executable, "-m", "redis_lifecycle", "watch", url, "--json", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    records: list[dict[str, Any]] = []

    def drain() -> list[dict[str, Any]]:
        while not lines.empty():
            line = lines.get()
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    try:
        wait_until(lambda: proxy.handshakes and proxy.open_links(), 20, "watch to connect")
        assert proxy.push("MIGRATING", 9, 15) >= 1
        wait_until(
            lambda: any(r.get("type") == "maintenance_notification" for r in drain()),
            20,
            "the notification in watch's output",
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        reader.join(10)
        drain()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    shown = [r for r in records if r.get("type") == "maintenance_notification"]
    assert len(shown) == 1
    assert (shown[0]["kind"], shown[0]["notification_id"], shown[0]["ttl"]) == ("migrating", 9, 15)
    summary = records[-1]
    assert summary["type"] == "summary"
    assert summary["maintenance_notifications"] == {"migrating": 1}
    assert summary["events"]["maintenance_notification"] == 1


def test_opentelemetry_leaves_redis_py_its_own_count(proxy: MaintProxy) -> None:
    """With redis-py's RESILIENCY metrics on, redis-py counts the notifications
    its connection handler gets (all but MOVING): the exporter counts only MOVING."""
    pytest.importorskip("opentelemetry.sdk")
    providers = pytest.importorskip("redis.observability.providers")
    config = pytest.importorskip("redis.observability.config")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics

    instance = providers.get_observability_instance()
    instance.init(config.OTelConfig(metric_groups=[config.MetricGroup.RESILIENCY]))
    reader = InMemoryMetricReader()
    client = make_client(proxy)
    try:
        exporter = OpenTelemetryMetrics(MeterProvider(metric_readers=[reader]), per_command=False)
        exporter.attach(rl.instrument(client, pool_name="maint"))
        recorder = EventRecorder(timeout=15).attach(client)
        drive(proxy, client)
        proxy.push("MOVING", 30, 1, None)  # no new address: redis-py only relaxes the pool
        assert client.ping()
        recorder.wait_for(rl.MaintenanceTimeoutRestoredEvent, scope="pool")  # the ttl ran out
        recorder.detach()
        assert "redis.client.maintenance.notifications" in exporter.skipped
        data = reader.get_metrics_data()
        assert data is not None
        counted = {
            point.attributes["redis.client.connection.notification"]: point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "redis.client.maintenance.notifications"
            for point in metric.data.data_points
            if isinstance(point, NumberDataPoint) and point.attributes is not None
        }
        assert counted == {"MOVING": 1}
        exporter.detach()
    finally:
        instance.shutdown()
        client.close()
