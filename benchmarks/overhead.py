"""Overhead of redis_lifecycle against bare redis-py, measured side by side.

    python benchmarks/overhead.py                 # starts its own redis-server on loopback
    python benchmarks/overhead.py --quick         # a smoke run: few, short trials
    python benchmarks/overhead.py --url redis://127.0.0.1:6380/0 --trials 31
    python benchmarks/overhead.py --workloads get --variants bare,all --json out.json

One process, one server, many short trials. Each trial round runs every
variant once, in an order rotated from round to round; each variant is set up
right before its trial and torn down right after (``uninstrument``, the
OpenTelemetry instrumentor's ``uninstrument``), so that "bare" really is bare:
while any pool is instrumented, the class-level patches are installed and even
an uninstrumented client pays their registry lookup.

Variants:

* ``bare``: redis-py alone.
* ``none``: ``instrument(client)``, nobody subscribed.
* ``rare``: subscribers to the rare events only (connected/reconnected,
  disconnected, error, health_check, pool_exhausted, pool_reset).
* ``all``: one no-op callback on each of the 13 event classes plus an
  :class:`~redis_lifecycle.Instrumentation`; callbacks run inline.
* ``executor``: ``all`` with callbacks on an
  :class:`~redis_lifecycle.AsyncCallbackExecutor` (defaults: 4 workers, queue
  of 100, ``caller_runs``). Its workers' CPU counts in the CPU column.
* ``otel``: ``opentelemetry-instrumentation-redis`` (a peer, for reference;
  only when installed), with an SDK ``TracerProvider`` that has no span
  processor: spans are built, then dropped.
* ``callbacks`` and ``metrics``, run only when named: the two halves of
  ``all`` (the callbacks without ``Instrumentation``, ``Instrumentation``
  without callbacks), to see where its cost goes.
* ``prometheus`` and ``otel_metrics``, run only when named: the exporters
  with their defaults, ``contrib.prometheus.LifecycleCollector`` attached to
  the instrumented client, and ``contrib.opentelemetry.OpenTelemetryMetrics``
  on an SDK ``MeterProvider`` with an in-memory reader (needs
  ``prometheus-client`` and ``opentelemetry-sdk``).

Workloads: ``get`` and ``set`` (one command per op), ``pipeline`` (100 GETs
per op, one checkout), ``asyncio`` (``redis.asyncio`` GET), ``threads`` (8
threads sharing a ``BlockingConnectionPool`` of 4; ops counted over all).

Printed per workload and variant: ops/s min / median / max over the trials,
the median of the per-round ratios to bare, client CPU per op (process CPU
time: every thread of this process, none of the server's), events emitted
per second and the CPU each event costs ((variant CPU/op - bare CPU/op) /
events per op). The budgets (docs/performance.md) apply to ``get``.

Not a test: the numbers depend on the machine and its load; only ratios
measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

import redis_lifecycle as rl
from redis_lifecycle.events import EVENT_CLASSES

#: Median ratio to bare each variant must reach on ``get`` (docs/performance.md).
BUDGETS = {"none": 0.98, "rare": 0.98, "leaks": 0.95, "all": 0.93, "executor": 0.90}

RARE_EVENTS = (
    rl.ConnectionConnectedEvent,
    rl.ConnectionDisconnectedEvent,
    rl.ConnectionErrorEvent,
    rl.ConnectionHealthCheckEvent,
    rl.PoolExhaustedEvent,
    rl.PoolResetEvent,
)


def _noop(event: Any) -> None:
    return None


# --- variants ----------------------------------------------------------------

Teardown = Callable[[], int | None]


def setup_bare(client: Any) -> Teardown:
    return lambda: None


def setup_none(client: Any) -> Teardown:
    rl.instrument(client)

    def teardown() -> int:
        rl.uninstrument(client)
        return 0

    return teardown


def setup_leaks(client: Any) -> Teardown:
    """Leak detection on (a threshold no checkout reaches), no subscriber:
    every checkout records its stack."""
    rl.instrument(client, leak_detection=60)

    def teardown() -> int:
        rl.uninstrument(client)
        return 0

    return teardown


def setup_rare(client: Any) -> Teardown:
    handle = rl.instrument(client)
    seen = [0]

    def count(event: Any) -> None:
        seen[0] += 1

    for cls in RARE_EVENTS:
        handle.dispatcher.subscribe(cls, count)

    def teardown() -> int:
        rl.uninstrument(client)
        return seen[0]

    return teardown


def setup_retries(client: Any) -> Teardown:
    """Like ``rare``, plus the two retry events: redis-py's ``Retry`` hooked."""
    teardown = setup_rare(client)
    handle = rl.instrument(client)
    handle.dispatcher.subscribe(rl.ConnectionRetryEvent, _noop)
    handle.dispatcher.subscribe(rl.ConnectionRetriesExhaustedEvent, _noop)
    return teardown


def _setup_all(client: Any, executor: rl.AsyncCallbackExecutor | None) -> Teardown:
    metrics = rl.Instrumentation()
    dispatcher = rl.EventDispatcher()
    for cls in EVENT_CLASSES:
        dispatcher.subscribe(cls, _noop, exact=True)
    rl.instrument(
        client, event_dispatcher=dispatcher, instrumentation=metrics, async_callbacks=executor
    )

    def teardown() -> int:
        rl.uninstrument(client)
        if executor is not None and not executor.shutdown(timeout=30):
            raise SystemExit("the executor did not drain within 30 s")
        # One callback per event: the callback counts are the events emitted.
        return sum(m["count"] for m in metrics.all_callback_metrics().values())

    return teardown


def setup_all(client: Any) -> Teardown:
    return _setup_all(client, None)


def setup_callbacks(client: Any) -> Teardown:
    """Like ``all`` without ``Instrumentation``: what delivering to the callbacks costs."""
    dispatcher = rl.EventDispatcher()
    seen = [0]

    def count(event: Any) -> None:
        seen[0] += 1

    for cls in EVENT_CLASSES:
        dispatcher.subscribe(cls, count, exact=True)
    rl.instrument(client, event_dispatcher=dispatcher)

    def teardown() -> int:
        rl.uninstrument(client)
        return seen[0]

    return teardown


def setup_metrics(client: Any) -> Teardown:
    """Like ``all`` without callbacks: what ``Instrumentation`` alone costs."""
    metrics = rl.Instrumentation()
    rl.instrument(client, instrumentation=metrics)

    def teardown() -> int:
        rl.uninstrument(client)
        pools = metrics.pool_metrics().values()
        return sum(p["acquisitions"] + p["releases"] for p in pools)

    return teardown


def setup_executor(client: Any) -> Teardown:
    return _setup_all(client, rl.AsyncCallbackExecutor())


def setup_prometheus(client: Any) -> Teardown:
    """``contrib.prometheus.LifecycleCollector`` with its defaults."""
    from redis_lifecycle.contrib.prometheus import LifecycleCollector

    collector = LifecycleCollector(rl.instrument(client))

    def teardown() -> int:
        collector.detach()
        rl.uninstrument(client)
        return int(
            sum(
                sample.value
                for metric in collector.collect()
                if metric.name == "redis_lifecycle_events"
                for sample in metric.samples
                if sample.name.endswith("_total")
            )
        )

    return teardown


def setup_otel_metrics(client: Any) -> Teardown:
    """``contrib.opentelemetry.OpenTelemetryMetrics`` with its defaults, on an
    SDK ``MeterProvider`` whose reader is read only at teardown."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    exporter = OpenTelemetryMetrics(provider).attach(rl.instrument(client))

    def teardown() -> None:
        exporter.detach()
        rl.uninstrument(client)
        provider.shutdown()

    return teardown


def _otel_instrumentor() -> Any:
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    return RedisInstrumentor(), TracerProvider()


def setup_otel(client: Any) -> Teardown:
    instrumentor, provider = _OTEL
    instrumentor.instrument(tracer_provider=provider)

    def teardown() -> None:
        instrumentor.uninstrument()

    return teardown


_OTEL: Any = None

VARIANTS: dict[str, tuple[str, Callable[[Any], Teardown]]] = {
    "bare": ("bare redis-py", setup_bare),
    "none": ("instrumented, no subscribers", setup_none),
    "rare": ("rare events only", setup_rare),
    "leaks": ("leak detection, no subscribers", setup_leaks),
    "all": ("all events + Instrumentation", setup_all),
    "executor": ("all + Instr., executor", setup_executor),
    "otel": ("opentelemetry-instr.-redis", setup_otel),
    # Parts of "all", for attributing its cost; run only when named.
    "callbacks": ("all events, no Instrumentation", setup_callbacks),
    "metrics": ("Instrumentation, no callbacks", setup_metrics),
    "retries": ("rare events + retry events", setup_retries),
    # The exporters with their defaults; run only when named.
    "prometheus": ("Prometheus collector", setup_prometheus),
    "otel_metrics": ("OpenTelemetry metrics", setup_otel_metrics),
}
#: What runs when ``--variants`` is not given.
DEFAULT_VARIANTS = ("bare", "none", "rare", "all", "executor", "otel")


# --- workloads ---------------------------------------------------------------


class Workload:
    """Builds one client per variant and runs ``n`` ops on it."""

    name = ""
    label = ""
    #: Commands sent per op (for the summary).
    commands_per_op = 1

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self) -> Any:
        client = redis.Redis.from_url(self.url)
        client.set("bench:key", "x" * 64)
        return client

    def run(self, client: Any, n: int) -> None:
        raise NotImplementedError

    def close(self, client: Any) -> None:
        client.close()
        client.connection_pool.disconnect()


class GetWorkload(Workload):
    name, label = "get", "sync GET"

    def run(self, client: Any, n: int) -> None:
        get = client.get
        for _ in range(n):
            get("bench:key")


class SetWorkload(Workload):
    name, label = "set", "sync SET"

    def run(self, client: Any, n: int) -> None:
        set_ = client.set
        value = "y" * 64
        for _ in range(n):
            set_("bench:set", value)


class PipelineWorkload(Workload):
    name, label = "pipeline", "pipeline of 100 GETs"
    commands_per_op = 100

    def run(self, client: Any, n: int) -> None:
        for _ in range(n):
            pipe = client.pipeline(transaction=False)
            for _ in range(100):
                pipe.get("bench:key")
            pipe.execute()


class AsyncioWorkload(Workload):
    name, label = "asyncio", "asyncio GET"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()

    def client(self) -> Any:
        client = redis.asyncio.Redis.from_url(self.url)
        self.loop.run_until_complete(client.set("bench:key", "x" * 64))
        return client

    def run(self, client: Any, n: int) -> None:
        async def loop() -> None:
            get = client.get
            for _ in range(n):
                await get("bench:key")

        self.loop.run_until_complete(loop())

    def close(self, client: Any) -> None:
        self.loop.run_until_complete(client.aclose())
        self.loop.run_until_complete(client.connection_pool.disconnect())


class ThreadsWorkload(Workload):
    name, label = "threads", "8 threads, pool of 4"
    threads = 8

    def client(self) -> Any:
        pool = redis.BlockingConnectionPool.from_url(self.url, max_connections=4, timeout=30)
        client = redis.Redis(connection_pool=pool)
        client.set("bench:key", "x" * 64)
        return client

    def run(self, client: Any, n: int) -> None:
        per_thread = max(n // self.threads, 1)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                get = client.get
                for _ in range(per_thread):
                    get("bench:key")
            except BaseException as error:
                errors.append(error)

        workers = [threading.Thread(target=work) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]


WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (GetWorkload, SetWorkload, PipelineWorkload, AsyncioWorkload, ThreadsWorkload)
}


# --- measuring ---------------------------------------------------------------


@dataclass
class Samples:
    ops_per_s: list[float] = field(default_factory=list)
    cpu_per_op: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)


@dataclass
class Result:
    workload: str
    label: str
    ops: int
    trials: int
    samples: dict[str, Samples]
    ratios: dict[str, list[float]]


class Progress:
    """One line on stderr, rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if self.tty:
            sys.stderr.write(f"\r\033[K{text}")
            sys.stderr.flush()
        elif force or time.monotonic() - self.last > 5:
            self.last = time.monotonic()
            print(text, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def timed(workload: Workload, client: Any, setup: Callable[[Any], Teardown], n: int) -> tuple:
    """Set up, warm up, time ``n`` ops, tear down: (seconds, cpu seconds, events)."""
    teardown = setup(client)
    try:
        workload.run(client, max(n // 50, 20))  # warm-up: connections made, caches hot
        gc.collect()
        cpu0, t0 = time.process_time(), time.perf_counter()
        workload.run(client, n)
        t1, cpu1 = time.perf_counter(), time.process_time()
    finally:
        events = teardown()
    return t1 - t0, cpu1 - cpu0, events


def calibrate(workload: Workload, seconds: float) -> int:
    """Ops per trial so that a bare trial takes about ``seconds``."""
    client = workload.client()
    try:
        n = 50
        while True:
            started = time.perf_counter()
            workload.run(client, n)
            elapsed = time.perf_counter() - started
            if elapsed >= 0.05:
                break
            n *= 4
    finally:
        workload.close(client)
    return max(int(n * seconds / elapsed), 20)


def measure(
    workload: Workload,
    variants: list[str],
    trials: int,
    seconds: float,
    progress: Progress,
    step: str,
) -> Result:
    progress.show(f"{step} {workload.label}: calibrating", force=True)
    n = calibrate(workload, seconds)
    clients = {name: workload.client() for name in variants}
    samples = {name: Samples() for name in variants}
    try:
        for trial in range(trials):
            shift = trial % len(variants)
            for name in variants[shift:] + variants[:shift]:
                progress.show(f"{step} {workload.label}: trial {trial + 1}/{trials} {name}")
                elapsed, cpu, events = timed(workload, clients[name], VARIANTS[name][1], n)
                sample = samples[name]
                sample.ops_per_s.append(n / elapsed)
                sample.cpu_per_op.append(cpu / n)
                sample.events.append(events if events is not None else -1)
                sample.elapsed.append(elapsed)
    finally:
        for client in clients.values():
            workload.close(client)
    bare = samples["bare"].ops_per_s if "bare" in samples else None
    ratios = {
        name: [v / b for v, b in zip(s.ops_per_s, bare, strict=True)] if bare else []
        for name, s in samples.items()
    }
    return Result(workload.name, workload.label, n, trials, samples, ratios)


# --- reporting ---------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "redis-py": redis.__version__,
        "redis_lifecycle": rl.__version__,
        "load average": " ".join(f"{x:.2f}" for x in load),
    }


def server_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
        return f"{info.get('redis_version', '?')}"
    finally:
        client.close()


def median_interval(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the median of ``values`` (seeded: the
    same values give the same interval). On a busy machine it says how far
    one run's median ratio can be trusted: a budget inside the interval is
    within the noise of that run."""
    rng = random.Random(0)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def summarise(result: Result) -> list[dict[str, Any]]:
    rows = []
    bare = result.samples.get("bare")
    bare_cpu = statistics.median(bare.cpu_per_op) if bare else None
    for name, s in result.samples.items():
        events = [e for e in s.events if e >= 0]
        events_per_op = statistics.median(events) / result.ops if events else None
        cpu = statistics.median(s.cpu_per_op)
        cost = None
        if events_per_op and bare_cpu is not None and events_per_op > 0.01:
            cost = (cpu - bare_cpu) / events_per_op
        ratio = statistics.median(result.ratios[name]) if result.ratios[name] else None
        budget = BUDGETS.get(name) if result.workload == "get" else None
        rows.append(
            {
                "variant": name,
                "label": VARIANTS[name][0],
                "ops_per_s": {
                    "min": min(s.ops_per_s),
                    "median": statistics.median(s.ops_per_s),
                    "max": max(s.ops_per_s),
                },
                "ratio": ratio,
                "ratio_range": [min(result.ratios[name]), max(result.ratios[name])]
                if result.ratios[name]
                else None,
                "ratio_ci95": list(median_interval(result.ratios[name]))
                if len(result.ratios[name]) > 1
                else None,
                "budget": budget,
                "meets_budget": None if budget is None or ratio is None else ratio >= budget,
                "cpu_us_per_op": cpu * 1e6,
                "events_per_op": events_per_op,
                "events_per_s": (
                    statistics.median(e / t for e, t in zip(events, s.elapsed, strict=False))
                    if events
                    else None
                ),
                "cpu_us_per_event": None if cost is None else cost * 1e6,
            }
        )
    return rows


def print_table(result: Result, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{result.label}  ({result.ops} ops per trial, {result.trials} trials; "
        f"ratio = median of per-round ratios to bare, with its 95 % bootstrap interval)"
    )
    print(
        f"  {'variant':31} {'ops/s min / median / max':>27} {'ratio':>6} {'95% interval':>13}"
        f" {'budget':>10}"
        f" {'CPU us/op':>9} {'events/s':>9} {'us/event':>8}"
    )
    for row in rows:
        ops = row["ops_per_s"]
        budget = ""
        if row["budget"] is not None:
            mark = "ok" if row["meets_budget"] else "MISS"
            budget = f">={row['budget']:.2f} {mark}"
        events = "-" if row["events_per_s"] is None else f"{row['events_per_s']:,.0f}"
        cost = "-" if row["cpu_us_per_event"] is None else f"{row['cpu_us_per_event']:.2f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        low_high = row["ratio_ci95"]
        interval = "-" if low_high is None else f"{low_high[0]:.3f}-{low_high[1]:.3f}"
        print(
            f"  {row['label']:31} {ops['min']:8,.0f} /{ops['median']:8,.0f} /{ops['max']:8,.0f}"
            f" {ratio:>6} {interval:>13} {budget:>10} {row['cpu_us_per_op']:9.1f}"
            f" {events:>9} {cost:>8}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Overhead of redis_lifecycle against bare redis-py (see the module docstring)."
    )
    parser.add_argument("--url", help="a Redis to use (default: start a redis-server here)")
    parser.add_argument("--trials", type=int, help="trial rounds per workload (default 21)")
    parser.add_argument("--seconds", type=float, help="target seconds per trial (default 0.25)")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 0.1 s: a smoke run")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated: {','.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    trials = args.trials or (5 if args.quick else 21)
    seconds = args.seconds or (0.1 if args.quick else 0.25)
    if trials < 1 or seconds <= 0:
        parser.error(f"--trials must be >= 1 and --seconds > 0, got {trials} and {seconds}")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS] + [
        v for v in variants if v not in VARIANTS
    ]
    if unknown:
        parser.error(
            f"unknown workload or variant {', '.join(map(repr, unknown))}; workloads: "
            f"{', '.join(WORKLOADS)}; variants: {', '.join(VARIANTS)}"
        )
    global _OTEL
    _OTEL = _otel_instrumentor()
    if "otel" in variants and _OTEL is None:
        variants.remove("otel")
        print(
            "note: opentelemetry-instrumentation-redis (and opentelemetry-sdk) not installed:"
            " skipping the otel variant",
            file=sys.stderr,
        )
    if "bare" not in variants:
        variants.insert(0, "bare")

    server = None
    url = args.url
    if url is None:
        from redis_lifecycle.server import RedisServer

        server = RedisServer().start()
        url = server.url
    progress = Progress()
    try:
        info = machine()
        info["server"] = f"redis-server {server_version(url)}"
        info["target"] = "started here, 127.0.0.1 TCP" if server else "--url"
        print("redis_lifecycle overhead benchmark")
        for key, value in info.items():
            print(f"  {key}: {value}")
        print(f"  trials: {trials} rounds x ~{seconds} s per variant; variants: {variants}")
        results = []
        for index, name in enumerate(workloads):
            workload = WORKLOADS[name](url)
            step = f"[{index + 1}/{len(workloads)}]"
            result = measure(workload, variants, trials, seconds, progress, step)
            progress.done()
            rows = summarise(result)
            print_table(result, rows)
            sys.stdout.flush()
            results.append({"workload": name, "label": result.label, "rows": rows})
    finally:
        progress.done()
        if server is not None:
            server.stop()
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "trials": trials, "results": results}, out, indent=2)
    missed = [
        row["variant"] for entry in results for row in entry["rows"] if row["meets_budget"] is False
    ]
    if missed:
        print(f"\nbudget missed on GET by: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
