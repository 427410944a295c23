"""How one pool's events reach their callbacks.

A :class:`Delivery` joins four things chosen per pool or handle: who listens
(the :class:`~redis_lifecycle.EventDispatcher`), where callbacks run (inline or
an :class:`~redis_lifecycle.AsyncCallbackExecutor`), what a failing callback
does (:class:`~redis_lifecycle.CallbackErrorHandler`) and what is measured
(:class:`~redis_lifecycle.Instrumentation`).

Hooks ask ``event_cls in delivery.wanted`` before they build an event, so an
event nobody listens to costs one set lookup.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._histogram import FLUSH_AT
from .errors import CallbackError, CallbackErrorHandler
from .events import (
    LifecycleEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionReleasedEvent,
    PoolExhaustedEvent,
)

if TYPE_CHECKING:
    from .dispatcher import EventDispatcher, Subscription
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

__all__ = ["Delivery", "default_delivery"]

#: Events built on every command: their hooks are skipped entirely when none
#: of them is wanted.
PER_COMMAND_EVENTS = frozenset({PoolConnectionAcquiredEvent, PoolConnectionReleasedEvent})


class Delivery:
    """Delivers events for one pool (or handle); see the module docstring."""

    __slots__ = (
        "__weakref__",
        "dispatcher",
        "error_handler",
        "executor",
        "hot",
        "instrumentation",
        "wanted",
        "watch_exhaustion",
        "watchers",
    )

    def __init__(
        self,
        dispatcher: EventDispatcher,
        *,
        executor: AsyncCallbackExecutor | None = None,
        error_handler: CallbackErrorHandler | None = None,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.executor = executor
        self.error_handler = error_handler or CallbackErrorHandler()
        self.instrumentation = instrumentation
        self.wanted: frozenset[type[LifecycleEvent]] = frozenset()
        #: Whether any per-command event (acquired, released, exhausted) is wanted.
        self.hot = False
        #: Whether a failed checkout must be examined (pool_exhausted wanted).
        self.watch_exhaustion = False
        #: Called with no argument after each refresh: the pools that install
        #: their per-command patches only while this delivery is hot.
        self.watchers: list[Callable[[], None]] = []
        dispatcher._attach(self)
        if instrumentation is not None:
            instrumentation._attach(self)
        self.refresh()

    def refresh(self) -> None:
        """Recompute :attr:`wanted` after subscriptions changed."""
        wanted = set(self.dispatcher._subscribed_classes())
        if self.instrumentation is not None:
            wanted |= self.instrumentation._wanted
        self.wanted = frozenset(wanted)
        self.hot = not PER_COMMAND_EVENTS.isdisjoint(wanted)
        self.watch_exhaustion = PoolExhaustedEvent in wanted
        for watcher in list(self.watchers):
            watcher()

    def emit(self, event: LifecycleEvent) -> None:
        """Deliver ``event``: record its pool metrics here, then run its
        callbacks inline or hand them to the executor.

        Raises :class:`CallbackError` only under strategy ``"raise"`` with
        inline callbacks (no executor, or one already shut down), after every
        callback ran; the hooks decide when the pool is consistent enough to
        let it through. With a running executor, failures are collected and
        raised by its ``shutdown()``.

        This runs twice per command when per-command events are wanted, so
        the dispatcher lookup, the metrics and the inline callback loop are
        all kept in this one frame (each call saved is measured in
        ``benchmarks/instructions.py``).
        """
        instrumentation = self.instrumentation
        stats = instrumentation._observe(event) if instrumentation is not None else None
        cls = type(event)
        try:
            subscriptions = self.dispatcher._resolved[cls]
        except KeyError:
            subscriptions = self.dispatcher.listeners(cls)
        if not subscriptions:
            return
        executor = self.executor
        if executor is not None and executor._submit(self, event, subscriptions):
            return
        first_error: CallbackError | None = None
        if stats is None:
            for subscription in subscriptions:
                callback = subscription.callback
                try:
                    result = callback(event)
                except Exception as exc:
                    error = self.error_handler.handle(exc, event, callback)
                    if error is not None and first_error is None:
                        first_error = error
                    continue
                if result is not None and hasattr(result, "__await__"):
                    self._schedule(result, event, callback)
        else:
            # Callback timings go straight into this thread's histogram, which
            # _observe returned: no second thread-local lookup. Its buffer is
            # read after each callback: one that emits the same event type
            # (a command run from a callback) may have flushed it.
            histogram = stats.histogram
            for subscription in subscriptions:
                callback = subscription.callback
                started = perf_counter()
                try:
                    result = callback(event)
                except Exception as exc:
                    histogram.pending.append(perf_counter() - started)
                    stats.errors += 1
                    error = self.error_handler.handle(exc, event, callback)
                    if error is not None and first_error is None:
                        first_error = error
                    continue
                histogram.pending.append(perf_counter() - started)
                if result is not None and hasattr(result, "__await__"):
                    self._schedule(result, event, callback)
            if len(histogram.pending) >= FLUSH_AT:
                histogram.flush()
        if first_error is not None:
            raise first_error

    def run_counted(
        self, event: LifecycleEvent, subscriptions: tuple[Subscription, ...]
    ) -> tuple[int, CallbackError | None]:
        """Run the callbacks for ``event`` here, as :meth:`emit` does inline,
        and return how many raised (for the executor's ``failed`` count,
        whatever the strategy) with the first :class:`CallbackError` to raise.
        Used by the executor's workers and its ``caller_runs`` fallback.
        Its loops are :meth:`emit`'s, plus the count: emit keeps its own
        copy so that inline delivery costs no extra call per event."""
        instrumentation = self.instrumentation
        failures = 0
        first_error: CallbackError | None = None
        if instrumentation is None:
            for subscription in subscriptions:
                callback = subscription.callback
                try:
                    result = callback(event)
                except Exception as exc:
                    failures += 1
                    error = self.error_handler.handle(exc, event, callback)
                    if error is not None and first_error is None:
                        first_error = error
                    continue
                if result is not None and hasattr(result, "__await__"):
                    self._schedule(result, event, callback)
            return failures, first_error
        # As in emit: this thread's stats for the event, looked up once.
        stats = instrumentation._callback_stats(event.type)
        histogram = stats.histogram
        for subscription in subscriptions:
            callback = subscription.callback
            started = perf_counter()
            try:
                result = callback(event)
            except Exception as exc:
                histogram.pending.append(perf_counter() - started)
                stats.errors += 1
                failures += 1
                error = self.error_handler.handle(exc, event, callback)
                if error is not None and first_error is None:
                    first_error = error
                continue
            histogram.pending.append(perf_counter() - started)
            if result is not None and hasattr(result, "__await__"):
                self._schedule(result, event, callback)
        if len(histogram.pending) >= FLUSH_AT:
            histogram.flush()
        return failures, first_error

    def _schedule(self, awaitable: Any, event: LifecycleEvent, callback: Any) -> None:
        """Run an ``async def`` callback's coroutine on the running event loop."""
        from ._async_callbacks import schedule  # type: ignore[import-not-found, unused-ignore]

        schedule(self, awaitable, event, callback)

    def __repr__(self) -> str:
        return (
            f"<Delivery dispatcher={self.dispatcher!r} executor={self.executor!r}"
            f" error_handler={self.error_handler!r}>"
        )


_defaults: weakref.WeakKeyDictionary[EventDispatcher, Delivery] = weakref.WeakKeyDictionary()


def default_delivery(dispatcher: EventDispatcher) -> Delivery:
    """Inline delivery with the default error handler, for ``dispatcher.emit``."""
    delivery = _defaults.get(dispatcher)
    if delivery is None:
        delivery = _defaults.setdefault(dispatcher, Delivery(dispatcher))
    return delivery
