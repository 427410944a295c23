"""Memory soak: a million commands with every event subscribed and metrics on.

    python benchmarks/soak.py                      # 1,000,000 GETs on a server it starts
    python benchmarks/soak.py --commands 200000 --url redis://127.0.0.1:6380/0

An instrumented client (one no-op callback on each of the 13 event classes,
an :class:`~redis_lifecycle.Instrumentation`, callbacks inline) runs GETs in
a loop; every 10 % the resident set size (RSS, from ``/proc/self/statm`` or
``psutil``) is printed, with the objects the garbage collector tracks and the
count of connections redis_lifecycle tracks. A reconnect every 50,000
commands (``CLIENT KILL`` of the client's own connection) keeps the rare
events flowing too.

Flat means: after the warm-up (the first 10 %), RSS grows by no more than
noise (allocator arenas: a few hundred KiB), the tracked-object count stays
put, and the metrics read at the end count every command. Exits 1 if RSS
grew by more than ``--max-growth-mib`` (default 8) after the warm-up.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import redis

import redis_lifecycle as rl
from redis_lifecycle._hooks.state import CONNECTIONS
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
        return soak(url, args.commands, args.max_growth_mib)
    finally:
        if server is not None:
            server.stop()


def soak(url: str, commands: int, max_growth_mib: float) -> int:
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
    rl.instrument(client, event_dispatcher=dispatcher, instrumentation=metrics, pool_name="soak")

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
    rl.uninstrument(client)
    client.close()
    admin.close()
    assert baseline is not None
    growth = (final - baseline) / 2**20
    print(
        f"\n{done:,} commands in {elapsed:.1f} s ({done / elapsed:,.0f}/s); "
        f"RSS after warm-up {baseline / 2**20:.1f} MiB, at the end {final / 2**20:.1f} MiB "
        f"(growth {growth:+.2f} MiB); acquisitions counted {pool['acquisitions']:,}, "
        f"reconnects {pool['reconnects']}, disconnects {pool['disconnects']}"
    )
    if growth > max_growth_mib:
        print(f"RSS grew by {growth:.2f} MiB > {max_growth_mib} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
