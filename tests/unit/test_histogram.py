"""LogHistogram: percentile accuracy, exact aggregates, bounded memory, merging."""

from __future__ import annotations

import math
import random
import threading

import pytest

from redis_lifecycle._histogram import (
    FLUSH_AT,
    RELATIVE_ERROR,
    SUB_BUCKETS,
    LogHistogram,
    bucket_bounds,
    bucket_key,
)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def filled(values: list[float]) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    return histogram


class TestPercentiles:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_percentiles_are_within_the_documented_relative_error(self, seed: int) -> None:
        """Every percentile is within RELATIVE_ERROR of the exact nearest-rank value."""
        rng = random.Random(seed)
        values = [rng.lognormvariate(-10, 2) for _ in range(20_000)]
        histogram = filled(values)
        for q in (0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9):
            exact = nearest_rank(values, q)
            got = histogram.percentile(q)
            assert got is not None
            assert abs(got - exact) <= RELATIVE_ERROR * exact, (q, exact, got)

    def test_extremes_are_the_exact_min_and_max(self) -> None:
        """p0 and p100 are the exact smallest and largest values recorded."""
        values = [0.003, 1e-7, 42.5, 0.2]
        histogram = filled(values)
        assert histogram.percentile(0) == 1e-7
        assert histogram.percentile(100) == 42.5

    def test_a_single_value_is_reported_exactly(self) -> None:
        """With one distinct value, clamping to min/max makes every percentile exact."""
        histogram = filled([1.234e-5] * 500)
        assert histogram.percentiles((50, 95, 99)) == [1.234e-5] * 3

    def test_zeros_are_reported_as_zero(self) -> None:
        """Zero durations land in their own bucket and read back as 0.0."""
        histogram = filled([0.0] * 10 + [1.0] * 10)
        assert histogram.percentile(50) == 0.0
        assert histogram.percentile(51) == 1.0

    def test_empty_histogram_has_no_percentiles(self) -> None:
        """An empty histogram reports None rather than a made-up number."""
        histogram = LogHistogram()
        assert histogram.percentile(50) is None
        summary = histogram.summary()
        assert summary["count"] == 0
        assert summary["p99"] is None
        assert summary["min"] is None

    @pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
    def test_out_of_range_percentile_raises(self, q: float) -> None:
        """A percentile outside 0..100 is rejected with the accepted range in the message."""
        with pytest.raises(ValueError, match="between 0 and 100"):
            filled([1.0]).percentile(q)


class TestAggregates:
    def test_count_total_min_max_are_exact(self) -> None:
        """count, total, min and max match the recorded values exactly, buffered or not."""
        rng = random.Random(7)
        values = [rng.uniform(1e-6, 1e-2) for _ in range(FLUSH_AT * 3 + 17)]
        histogram = filled(values)
        assert len(histogram) == len(values)
        summary = histogram.summary()
        assert summary["count"] == len(values)
        assert summary["total"] == pytest.approx(math.fsum(values), rel=1e-12)
        assert summary["min"] == min(values)
        assert summary["max"] == max(values)
        assert summary["avg"] == pytest.approx(math.fsum(values) / len(values), rel=1e-12)

    def test_merge_equals_recording_everything_in_one(self) -> None:
        """Merging per-thread histograms gives the same buckets as one histogram of all values."""
        rng = random.Random(11)
        parts = [[rng.expovariate(1000) for _ in range(rng.randint(1, 500))] for _ in range(5)]
        merged = LogHistogram.merged(filled(part) for part in parts)
        together = filled([value for part in parts for value in part])
        together.flush()
        assert merged.buckets == together.buckets
        assert merged.count == together.count
        assert (merged.min, merged.max) == (together.min, together.max)

    def test_merge_includes_values_still_buffered(self) -> None:
        """Values not yet flushed by the writer are part of a merged read."""
        source = filled([0.5, 0.25])
        assert source.pending  # still buffered
        merged = LogHistogram.merged([source])
        assert merged.count == 2
        assert merged.percentile(100) == 0.5


class TestBuckets:
    def test_bucket_contains_its_value_and_spans_one_sub_bucket(self) -> None:
        """A value lies inside its bucket, which is 1/SUB_BUCKETS of an octave wide."""
        rng = random.Random(3)
        for _ in range(1000):
            value = rng.lognormvariate(0, 8)
            low, high = bucket_bounds(bucket_key(value))
            assert low <= value < high
            octave = 2.0 ** math.floor(math.log2(low))
            assert high - low == pytest.approx(octave / SUB_BUCKETS)

    def test_memory_is_bounded_by_the_range_not_the_number_of_values(self) -> None:
        """400,000 values spanning 1 µs to 10 s use at most 64 buckets per octave spanned."""
        rng = random.Random(5)
        histogram = LogHistogram()
        for _ in range(200_000):
            histogram.add(10 ** rng.uniform(-6, 1))
        histogram.flush()
        octaves = math.ceil(math.log2(10**7)) + 1
        assert len(histogram.buckets) <= SUB_BUCKETS * octaves
        size_after_many = len(histogram.buckets)
        for _ in range(200_000):
            histogram.add(10 ** rng.uniform(-6, 1))
        histogram.flush()
        assert len(histogram.buckets) <= SUB_BUCKETS * octaves
        assert len(histogram.buckets) - size_after_many <= SUB_BUCKETS  # no growth with count
        assert len(histogram.pending) == 0

    def test_buffer_never_exceeds_flush_at(self) -> None:
        """add() flushes when the buffer reaches FLUSH_AT values."""
        histogram = LogHistogram()
        for index in range(FLUSH_AT * 2 + 5):
            histogram.add(float(index + 1))
            assert len(histogram.pending) < FLUSH_AT
        assert histogram.count + len(histogram.pending) == FLUSH_AT * 2 + 5


class TestManyWriters:
    @pytest.mark.usefixtures("fast_thread_switches")
    def test_threads_adding_to_one_histogram_lose_and_repeat_nothing(self) -> None:
        """Eight threads add to one histogram, flushing it in turn, with the
        GIL handed over every microsecond: every value is counted once."""
        histogram = LogHistogram()
        per_thread = 5_000
        start = threading.Barrier(8)

        def add(value: float) -> None:
            start.wait()
            for _ in range(per_thread):
                histogram.add(value)

        threads = [threading.Thread(target=add, args=(float(n),)) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        histogram.flush()
        assert histogram.count == sum(histogram.buckets.values()) == 8 * per_thread
        assert histogram.total == per_thread * sum(range(1, 9))
        by_value = {bucket_bounds(key)[0]: count for key, count in histogram.buckets.items()}
        assert by_value == {float(n): per_thread for n in range(1, 9)}

    def test_a_flush_under_way_elsewhere_leaves_the_values_buffered(self) -> None:
        """A writer that finds another thread flushing does not wait for it
        and loses nothing: its values are counted by the next flush."""
        histogram = LogHistogram()
        with histogram._flushing:  # another thread's flush, as seen from here
            for _ in range(FLUSH_AT + 5):
                histogram.add(1.0)
            assert histogram.count == 0
            assert len(histogram.pending) == FLUSH_AT + 5
        histogram.add(1.0)
        histogram.flush()
        assert histogram.count == FLUSH_AT + 6
        assert not histogram.pending

    def test_clear_forgets_everything(self) -> None:
        histogram = filled([0.5] * (FLUSH_AT + 3))
        pending = histogram.pending
        histogram.clear()
        assert len(histogram) == 0
        assert histogram.percentile(50) is None
        histogram.add(2.0)
        assert histogram.pending is pending  # writers may hold on to it
        assert histogram.percentile(50) == 2.0
