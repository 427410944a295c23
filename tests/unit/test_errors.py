"""CallbackErrorHandler strategies and how Delivery applies them (no Redis)."""

from __future__ import annotations

import logging

import pytest

import redis_lifecycle as rl
from redis_lifecycle._delivery import Delivery
from redis_lifecycle.events import EventOrigin

ORIGIN = EventOrigin(host="h", port=1, db=0, connection_id=7, pool_name="p")


def event() -> rl.ConnectionConnectedEvent:
    return rl.ConnectionConnectedEvent(1.0, ORIGIN, 0.01)


def boom(_event: rl.LifecycleEvent) -> None:
    raise RuntimeError("boom")


class TestHandler:
    def test_default_strategy_is_log(self) -> None:
        """Without arguments the handler logs."""
        assert rl.CallbackErrorHandler().strategy == "log"

    def test_log_writes_a_warning_with_traceback_on_the_package_logger(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """ "log" emits one WARNING on logger "redis_lifecycle" carrying the exception."""
        handler = rl.CallbackErrorHandler("log")
        error = RuntimeError("boom")
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            assert handler.handle(error, event(), boom) is None
        [record] = caplog.records
        assert record.name == "redis_lifecycle"
        assert record.levelno == logging.WARNING
        assert record.exc_info is not None
        assert record.exc_info[1] is error
        assert "boom" in record.getMessage()
        assert "ConnectionConnectedEvent" in record.getMessage()

    def test_ignore_reports_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """ "ignore" neither logs nor asks for a raise."""
        with caplog.at_level(logging.DEBUG, logger="redis_lifecycle"):
            assert rl.CallbackErrorHandler("ignore").handle(RuntimeError(), event(), boom) is None
        assert caplog.records == []

    def test_raise_returns_a_callback_error_with_event_and_cause(self) -> None:
        """ "raise" hands back (never raises) a CallbackError with the event and the cause."""
        failing = event()
        original = RuntimeError("boom")
        error = rl.CallbackErrorHandler("raise").handle(original, failing, boom)
        assert isinstance(error, rl.CallbackError)
        assert error.event is failing
        assert error.callback is boom
        assert error.__cause__ is original
        assert "boom" in str(error)

    @pytest.mark.parametrize("strategy", ["explode", "RAISE", "", None, 3])
    def test_invalid_strategy_lists_the_valid_ones(self, strategy: object) -> None:
        """An unknown strategy raises ValueError naming ignore, log and raise."""
        with pytest.raises(ValueError, match="'ignore', 'log', 'raise'"):
            rl.CallbackErrorHandler(strategy)  # type: ignore[arg-type]

    def test_no_password_reaches_the_log(self, caplog: pytest.LogCaptureFixture) -> None:
        """The logged message is built from the event's repr, which holds no credentials."""
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            rl.CallbackErrorHandler("log").handle(RuntimeError("x"), event(), boom)
        assert "password" not in caplog.text.lower()


class TestDeliveryStrategies:
    def deliver(self, strategy: str) -> tuple[list[str], Delivery]:
        dispatcher = rl.EventDispatcher()
        ran: list[str] = []
        dispatcher.subscribe(rl.ConnectionConnectedEvent, lambda e: ran.append("first"))
        dispatcher.subscribe(rl.ConnectionConnectedEvent, boom)
        dispatcher.subscribe(rl.ConnectionConnectedEvent, lambda e: ran.append("last"))
        delivery = Delivery(dispatcher, error_handler=rl.CallbackErrorHandler(strategy))  # type: ignore[arg-type]
        return ran, delivery

    @pytest.mark.parametrize("strategy", ["ignore", "log"])
    def test_a_failing_callback_does_not_stop_the_others(
        self, strategy: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Under ignore and log every other callback still runs and emit returns normally."""
        ran, delivery = self.deliver(strategy)
        with caplog.at_level(logging.WARNING, logger="redis_lifecycle"):
            delivery.emit(event())
        assert ran == ["first", "last"]
        assert len(caplog.records) == (1 if strategy == "log" else 0)

    def test_raise_runs_every_callback_then_raises(self) -> None:
        """Under raise the remaining callbacks run before the CallbackError propagates."""
        ran, delivery = self.deliver("raise")
        with pytest.raises(rl.CallbackError) as caught:
            delivery.emit(event())
        assert ran == ["first", "last"]
        assert isinstance(caught.value.__cause__, RuntimeError)

    def test_failures_are_counted_by_instrumentation_under_every_strategy(self) -> None:
        """Instrumentation counts the failed callback as an error whatever the strategy."""
        for strategy in ("ignore", "log", "raise"):
            metrics = rl.Instrumentation()
            dispatcher = rl.EventDispatcher()
            dispatcher.subscribe(rl.ConnectionConnectedEvent, boom)
            delivery = Delivery(
                dispatcher,
                error_handler=rl.CallbackErrorHandler(strategy),
                instrumentation=metrics,
            )
            logging.getLogger("redis_lifecycle").disabled = True
            try:
                delivery.emit(event())
            except rl.CallbackError:
                assert strategy == "raise"
            finally:
                logging.getLogger("redis_lifecycle").disabled = False
            stats = metrics.callback_metrics("connected")
            assert (stats["count"], stats["errors"]) == (1, 1), strategy

    def test_run_counted_reports_failures_whatever_the_strategy(self) -> None:
        """run_counted returns the number of callbacks that raised, even when nothing is raised."""
        _, delivery = self.deliver("ignore")
        subscriptions = delivery.dispatcher.listeners(rl.ConnectionConnectedEvent)
        assert delivery.run_counted(event(), subscriptions) == (1, None)
