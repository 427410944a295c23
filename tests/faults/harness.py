"""What the fault scenarios share: delivery modes, a threaded load, a bystander.

A :class:`Mode` says how events reach the recorder (inline or through an
:class:`~redis_lifecycle.AsyncCallbackExecutor`) and what misbehaving
callback runs beside it (one that raises, one that sleeps). :class:`Load`
runs commands from several threads, records every exception the
application sees, and can pause so that every connection is back in its pool.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from typing import Any

import redis
import redis.exceptions

import redis_lifecycle as rl

from ..helpers import Recorder, checkout, wait_until
from . import invariants

POOL_NAME = "faults"


@dataclasses.dataclass(frozen=True)
class Mode:
    """How callbacks run during a scenario."""

    #: ``None`` (inline) or the executor's overflow policy.
    executor: str | None = None
    #: An extra callback on every event that raises.
    raising: bool = False
    #: An extra callback on every event that sleeps this long (seconds).
    sleeping: float = 0.0

    @property
    def id(self) -> str:
        parts = [f"executor-{self.executor}" if self.executor else "inline"]
        if self.raising:
            parts.append("raising")
        if self.sleeping:
            parts.append("sleeping")
        return "-".join(parts)


MODES = [
    Mode(),
    Mode(raising=True),
    Mode(sleeping=0.001),
    Mode(executor="caller_runs", sleeping=0.0005),
    Mode(executor="block", raising=True),
]
#: A smaller set for the scenarios whose cost is per fault, not per event.
FEW_MODES = [Mode(), Mode(executor="caller_runs", raising=True, sleeping=0.0005)]


class Wiring:
    """One instrumented client's recorder, executor and misbehaving callbacks."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.recorder = Recorder()
        self.executor: rl.AsyncCallbackExecutor | None = None
        if mode.executor is not None:
            # A small queue, so that overflow actually happens under load.
            policy: Any = mode.executor
            self.executor = rl.AsyncCallbackExecutor(pool_size=2, queue_size=16, overflow=policy)
        self.raised = 0
        self._lock = threading.Lock()

    def kwargs(self) -> dict[str, Any]:
        """The lifecycle arguments for ``instrument()`` or a lifecycle pool."""
        return {
            "async_callbacks": self.executor,
            "callback_error_handler": rl.CallbackErrorHandler("ignore"),
        }

    def subscribe(self, dispatcher: rl.EventDispatcher) -> None:
        dispatcher.subscribe(rl.LifecycleEvent, self.recorder)
        if self.mode.raising:
            dispatcher.subscribe(rl.LifecycleEvent, self._raise)
        if self.mode.sleeping:
            dispatcher.subscribe(rl.LifecycleEvent, self._sleep)

    def _raise(self, event: rl.LifecycleEvent) -> None:
        with self._lock:
            self.raised += 1
        raise RuntimeError(f"callback raising on {event.type}")

    def _sleep(self, event: rl.LifecycleEvent) -> None:
        time.sleep(self.mode.sleeping)  # a slow callback is the fault injected here

    def finish(self) -> dict[str, int]:
        """Drain the executor; check nothing was lost. Returns its stats (or {})."""
        if self.executor is None:
            return {}
        assert self.executor.shutdown(timeout=30), "executor did not drain in 30 s"
        return invariants.check_executor(self.executor, may_drop=self.mode.executor == "drop")

    @property
    def events(self) -> list[rl.LifecycleEvent]:
        return list(self.recorder.events)


class Load:
    """``threads`` threads running SET/GET on ``client`` until stopped."""

    def __init__(self, client: redis.Redis, threads: int, name: str = "load") -> None:
        self.client = client
        self.done = [0] * threads
        self.redis_errors: Counter[str] = Counter()
        self.foreign: list[BaseException] = []
        self._stop = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self._idle = [threading.Event() for _ in range(threads)]
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, index: int) -> None:
        key = f"faults:{index}"
        while not self._stop.is_set():
            if not self._gate.is_set():
                self._idle[index].set()
                self._gate.wait()
                self._idle[index].clear()
                continue
            try:
                self.client.set(key, index)
                self.client.get(key)
            except redis.exceptions.RedisError as error:
                self.redis_errors[type(error).__name__] += 1
                self._stop.wait(0.01)  # back off while the server is down
            except BaseException as error:
                self.foreign.append(error)
                return
            else:
                self.done[index] += 1

    def progress(self, commands: int = 3, timeout: float = 30.0) -> None:
        """Wait until every thread completed ``commands`` more successful rounds."""
        start = list(self.done)
        wait_until(
            lambda: (
                all(d >= s + commands for d, s in zip(self.done, start, strict=True))
                or bool(self.foreign)
            ),
            timeout=timeout,
            what=f"every load thread to complete {commands} more commands",
        )
        assert not self.foreign, self.foreign

    def pause(self) -> None:
        """Stop issuing commands; returns once every thread is idle (connections back)."""
        self._gate.clear()
        wait_until(
            lambda: all(e.is_set() for e in self._idle) or bool(self.foreign),
            timeout=30,
            what="load threads to pause",
        )

    def resume(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self._stop.set()
        self._gate.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a load thread hangs"

    def check_errors(self) -> None:
        """The application saw only redis-py's own exceptions."""
        assert not self.foreign, f"non-redis exceptions reached the application: {self.foreign}"


def idle_connections(pool: Any) -> int:
    if hasattr(pool, "_connections"):  # BlockingConnectionPool
        return sum(1 for c in list(pool.pool.queue) if c is not None)
    return len(pool._available_connections)


def checked_out(pool: Any) -> int:
    if hasattr(pool, "_connections"):
        return len(pool._connections) - idle_connections(pool)
    return len(pool._in_use_connections)


def touch_all(pool: Any) -> None:
    """Check out every idle connection at once and give them back: the
    checkout probe reconnects each one whose socket the fault killed."""
    connections = [checkout(pool) for _ in range(idle_connections(pool))]
    for connection in connections:
        pool.release(connection)


def make_client(server: Any, wiring: Wiring, kind: str, **connection_kwargs: Any) -> redis.Redis:
    """An instrumented client: ``kind`` is ``"instrument"`` (``instrument()`` on a
    plain ``redis.Redis``) or ``"blocking"`` (a ``LifecycleBlockingConnectionPool``)."""
    if kind == "instrument":
        client = redis.Redis(host=server.host, port=server.port, **connection_kwargs)
        handle = rl.instrument(client, pool_name=POOL_NAME, **wiring.kwargs())
        wiring.subscribe(handle.dispatcher)
        return client
    dispatcher = rl.EventDispatcher()
    wiring.subscribe(dispatcher)
    pool = rl.LifecycleBlockingConnectionPool(
        host=server.host,
        port=server.port,
        max_connections=connection_kwargs.pop("max_connections", 16),
        timeout=connection_kwargs.pop("timeout", 20),
        event_dispatcher=dispatcher,
        pool_name=POOL_NAME,
        **wiring.kwargs(),
        **connection_kwargs,
    )
    return redis.Redis(connection_pool=pool)
