"""How leaks and saturated checkouts are rendered (CLI lines, summaries), and
that a captured stack names the same lines as ``traceback``: pure logic."""

from __future__ import annotations

import io
import sys
import time
import traceback

import redis_lifecycle as rl
from redis_lifecycle._cli.output import Printer
from redis_lifecycle._format import is_problem, summary
from redis_lifecycle._hooks import leaks

ORIGIN = rl.EventOrigin(host="10.0.0.1", port=6379, db=0, connection_id=4, pool_name="cache")
STACK = ("/app/main.py:10 in main", "/app/jobs.py:42 in run_job")


def leak_event() -> rl.PoolConnectionLeakEvent:
    return rl.PoolConnectionLeakEvent(time.time(), ORIGIN, 2.5, 1.0, "worker-1", None, STACK)


class TestRendering:
    def test_a_leak_is_a_problem_summarised_with_where_it_was_taken(self) -> None:
        event = leak_event()
        assert is_problem(event)
        text = summary(event)
        assert "held_time=2500.0ms threshold=1000.0ms thread_name=worker-1" in text
        assert text.endswith("at=/app/jobs.py:42 in run_job")
        assert event.caller == STACK[-1]

    def test_the_cli_prints_a_leak_with_its_stack_below(self) -> None:
        out = io.StringIO()
        Printer(out, color=False).event(leak_event())
        lines = out.getvalue().splitlines()
        assert "connection_leak" in lines[0]
        assert [line.strip() for line in lines[1:]] == list(STACK)

    def test_a_saturated_checkout_shows_pending_and_a_free_one_does_not(self) -> None:
        waited = rl.PoolConnectionAcquiredEvent(time.time(), ORIGIN, 0.2, 2, 0, 3)
        free = rl.PoolConnectionAcquiredEvent(time.time(), ORIGIN, 0.0, 1, 1, 0)
        assert "pending=3" in summary(waited)
        assert "pending" not in summary(free)
        out = io.StringIO()
        Printer(out, color=True).event(waited)
        assert "\033[33m" in out.getvalue()  # yellow

    def test_reported_leak_shows_only_when_true(self) -> None:
        back = rl.PoolConnectionReleasedEvent(time.time(), ORIGIN, 2.6, 0, 1, True)
        assert summary(back).endswith("reported_leak=True")
        assert "reported_leak" not in summary(
            rl.PoolConnectionReleasedEvent(1.0, ORIGIN, 0.1, 0, 1)
        )


class TestStackCapture:
    def test_lines_match_traceback_and_library_frames_are_left_out(self) -> None:
        def inner() -> tuple[list[object], list[traceback.FrameSummary]]:
            return leaks.record_sync()[0], traceback.extract_stack()

        frames, expected = inner()
        stack = leaks.format_stack(frames)
        wanted = [
            f"{f.filename}:{f.lineno} in {f.name}"
            for f in expected
            if not leaks._hidden(f.filename)
        ]
        # record_sync's own frame is in redis_lifecycle (hidden); the rest agree
        assert list(stack) == wanted
        assert stack[-1].endswith(" in inner")
        assert all("redis_lifecycle" not in line.split(":")[0] for line in stack)

    def test_no_frame_object_is_kept(self) -> None:
        frames = leaks.record_sync()[0]
        assert not any(isinstance(item, type(sys._getframe())) for item in frames)
