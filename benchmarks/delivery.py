"""Delivery costs: executor throughput and Instrumentation cost per event.

    python benchmarks/delivery.py            # 1 and 2, a few seconds
    python benchmarks/delivery.py --redis    # also 3 (starts its own redis-server)

1. ``AsyncCallbackExecutor`` throughput: events per second emitted through a
   ``Delivery`` onto the workers and run there (one no-op callback), from
   emit to ``shutdown()`` returning. ``overflow="block"`` so every event
   goes through a queue (none runs on the emitting thread); 16 connections'
   worth of events spread over the shards.
2. ``Instrumentation``: nanoseconds per ``_observe`` of an acquired and a
   released event and per ``_record_callback``: what one command adds when
   every per-command event is subscribed (2 observes + 2 records).

3. ``--redis``: GET ops/s on loopback, bare redis-py against a pool with every
   event subscribed (one no-op callback each) plus ``Instrumentation``, inline
   and through an ``AsyncCallbackExecutor``; rounds interleaved, best round of
   each reported as a ratio to bare (the budgets in docs/performance.md: 0.93 and 0.90).

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


def get_ratios(rounds: int, ops: int) -> dict[str, float]:
    import redis

    from redis_lifecycle.events import EVENT_CLASSES
    from redis_lifecycle.server import RedisServer, find_server_binary

    binary, reasons = find_server_binary()
    if binary is None:
        raise SystemExit("no redis-server: " + "; ".join(reasons))
    with RedisServer(binary) as server:
        kwargs = server.connection_kwargs()

        def everything(executor: rl.AsyncCallbackExecutor | None) -> redis.Redis:
            dispatcher = rl.EventDispatcher()
            for cls in EVENT_CLASSES:
                dispatcher.subscribe(cls, lambda event: None)
            pool = rl.LifecycleConnectionPool(
                **kwargs,
                event_dispatcher=dispatcher,
                instrumentation=rl.Instrumentation(),
                async_callbacks=executor,
            )
            return redis.Redis(connection_pool=pool)

        executor = rl.AsyncCallbackExecutor(pool_size=1, queue_size=10_000)
        clients = {
            "bare": redis.Redis(**kwargs),
            "all events + Instrumentation, inline": everything(None),
            "all events + Instrumentation, executor": everything(executor),
        }
        clients["bare"].set("bench", "x")
        best = dict.fromkeys(clients, 0.0)
        for _ in range(rounds):
            for name, client in clients.items():
                get = client.get
                started = time.perf_counter()
                for _ in range(ops):
                    get("bench")
                best[name] = max(best[name], ops / (time.perf_counter() - started))
        executor.shutdown()
        for client in clients.values():
            client.close()
    bare = best["bare"]
    print(f"GET bare: {bare:,.0f} ops/s (best of {rounds} rounds of {ops})")
    return {name: rate / bare for name, rate in best.items() if name != "bare"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queue-size", type=int, default=1000)
    parser.add_argument("--redis", action="store_true", help="also GET ratios vs bare")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=10_000)
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
    if args.redis:
        for name, ratio in get_ratios(args.rounds, args.ops).items():
            print(f"GET {name}: {ratio:.3f} of bare")


if __name__ == "__main__":
    main()
