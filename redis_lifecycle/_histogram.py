"""A bounded-memory, log-bucketed histogram for durations.

    >>> from redis_lifecycle._histogram import LogHistogram
    >>> h = LogHistogram()
    >>> for ms in range(1, 101):
    ...     h.add(ms / 1000)
    >>> round(h.percentile(50), 3)
    0.05

A bucket is the top 18 bits of a value's IEEE-754 double (sign, exponent
and 6 mantissa bits): each power of two is split into :data:`SUB_BUCKETS`
(64) equal sub-buckets, so a bucket spans at most ``1/64`` of its lower
bound. A percentile is the midpoint of the bucket holding the nearest-rank
sample, clamped to the exact ``min``/``max``: it is within
:data:`RELATIVE_ERROR` (``1/128``, about 0.8 %) of the true nearest-rank
value. ``count``, ``total``, ``min`` and ``max`` are exact.

Memory is bounded whatever the number of values: 64 buckets per power of two
the values span (durations from 1 µs to 10 s span 24 of them: at most 1536
buckets; :data:`MAX_BUCKETS` for any doubles at all), plus a buffer of at
most :data:`FLUSH_AT` values: :meth:`LogHistogram.add` appends to the buffer,
and a full buffer is bucketed in one pass of C-level operations (``struct``
packing, byte slicing, ``Counter.update``), which costs a fraction of
bucketing each value in Python.

Safe for many writing threads without a lock per value: :meth:`LogHistogram.add`
appends to the buffer (one step, under the GIL or the list's own lock), and
one thread at a time flushes it (a try-lock: a writer that finds a flush
under way leaves its values buffered for the next one). A flush takes the
values it copied off the front of the buffer, so values appended meanwhile
stay. :class:`~redis_lifecycle.Instrumentation` shares one histogram per
pool and event name between all threads.
"""

from __future__ import annotations

import math
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from typing import TypedDict

__all__ = [
    "FLUSH_AT",
    "MAX_BUCKETS",
    "RELATIVE_ERROR",
    "SUB_BUCKETS",
    "DurationSummary",
    "LogHistogram",
    "bucket_bounds",
    "bucket_key",
]

#: Sub-buckets per power of two (6 mantissa bits).
SUB_BUCKETS = 64
#: Upper bound of a percentile's relative error against the exact
#: nearest-rank value.
RELATIVE_ERROR = 1 / (2 * SUB_BUCKETS)
#: The most buckets a histogram can hold (18 bits).
MAX_BUCKETS = 1 << 18
#: Values buffered by :meth:`LogHistogram.add` before they are bucketed.
FLUSH_AT = 128

# Keep the top 2 bits of the third byte: with the 4 mantissa bits of the
# second byte, 6 mantissa bits.
_TOP_TWO_BITS = bytes(b & 0xC0 for b in range(256))
_BUCKET_STEP = 1 << 46  # one unit in the 18th bit of a 64-bit double
_BYTEORDER = sys.byteorder
_DOUBLE = struct.Struct(">d")


def _middle(key: int) -> float:
    low, high = bucket_bounds(key)
    return 0.0 if low == 0.0 else (low + high) / 2.0


class DurationSummary(TypedDict):
    """A distribution: exact ``count``/``total``/``avg``/``min``/``max``;
    percentiles within :data:`RELATIVE_ERROR`; ``None`` where there are no values."""

    count: int
    total: float
    avg: float
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None


def _keys(values: list[float]) -> memoryview:
    """The bucket key of each value: its top 18 bits, as native ``uint32``."""
    count = len(values)
    packed = struct.pack(f">{count}d", *values)
    keys = bytearray(4 * count)
    keys[0::4] = packed[0::8]
    keys[1::4] = packed[1::8]
    keys[2::4] = packed[2::8].translate(_TOP_TWO_BITS)
    return memoryview(keys).cast("I")


def bucket_key(value: float) -> int:
    """The bucket ``value`` falls in."""
    return int(_keys([value])[0])


def bucket_bounds(key: int) -> tuple[float, float]:
    """``[low, high)`` of a bucket (for negative values, ``low`` is the one
    nearer zero)."""
    top = key.to_bytes(4, _BYTEORDER)[:3]
    bits = int.from_bytes(top + bytes(5), "big")
    low = _DOUBLE.unpack(bits.to_bytes(8, "big"))[0]
    high = _DOUBLE.unpack(((bits + _BUCKET_STEP) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big"))[0]
    return low, high


class LogHistogram:
    """Counts of values in logarithmic buckets, plus exact count, total, min, max.

    :meth:`add` only appends to a short buffer (``pending``); every
    :data:`FLUSH_AT` values the buffer is counted into the buckets in one
    pass, which costs a fraction of bucketing each value on its own. Any
    number of threads may add; a reader merges it into a copy of its own
    (:meth:`merge`) and reads that copy.
    """

    __slots__ = ("_flushing", "buckets", "count", "max", "min", "pending", "total")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        #: Values added since the last flush (at most FLUSH_AT, give or take
        #: what other threads add during a flush). Never replaced: writers
        #: may keep a reference to it.
        self.pending: list[float] = []
        #: Held by the one thread flushing.
        self._flushing = threading.Lock()
        #: Count, sum, min and max of the flushed values.
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one value."""
        pending = self.pending
        pending.append(value)
        if len(pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Count the buffered values into the buckets, unless another thread
        is doing so right now (then they wait for the next flush)."""
        if not self._flushing.acquire(blocking=False):
            return
        try:
            pending = self.pending
            values = pending[:]  # one step each: values appended meanwhile stay
            if values:
                del pending[: len(values)]
                self._count(values)
        finally:
            self._flushing.release()

    def clear(self) -> None:
        """Forget every value. A value added by another thread at the same
        moment may be lost or kept."""
        with self._flushing:
            self.pending.clear()
            self.buckets = Counter()
            self.count = 0
            self.total = 0.0
            self.min = math.inf
            self.max = -math.inf

    def _after_fork_in_child(self) -> None:
        """In a forked child: a thread of the parent may have been flushing."""
        self._flushing = threading.Lock()

    def _count(self, values: list[float]) -> None:
        self.buckets.update(_keys(values))
        self.count += len(values)
        self.total += sum(values)
        low = min(values)
        if low < self.min:
            self.min = low
        high = max(values)
        if high > self.max:
            self.max = high

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s values to this one. ``other`` may be written by other
        threads meanwhile: its buckets and buffer are each copied in one step,
        so a flush racing with the merge can leave out up to one buffer (a
        flush removes values from the buffer before it counts them: none is
        counted twice)."""
        self.buckets.update(other.buckets.copy())
        self.count += other.count
        self.total += other.total
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max
        pending = other.pending.copy()
        if pending:
            self._count(pending)

    @classmethod
    def merged(cls, histograms: Iterable[LogHistogram]) -> LogHistogram:
        """A new histogram holding the values of all ``histograms``."""
        result = cls()
        for histogram in histograms:
            result.merge(histogram)
        return result

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (``0 <= q <= 100``, nearest rank); ``None``
        when empty. Within :data:`RELATIVE_ERROR` of the exact value.

        Flushes first: call it on a histogram no other thread writes (the
        result of :meth:`merged`, say)."""
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Iterable[float]) -> list[float | None]:
        """:meth:`percentile` of each of ``qs``, in one pass."""
        qs = list(qs)
        for q in qs:
            if not 0.0 <= q <= 100.0:
                msg = f"percentile must be between 0 and 100, got {q!r}"
                raise ValueError(msg)
        self.flush()
        # The buckets are the truth for ranks (count and buckets are updated
        # one after the other).
        ranked = sorted((_middle(key), count) for key, count in self.buckets.items())
        in_buckets = sum(count for _, count in ranked)
        if in_buckets == 0:
            return [None for _ in qs]
        results: list[float | None] = []
        for q in qs:
            if q == 0.0 or q == 100.0:  # the exact extremes
                results.append(self.min if q == 0.0 else self.max)
                continue
            rank = max(1, math.ceil(q / 100.0 * in_buckets))
            seen = 0
            value = self.max
            for middle, count in ranked:
                seen += count
                if seen >= rank:
                    value = middle
                    break
            results.append(min(max(value, self.min), self.max))
        return results

    def summary(self) -> DurationSummary:
        """``count``, ``total``, ``avg``, ``min``, ``max``, ``p50``, ``p95``, ``p99``;
        ``min``/``max``/percentiles are ``None`` when empty. Flushes first, like
        :meth:`percentile`."""
        self.flush()
        count = self.count
        empty = count == 0
        p50, p95, p99 = self.percentiles((50, 95, 99))
        return {
            "count": count,
            "total": self.total,
            "avg": self.total / count if count else 0.0,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "p50": p50,
            "p95": p95,
            "p99": p99,
        }

    def __len__(self) -> int:
        """Values recorded (flushed and buffered)."""
        return self.count + len(self.pending)

    def __repr__(self) -> str:
        return f"<LogHistogram count={len(self)} buckets={len(self.buckets)}>"
