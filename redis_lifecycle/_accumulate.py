"""Per-command figures, recorded without events: the one recorder of
checkout waits and hold times.

Every instrumented pool has one :class:`CommandFigures`. While its delivery
has sinks (:attr:`~redis_lifecycle._delivery.Delivery.sinks`: an
:class:`~redis_lifecycle.Instrumentation`, a Prometheus collector or an
OpenTelemetry exporter that reads per-command figures), the checkout hook
appends each checkout's wait (seconds) to :attr:`CommandFigures.wait` and the
release hook each hold time to :attr:`CommandFigures.held`: one list append,
no event object, no callback. Every :data:`FLUSH_AT` values, and whenever a
reader collects (:func:`flush_all`), the values buffered are handed in one
batch to each sink, which counts them into its own fixed buckets (a
``LogHistogram`` for ``Instrumentation``, the exporter's bucket bounds for
Prometheus, the OpenTelemetry histogram): the figures are exact, every
command counted once.

Lock-free on the command path: appends are atomic under the GIL (or the
list's own lock), and one thread at a time flushes (a try-lock: a thread that
finds a flush under way leaves its values buffered for the next one; the
flush takes only the values it copied off the front of the buffer, so values
appended meanwhile stay). Memory per pool is at most a buffer of each kind.

:meth:`CommandFigures.add_wait` and :meth:`CommandFigures.add_held` are the
original; the hot hooks inline them (``_hooks/sync.py``: ``get_connection``
and ``release``; ``_hooks/aio.py``: ``_get_connection`` and ``_release``);
``_hooks/aio_cluster.py`` calls them. ``tests/integration/test_accumulate.py``
drives each inlined copy through its real hook (and
``tests/cluster/test_cluster_async.py`` the cluster nodes' calls).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["FLUSH_AT", "CommandFigures", "Sink", "flush_all"]

logger = logging.getLogger("redis_lifecycle")

#: Values buffered per pool and kind before they are handed to the sinks.
FLUSH_AT = 128

#: ``sink(pool_name, waits, helds)``: a batch of checkout waits and hold
#: times (seconds) of pool ``pool_name``; either list may be empty. Called on
#: the thread that flushes (a command's, or a reader's), never concurrently
#: for the same pool, possibly concurrently for different pools.
Sink = Callable[[str | None, list[float], list[float]], None]


class CommandFigures:
    """The per-command figures of one pool, buffered until a flush."""

    __slots__ = ("__weakref__", "_flushing", "counts", "held", "name", "pool_ref", "wait")

    def __init__(
        self,
        name: str | None,
        pool_ref: Callable[[], Any] | None = None,
        counts: Callable[[Any], tuple[int, int]] | None = None,
    ) -> None:
        #: The pool's ``pool_name`` (what the events' ``pool_name`` says).
        self.name = name
        #: Checkout waits and hold times since the last flush. Never
        #: replaced: the hooks append to them.
        self.wait: list[float] = []
        self.held: list[float] = []
        self._flushing = threading.Lock()
        #: The pool (a weak reference) and how to count it, for readers that
        #: report its active and idle connections.
        self.pool_ref = pool_ref
        self.counts = counts
        _ALL.add(self)

    def add_wait(self, seconds: float, sinks: Sequence[Sink]) -> None:
        """Record one checkout that waited ``seconds``."""
        wait = self.wait
        wait.append(seconds)
        if len(wait) >= FLUSH_AT:
            self.flush(sinks)

    def add_held(self, seconds: float, sinks: Sequence[Sink]) -> None:
        """Record one connection returned after ``seconds`` out of the pool."""
        held = self.held
        held.append(seconds)
        if len(held) >= FLUSH_AT:
            self.flush(sinks)

    def flush(self, sinks: Sequence[Sink]) -> None:
        """Hand what is buffered to ``sinks``, unless another thread is doing
        so right now (its values then wait for the next flush). A sink that
        raises is logged; the others still get the batch."""
        if not self._flushing.acquire(blocking=False):
            return
        try:
            wait = self.wait
            waits = wait[:]  # one step each: values appended meanwhile stay
            del wait[: len(waits)]
            held = self.held
            helds = held[:]
            del held[: len(helds)]
            if not (waits or helds):
                return
            for sink in sinks:
                try:
                    sink(self.name, waits, helds)
                except Exception:
                    logger.exception("redis_lifecycle: a per-command metrics sink failed")
        finally:
            self._flushing.release()

    def active_idle(self) -> tuple[int, int] | None:
        """The pool's ``(active, idle)`` now; ``None`` once it is gone."""
        pool = self.pool_ref() if self.pool_ref is not None else None
        if pool is None or self.counts is None:
            return None
        try:
            return self.counts(pool)
        except Exception:  # a pool being torn down
            return None

    def _after_fork_in_child(self) -> None:
        self._flushing = threading.Lock()

    def __repr__(self) -> str:
        return f"<CommandFigures {self.name!r} wait={len(self.wait)} held={len(self.held)}>"


_ALL: weakref.WeakSet[CommandFigures] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have been flushing: it does not exist here.
    for figures in list(_ALL):
        figures._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def flush_all(deliveries: Iterable[Any]) -> None:
    """Flush the figures of every pool of ``deliveries`` into their sinks:
    what a reader does before it reads, so that every command so far is
    counted."""
    for delivery in list(deliveries):
        sinks = delivery.sinks
        for figures in list(delivery.figures):
            figures.flush(sinks)
