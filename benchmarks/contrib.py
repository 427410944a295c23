"""Cost of the metric exporters on the command path, measured side by side.

    python benchmarks/contrib.py              # starts its own redis-server on loopback
    python benchmarks/contrib.py --rounds 15 --ops 20000

GET ops/s on loopback for: bare redis-py; an instrumented client with
``OpenTelemetryMetrics`` (SDK ``MeterProvider`` with an in-memory reader), with
and without ``per_command``; and with a Prometheus ``LifecycleCollector``, with
and without ``per_command``. Rounds are interleaved; the median round of each
is reported as a ratio to bare. Also the microseconds one recording costs
(one ``connection_acquired`` event into each exporter).

Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=20000)
    args = parser.parse_args()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
    from redis_lifecycle.contrib.prometheus import LifecycleCollector

    def otel(per_command: bool) -> Callable[[Any], Any]:
        def setup(client: Any) -> Any:
            provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            return OpenTelemetryMetrics(provider, per_command=per_command).attach(
                rl.instrument(client)
            )

        return setup

    def prometheus(per_command: bool) -> Callable[[Any], Any]:
        return lambda client: LifecycleCollector(rl.instrument(client), per_command=per_command)

    variants: dict[str, Callable[[Any], Any] | None] = {
        "bare": None,
        "otel": otel(True),
        "otel per_command=False": otel(False),
        "prometheus": prometheus(True),
        "prometheus per_command=False": prometheus(False),
    }
    with RedisServer() as server:
        clients = {}
        keep = []
        for name, setup in variants.items():
            client = redis.Redis(host=server.host, port=server.port)
            if setup is not None:
                keep.append(setup(client))
            client.set("k", "v")
            clients[name] = client
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, client in clients.items():
                started = time.perf_counter()
                for _ in range(args.ops):
                    client.get("k")
                results[name].append(args.ops / (time.perf_counter() - started))
        base = statistics.median(results["bare"])
        print(f"GET on loopback, median of {args.rounds} interleaved rounds of {args.ops}:")
        for name, rates in results.items():
            rate = statistics.median(rates)
            print(f"  {name:<30} {rate:9.0f} ops/s   {rate / base:.3f} of bare")

    origin = rl.EventOrigin(host="127.0.0.1", port=1, db=0, connection_id=1, pool_name="p")
    event = rl.PoolConnectionAcquiredEvent(time.time(), origin, 0.0001, 1, 0)
    exporter = OpenTelemetryMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    collector = LifecycleCollector()
    n = 20000
    otel_us = timeit.timeit(lambda: exporter._on_acquired(event), number=n) / n * 1e6
    prom_us = timeit.timeit(lambda: collector._on_event(event), number=n) / n * 1e6
    print(f"one connection_acquired: OpenTelemetry {otel_us:.2f} us, Prometheus {prom_us:.2f} us")


if __name__ == "__main__":
    main()
