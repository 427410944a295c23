"""CPU instructions per command, counted by valgrind: a measure load cannot move.

    python benchmarks/instructions.py                      # get, every variant
    python benchmarks/instructions.py --workloads get,asyncio --variants bare,all
    python benchmarks/instructions.py --workloads get,asyncio,checkout --variants bare,prometheus

Wall-clock ratios (``overhead.py``) depend on how fast the machine's loopback
is that minute. This counts the client's user-space instructions instead,
under ``valgrind --tool=callgrind``: each variant of each workload runs twice
in a fresh interpreter, with ``N`` and ``3N`` commands after the same warm-up,
and the difference divided by ``2N`` is the cost of one command, with start-up,
imports, set-up and teardown cancelled out. The executor variant's worker
threads are counted too (callgrind follows every thread of the process).

Printed: instructions per command, the difference to bare,
``bare / variant`` (an instruction-count ratio: stricter than the wall-clock
ratio, since the kernel's share of a round trip is not in either count), and
the budget that ratio must reach (``BUDGETS``; for the ``get``, ``asyncio``
and ``checkout`` workloads) with ``ok`` or ``MISS``.

Variants (see ``overhead.py``): ``bare``, ``none``, ``rare``, ``metrics``
(``Instrumentation()`` alone), ``prometheus`` (``LifecycleCollector``
attached, defaults), ``otel_metrics`` (``OpenTelemetryMetrics``, defaults),
``all``, ``executor``, and the peer ``otel`` (``opentelemetry-instrumentation-
redis``); a variant whose packages are not installed is skipped with a note.

pymalloc stays on (``PYTHONMALLOC=pymalloc``), so that allocation costs what
it costs outside valgrind. Needs ``valgrind`` (``apt install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: What the child interpreter runs: the variants and workloads of overhead.py.
CHILD = """
import sys
sys.path.insert(0, {here!r})
import overhead
if {workload!r} == "checkout":
    import instructions
    workload = instructions.CheckoutWorkload({url!r})
else:
    workload = overhead.WORKLOADS[{workload!r}]({url!r})
client = workload.client()
setup = overhead.VARIANTS[{variant!r}][1]
if {variant!r} == "otel":
    overhead._OTEL = overhead._otel_instrumentor()
teardown = setup(client)
workload.run(client, 200)  # warm-up: connections made, caches filled
workload.run(client, {n})
teardown()
workload.close(client)
"""


#: The instruction ratio (bare / variant) each variant must reach, per
#: workload; the workloads not listed have no budget.
BUDGETS: dict[str, dict[str, float]] = {
    "get": {
        "none": 0.99,
        "rare": 0.99,
        "metrics": 0.97,
        "prometheus": 0.97,
        "otel_metrics": 0.97,
        "all": 0.93,
        "executor": 0.90,
        "leaks": 0.95,
    },
}
BUDGETS["checkout"] = dict(BUDGETS["get"])
BUDGETS["asyncio"] = {**BUDGETS["get"], "all": 0.95}

DEFAULT_VARIANTS = "bare,none,rare,metrics,prometheus,otel_metrics,all,executor,otel"
#: A module each variant needs beyond redis_lifecycle (skipped without it).
NEEDS = {
    "prometheus": "prometheus_client",
    "otel_metrics": "opentelemetry.sdk.metrics",
    "otel": "opentelemetry.instrumentation.redis",
}


def budget_column(workload: str, variant: str, ratio: float | None) -> str:
    """``>=0.97 ok`` / ``>=0.97 MISS``, or blank without a budget."""
    budget = BUDGETS.get(workload, {}).get(variant)
    if budget is None or ratio is None:
        return ""
    return f">={budget:.2f} {'ok' if ratio >= budget else 'MISS'}"


def installed(variant: str) -> bool:
    import importlib.util

    module = NEEDS.get(variant)
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class CheckoutWorkload:
    """``checkout``: one ``get_connection`` and one ``release`` per op, no
    command: the hot path alone, without the round trip (not in
    ``overhead.py``, where it would only measure the hooks against nothing)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client_class = redis.Redis
        self.url = url

    def client(self) -> Any:
        client = self.client_class.from_url(self.url)
        client.ping()
        return client

    def run(self, client: Any, n: int) -> None:
        import inspect

        pool = client.connection_pool
        signature = inspect.signature(type(pool).get_connection)
        parameter = signature.parameters.get("command_name")
        needs_name = parameter is not None and parameter.default is inspect.Parameter.empty
        args = ("GET",) if needs_name else ()  # redis-py 5.x wants a command name
        get, release = pool.get_connection, pool.release
        for _ in range(n):
            release(get(*args))

    def close(self, client: Any) -> None:
        client.close()


def count(url: str, workload: str, variant: str, n: int) -> int:
    """Instructions of one child run of ``n`` ops (start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        code = CHILD.format(here=str(HERE), workload=workload, url=url, variant=variant, n=n)
        env = {**os.environ, "PYTHONMALLOC": "pymalloc"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                code,
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        text = Path(out).read_text()
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no instruction total in callgrind's output for {workload}/{variant}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a Redis to use (default: start a redis-server here)")
    parser.add_argument(
        "--workloads",
        default="get",
        help="comma-separated: get,set,pipeline,asyncio,threads,checkout",
    )
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma-separated (default: {DEFAULT_VARIANTS})",
    )
    parser.add_argument(
        "-n",
        type=int,
        default=1000,
        help="ops in the short run (default 1000; the long one runs 3n)",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt install valgrind", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import overhead

    workloads = [w for w in args.workloads.split(",") if w]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [w for w in workloads if w not in overhead.WORKLOADS and w != "checkout"] + [
        v for v in variants if v not in overhead.VARIANTS
    ]
    if unknown:
        print(f"unknown workload or variant: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for variant in [v for v in variants if not installed(v)]:
        print(f"note: {NEEDS[variant]} not installed: skipping {variant}", file=sys.stderr)
        variants.remove(variant)
    server = None
    url = args.url
    if url is None:
        from redis_lifecycle.server import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        for workload in workloads:
            print(f"\n{workload}: instructions per op (callgrind, {2 * args.n} ops differenced)")
            print(
                f"  {'variant':12} {'instr/op':>10} {'+ vs bare':>10} {'bare/variant':>13}"
                f" {'budget':>11}"
            )
            bare = None
            for variant in variants:
                print(f"  ... {variant}", end="\r", file=sys.stderr, flush=True)
                short = count(url, workload, variant, args.n)
                long = count(url, workload, variant, 3 * args.n)
                per_op = (long - short) / (2 * args.n)
                if variant == "bare":
                    bare = per_op
                extra = f"{per_op - bare:+10,.0f}" if bare is not None else f"{'':>10}"
                value = bare / per_op if bare is not None else None
                ratio = f"{value:13.3f}" if value is not None else f"{'':>13}"
                budget = budget_column(workload, variant, value)
                print(f"  {variant:12} {per_op:10,.0f} {extra} {ratio} {budget:>11}", flush=True)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
