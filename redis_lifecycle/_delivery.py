"""How one pool's events reach their callbacks.

A :class:`Delivery` joins four things chosen per pool or handle: who listens
(the :class:`~redis_lifecycle.EventDispatcher`), where callbacks run (inline or
an :class:`~redis_lifecycle.AsyncCallbackExecutor`), what a failing callback
does (:class:`~redis_lifecycle.CallbackErrorHandler`) and what is measured
(:class:`~redis_lifecycle.Instrumentation`).

Hooks ask ``event_cls in delivery.wanted`` before they build an event, so an
event nobody listens to costs one set lookup.

Each event class is delivered by a function of its own (:func:`emitter`),
built after each :meth:`~Delivery.refresh` with that class's callbacks
resolved. The hooks call the two per-command ones directly
(:attr:`Delivery.emit_acquired`, :attr:`Delivery.emit_released`).

Per-command *figures* (checkout waits, hold times) take no event at all: the
hooks append them to the pool's :class:`~redis_lifecycle._accumulate.CommandFigures`,
which hands them in batches to :attr:`Delivery.sinks` (the metrics readers:
``Instrumentation``, the exporters). So a pool measured but not listened to
builds no per-command event.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._accumulate import Sink
from ._histogram import FLUSH_AT
from .errors import CallbackError, CallbackErrorHandler
from .events import (
    LifecycleEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionReleasedEvent,
    PoolExhaustedEvent,
)

if TYPE_CHECKING:
    from ._accumulate import CommandFigures
    from .dispatcher import EventDispatcher, Subscription
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

__all__ = ["ORDER_TIMEOUT", "Delivery", "default_delivery", "emitter"]

#: How long, by default, an event may wait for an earlier event of its
#: connection to be delivered first, before it goes regardless of order
#: (the executor's ``order_timeout``; _hooks/sync.py's ``await_release``).
ORDER_TIMEOUT = 1.0

#: Events built on every command: their hooks are skipped entirely when none
#: of them is wanted.
PER_COMMAND_EVENTS = frozenset({PoolConnectionAcquiredEvent, PoolConnectionReleasedEvent})


class Delivery:
    """Delivers events for one pool (or handle); see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_emitters",
        "dispatcher",
        "emit_acquired",
        "emit_released",
        "error_handler",
        "executor",
        "figures",
        "instrumentation",
        "leak_threshold",
        "sinks",
        "wanted",
        "wants_per_command",
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
        leak_threshold: float | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        #: ``leak_detection`` in seconds, or ``None`` (off): the checkout hook
        #: then records each checkout's stack (_hooks/leaks.py).
        self.leak_threshold = leak_threshold
        self.executor = executor
        self.error_handler = error_handler or CallbackErrorHandler()
        self.instrumentation = instrumentation
        self.wanted: frozenset[type[LifecycleEvent]] = frozenset()
        #: Whether any per-command event (acquired, released, exhausted) is
        #: wanted, or leak detection is on: the checkout and release hooks run.
        self.wants_per_command = False
        #: Whether a failed checkout must be examined (pool_exhausted wanted).
        self.watch_exhaustion = False
        #: Called with no argument after each refresh: the pools that install
        #: their per-command patches only while this delivery is hot.
        self.watchers: list[Callable[[], None]] = []
        #: One emitter per event class (see :func:`emitter`); the hooks call the
        #: two per-command ones directly.
        self._emitters: dict[type[LifecycleEvent], Callable[[Any], None]] = {}
        self.emit_acquired: Callable[[Any], None] = _ignore
        self.emit_released: Callable[[Any], None] = _ignore
        #: Who reads the per-command figures (see _accumulate.py): the
        #: instrumentation's and the dispatcher's sinks. Empty: the hooks
        #: record no figure.
        self.sinks: tuple[Sink, ...] = ()
        #: The figures of the pools this delivery serves (their PoolStates
        #: add them), flushed by the readers before they read.
        self.figures: weakref.WeakSet[CommandFigures] = weakref.WeakSet()
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
        sinks = list(self.dispatcher._sinks)
        if self.instrumentation is not None:
            sinks.append(self.instrumentation._take)
        old_sinks = self.sinks
        if old_sinks and old_sinks != tuple(sinks):
            # What the old sinks are owed: flushed to them before they change.
            for figures in list(self.figures):
                figures.flush(old_sinks)
        self.sinks = tuple(sinks)
        self.wants_per_command = (
            not PER_COMMAND_EVENTS.isdisjoint(wanted)
            or self.leak_threshold is not None
            or bool(sinks)
        )
        self.watch_exhaustion = PoolExhaustedEvent in wanted
        emitters: dict[type[LifecycleEvent], Callable[[Any], None]] = {
            cls: emitter(self, cls) for cls in PER_COMMAND_EVENTS
        }
        self._emitters = emitters
        self.emit_acquired = emitters[PoolConnectionAcquiredEvent]
        self.emit_released = emitters[PoolConnectionReleasedEvent]
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

        The work is done by the event class's emitter (see :func:`emitter`),
        built on first use after each refresh.
        """
        try:
            deliver = self._emitters[type(event)]
        except KeyError:
            deliver = self._emitters[type(event)] = emitter(self, type(event))
        deliver(event)

    def run_counted(
        self, event: LifecycleEvent, subscriptions: tuple[Subscription, ...]
    ) -> tuple[int, CallbackError | None]:
        """Run the callbacks for ``event`` here, as :meth:`emit` does inline,
        and return how many raised (for the executor's ``failed`` count,
        whatever the strategy) with the first :class:`CallbackError` to raise.
        Its loops are those of the inline emitters (:func:`emitter`), plus
        the count: the emitters keep their own copy so that inline delivery
        costs no extra call per event, and the executor runs a copy
        specialised per event class (``AsyncCallbackExecutor._runner``)."""
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
        stats = instrumentation._callbacks[event.type]
        histogram = stats.histogram
        slow_after = instrumentation._slow_after
        for subscription in subscriptions:
            callback = subscription.callback
            started = perf_counter()
            try:
                result = callback(event)
            except Exception as exc:
                elapsed = perf_counter() - started
                histogram.pending.append(elapsed)
                if elapsed > slow_after:
                    instrumentation._callback_slow(stats, event, callback, elapsed)
                instrumentation._callback_failed(stats)
                failures += 1
                error = self.error_handler.handle(exc, event, callback)
                if error is not None and first_error is None:
                    first_error = error
                continue
            elapsed = perf_counter() - started
            histogram.pending.append(elapsed)
            if elapsed > slow_after:
                instrumentation._callback_slow(stats, event, callback, elapsed)
            if result is not None and hasattr(result, "__await__"):
                self._schedule(result, event, callback)
        if len(histogram.pending) >= FLUSH_AT:
            histogram.flush()
        return failures, first_error

    def _schedule(self, awaitable: Any, event: LifecycleEvent, callback: Any) -> None:
        """Run an ``async def`` callback's coroutine on the running event loop."""
        from ._coroutine_callbacks import schedule  # type: ignore[import-not-found, unused-ignore]

        schedule(self, awaitable, event, callback)

    def __repr__(self) -> str:
        return (
            f"<Delivery dispatcher={self.dispatcher!r} executor={self.executor!r}"
            f" error_handler={self.error_handler!r}>"
        )


def emitter(delivery: Delivery, event_cls: type[LifecycleEvent]) -> Callable[[Any], None]:
    """What :meth:`Delivery.emit` does for events of exactly ``event_cls``,
    specialised with what ``delivery`` has now: the callbacks resolved once
    (not per event), and for the rare events their pool metrics recorded
    (``Instrumentation._observe``; the per-command figures are the hooks'),
    before the callbacks run inline or are handed to the executor.
    Rebuilt by every refresh, which follows every subscription change;
    :attr:`Delivery.emit_acquired` and ``emit_released`` are two.

    The functions hold no strong reference to ``delivery``, which holds them.
    """
    subscriptions = delivery.dispatcher.listeners(event_cls)
    callbacks = tuple(s.callback for s in subscriptions)
    instrumentation = delivery.instrumentation
    executor = delivery.executor
    error_handler = delivery.error_handler
    delivery_ref = weakref.ref(delivery)

    def schedule(result: Any, event: Any, callback: Any) -> None:
        """An ``async def`` callback's coroutine: run it on the event loop."""
        owner = delivery_ref()
        if owner is not None:
            owner._schedule(result, event, callback)

    if executor is not None:
        # What a worker runs per event: these callbacks, timed (see
        # AsyncCallbackExecutor._runner); None when there are none.
        run = executor._runner(delivery, event_cls, subscriptions) if subscriptions else None
        submit = executor._submit

    if executor is not None and instrumentation is None:
        if run is None:
            return _ignore

        def emit_queued(event: Any) -> None:
            submit(run, event)

        return emit_queued

    if instrumentation is None:
        if not callbacks:
            return _ignore

        def emit_unmeasured(event: Any) -> None:
            first_error: CallbackError | None = None
            for callback in callbacks:
                try:
                    result = callback(event)
                except Exception as exc:
                    error = error_handler.handle(exc, event, callback)
                    if error is not None and first_error is None:
                        first_error = error
                    continue
                if result is not None and hasattr(result, "__await__"):
                    schedule(result, event, callback)
            if first_error is not None:
                raise first_error

        return emit_unmeasured

    # The per-command figures are recorded by the hooks (_accumulate.py),
    # whether or not these events are built: only the rare events are
    # observed here.
    observe = None if event_cls in PER_COMMAND_EVENTS else instrumentation._observe
    # Looked up once here, not per event: the records outlive every reset.
    stats = instrumentation._callbacks[event_cls.type]
    histogram = stats.histogram
    timings = histogram.pending  # never replaced (see LogHistogram)
    slow_after = instrumentation._slow_after  # infinity when slow_callback is off

    def emit_measured(event: Any) -> None:
        if observe is not None:
            observe(event)
        if executor is not None:  # the executor's workers time the callbacks
            if run is not None:
                submit(run, event)
            return
        if not callbacks:
            return
        # Callback timings go straight into the event name's histogram.
        first_error: CallbackError | None = None
        for callback in callbacks:
            started = perf_counter()
            try:
                result = callback(event)
            except Exception as exc:
                elapsed = perf_counter() - started
                timings.append(elapsed)
                if elapsed > slow_after:
                    instrumentation._callback_slow(stats, event, callback, elapsed)
                instrumentation._callback_failed(stats)
                error = error_handler.handle(exc, event, callback)
                if error is not None and first_error is None:
                    first_error = error
                continue
            elapsed = perf_counter() - started
            timings.append(elapsed)
            if elapsed > slow_after:
                instrumentation._callback_slow(stats, event, callback, elapsed)
            if result is not None and hasattr(result, "__await__"):
                schedule(result, event, callback)
        if len(timings) >= FLUSH_AT:
            histogram.flush()
        if first_error is not None:
            raise first_error

    return emit_measured


def _ignore(event: Any) -> None:
    """Nobody listens and nothing is measured."""


_defaults: weakref.WeakKeyDictionary[EventDispatcher, Delivery] = weakref.WeakKeyDictionary()


def default_delivery(dispatcher: EventDispatcher) -> Delivery:
    """Inline delivery with the default error handler, for ``dispatcher.emit``."""
    delivery = _defaults.get(dispatcher)
    if delivery is None:
        delivery = _defaults.setdefault(dispatcher, Delivery(dispatcher))
    return delivery
