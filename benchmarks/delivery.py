"""Delivery costs: executor throughput and Instrumentation cost per event.

    python benchmarks/delivery.py            # both, a few seconds
    python benchmarks/delivery.py --events 500000

1. ``AsyncCallbackExecutor`` throughput: events per second emitted through a
   ``Delivery`` onto the workers and run there (one no-op callback), from
   emit to ``shutdown()`` returning. ``overflow="block"`` so every event
   goes through a queue (none runs on the emitting thread); 16 connections'
   worth of events spread over the shards.
2. ``Instrumentation``: nanoseconds per ``_observe`` of an acquired and a
   released event and per ``_record_callback``: what one command adds when
   every per-command event is subscribed (2 observes + 2 records).

Not a test: numbers depend on the machine and its load; compare runs made
side by side.
"""

from __future__ import annotations

import argparse
import time
import timeit

import redis_lifecycle as rl
from redis_lifecycle._delivery import Delivery
from redis_lifecycle.events import EventOrigin, EventType


def executor_throughput(
    events: int, pool_size: int, queue_size: int
) -> tuple[float, dict[str, int]]:
    dispatcher = rl.EventDispatcher()
    dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, lambda event: None)
    executor = rl.AsyncCallbackExecutor(
        pool_size=pool_size, queue_size=queue_size, overflow="block"
    )
    delivery = Delivery(dispatcher, executor=executor)
    origins = [
        EventOrigin(host="127.0.0.1", port=6379, db=0, connection_id=i, pool_name="bench")
        for i in range(16)
    ]
    batch = [rl.PoolConnectionAcquiredEvent(0.0, origins[i % 16], 0.0, 1, 3) for i in range(events)]
    emit = delivery.emit
    started = time.perf_counter()
    for event in batch:
        emit(event)
    if not executor.shutdown(timeout=120):
        raise SystemExit("executor did not drain within 120 s")
    elapsed = time.perf_counter() - started
    return events / elapsed, dict(executor.stats())


def instrumentation_cost(number: int) -> dict[str, float]:
    metrics = rl.Instrumentation()
    origin = EventOrigin(host="127.0.0.1", port=6379, db=0, connection_id=1, pool_name="bench")
    # Varied durations, as real ones are (they land in many buckets).
    acquired = [
        rl.PoolConnectionAcquiredEvent(0.0, origin, 1e-6 * (1 + i % 97), 1, 3) for i in range(1000)
    ]
    released = [
        rl.PoolConnectionReleasedEvent(0.0, origin, 3e-5 * (1 + i % 89), 0, 4) for i in range(1000)
    ]
    seconds = [2e-7 * (1 + i % 101) for i in range(1000)]
    observe = metrics._observe
    record = metrics._record_callback
    kind = EventType.CONNECTION_ACQUIRED
    loops = max(number // 1000, 1)

    def run_observe_acquired() -> None:
        for event in acquired:
            observe(event)

    def run_observe_released() -> None:
        for event in released:
            observe(event)

    def run_record() -> None:
        for value in seconds:
            record(kind, value, False)

    def run_empty() -> None:
        for _ in seconds:
            pass

    def per_call(func: object) -> float:
        best = min(timeit.repeat(func, number=loops, repeat=5))  # type: ignore[arg-type]
        return best / (loops * 1000) * 1e9

    empty = per_call(run_empty)
    return {
        "observe(acquired)": per_call(run_observe_acquired) - empty,
        "observe(released)": per_call(run_observe_released) - empty,
        "record_callback": per_call(run_record) - empty,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queue-size", type=int, default=1000)
    args = parser.parse_args()
    for pool_size in (1, 4):
        rate, stats = executor_throughput(args.events, pool_size, args.queue_size)
        print(
            f"executor pool_size={pool_size} queue_size={args.queue_size}: "
            f"{rate:,.0f} events/s  (completed={stats['completed']} dropped={stats['dropped']}"
            f" ran_inline={stats['ran_inline']})"
        )
    costs = instrumentation_cost(args.events)
    for name, ns in costs.items():
        print(f"Instrumentation {name}: {ns:.0f} ns")
    per_command = (
        2 * costs["record_callback"] + costs["observe(acquired)"] + costs["observe(released)"]
    )
    print(f"Instrumentation per command (2 observes + 2 callback records): {per_command:.0f} ns")


if __name__ == "__main__":
    main()
