"""``async def`` callbacks: scheduled on the event loop, awaited by ``drain``.

    >>> import asyncio, redis.asyncio, redis_lifecycle as rl
    >>> async def main():
    ...     client = redis.asyncio.Redis(host="localhost", port=6379)
    ...     handle = rl.instrument(client)
    ...     async def on_disconnected(event):
    ...         await asyncio.sleep(0)          # e.g. an HTTP alert
    ...     handle.dispatcher.subscribe(rl.ConnectionDisconnectedEvent, on_disconnected)
    ...     await client.ping()
    ...     await client.aclose()
    ...     await handle.aclose()               # waits for on_disconnected
    >>> asyncio.run(main())  # doctest: +SKIP

Where callbacks run:

* A plain function runs inline, on the thread (and inside the task) whose
  Redis call caused the event, exactly as for sync clients.
* A callback that returns an awaitable (an ``async def`` function, or a plain
  function returning a coroutine) is called inline like any other; the
  awaitable it returns is wrapped in a task on the event loop running in that
  thread (``loop.create_task``), so the connection path never waits for it.
  Tasks start in the order the events happened; after that they interleave.
  Their exceptions go to the pool's
  :class:`~redis_lifecycle.CallbackErrorHandler`; with strategy ``"raise"``
  there is no caller to raise to, so the :class:`CallbackError` is kept and
  raised by the next :func:`drain` (``handle.drain()`` / ``handle.aclose()``).
* When no event loop runs in the emitting thread (an
  :class:`~redis_lifecycle.AsyncCallbackExecutor` worker, a sync client, an
  event fired from garbage collection after the loop stopped): if the pool's
  event loop is known and still running in another thread, the awaitable is
  handed to it with ``asyncio.run_coroutine_threadsafe``; otherwise it is
  closed without running and the error handler receives a
  :class:`RuntimeError` saying so (logged by default). Nothing waits and
  nothing is left pending.

Pending tasks are tracked per delivery (one per pool or handle), weakly, so a
forgotten handle leaks nothing; :func:`drain` waits for them. A task whose
loop was closed before it finished (``loop.close()`` without cancelling its
tasks) can never run: it is forgotten, and asyncio itself logs it as
destroyed while pending. ``asyncio.run`` cancels such tasks instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .errors import CallbackError

if TYPE_CHECKING:
    from ._delivery import Delivery
    from .events import LifecycleEvent

__all__ = ["drain", "pending", "remember_loop", "schedule"]

logger = logging.getLogger("redis_lifecycle")

#: Reentrant: a garbage collection can start at any allocation made under it
#: and run redis-py's ``__del__`` methods on this thread, whose hooks may
#: deliver an event to an ``async def`` callback and come back here.
_lock = threading.RLock()
# Keyed by delivery, weakly: entries go with their pool or handle.
_pending: weakref.WeakKeyDictionary[Delivery, set[Any]] = weakref.WeakKeyDictionary()
_failures: weakref.WeakKeyDictionary[Delivery, list[CallbackError]] = weakref.WeakKeyDictionary()
_loops: weakref.WeakKeyDictionary[Delivery, weakref.ref[asyncio.AbstractEventLoop]] = (
    weakref.WeakKeyDictionary()
)


def remember_loop(delivery: Delivery) -> None:
    """Note the event loop running now as ``delivery``'s (called by the
    asyncio hooks on their rare paths), for callbacks run off the loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    known = _loops.get(delivery)
    if known is None or known() is not loop:
        with _lock:
            _loops[delivery] = weakref.ref(loop)


def _callback_name(callback: Any) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))


def schedule(delivery: Delivery, awaitable: Any, event: LifecycleEvent, callback: Any) -> None:
    """Run ``awaitable`` (returned by ``callback(event)``) without waiting for it.

    Called by ``Delivery._schedule`` when a callback returned an awaitable;
    never raises. See the module docstring.
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        task = running.create_task(
            _run(weakref.ref(delivery), awaitable, event, callback),
            name=f"redis_lifecycle callback {_callback_name(callback)} on {event.type.value}",
        )
        _track(delivery, task)
        return
    known = _loops.get(delivery)
    loop = known() if known is not None else None
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            future = asyncio.run_coroutine_threadsafe(
                _run(weakref.ref(delivery), awaitable, event, callback), loop
            )
        except RuntimeError:  # the loop closed in between
            pass
        else:
            _track(delivery, future)
            return
    _discard_unrun(awaitable)
    message = (
        f"async callback {_callback_name(callback)} returned an awaitable for "
        f"{event.type.value!r} but no asyncio event loop is running in this thread "
        "(nor in the pool's); it was not run. Use a plain function for events of sync "
        "clients and events fired outside the loop."
    )
    _report(delivery, RuntimeError(message), event, callback, raise_later=False)


def _discard_unrun(awaitable: Any) -> None:
    """Close a coroutine that will never run (no 'never awaited' warning)."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            logger.debug("redis_lifecycle: closing an unrun awaitable failed", exc_info=True)


def _report(
    delivery: Delivery,
    error: BaseException,
    event: LifecycleEvent,
    callback: Any,
    *,
    raise_later: bool,
) -> None:
    callback_error = delivery.error_handler.handle(error, event, callback)
    if callback_error is None:
        return
    if raise_later:
        with _lock:
            _failures.setdefault(delivery, []).append(callback_error)
    else:
        cause = callback_error.__cause__ or callback_error
        logger.warning(
            "%s (not raised: no caller to raise it to)",
            callback_error,
            exc_info=(type(cause), cause, cause.__traceback__),
        )


async def _run(
    delivery_ref: weakref.ref[Delivery], awaitable: Any, event: LifecycleEvent, callback: Any
) -> None:
    # The delivery is held weakly: a pending task must not keep its pool's
    # delivery (the key of ``_pending``) alive, or nothing would ever free them.
    try:
        await awaitable
    except Exception as error:
        delivery = delivery_ref()
        if delivery is not None:
            _report(delivery, error, event, callback, raise_later=True)
        else:
            logger.warning(
                "redis_lifecycle async callback %s raised after its pool was gone",
                _callback_name(callback),
                exc_info=(type(error), error, error.__traceback__),
            )


def _track(delivery: Delivery, future: Any) -> None:
    with _lock:
        futures = _pending.setdefault(delivery, set())
        _prune(futures)
        futures.add(future)
    delivery_ref = weakref.ref(delivery)

    def done(finished: Any) -> None:
        owner = delivery_ref()
        if owner is None:
            return
        with _lock:
            futures = _pending.get(owner)
            if futures is not None:
                futures.discard(finished)

    future.add_done_callback(done)


def _prune(futures: set[Any]) -> None:
    """Forget tasks of closed event loops: they can never finish (asyncio reports
    such a task as 'destroyed but pending' when it is collected)."""
    for future in [f for f in futures if isinstance(f, asyncio.Future)]:
        if future.get_loop().is_closed():
            futures.discard(future)


def pending(delivery: Delivery) -> int:
    """How many ``async def`` callbacks of ``delivery`` can still finish."""
    with _lock:
        futures = _pending.get(delivery)
        if not futures:
            return 0
        _prune(futures)
        return len(futures)


async def drain(delivery: Delivery) -> None:
    """Wait until every ``async def`` callback started for ``delivery`` has
    finished, including those started meanwhile by the callbacks themselves.

    Tasks of another event loop cannot be awaited from this one and are left
    alone; a callback that calls ``drain`` does not wait for itself. Raises the
    first :class:`CallbackError` kept under strategy ``"raise"``, if any.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    seen: set[Any] = set()
    while True:
        with _lock:
            _prune(_pending.get(delivery, set()))
            futures = set(_pending.get(delivery, ())) - seen
        waitables: list[asyncio.Future[Any]] = []
        for future in futures:
            seen.add(future)
            if isinstance(future, concurrent.futures.Future):
                waitables.append(asyncio.wrap_future(future))
            elif future is not current and future.get_loop() is loop:
                waitables.append(future)
        if not waitables:
            break
        await asyncio.wait(waitables)
    with _lock:
        failures = _failures.pop(delivery, [])
    if failures:
        raise failures[0]
