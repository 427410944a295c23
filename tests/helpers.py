"""Small test helpers: a thread-safe event list and waiting with a deadline."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis_lifecycle as rl

E = TypeVar("E", bound=rl.LifecycleEvent)


class Recorder:
    """Collects events from any thread; ``wait_for`` polls with a deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[rl.LifecycleEvent] = []

    def __call__(self, event: rl.LifecycleEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls: type[E]) -> list[E]:
        with self._lock:
            return [e for e in self.events if isinstance(e, cls)]

    def exactly(self, cls: type[E]) -> list[E]:
        with self._lock:
            return [e for e in self.events if type(e) is cls]

    def types(self) -> list[str]:
        with self._lock:
            return [e.type.value for e in self.events]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def wait_for(
        self,
        cls: type[E],
        predicate: Callable[[E], bool] = lambda e: True,
        timeout: float = 5.0,
    ) -> E:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.exactly(cls):
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {cls.__name__} within {timeout}s; saw {self.types()}")
            time.sleep(0.005)


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll ``condition`` until truthy or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.005)


def checkout(pool: Any) -> Any:
    """``pool.get_connection()`` on every redis-py: 5.x requires a command name,
    6.0+ deprecates passing one. Detected on redis-py's class, because an
    instrumented pool's override takes ``*args``."""
    import inspect

    import redis.connection

    signature = inspect.signature(redis.connection.ConnectionPool.get_connection)
    parameter = signature.parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return pool.get_connection("PING")
    return pool.get_connection()


async def async_wait_for(
    recorder: Recorder,
    cls: type[E],
    predicate: Callable[[E], bool] = lambda e: True,
    timeout: float = 5.0,
) -> E:
    """``recorder.wait_for`` for asyncio tests: polls without blocking the loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        for event in recorder.exactly(cls):
            if predicate(event):
                return event
        if time.monotonic() > deadline:
            raise AssertionError(f"no {cls.__name__} within {timeout}s; saw {recorder.types()}")
        await asyncio.sleep(0.005)


async def async_checkout(pool: Any) -> Any:
    """``await pool.get_connection()`` on every redis-py (5.x requires a command name)."""
    import inspect

    import redis.asyncio.connection

    signature = inspect.signature(redis.asyncio.connection.ConnectionPool.get_connection)
    parameter = signature.parameters.get("command_name")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return await pool.get_connection("PING")
    return await pool.get_connection()


def leaked_patches_and_state() -> list[str]:
    """The patchers still installed and the pool/connection states still registered."""
    from redis_lifecycle._hooks import ClassPatcher, MethodPatcher
    from redis_lifecycle._hooks.state import CONNECTIONS, POOLS

    found = []
    seen: set[int] = set()  # a patcher imported by another module is one patcher
    for name, module in sorted(sys.modules.items()):
        if not name.startswith("redis_lifecycle._hooks") or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, (ClassPatcher, MethodPatcher)) and id(value) not in seen:
                seen.add(id(value))
                if value.installed:
                    found.append(f"{name}.{attribute} still installed")
    found += [f"pool state {state.name!r} still registered" for state in list(POOLS.values())]
    found += [
        f"connection state {state.origin!r} still registered"
        for state in list(CONNECTIONS.values())
        if state.pool_state is not None
    ]
    return found


def wait_for_threads_to_end(before: set[threading.Thread]) -> list[threading.Thread]:
    """redis_lifecycle's executor threads started by the test and still alive
    after a deadline (a shut-down executor's workers finish on their own)."""
    ours = [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("redis_lifecycle-callbacks-")
    ]
    for thread in ours:
        thread.join(timeout=5.0)
    return [thread for thread in ours if thread.is_alive()]
