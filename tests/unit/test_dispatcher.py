"""EventDispatcher: subscription, MRO dispatch, thread safety, bad input."""

from __future__ import annotations

import logging
import threading

import pytest

import redis_lifecycle as rl
from redis_lifecycle.events import EventOrigin

ORIGIN = EventOrigin(host="h", port=1, db=0, connection_id=1, pool_name="p")


def connected() -> rl.ConnectionConnectedEvent:
    return rl.ConnectionConnectedEvent(1.0, ORIGIN, 0.1)


def reconnected() -> rl.ConnectionReconnectedEvent:
    return rl.ConnectionReconnectedEvent(1.0, ORIGIN, 0.1, 2.0)


class TestSubscribe:
    def test_subscribing_to_a_class_receives_its_subclasses(self) -> None:
        """ConnectionConnectedEvent subscribers get reconnects; LifecycleEvent gets all."""
        dispatcher = rl.EventDispatcher()
        on_connected: list[rl.LifecycleEvent] = []
        everything: list[rl.LifecycleEvent] = []
        dispatcher.subscribe(rl.ConnectionConnectedEvent, on_connected.append)
        dispatcher.subscribe(rl.LifecycleEvent, everything.append)
        first, again = connected(), reconnected()
        dispatcher.emit(first)
        dispatcher.emit(again)
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert on_connected == [first, again]
        assert len(everything) == 3

    def test_exact_subscription_skips_subclasses(self) -> None:
        """exact=True delivers only the class itself."""
        dispatcher = rl.EventDispatcher()
        seen: list[rl.LifecycleEvent] = []
        dispatcher.subscribe(rl.ConnectionConnectedEvent, seen.append, exact=True)
        dispatcher.emit(reconnected())
        first = connected()
        dispatcher.emit(first)
        assert seen == [first]

    def test_callbacks_run_in_subscription_order_across_classes(self) -> None:
        """Order follows subscription time, not class hierarchy."""
        dispatcher = rl.EventDispatcher()
        order: list[str] = []
        dispatcher.subscribe(rl.LifecycleEvent, lambda e: order.append("base"))
        dispatcher.subscribe(rl.ConnectionReconnectedEvent, lambda e: order.append("leaf"))
        dispatcher.subscribe(rl.ConnectionConnectedEvent, lambda e: order.append("mid"))
        dispatcher.emit(reconnected())
        assert order == ["base", "leaf", "mid"]

    def test_decorator_form_returns_a_subscription(self) -> None:
        """@dispatcher.subscribe(cls) binds the name to a callable Subscription."""
        dispatcher = rl.EventDispatcher()
        seen: list[rl.LifecycleEvent] = []

        @dispatcher.subscribe(rl.ConnectionCreatedEvent)
        def on_created(event: rl.ConnectionCreatedEvent) -> None:
            seen.append(event)

        assert isinstance(on_created, rl.Subscription)
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert len(seen) == 1
        assert on_created.unsubscribe() is True
        assert on_created.unsubscribe() is False
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert len(seen) == 1

    def test_unsubscribe_returns_whether_it_was_subscribed(self) -> None:
        """unsubscribe is idempotent and reports what it did."""
        dispatcher = rl.EventDispatcher()
        subscription = dispatcher.subscribe(rl.PoolResetEvent, print)
        assert subscription.active
        assert dispatcher.unsubscribe(rl.PoolResetEvent, subscription) is True
        assert not subscription.active
        assert dispatcher.unsubscribe(rl.PoolResetEvent, subscription) is False
        assert not dispatcher.has_listeners(rl.PoolResetEvent)

    def test_unsubscribe_by_callback_removes_it(self) -> None:
        """Given the callback instead of its subscription (the guide's form),
        unsubscribe removes every subscription of that class to it, and only those."""
        dispatcher = rl.EventDispatcher()
        seen: list[str] = []

        def on_reset(event: rl.LifecycleEvent) -> None:
            seen.append("reset")

        first = dispatcher.subscribe(rl.PoolResetEvent, on_reset)
        second = dispatcher.subscribe(rl.PoolResetEvent, on_reset)
        other = dispatcher.subscribe(rl.PoolResetEvent, print)
        elsewhere = dispatcher.subscribe(rl.ConnectionCreatedEvent, on_reset)
        assert dispatcher.unsubscribe(rl.PoolResetEvent, on_reset) is True
        assert not first.active
        assert not second.active
        assert other.active
        assert elsewhere.active
        assert dispatcher.unsubscribe(rl.PoolResetEvent, on_reset) is False
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert seen == ["reset"]

    def test_resolution_is_cached_until_subscriptions_change(self) -> None:
        """listeners() returns the same tuple until a subscribe invalidates it."""
        dispatcher = rl.EventDispatcher()
        dispatcher.subscribe(rl.LifecycleEvent, print)
        first = dispatcher.listeners(rl.PoolResetEvent)
        assert dispatcher.listeners(rl.PoolResetEvent) is first
        dispatcher.subscribe(rl.PoolResetEvent, print)
        assert len(dispatcher.listeners(rl.PoolResetEvent)) == 2


class TestInsideCallbacks:
    def test_a_callback_may_subscribe_and_unsubscribe(self) -> None:
        """Callbacks run outside the lock: changing subscriptions from one works."""
        dispatcher = rl.EventDispatcher()
        late: list[rl.LifecycleEvent] = []

        def once(event: rl.LifecycleEvent) -> None:
            subscription.unsubscribe()
            dispatcher.subscribe(rl.ConnectionCreatedEvent, late.append)

        subscription = dispatcher.subscribe(rl.ConnectionCreatedEvent, once)
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert late == []  # the new subscription starts with the next event
        event = rl.ConnectionCreatedEvent(2.0, ORIGIN)
        dispatcher.emit(event)
        assert late == [event]

    def test_a_raising_callback_is_logged_and_does_not_stop_the_others(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Default strategy: warning with traceback on the redis_lifecycle logger."""
        dispatcher = rl.EventDispatcher()
        seen: list[rl.LifecycleEvent] = []

        def broken(event: rl.LifecycleEvent) -> None:
            raise RuntimeError("boom")

        dispatcher.subscribe(rl.ConnectionCreatedEvent, broken)
        dispatcher.subscribe(rl.ConnectionCreatedEvent, seen.append)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert len(seen) == 1
        [record] = caplog.records
        assert record.name == "redis_lifecycle"
        assert "broken" in record.getMessage()
        assert record.exc_info is not None
        assert record.exc_info[0] is RuntimeError


class TestThreads:
    def test_concurrent_subscribe_and_emit_lose_nothing(self) -> None:
        """Subscriptions made while other threads emit all take effect."""
        dispatcher = rl.EventDispatcher()
        counts = [0] * 8
        lock = threading.Lock()
        stop = threading.Event()

        def emitter() -> None:
            while not stop.is_set():
                dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))

        def make(i: int) -> rl.dispatcher.EventCallback:
            def callback(event: rl.LifecycleEvent) -> None:
                with lock:
                    counts[i] += 1

            return callback

        threads = [threading.Thread(target=emitter) for _ in range(2)]
        for thread in threads:
            thread.start()
        for i in range(8):
            dispatcher.subscribe(rl.ConnectionCreatedEvent, make(i))
        stop.set()
        for thread in threads:
            thread.join()
        assert len(dispatcher.listeners(rl.ConnectionCreatedEvent)) == 8
        dispatcher.emit(rl.ConnectionCreatedEvent(1.0, ORIGIN))
        assert all(count >= 1 for count in counts)


class TestBadInput:
    def test_subscribing_to_a_non_event_class_is_a_type_error(self) -> None:
        """The message names what was given and what to do."""
        dispatcher = rl.EventDispatcher()
        with pytest.raises(TypeError, match=r"expects an event class.*got <class 'str'>"):
            dispatcher.subscribe(str, print)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="register_connection_callback"):
            dispatcher.subscribe("connected", print)  # type: ignore[call-overload]

    def test_non_callable_callback_is_a_type_error(self) -> None:
        """A callback that can't be called is refused up front."""
        dispatcher = rl.EventDispatcher()
        with pytest.raises(TypeError, match="callback must be callable, got int"):
            dispatcher.subscribe(rl.LifecycleEvent, 42)  # type: ignore[call-overload]
        assert not dispatcher.has_listeners(rl.ConnectionCreatedEvent)
