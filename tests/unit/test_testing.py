"""EventRecorder logic, on events built by hand (no server)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import redis_lifecycle as rl
from redis_lifecycle.testing import EventRecorder, RecorderGroup, matching

ORIGIN = rl.EventOrigin(host="127.0.0.1", port=7000, db=0, connection_id=1, pool_name="cache")
OTHER = rl.EventOrigin(host="127.0.0.1", port=7000, db=0, connection_id=2, pool_name="cache")


def connected(recorder: EventRecorder, at: float = 0.0, origin: rl.EventOrigin = ORIGIN) -> None:
    recorder(rl.ConnectionConnectedEvent(recorder._started + at, origin, 0.0015))


def disconnected(
    recorder: EventRecorder,
    at: float = 0.0,
    reason: rl.CloseReason = rl.CloseReason.SERVER_CLOSED,
    error: BaseException | None = None,
) -> None:
    recorder(rl.ConnectionDisconnectedEvent(recorder._started + at, ORIGIN, reason, error))


def reconnected(recorder: EventRecorder, at: float = 0.0, downtime: float = 0.5) -> None:
    recorder(rl.ConnectionReconnectedEvent(recorder._started + at, ORIGIN, 0.002, downtime))


def acquired(recorder: EventRecorder, at: float = 0.0) -> None:
    recorder(rl.PoolConnectionAcquiredEvent(recorder._started + at, ORIGIN, 0.0001, 1, 0))


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


class TestRecording:
    def test_attach_to_dispatcher_records_every_event_class(self) -> None:
        """Attached to a dispatcher, a recorder receives events of every class, in order."""
        dispatcher = rl.EventDispatcher()
        recorder = EventRecorder(dispatcher)
        event_a = rl.ConnectionCreatedEvent(1.0, ORIGIN)
        event_b = rl.PoolResetEvent(2.0, ORIGIN, "explicit", 3)
        dispatcher.emit(event_a)
        dispatcher.emit(event_b)
        assert recorder.events == [event_a, event_b]

    def test_events_narrowed_by_class(self) -> None:
        """``events=`` records only the named classes (and their subclasses)."""
        dispatcher = rl.EventDispatcher()
        recorder = EventRecorder(dispatcher, events=[rl.ConnectionConnectedEvent])
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        dispatcher.emit(rl.ConnectionReconnectedEvent(2.0, ORIGIN, 0.1, 0.2))
        assert [e.type for e in recorder.events] == [rl.EventType.RECONNECTED]

    def test_events_is_a_copy(self, recorder: EventRecorder) -> None:
        """Mutating the list returned by ``events`` does not change the recording."""
        connected(recorder)
        recorder.events.clear()
        assert len(recorder) == 1

    def test_of_includes_subclasses_and_filters_fields(self, recorder: EventRecorder) -> None:
        """``of(cls, **fields)`` returns instances of cls or a subclass whose fields match."""
        connected(recorder)
        reconnected(recorder, downtime=0.1)
        reconnected(recorder, downtime=2.0)
        assert len(recorder.of(rl.ConnectionConnectedEvent)) == 3
        slow = recorder.of(rl.ConnectionReconnectedEvent, downtime=lambda d: d > 1)
        assert [e.downtime for e in slow] == [2.0]

    def test_clear_forgets_but_keeps_recording(self) -> None:
        """After ``clear()`` the recorder is empty and still receives events."""
        dispatcher = rl.EventDispatcher()
        recorder = EventRecorder(dispatcher)
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        recorder.clear()
        assert recorder.events == []
        dispatcher.emit(rl.ConnectionCreatedEvent(2.0, ORIGIN))
        assert len(recorder) == 1

    def test_detach_unsubscribes_and_keeps_events(self) -> None:
        """``detach()`` removes the recorder's subscriptions; what it recorded stays."""
        dispatcher = rl.EventDispatcher()
        recorder = EventRecorder(dispatcher)
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert recorder.attached
        recorder.detach()
        recorder.detach()  # idempotent
        dispatcher.emit(rl.ConnectionCreatedEvent(2.0, ORIGIN))
        assert not recorder.attached
        assert not dispatcher.has_listeners(rl.ConnectionCreatedEvent)
        assert len(recorder) == 1

    def test_concurrent_recording_loses_nothing(self, recorder: EventRecorder) -> None:
        """Events recorded from many threads at once are all kept."""
        start = threading.Barrier(8)

        def emit_many() -> None:
            start.wait()
            for _ in range(500):
                recorder(rl.ConnectionCreatedEvent(0.0, ORIGIN))

        threads = [threading.Thread(target=emit_many) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(recorder) == 8 * 500

    def test_attach_rejects_what_instrument_rejects(self) -> None:
        """Attaching to something that is not a client, pool, handle or dispatcher
        raises instrument()'s TypeError naming the type."""
        with pytest.raises(TypeError, match=r"got builtins\.object"):
            EventRecorder(object())

    def test_events_argument_must_be_event_classes(self) -> None:
        """``events=`` with a non-event class raises TypeError saying what is expected."""
        with pytest.raises(TypeError, match="events= takes event classes"):
            EventRecorder(events=[dict])  # type: ignore[list-item]

    def test_group_detaches_every_recorder(self) -> None:
        """Closing a RecorderGroup detaches each recorder it handed out."""
        dispatcher = rl.EventDispatcher()
        with RecorderGroup(timeout=1.5) as group:
            first = group.attach(dispatcher)
            second = group.attach(dispatcher, events=[rl.PoolResetEvent])
            assert first.timeout == 1.5
            assert first.attached
            assert second.attached
        assert not first.attached
        assert not second.attached
        assert not dispatcher.has_listeners(rl.PoolResetEvent)


class TestFieldMatching:
    def test_plain_values_compare_equal_and_enums_match_their_string(
        self, recorder: EventRecorder
    ) -> None:
        """Field values compare with ==; a CloseReason matches its string value."""
        disconnected(recorder)
        recorder.assert_emitted(rl.ConnectionDisconnectedEvent, reason="server_closed")
        recorder.assert_emitted(
            rl.ConnectionDisconnectedEvent, reason=rl.CloseReason.SERVER_CLOSED, port=7000
        )
        assert recorder.of(rl.ConnectionDisconnectedEvent, reason="application") == []

    def test_a_class_means_isinstance(self, recorder: EventRecorder) -> None:
        """A class as field value matches instances of it (e.g. the error type)."""
        disconnected(recorder, error=ConnectionResetError("gone"))
        recorder.assert_emitted(rl.ConnectionDisconnectedEvent, error=OSError)
        recorder.assert_not_emitted(rl.ConnectionDisconnectedEvent, error=TimeoutError)

    def test_a_callable_is_a_predicate(self, recorder: EventRecorder) -> None:
        """A callable field value is called with the field and must return true."""
        reconnected(recorder, downtime=0.25)
        recorder.assert_emitted(rl.ConnectionReconnectedEvent, downtime=lambda d: 0.2 < d < 0.3)
        recorder.assert_not_emitted(rl.ConnectionReconnectedEvent, downtime=lambda d: d > 1)

    def test_subclass_fields_usable_on_a_base_class(self, recorder: EventRecorder) -> None:
        """A base-class query may name a subclass's field; events lacking it do not match."""
        connected(recorder)
        reconnected(recorder, downtime=0.5)
        assert len(recorder.of(rl.ConnectionConnectedEvent, downtime=0.5)) == 1

    def test_unknown_field_names_the_valid_ones(self, recorder: EventRecorder) -> None:
        """A misspelt field raises TypeError listing the class's fields."""
        with pytest.raises(TypeError) as info:
            recorder.assert_emitted(rl.ConnectionReconnectedEvent, dowtime=1)
        assert str(info.value) == (
            "ConnectionReconnectedEvent has no field 'dowtime'; its fields are: type, "
            "timestamp, host, port, path, db, connection_id, pool_name, first_connection, "
            "connect_time, downtime"
        )

    def test_not_an_event_class(self, recorder: EventRecorder) -> None:
        """Asserting on something that is not an event class raises TypeError."""
        with pytest.raises(TypeError, match="expected an event class"):
            recorder.assert_emitted("connected")  # type: ignore[arg-type]


class TestAssertEmitted:
    def test_returns_the_matches(self, recorder: EventRecorder) -> None:
        """assert_emitted returns the matching events."""
        connected(recorder)
        acquired(recorder)
        found = recorder.assert_emitted(rl.ConnectionConnectedEvent, count=1)
        assert found == recorder.of(rl.ConnectionConnectedEvent)

    def test_none_recorded_message(self, recorder: EventRecorder) -> None:
        """With nothing matching, the message says so and lists every recorded event."""
        connected(recorder, at=0.001)
        disconnected(recorder, at=0.25, error=ConnectionError("Connection closed by server."))
        with pytest.raises(AssertionError) as info:
            recorder.assert_emitted(rl.ConnectionReconnectedEvent)
        assert str(info.value) == (
            "expected at least one ConnectionReconnectedEvent, recorded none\n"
            "recorded events (2):\n"
            "   0 +0.001s connected               127.0.0.1:7000/0 conn=1 pool=cache"
            " connect_time=0.0015\n"
            "   1 +0.250s disconnected            127.0.0.1:7000/0 conn=1 pool=cache"
            " reason=server_closed error='ConnectionError: Connection closed by server.'"
        )

    def test_count_mismatch_marks_events_of_the_class(self, recorder: EventRecorder) -> None:
        """With ``count``, a different number fails; events of the class are marked '>'."""
        connected(recorder)
        reconnected(recorder, at=0.5, downtime=0.4)
        with pytest.raises(AssertionError) as info:
            recorder.assert_emitted(rl.ConnectionReconnectedEvent, count=2, port=7000)
        lines = str(info.value).splitlines()
        assert lines[0] == "expected exactly 2 ConnectionReconnectedEvent(port=7000), recorded 1"
        assert lines[2].startswith("   0 ")
        assert lines[3].startswith(">  1 +0.500s reconnected")

    def test_count_zero_passes_when_absent(self, recorder: EventRecorder) -> None:
        """count=0 asserts absence."""
        connected(recorder)
        assert recorder.assert_emitted(rl.PoolExhaustedEvent, count=0) == []

    def test_empty_recording_message(self, recorder: EventRecorder) -> None:
        """With no events at all, the message says 'recorded events: none'."""
        with pytest.raises(AssertionError, match=r"recorded none\nrecorded events: none$"):
            recorder.assert_emitted(rl.ConnectionConnectedEvent)

    def test_predicates_described_by_name(self, recorder: EventRecorder) -> None:
        """Predicate and class expectations are described readably in the headline."""

        def slow(downtime: float) -> bool:
            return downtime > 1

        with pytest.raises(AssertionError) as info:
            recorder.assert_emitted(rl.ConnectionReconnectedEvent, downtime=slow)
        headline = str(info.value).splitlines()[0]
        assert "downtime=<predicate " in headline
        assert headline.endswith(".slow>), recorded none")
        with pytest.raises(AssertionError, match=r"error=<instance of TimeoutError>"):
            recorder.assert_emitted(rl.ConnectionErrorEvent, error=TimeoutError)

    def test_long_recordings_are_elided_in_the_middle(self, recorder: EventRecorder) -> None:
        """More than 40 events: the message keeps the first 10 and last 30 lines."""
        for index in range(100):
            acquired(recorder, at=index / 1000)
        with pytest.raises(AssertionError) as info:
            recorder.assert_emitted(rl.PoolExhaustedEvent)
        lines = str(info.value).splitlines()
        assert lines[1] == "recorded events (100):"
        assert lines[11].startswith("   9 ")
        assert lines[12] == "  ... 60 more ..."
        assert lines[13].startswith("  70 ")
        assert lines[-1].startswith("  99 ")
        assert len(lines) == 2 + 10 + 1 + 30


class TestAssertNotEmitted:
    def test_passes_when_absent(self, recorder: EventRecorder) -> None:
        """No matching event: no failure."""
        connected(recorder)
        recorder.assert_not_emitted(rl.ConnectionErrorEvent)

    def test_fails_with_count_and_listing(self, recorder: EventRecorder) -> None:
        """A matching event fails, saying how many matched."""
        disconnected(recorder, at=0.01)
        disconnected(recorder, at=0.02, reason=rl.CloseReason.APPLICATION)
        with pytest.raises(AssertionError) as info:
            recorder.assert_not_emitted(rl.ConnectionDisconnectedEvent, reason="server_closed")
        lines = str(info.value).splitlines()
        assert lines[0] == (
            "expected no ConnectionDisconnectedEvent(reason='server_closed'), recorded 1"
        )
        assert len(lines) == 4

    def test_default_is_any_event(self, recorder: EventRecorder) -> None:
        """Without a class, any recorded event fails it."""
        recorder.assert_not_emitted()
        acquired(recorder)
        with pytest.raises(AssertionError, match="expected no LifecycleEvent, recorded 1"):
            recorder.assert_not_emitted()


class TestAssertSequence:
    def test_subsequence_with_gaps(self, recorder: EventRecorder) -> None:
        """By default other events may come between the expected ones."""
        connected(recorder)
        acquired(recorder)
        disconnected(recorder)
        acquired(recorder)
        reconnected(recorder)
        found = recorder.assert_sequence(
            [
                rl.ConnectionConnectedEvent,
                rl.ConnectionDisconnectedEvent,
                matching(rl.ConnectionReconnectedEvent, downtime=lambda d: d > 0),
            ]
        )
        assert [e.type.value for e in found] == ["connected", "disconnected", "reconnected"]

    def test_order_matters(self, recorder: EventRecorder) -> None:
        """Expected events recorded in another order fail, saying where it stopped."""
        reconnected(recorder)
        disconnected(recorder)
        with pytest.raises(AssertionError) as info:
            recorder.assert_sequence(
                [rl.ConnectionDisconnectedEvent, rl.ConnectionReconnectedEvent]
            )
        assert str(info.value).splitlines()[0] == (
            "expected in order: [ConnectionDisconnectedEvent, ConnectionReconnectedEvent];"
            " matched 1 of 2, then no ConnectionReconnectedEvent after event 1"
        )

    def test_strict_rejects_events_in_between(self, recorder: EventRecorder) -> None:
        """strict=True needs consecutive events; an event in between fails it."""
        connected(recorder)
        acquired(recorder)
        disconnected(recorder)
        recorder.assert_sequence([rl.ConnectionConnectedEvent, rl.ConnectionDisconnectedEvent])
        with pytest.raises(AssertionError) as info:
            recorder.assert_sequence(
                [rl.ConnectionConnectedEvent, rl.ConnectionDisconnectedEvent], strict=True
            )
        assert str(info.value).splitlines()[0] == (
            "expected consecutive: [ConnectionConnectedEvent, ConnectionDisconnectedEvent];"
            " longest consecutive run matched 1 of 2"
        )

    def test_strict_finds_a_consecutive_run_anywhere(self, recorder: EventRecorder) -> None:
        """strict=True passes when the run appears consecutively anywhere."""
        connected(recorder)
        acquired(recorder)
        disconnected(recorder)
        reconnected(recorder)
        acquired(recorder)
        found = recorder.assert_sequence(
            [
                rl.ConnectionDisconnectedEvent,
                rl.ConnectionReconnectedEvent,
                rl.PoolConnectionAcquiredEvent,
            ],
            strict=True,
        )
        assert len(found) == 3

    def test_tuple_items_and_field_mismatch(self, recorder: EventRecorder) -> None:
        """(cls, {fields}) items work like matching(); a field mismatch fails."""
        disconnected(recorder, reason=rl.CloseReason.ERROR)
        recorder.assert_sequence([(rl.ConnectionDisconnectedEvent, {"reason": "error"})])
        with pytest.raises(AssertionError, match="matched 0 of 1"):
            recorder.assert_sequence([matching(rl.ConnectionDisconnectedEvent, reason="fork")])

    def test_bad_items(self, recorder: EventRecorder) -> None:
        """Items that are not event classes or matchers raise TypeError; [] is a ValueError."""
        with pytest.raises(TypeError, match="expects event classes or matching"):
            recorder.assert_sequence(["connected"])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="at least one"):
            recorder.assert_sequence([])


class TestWaitFor:
    def test_returns_an_already_recorded_event(self, recorder: EventRecorder) -> None:
        """wait_for counts events recorded before it was called."""
        connected(recorder)
        event = recorder.wait_for(rl.ConnectionConnectedEvent, timeout=0)
        assert event is recorder.events[0]

    def test_wakes_for_an_event_from_another_thread(self, recorder: EventRecorder) -> None:
        """An event recorded on another thread after the wait began ends the wait."""
        started = threading.Event()

        def later() -> None:
            started.wait(5)
            disconnected(recorder, reason=rl.CloseReason.ERROR)
            reconnected(recorder)

        thread = threading.Thread(target=later)
        thread.start()
        started.set()
        event = recorder.wait_for(rl.ConnectionReconnectedEvent, timeout=5)
        thread.join()
        assert event.type is rl.EventType.RECONNECTED

    def test_count_waits_for_the_nth_match(self, recorder: EventRecorder) -> None:
        """count=n returns the n-th matching event."""
        timer = threading.Timer(0.01, lambda: reconnected(recorder, downtime=2.0))
        reconnected(recorder, downtime=1.0)
        timer.start()
        event = recorder.wait_for(rl.ConnectionReconnectedEvent, timeout=5, count=2)
        timer.join()
        assert event.downtime == 2.0

    def test_fields_filter_what_ends_the_wait(self, recorder: EventRecorder) -> None:
        """Events of the class whose fields do not match do not end the wait."""
        disconnected(recorder, reason=rl.CloseReason.APPLICATION)
        with pytest.raises(AssertionError) as info:
            recorder.wait_for(rl.ConnectionDisconnectedEvent, timeout=0.05, reason="error")
        assert str(info.value).splitlines()[0] == (
            "no ConnectionDisconnectedEvent(reason='error') within 0.05s"
        )

    def test_timeout_message_with_some_matches(self, recorder: EventRecorder) -> None:
        """When fewer than ``count`` arrived, the message says how many did."""
        connected(recorder)
        with pytest.raises(AssertionError) as info:
            recorder.wait_for(rl.ConnectionConnectedEvent, timeout=0.01, count=2)
        assert str(info.value).splitlines()[0] == (
            "no more ConnectionConnectedEvent (recorded 1) within 0.01s"
        )

    def test_default_timeout_comes_from_the_recorder(self) -> None:
        """Without ``timeout``, wait_for uses the recorder's ``timeout``."""
        recorder = EventRecorder(timeout=0.02)
        with pytest.raises(AssertionError, match=r"within 0.02s"):
            recorder.wait_for(rl.PoolResetEvent)

    async def test_async_wait_sees_events_from_the_loop(self, recorder: EventRecorder) -> None:
        """wait_for_async yields to the loop, so an event the loop delivers ends the wait."""
        loop = asyncio.get_running_loop()
        loop.call_soon(reconnected, recorder)
        event = await recorder.wait_for_async(rl.ConnectionReconnectedEvent, timeout=5)
        assert event.type is rl.EventType.RECONNECTED

    async def test_async_wait_sees_events_from_a_thread(self, recorder: EventRecorder) -> None:
        """wait_for_async also wakes for events recorded on other threads."""
        thread = threading.Thread(target=lambda: disconnected(recorder, at=0.1))
        loop = asyncio.get_running_loop()
        loop.call_soon(thread.start)
        event = await recorder.wait_for_async(rl.ConnectionDisconnectedEvent, timeout=5)
        thread.join()
        assert event.reason is rl.CloseReason.SERVER_CLOSED
        assert not recorder._async_waiters

    async def test_async_timeout_message(self, recorder: EventRecorder) -> None:
        """wait_for_async fails like wait_for, listing the recorded events."""
        acquired(recorder)
        with pytest.raises(AssertionError) as info:
            await recorder.wait_for_async(rl.PoolExhaustedEvent, timeout=0.01)
        lines = str(info.value).splitlines()
        assert lines[:2] == ["no PoolExhaustedEvent within 0.01s", "recorded events (1):"]
        assert not recorder._async_waiters
