"""Run callbacks on worker threads, off the thread of the Redis command.

    >>> import redis, redis_lifecycle as rl
    >>> with rl.AsyncCallbackExecutor(pool_size=2, queue_size=1000) as executor:
    ...     pool = rl.LifecycleConnectionPool(host="localhost", async_callbacks=executor)
    ...     client = redis.Redis(connection_pool=pool)
    ...     _ = pool.register_connection_callback("connection_acquired", print)
    >>> executor.stats()["dropped"]
    0

Callbacks given an :class:`AsyncCallbackExecutor` (``async_callbacks=``) run
on its worker threads; without one they run inline. Pool metrics
(:class:`~redis_lifecycle.Instrumentation`) are still recorded on the
emitting thread; callback timings on the thread that runs the callback.

**Order.** Events are sharded by connection (pool-wide events by pool name)
onto one queue per worker, so the callbacks of one connection's events run
one at a time, in the order the events happened. That holds under
``caller_runs`` too: an event that overflows first waits (at most
``order_timeout`` seconds, default 1) until its worker has run what was
queued before it, then runs on the emitting thread. Only if that wait times
out (a callback stuck, say, or one waiting for a lock the emitting thread
holds) does it run at once, possibly ahead of its connection's queued events.
A connection goes back into its pool before its ``connection_released``
is handed over; a thread that checks it out in that instant waits (again at
most ``order_timeout``) until it is, so its ``connection_acquired`` follows.

**Overflow.** ``queue_size`` bounds the events waiting in all queues
together (events being run do not count). When it is full:
``"caller_runs"`` (the default) runs the callbacks on the emitting thread,
so nothing is lost; ``"block"`` waits for room, at most ``block_timeout``
seconds (``None``: no limit), then drops the event and counts it; ``"drop"``
drops it at once and counts it. A callback that itself emits while the
queue is full runs that event inline rather than wait on its own workers.

**Errors** go to the pool's :class:`~redis_lifecycle.CallbackErrorHandler`.
With strategy ``"raise"`` they cannot reach the Redis command (it has moved
on), so they are collected and :meth:`~AsyncCallbackExecutor.shutdown`
raises them, also for events that overflowed under ``caller_runs``.

**Shutdown.** :meth:`~AsyncCallbackExecutor.shutdown` stops intake, runs
what is queued and reports whether everything ran in time. A shut-down
executor is refused where one is given: ``instrument()``,
``instrument_all()`` and the lifecycle pools raise :class:`RuntimeError`.
Events that still reach it (from a client instrumented before the shutdown)
run inline on the emitting thread, so none is lost (counted in
``ran_inline``; under ``"raise"`` their failures raise there, as without an
executor), and the first of them logs a warning on the ``redis_lifecycle``
logger, once per executor, naming the event. Close or uninstrument the
clients before shutting down their executor. Leaving a ``with`` block shuts
down; so does interpreter exit (up to 5 s, without that warning).

**Fork.** In a child process the executor starts fresh workers with empty
queues and zeroed stats: events queued at the fork belong to the parent,
which runs them.

**Cost.** The hand-off is batched. Each worker has a ``deque``: the
emitting thread appends the event and its callbacks (resolved once per event
class, not per event) and the worker takes whatever has piled up in one
batch. The emitting thread takes no lock and touches no counter: a bounded
queue is those deques plus a shared pool of free slots (a ``deque`` popped
and appended, both atomic), and the counts are kept by the workers and on
the rare paths, merged by :meth:`~AsyncCallbackExecutor.stats`. A worker is
woken only when it was idle, by releasing a lock it sleeps on (one call),
never per event: after a batch it lingers 5 ms and takes what came
meanwhile, and it goes idle only when a linger brought nothing. Each wake-up
is a thread switch and a GIL hand-off, dearer than a no-op callback, so a
steady stream of events costs one wake-up per 5 ms, not one per event; a
callback may run up to 5 ms after its event. A full queue, a ``caller_runs``
overflow waiting for order, or ``shutdown()`` cuts the linger short.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections import deque
from time import monotonic, perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ._delivery import ORDER_TIMEOUT
from ._histogram import FLUSH_AT
from .errors import CallbackError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._delivery import Delivery
    from .dispatcher import Subscription
    from .events import LifecycleEvent

    #: What a worker runs for one event: its callbacks, timed as inline;
    #: ``None`` when none raised, else (how many raised, the first
    #: CallbackError to raise). See :meth:`AsyncCallbackExecutor._runner`.
    _Run = Callable[[LifecycleEvent], tuple[int, CallbackError | None] | None]

__all__ = ["AsyncCallbackExecutor", "ExecutorStats", "OverflowPolicy"]

logger = logging.getLogger("redis_lifecycle")

OverflowPolicy = Literal["caller_runs", "block", "drop"]
_POLICIES: tuple[str, ...] = ("caller_runs", "block", "drop")
#: Failures kept for :meth:`AsyncCallbackExecutor.shutdown` to raise; more are
#: counted but not kept, so memory stays bounded.
_MAX_KEPT_ERRORS = 100
_STOP: Any = object()
#: See ``_work``: the latency a callback may gain, traded for one wake-up per
#: burst instead of one per event.
_LINGER = 0.005
# A worker's state, as submitters see it: any value but _AWAKE asks them to act.
_AWAKE = 0  # running events or lingering: what is appended now, it will find
_IDLE = 1  # asleep until woken: the next submitter wakes it
_EXITED = 2  # gone (shutdown): a submitter runs what it queued itself
# Outcomes of an overflow.
_DROPPED = object()
_SLOT_TAKEN = object()
_RUN_HERE = object()
_SHUT_DOWN = object()

#: A queued item: (run, event); (None, marker) for a caller_runs marker or
#: the stop marker, which are not events.
_Item = tuple[Any, Any]


class ExecutorStats(dict[str, int]):
    """What :meth:`AsyncCallbackExecutor.stats` returns (a ``dict``).

    Keys: ``submitted`` (events handed to the executor), ``completed``
    (events whose callbacks all ran, on a worker or inline), ``failed`` (of
    those, events where at least one callback raised), ``dropped``
    (overflow under ``"drop"`` or a timed-out ``"block"``), ``queued``
    (waiting now), ``running`` (workers busy with events now), ``ran_inline``
    (of ``completed``, run on the emitting thread: overflow under
    ``"caller_runs"`` or after shutdown). Once the executor is idle,
    ``completed + dropped == submitted``.
    """


class _Counts:
    """One emitting thread's counters of what did not go to a worker (only
    that thread writes them). Queued events are counted by the workers that
    take them (``_Worker.taken``), so queuing one touches no counter."""

    __slots__ = ("dropped", "failed", "inline", "thread", "worker")

    def __init__(self, thread: threading.Thread | None, worker: bool = False) -> None:
        self.thread = thread
        self.worker = worker
        self.dropped = 0
        self.inline = 0
        self.failed = 0

    def add(self, other: _Counts) -> None:
        self.dropped += other.dropped
        self.inline += other.inline
        self.failed += other.failed


class _Worker:
    """One worker thread and its queue (only the worker writes its counters).

    The queue is a ``deque``: submitters append, the worker pops from the
    left, both atomic, neither takes a lock. The worker sleeps on ``wake``, a
    plain lock it holds while awake: a submitter that finds it ``_IDLE``
    releases the lock (one C call) and so wakes it; any other time an append
    is all a submitter does.
    """

    __slots__ = (
        "completed",
        "exited",
        "failed",
        "lingering",
        "queue",
        "running",
        "state",
        "taken",
        "thread",
        "wake",
    )

    def __init__(self) -> None:
        self.queue: deque[_Item] = deque()
        self.wake = threading.Lock()
        self.wake.acquire()  # held: the worker's acquire() sleeps until released
        self.state = _AWAKE
        #: Asleep for at most _LINGER (see ``_work``); only ``_hurry`` wakes it.
        self.lingering = False
        self.thread: threading.Thread | None = None
        #: Events popped from the queue (``stats()``'s ``submitted`` adds them up).
        self.taken = 0
        self.completed = 0
        self.failed = 0
        self.running = False
        #: Set once the worker took its stop marker; a submitter that queued
        #: behind it runs the leftovers itself.
        self.exited = False


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be an int >= 1, got {value!r}"
        raise ValueError(msg)
    return value


class AsyncCallbackExecutor:
    """Worker threads and a bounded queue for callbacks; see the module docstring.

    ``pool_size`` worker threads (>= 1); ``queue_size`` events may wait
    (>= 1); ``overflow`` is ``"caller_runs"``, ``"block"`` or ``"drop"``;
    ``block_timeout`` (seconds, ``"block"`` only) bounds the wait for room.
    Invalid values raise :class:`ValueError`.
    """

    def __init__(
        self,
        pool_size: int = 4,
        queue_size: int = 100,
        overflow: OverflowPolicy = "caller_runs",
        block_timeout: float | None = None,
        order_timeout: float = ORDER_TIMEOUT,
    ) -> None:
        self.pool_size = _positive_int("pool_size", pool_size)
        self.queue_size = _positive_int("queue_size", queue_size)
        if not isinstance(overflow, str) or overflow not in _POLICIES:
            msg = (
                f"overflow must be one of {', '.join(map(repr, _POLICIES))}, got {overflow!r}; "
                'e.g. AsyncCallbackExecutor(overflow="drop")'
            )
            raise ValueError(msg)
        self.overflow: OverflowPolicy = overflow
        if block_timeout is not None:
            if (
                isinstance(block_timeout, bool)
                or not isinstance(block_timeout, (int, float))
                or not block_timeout >= 0
            ):
                msg = (
                    f"block_timeout must be None or a number of seconds >= 0, got {block_timeout!r}"
                )
                raise ValueError(msg)
            if overflow != "block":
                msg = (
                    f"block_timeout applies to overflow='block' only, got overflow={overflow!r}; "
                    "drop block_timeout or use overflow='block'"
                )
                raise ValueError(msg)
        self.block_timeout: float | None = block_timeout
        if (
            isinstance(order_timeout, bool)
            or not isinstance(order_timeout, (int, float))
            or not (order_timeout >= 0)
        ):
            msg = f"order_timeout must be a number of seconds >= 0, got {order_timeout!r}"
            raise ValueError(msg)
        #: caller_runs: how long an overflowing event waits for its worker to
        #: run what was queued before it (see "Order").
        self.order_timeout = float(order_timeout)
        #: Seconds a worker waits for more events before it blocks (batching).
        self._linger = _LINGER
        #: Whether an event after shutdown() was logged (once per executor).
        self._warned_late = False
        self._start()
        _EXECUTORS.add(self)

    def _start(self, start_workers: bool = True) -> None:
        """(Re)build every piece of state and start the workers."""
        # Reentrant: a collection while an event waits here for a slot can
        # run redis-py's __del__ methods, whose events may overflow too and
        # wait here on the same thread (wait() releases every level).
        self._room = threading.Condition(threading.RLock())
        self._blocked = 0
        #: One item per free slot: popped to queue an event, appended back
        #: when a worker takes it.
        self._slots: deque[None] = deque([None] * self.queue_size)
        self._local = threading.local()
        self._counts: list[_Counts] = []
        self._retired = _Counts(None)
        # Reentrant: a collection under it (a thread's first event) can run
        # redis-py's __del__ methods, whose events come back to _submit.
        self._counts_lock = threading.RLock()
        self._errors: list[CallbackError] = []
        self._errors_omitted = 0
        self._accepting = start_workers
        self._workers = [_Worker() for _ in range(self.pool_size)]
        self._shards = len(self._workers)
        if not start_workers:
            return
        for index, worker in enumerate(self._workers):
            thread = threading.Thread(
                target=self._work,
                args=(worker,),
                name=f"redis_lifecycle-callbacks-{index}",
                daemon=True,
            )
            worker.thread = thread
            thread.start()

    # --- submitting (the emitting thread) ----------------------------------

    def _thread_counts(self, worker: bool = False) -> _Counts:
        counts = _Counts(threading.current_thread(), worker)
        with self._counts_lock:
            self._fold_dead()
            self._counts.append(counts)
        self._local.counts = counts
        return counts

    def _runner(
        self,
        delivery: Delivery,
        event_cls: type[LifecycleEvent],
        subscriptions: tuple[Subscription, ...],
    ) -> _Run:
        """What a worker runs for each event of exactly ``event_cls`` of
        ``delivery`` (built by its emitter, which hands it to :meth:`_submit`
        with the event): ``delivery.run_counted`` specialised, with the
        callbacks and their timing histogram resolved once rather than per
        event, and returning ``None`` when no callback raised. It holds no
        strong reference to ``delivery``: a queued event does not pin it."""
        callbacks = tuple(s.callback for s in subscriptions)
        instrumentation = delivery.instrumentation
        error_handler = delivery.error_handler
        delivery_ref = weakref.ref(delivery)

        def schedule(result: Any, event: LifecycleEvent, callback: Any) -> None:
            """An ``async def`` callback's coroutine: run it on the event loop."""
            owner = delivery_ref()
            if owner is not None:
                owner._schedule(result, event, callback)

        if instrumentation is None:

            def run_unmeasured(event: LifecycleEvent) -> tuple[int, CallbackError | None] | None:
                failures = 0
                first_error: CallbackError | None = None
                for callback in callbacks:
                    try:
                        result = callback(event)
                    except Exception as exc:
                        failures += 1
                        error = error_handler.handle(exc, event, callback)
                        if error is not None and first_error is None:
                            first_error = error
                        continue
                    if result is not None and hasattr(result, "__await__"):
                        schedule(result, event, callback)
                return (failures, first_error) if failures else None

            return run_unmeasured

        stats = instrumentation._callbacks[event_cls.type]
        histogram = stats.histogram
        timings = histogram.pending  # never replaced (see LogHistogram)
        callback_failed = instrumentation._callback_failed
        callback_slow = instrumentation._callback_slow
        slow_after = instrumentation._slow_after  # infinity when slow_callback is off

        def run_measured(event: LifecycleEvent) -> tuple[int, CallbackError | None] | None:
            failures = 0
            first_error: CallbackError | None = None
            for callback in callbacks:
                started = perf_counter()
                try:
                    result = callback(event)
                except Exception as exc:
                    elapsed = perf_counter() - started
                    timings.append(elapsed)
                    if elapsed > slow_after:
                        callback_slow(stats, event, callback, elapsed)
                    callback_failed(stats)
                    failures += 1
                    error = error_handler.handle(exc, event, callback)
                    if error is not None and first_error is None:
                        first_error = error
                    continue
                elapsed = perf_counter() - started
                timings.append(elapsed)
                if elapsed > slow_after:
                    callback_slow(stats, event, callback, elapsed)
                if result is not None and hasattr(result, "__await__"):
                    schedule(result, event, callback)
            if len(timings) >= FLUSH_AT:
                histogram.flush()
            return (failures, first_error) if failures else None

        return run_measured

    def _submit(
        self,
        run: _Run,
        event: LifecycleEvent,
    ) -> None:
        """Take ``event`` for delivery by ``run`` (see :meth:`_runner`):
        queued, dropped (counted), or run here (overflow under
        ``caller_runs``, or after shutdown: then a :class:`CallbackError`
        under strategy ``"raise"`` propagates as it would inline).

        The common case, a free slot, takes no lock and touches no counter:
        pop a slot, append to the worker's deque; only a worker that is idle
        (or gone) needs more (see ``_work``)."""
        if not self._accepting:
            if not self._warned_late:
                self._warn_late(event)
            self._run_here(self._my_counts(), run, event, collect=False)
            return
        try:
            self._slots.pop()
        except IndexError:
            if not self._overflowed(run, event):
                return
        # self._worker_for(event), inlined: this runs for every event.
        key = event._origin.connection_id
        if key is None:
            key = hash(event._origin.pool_name)
        worker = self._workers[key % self._shards]
        worker.queue.append((run, event))
        if worker.state:  # idle or gone: not on the common path
            self._wake_or_drain(worker)

    def _wake_or_drain(self, worker: _Worker) -> None:
        """After an append: wake ``worker`` if it is idle; if it is gone
        (raced with shutdown), run what is left in its queue here."""
        if worker.state == _IDLE:
            worker.state = _AWAKE
            with contextlib.suppress(RuntimeError):  # another submitter woke it first
                worker.wake.release()
        elif worker.state == _EXITED:
            self._drain(worker, self._my_counts())

    def _my_counts(self) -> _Counts:
        """The calling thread's counters."""
        try:
            counts: _Counts = self._local.counts
        except AttributeError:
            counts = self._thread_counts()
        return counts

    def _overflowed(
        self,
        run: _Run,
        event: LifecycleEvent,
    ) -> bool:
        """No free slot: apply the overflow policy. Returns ``True`` if a
        slot was found after all (``block``) and the event is to be queued,
        ``False`` if it was dealt with here (dropped or run)."""
        counts = self._my_counts()
        self._hurry()  # cut the lingering workers' sleep short: the queue is full
        outcome = self._overflow(counts)
        if outcome is _SLOT_TAKEN:
            return True
        if outcome is not _DROPPED:
            if outcome is _RUN_HERE and not counts.worker:
                self._catch_up(self._worker_for(event))
            self._run_here(counts, run, event, collect=outcome is _RUN_HERE)
        return False

    def _hurry(self, worker: _Worker | None = None) -> None:
        """Wake ``worker`` (default: every worker) if it sleeps, lingering or idle."""
        for each in self._workers if worker is None else (worker,):
            if each.state == _IDLE:
                each.state = _AWAKE
            elif not each.lingering:
                continue
            with contextlib.suppress(RuntimeError):  # already woken
                each.wake.release()

    def _warn_late(self, event: LifecycleEvent) -> None:
        """Log, once per executor, that an event came after :meth:`shutdown`
        (not at interpreter exit, where that is expected)."""
        self._warned_late = True
        if _exiting[0]:
            return
        logger.warning(
            "redis_lifecycle: a %s event reached %r after its shutdown(); its callbacks "
            "run inline on the emitting thread (%s), and so will those of later events "
            "(logged once per executor). Uninstrument or close the clients and pools "
            "that use an executor before shutting it down.",
            event.type.value,
            self,
            threading.current_thread().name,
        )

    def _worker_for(self, event: LifecycleEvent) -> _Worker:
        """The worker of ``event``'s connection (pool-wide events: its pool)."""
        origin: Any = event._origin
        key = origin.connection_id
        if key is None:
            key = hash(origin.pool_name)
        worker: _Worker = self._workers[key % self._shards]
        return worker

    def _catch_up(self, worker: _Worker) -> None:
        """Before a ``caller_runs`` event runs here: wait until ``worker`` has
        run everything queued before it, so that it cannot overtake its
        connection's earlier events (bounded by ``order_timeout``)."""
        marker = threading.Event()
        worker.queue.append((None, marker))  # no slot: a marker is not an event
        self._hurry(worker)
        if not marker.wait(self.order_timeout) and not worker.exited:
            logger.warning(
                "redis_lifecycle: a callback queue did not catch up within %.1fs; "
                "running an overflowing event ahead of its connection's queued events",
                self.order_timeout,
            )

    def _overflow(self, counts: _Counts) -> object:
        """No free slot: returns ``_DROPPED`` (counted), ``_SLOT_TAKEN``
        (``block`` found room), ``_RUN_HERE`` (``caller_runs``, or a worker
        that must not wait on its own pool) or ``_SHUT_DOWN`` (shut down while
        blocked: run inline as after shutdown)."""
        policy = self.overflow
        if policy == "caller_runs" or counts.worker:
            return _RUN_HERE
        if policy == "drop":
            counts.dropped += 1
            return _DROPPED
        timeout = self.block_timeout
        deadline = None if timeout is None else monotonic() + timeout
        with self._room:
            self._blocked += 1
            try:
                while True:
                    if not self._accepting:
                        return _SHUT_DOWN
                    try:
                        self._slots.pop()
                        return _SLOT_TAKEN
                    except IndexError:
                        pass
                    if deadline is None:
                        self._room.wait()
                    else:
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            counts.dropped += 1
                            return _DROPPED
                        self._room.wait(remaining)
            finally:
                self._blocked -= 1

    def _run_here(
        self,
        counts: _Counts,
        run: _Run,
        event: LifecycleEvent,
        *,
        collect: bool,
    ) -> None:
        """Run on the emitting thread; counted in ``ran_inline``."""
        try:
            outcome = run(event)
        finally:
            counts.inline += 1
        if outcome is None:
            return
        counts.failed += 1
        error = outcome[1]
        if error is not None:
            if not collect:
                raise error
            self._collect(error)

    # --- the workers -------------------------------------------------------

    def _work(self, worker: _Worker) -> None:
        """A worker's loop: run what is queued, linger, sleep when idle.

        Waking a worker per event (a futex wake, a thread switch, a GIL
        hand-off) costs more than running its callbacks, so a worker that ran
        a batch lingers (sleeps ``_LINGER``) before it looks again: events
        that come meanwhile are appended and wait for it, with no wake-up.
        Only when it finds its queue empty does it go idle, and the next
        submitter wakes it. It declares itself idle before it looks at the
        queue one last time, and a submitter appends before it looks at the
        state, so (each step atomic under the GIL) an event is never left
        behind by a sleeping worker. A full queue, a ``caller_runs`` marker
        or ``shutdown()`` cut the linger short (``_hurry``).
        """
        try:
            self._thread_counts(worker=True)
            queue = worker.queue
            acquire = worker.wake.acquire
            linger = self._linger
            slots = self._slots
            while True:
                if queue:
                    if self._run_batch(worker) is _STOP:
                        return
                    if linger and slots:  # not when the queue is full
                        worker.lingering = True
                        acquire(True, linger)
                        worker.lingering = False
                    continue
                worker.state = _IDLE
                if queue:  # appended before the submitter could see _IDLE
                    worker.state = _AWAKE
                    continue
                acquire()
                worker.state = _AWAKE
        finally:
            worker.lingering = False
            worker.state = _EXITED
            worker.exited = True
            self._drain(worker)

    def _run_batch(self, worker: _Worker) -> Any:
        """Run whatever is queued; return the stop marker if met, else
        ``None`` once the queue is empty. The per-event work is kept inline
        here: it is the executor's hot loop. Only this worker pops from its
        queue while it runs, so a queue that is not empty stays so."""
        queue = worker.queue
        popleft = queue.popleft
        slots_append = self._slots.append
        taken = worker.taken
        failed = 0
        worker.running = True
        try:
            while queue:
                run, event = popleft()
                if run is None:  # not an event
                    if event is _STOP:
                        return event
                    event.set()  # a caller_runs marker: caught up
                    continue
                worker.taken += 1  # before the slot goes back: submitted never dips
                slots_append(None)
                if self._blocked:
                    with self._room:
                        self._room.notify()
                try:
                    outcome = run(event)
                except BaseException:  # a callback raised SystemExit & co: keep the worker
                    logger.exception("redis_lifecycle: callback for %r escaped its handler", event)
                    failed += 1
                    continue
                if outcome is not None:
                    failed += 1
                    if outcome[1] is not None:
                        self._collect(outcome[1])
            return None
        finally:
            worker.completed += worker.taken - taken
            worker.failed += failed
            worker.running = False

    def _drain(self, worker: _Worker, counts: _Counts | None = None) -> None:
        """Run what is left in a stopped worker's queue: by the worker itself,
        or (``counts`` given) by a submitter that queued behind the stop
        marker, counted as inline."""
        queue = worker.queue
        while True:
            try:
                run, event = queue.popleft()
            except IndexError:
                return
            if run is None:  # not an event
                if event is not _STOP:
                    event.set()
                continue
            if counts is None:
                self._run_item(worker, run, event)
            else:
                self._slots.append(None)
                self._run_here(counts, run, event, collect=True)

    def _run_item(
        self,
        worker: _Worker,
        run: _Run,
        event: LifecycleEvent,
    ) -> None:
        worker.taken += 1
        self._slots.append(None)
        if self._blocked:
            with self._room:
                self._room.notify()
        worker.running = True
        try:
            outcome = run(event)
        except BaseException:  # a callback raised SystemExit & co: keep the worker
            logger.exception("redis_lifecycle: callback for %r escaped its handler", event)
            outcome = (1, None)
        finally:
            worker.running = False
        worker.completed += 1
        if outcome is not None:
            worker.failed += 1
            if outcome[1] is not None:
                self._collect(outcome[1])

    def _collect(self, error: CallbackError) -> None:
        if len(self._errors) < _MAX_KEPT_ERRORS:
            self._errors.append(error)
        else:
            self._errors_omitted += 1

    # --- stats and shutdown --------------------------------------------------

    def _fold_dead(self) -> None:
        """Fold the counters of ended threads into one (``_counts_lock`` held)."""
        alive = []
        for counts in self._counts:
            if counts.thread is not None and not counts.thread.is_alive():
                self._retired.add(counts)
            else:
                alive.append(counts)
        if len(alive) != len(self._counts):
            self._counts = alive

    def stats(self) -> ExecutorStats:
        """Counters as of now; see :class:`ExecutorStats`. Exact once idle."""
        total = _Counts(None)
        with self._counts_lock:
            self._fold_dead()
            total.add(self._retired)
            for counts in list(self._counts):
                total.add(counts)
        workers = list(self._workers)
        completed = sum(w.completed for w in workers)
        queued = self.queue_size - len(self._slots)
        return ExecutorStats(
            # Queued events are counted where they are taken, not where they
            # are given (that would be a counter per event on the emitter).
            submitted=sum(w.taken for w in workers) + queued + total.inline + total.dropped,
            completed=completed + total.inline,
            failed=sum(w.failed for w in workers) + total.failed,
            dropped=total.dropped,
            queued=queued,
            running=sum(1 for w in workers if w.running),
            ran_inline=total.inline,
        )

    @property
    def accepting(self) -> bool:
        """Whether events still go to the workers (``False`` after :meth:`shutdown`)."""
        return self._accepting

    def shutdown(self, timeout: float | None = 5.0) -> bool:
        """Stop intake, run what is queued, stop the workers.

        Waits up to ``timeout`` seconds (``None``: no limit) and returns
        ``True`` only if every queued event ran; on ``False`` the workers go
        on draining in the background. Events emitted afterwards run inline
        (the first one logs a warning, once per executor), and giving this
        executor to ``instrument()``, ``instrument_all()`` or a lifecycle
        pool raises :class:`RuntimeError`.
        Raises the :class:`CallbackError` collected from callbacks under
        strategy ``"raise"`` (one that lists all of them in ``errors`` when
        there were several). Calling it again waits again.
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            msg = f"timeout must be None or a number of seconds >= 0, got {timeout!r}"
            raise ValueError(msg)
        with self._room:
            first = self._accepting
            self._accepting = False
            self._room.notify_all()
        workers = list(self._workers)
        if first:
            for worker in workers:
                worker.queue.append((None, _STOP))
            self._hurry()
        deadline = None if timeout is None else monotonic() + timeout
        current = threading.current_thread()
        for worker in workers:
            thread = worker.thread
            if thread is None or thread is current:
                continue
            thread.join(None if deadline is None else max(deadline - monotonic(), 0.0))
        done = all(
            w.thread is None or w.thread is current or not w.thread.is_alive() for w in workers
        )
        self._raise_collected()
        return done

    def _raise_collected(self) -> None:
        errors, self._errors = self._errors, []
        omitted, self._errors_omitted = self._errors_omitted, 0
        if not errors:
            return
        if len(errors) == 1 and not omitted:
            raise errors[0]
        first = errors[0]
        more = f" (and {omitted} more not kept)" if omitted else ""
        combined = CallbackError(
            f"{len(errors) + omitted} callbacks raised on the AsyncCallbackExecutor{more}; "
            f"the first: {first}",
            first.event,
            first.callback,
            tuple(errors),
        )
        raise combined from first.__cause__

    def __enter__(self) -> AsyncCallbackExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.shutdown()
            return
        try:  # do not hide the exception leaving the block
            self.shutdown()
        except CallbackError:
            logger.warning(
                "redis_lifecycle: callback errors at executor shutdown (not raised: "
                "the with block is raising its own)",
                exc_info=True,
            )

    def _after_fork_in_child(self) -> None:
        self._start(start_workers=self._accepting)

    def __repr__(self) -> str:
        state = "running" if self._accepting else "shut down"
        return (
            f"<AsyncCallbackExecutor pool_size={self.pool_size} queue_size={self.queue_size}"
            f" overflow={self.overflow!r} {state}>"
        )


_EXECUTORS: weakref.WeakSet[AsyncCallbackExecutor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for executor in list(_EXECUTORS):
        try:
            executor._after_fork_in_child()
        except Exception:
            logger.exception("redis_lifecycle: could not restart %r after fork", executor)


#: Set by ``_at_exit``: events after shutdown are expected then, not warned about.
_exiting = [False]


def _at_exit() -> None:
    _exiting[0] = True
    for executor in list(_EXECUTORS):
        if executor.accepting:
            try:
                executor.shutdown(timeout=5.0)
            except CallbackError:
                logger.warning("redis_lifecycle: callback errors at exit", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
