"""Memory soak: a million commands with every event subscribed, metrics on and
both exporters attached.

    python benchmarks/soak.py                      # 1,000,000 GETs on a server it starts
    python benchmarks/soak.py --commands 200000 --url redis://127.0.0.1:6380/0
    python benchmarks/soak.py --no-exporters       # Instrumentation and callbacks only

An instrumented client (one no-op callback on each event class, an
:class:`~redis_lifecycle.Instrumentation`, callbacks inline, and -- when
``prometheus_client`` and ``opentelemetry-sdk`` are installed -- the
Prometheus collector scraped and the OpenTelemetry exporter collected every
10 %) runs GETs in a loop; every 10 % the resident set size (RSS, from
``/proc/self/statm`` or ``psutil``) is printed, with the objects the garbage
collector tracks and the count of connections redis_lifecycle tracks. A
reconnect every 50,000 commands (``CLIENT KILL`` of the client's own
connection) keeps the rare events flowing too.

Flat means: after the warm-up (the first 10 %), RSS grows by no more than
noise (allocator arenas: a few hundred KiB), the tracked-object count stays
put, and the figures read at the end count every command
(``Instrumentation``, the Prometheus ``connection_acquired`` count and the
OpenTelemetry wait-time histogram's count). After ``uninstrument`` the
pool's per-command buffers are freed. Exits 1 if RSS grew by more than
``--max-growth-mib`` (default 8) after the warm-up, or if a check fails.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import weakref
from typing import Any

import redis

import redis_lifecycle as rl
from redis_lifecycle._hooks.state import CONNECTIONS, pool_state_by_id
from redis_lifecycle.events import EVENT_CLASSES


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        return int(psutil.Process().memory_info().rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--url", help="a Redis to use (default: start a redis-server here)")
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    parser.add_argument(
        "--no-exporters",
        action="store_true",
        help="leave out the Prometheus collector and the OpenTelemetry exporter",
    )
    args = parser.parse_args(argv)
    if args.commands < 10:
        parser.error(f"--commands must be >= 10, got {args.commands}")

    server = None
    url = args.url
    if url is None:
        from redis_lifecycle.server import RedisServer

        server = RedisServer().start()
        url = server.url
    try:
        return soak(url, args.commands, args.max_growth_mib, exporters=not args.no_exporters)
    finally:
        if server is not None:
            server.stop()


class Exporters:
    """The Prometheus collector (on its own registry) and the OpenTelemetry
    exporter (an SDK meter provider with an in-memory reader), on one handle."""

    def __init__(self, handle: rl.LifecycleHandle) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from prometheus_client import CollectorRegistry

        from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
        from redis_lifecycle.contrib.prometheus import LifecycleCollector

        self.registry = CollectorRegistry()
        self.collector = LifecycleCollector(handle)
        self.registry.register(self.collector)
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.otel = OpenTelemetryMetrics(self.provider).attach(handle)

    def read(self) -> tuple[float, int]:
        """Scrape and collect, as a server would: the Prometheus count of
        ``connection_acquired`` and the OpenTelemetry wait-time histogram's count."""
        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        acquired = 0.0
        text = generate_latest(self.registry).decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "redis_lifecycle_events_total"
                    and sample.labels.get("type") == "connection_acquired"
                ):
                    acquired += sample.value
        waits = 0
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "db.client.connection.wait_time":
                        waits += sum(point.count for point in metric.data.data_points)
        return acquired, waits

    def close(self) -> None:
        self.collector.detach()
        self.otel.detach()
        self.provider.shutdown()


def _exporters_installed() -> bool:
    try:
        import opentelemetry.sdk.metrics  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def soak(url: str, commands: int, max_growth_mib: float, exporters: bool = True) -> int:
    client = redis.Redis.from_url(url)
    admin = redis.Redis.from_url(url)
    client.set("soak:key", "x" * 64)
    metrics = rl.Instrumentation()
    dispatcher = rl.EventDispatcher()
    seen = [0]

    def count(event: Any) -> None:
        seen[0] += 1

    for cls in EVENT_CLASSES:
        dispatcher.subscribe(cls, count, exact=True)
    handle = rl.instrument(
        client, event_dispatcher=dispatcher, instrumentation=metrics, pool_name="soak"
    )
    if exporters and not _exporters_installed():
        print("prometheus_client or opentelemetry-sdk is not installed: no exporters")
        exporters = False
    attached = Exporters(handle) if exporters else None

    step = max(commands // 10, 1)
    get = client.get
    started = time.perf_counter()
    baseline: int | None = None
    print(
        f"{'commands':>10} {'RSS MiB':>9} {'gc objects':>11} {'tracked conns':>13} {'events':>10}"
    )
    done = 0
    while done < commands:
        chunk = min(step, commands - done)
        for index in range(chunk):
            if (done + index) % 50_000 == 49_999:
                client_id = client.client_id()
                admin.client_kill_filter(_id=client_id)
            get("soak:key")
        done += chunk
        if attached is not None:
            attached.read()
        gc.collect()
        rss = rss_bytes()
        if baseline is None:
            baseline = rss
        print(
            f"{done:>10,} {rss / 2**20:9.1f} {len(gc.get_objects()):>11,} "
            f"{len(CONNECTIONS):>13} {seen[0]:>10,}",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    final = rss_bytes()
    pool = metrics.pool_metrics()["soak"]
    failures = []
    # every command made here, plus the reconnects' CLIENT ID (one per 50,000)
    made = done + done // 50_000
    if pool["acquisitions"] != made:
        failures.append(f"Instrumentation counted {pool['acquisitions']:,} of {made:,} checkouts")
    exported = ""
    if attached is not None:
        acquired, waits = attached.read()
        exported = f"; Prometheus counted {acquired:,.0f}, OpenTelemetry {waits:,}"
        if acquired != made or waits != made:
            failures.append(f"the exporters counted {acquired:,.0f} and {waits:,} of {made:,}")
        attached.close()
    state = pool_state_by_id(id(client.connection_pool))
    buffers = weakref.ref(state.figures) if state is not None else None
    del state
    rl.uninstrument(client)
    del handle
    gc.collect()
    if buffers is None or buffers() is not None:
        failures.append("the per-command buffers outlived uninstrument()")
    client.close()
    admin.close()
    assert baseline is not None
    growth = (final - baseline) / 2**20
    print(
        f"\n{done:,} commands in {elapsed:.1f} s ({done / elapsed:,.0f}/s); "
        f"RSS after warm-up {baseline / 2**20:.1f} MiB, at the end {final / 2**20:.1f} MiB "
        f"(growth {growth:+.2f} MiB); acquisitions counted {pool['acquisitions']:,}"
        f"{exported}, reconnects {pool['reconnects']}, disconnects {pool['disconnects']}"
    )
    for failure in failures:
        print(failure, file=sys.stderr)
    if growth > max_growth_mib:
        print(f"RSS grew by {growth:.2f} MiB > {max_growth_mib} MiB", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
