"""Leak detection: the checkout's stack, and the watchdog that reports
connections held longer than a pool's ``leak_detection`` threshold.

At each checkout of a pool whose delivery has ``leak_threshold`` set, the
checkout hook stores a record on the connection's state
(``ConnState.leak``): a list ``[frames, thread ident, task name, reported,
loop]``. ``frames`` holds, innermost first, each frame's ``(code object,
f_lasti)``, the offset of the call it is in: no frame object and no local is
kept, and nothing is formatted until a leak is reported (code
objects are constants; ``f_lineno`` would cost a line-table scan per frame).

The watchdog scans the checked-out connections: a daemon thread for sync
pools (one per process, started by the first such checkout, ending once no
attached sync pool has leak detection), a timer on each event loop for
asyncio pools (started by the first such checkout on that loop). It fires
:class:`~redis_lifecycle.PoolConnectionLeakEvent` once per checkout and logs
a warning; the release of a reported checkout logs that it came back. After
``os.fork()`` the child starts afresh: no watchdog, no record of the
parent's checkouts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from threading import get_ident
from time import perf_counter, time
from typing import Any

import redis

from ..events import PoolConnectionLeakEvent
from . import emit_quietly, internal_error
from . import state as _state

__all__ = [
    "format_stack",
    "leak_returned",
    "record_async",
    "record_sync",
    "scan",
    "start_watchdog",
    "stop_unused",
    "watchdog_running",
]

#: Leak warnings and "returned" notes go to their own logger (a child of
#: ``redis_lifecycle``), so that they can be routed or silenced on their own.
logger = logging.getLogger("redis_lifecycle.leaks")

_getframe = sys._getframe

#: Where frames are left out of a reported stack: this library, redis-py,
#: and the machinery that starts threads and runs event loops (never the
#: code that took a connection).
_HIDDEN_PREFIXES: tuple[str, ...] = (
    *(
        os.path.dirname(os.path.abspath(path)) + os.sep
        for path in (
            os.path.dirname(os.path.abspath(__file__)),  # redis_lifecycle/
            redis.__file__ or "",
            asyncio.__file__ or "",
        )
    ),
    os.path.abspath(threading.__file__),
    os.path.join(os.path.dirname(os.path.abspath(threading.__file__)), "concurrent", ""),
)

_ASYNCIO_PREFIX = _HIDDEN_PREFIXES[2]

#: How many of a leak's innermost stack lines its log warning shows.
LOGGED_FRAMES = 10

#: The longest pause of the watchdog between two scans, in seconds.
MAX_INTERVAL = 1.0


# --- at checkout (hot path: only with leak detection on) ------------------


def record_sync() -> list[Any]:
    """The record of a sync checkout made by the caller (the sync checkout
    hook inlines the same)."""
    frame: Any = _getframe(1)
    frames: list[Any] = []
    while frame is not None:
        frames.append((frame.f_code, frame.f_lasti))
        frame = frame.f_back
    if _watchdog is None:
        start_watchdog()
    return [frames, get_ident(), None, False, None]


def record_async() -> list[Any]:
    """The record of an asyncio checkout, from inside the checkout coroutine."""
    frame: Any = _getframe(1)
    frames: list[Any] = []
    while frame is not None:
        frames.append((frame.f_code, frame.f_lasti))
        frame = frame.f_back
    loop = asyncio.get_running_loop()
    if loop not in _timers:
        _start_timer(loop)
    task = asyncio.current_task(loop)
    name = task.get_name() if task is not None else None
    return [frames, get_ident(), name, False, loop]


def leak_returned(conn_state: Any, record: list[Any], held_time: float) -> None:
    """A reported checkout came back: say so in the log (as HikariCP does)."""
    origin = conn_state.origin
    logger.info(
        "redis_lifecycle: previously reported leaked connection %s of pool %r was returned"
        " after %.3fs",
        origin.connection_id,
        origin.pool_name,
        held_time,
    )


# --- formatting -----------------------------------------------------------


def _line(code: Any, lasti: int) -> int:
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return int(line)
    return int(code.co_firstlineno)


def _hidden(filename: str) -> bool:
    # "<frozen runpy>" and the like: the interpreter starting a module
    return filename.startswith(_HIDDEN_PREFIXES) or filename.startswith("<frozen ")


def format_stack(frames: list[Any], task: bool = False) -> tuple[str, ...]:
    """``"path:line in function"`` for each frame of a record, outermost
    first, without the hidden frames (see :data:`_HIDDEN_PREFIXES`). For a
    task (``task=True``), only the task's own chain of coroutines: what is
    below the event loop running it is not the task's doing."""
    end = len(frames)
    if task:
        for index, (code, _) in enumerate(frames):
            if code.co_filename.startswith(_ASYNCIO_PREFIX):
                end = index
                break
    lines = []
    for code, lasti in reversed(frames[:end]):
        filename = code.co_filename
        if _hidden(filename):
            continue
        lines.append(f"{filename}:{_line(code, lasti)} in {code.co_name}")
    return tuple(lines)


# --- the scan ---------------------------------------------------------------


def _threshold(pool_state: Any) -> float | None:
    if pool_state is None:
        return None
    threshold: float | None = pool_state.delivery.leak_threshold
    return threshold


def _watched(is_async: bool) -> list[Any]:
    """Attached pools of that flavour with leak detection on: those in
    ``POOLS`` and those known only by their connections (an asyncio cluster's
    nodes, which are not pool objects)."""
    states = {id(state): state for state in list(_state.POOLS.values())}
    for conn_state in list(_state.CONNECTIONS.values()):
        pool_state = conn_state.pool_state
        if pool_state is not None:
            states.setdefault(id(pool_state), pool_state)
    return [
        state
        for state in states.values()
        if state.is_async is is_async and state.delivery.leak_threshold is not None
    ]


def _interval(pools: Iterable[Any]) -> float:
    thresholds: list[float] = [state.delivery.leak_threshold for state in pools]
    return max(min([MAX_INTERVAL, *(t / 4 for t in thresholds)]), 0.001)


def scan(is_async: bool, loop: Any = None) -> int:
    """Report every checkout of that flavour (and loop) held past its pool's
    threshold and not reported yet; returns how many were reported."""
    now = perf_counter()
    reported = 0
    names: dict[int, str] | None = None
    for conn_state in list(_state.CONNECTIONS.values()):
        record = conn_state.leak
        checked_out_at = conn_state.checked_out_at
        if record is None or checked_out_at is None or record[3]:
            continue
        pool_state = conn_state.pool_state
        threshold = _threshold(pool_state)
        if threshold is None or pool_state is None or pool_state.is_async is not is_async:
            continue
        if is_async and record[4] is not loop:
            continue
        held = now - checked_out_at
        if held < threshold:
            continue
        record[3] = True
        if conn_state.leak is not record:  # returned meanwhile
            continue
        if names is None:
            names = {thread.ident or 0: thread.name for thread in threading.enumerate()}
        try:
            _report(conn_state, pool_state, record, held, threshold, names.get(record[1]))
        except Exception:
            internal_error("reporting a leaked connection")
        reported += 1
    return reported


def _report(
    conn_state: Any,
    pool_state: Any,
    record: list[Any],
    held: float,
    threshold: float,
    thread_name: str | None,
) -> None:
    stack = format_stack(record[0], task=record[4] is not None)
    origin = conn_state.origin
    holder = f"task {record[2]!r}" if record[2] is not None else f"thread {thread_name!r}"
    shown = list(stack[-LOGGED_FRAMES:]) or ["(no frame outside redis-py)"]
    if len(stack) > LOGGED_FRAMES:
        shown.insert(0, f"... {len(stack) - LOGGED_FRAMES} outer frames (in the event's stack)")
    logger.warning(
        "redis_lifecycle: connection %s of pool %r has been checked out for %.3fs"
        " (leak_detection=%gs) by %s and not returned; checked out at"
        " (most recent call last):\n  %s",
        origin.connection_id,
        origin.pool_name,
        held,
        threshold,
        holder,
        "\n  ".join(shown),
    )
    delivery = pool_state.delivery
    if PoolConnectionLeakEvent in delivery.wanted:
        emit_quietly(
            delivery,
            PoolConnectionLeakEvent(time(), origin, held, threshold, thread_name, record[2], stack),
        )


# --- the sync watchdog: one daemon thread ---------------------------------

_lock = threading.Lock()
_watchdog: threading.Thread | None = None
_wake = threading.Event()


def start_watchdog() -> None:
    """Start the sync watchdog thread unless it runs."""
    global _watchdog
    with _lock:
        if _watchdog is not None:
            return
        thread = threading.Thread(target=_run, name="redis_lifecycle-leak-watchdog", daemon=True)
        _watchdog = thread
        thread.start()


def _run() -> None:
    global _watchdog
    me = threading.current_thread()
    while True:
        pools = _watched(False)
        if not pools:
            with _lock:
                if _watchdog is me:
                    _watchdog = None
            return
        try:
            scan(False)
        except Exception:
            internal_error("the leak watchdog")
        _wake.wait(_interval(pools))
        _wake.clear()


def watchdog_running() -> bool:
    """Whether the sync watchdog thread or any loop's timer is running."""
    watchdog = _watchdog
    return (watchdog is not None and watchdog.is_alive()) or bool(_timers)


# --- the asyncio watchdog: a timer per event loop ---------------------------

_timers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _start_timer(loop: Any) -> None:
    _timers[loop] = loop.call_later(_interval(_watched(True)), _tick, loop)


def _tick(loop: Any) -> None:
    pools = _watched(True)
    if not pools:
        _timers.pop(loop, None)
        return
    try:
        scan(True, loop)
    except Exception:
        internal_error("the leak watchdog")
    _timers[loop] = loop.call_later(_interval(pools), _tick, loop)


def stop_unused() -> None:
    """After a pool is detached: stop what no attached pool needs any more
    (the thread at once, each loop's timer on its own thread)."""
    if _watchdog is not None:
        _wake.set()
    if _timers and not _watched(True):
        for loop, handle in list(_timers.items()):
            _timers.pop(loop, None)
            try:
                if loop.is_closed():
                    continue
                loop.call_soon_threadsafe(handle.cancel)
            except Exception:  # a loop closing meanwhile: its timer goes with it
                pass


def _after_fork_in_child() -> None:
    global _watchdog, _lock, _wake
    _watchdog = None
    _lock = threading.Lock()
    _wake = threading.Event()
    _timers.clear()
    for conn_state in list(_state.CONNECTIONS.values()):
        conn_state.leak = None


os.register_at_fork(after_in_child=_after_fork_in_child)
