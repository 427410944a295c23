"""A callback that cannot take one event is refused where it is given.

Pure argument checking: no server needed (a lifecycle pool connects lazily).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

import redis_lifecycle as rl


def _two(a: Any, b: Any) -> None:
    pass


def _keyword_only(event: Any, *, extra: Any) -> None:
    pass


REFUSED = [
    pytest.param(lambda: None, id="no-parameter"),
    pytest.param(lambda a, b: None, id="two-parameters"),
    pytest.param(_two, id="two-parameter-function"),
    pytest.param(_keyword_only, id="required-keyword-only"),
    pytest.param(functools.partial(_two, 1, 2), id="partial-filled-up"),
]


class _Callable:
    def __call__(self, event: Any) -> None:
        pass


class _Listener:
    def on_event(self, event: Any) -> None:
        pass

    def on_nothing(self) -> None:
        pass


async def _async_callback(event: Any) -> None:
    pass


ACCEPTED = [
    pytest.param(lambda event: None, id="one-parameter"),
    pytest.param(lambda *args: None, id="star-args"),
    pytest.param(lambda event, extra=1: None, id="default"),
    pytest.param(lambda event, *, extra=1: None, id="keyword-only-default"),
    pytest.param(print, id="builtin"),
    pytest.param([].append, id="bound-builtin-method"),
    pytest.param(_Listener().on_event, id="bound-method"),
    pytest.param(functools.partial(_two, 1), id="partial"),
    pytest.param(_Callable(), id="callable-object"),
    pytest.param(_async_callback, id="async-def"),
]


@pytest.mark.parametrize("callback", REFUSED)
def test_subscribe_refuses_a_callback_that_cannot_take_one_event(callback: Any) -> None:
    dispatcher = rl.EventDispatcher()
    with pytest.raises(TypeError, match=r"subscribe\(\) expects a callback that takes one"):
        dispatcher.subscribe(rl.ConnectionConnectedEvent, callback)
    assert not dispatcher.has_listeners(rl.ConnectionConnectedEvent)


@pytest.mark.parametrize("callback", ACCEPTED)
def test_subscribe_accepts_what_can_take_one_event(callback: Any) -> None:
    dispatcher = rl.EventDispatcher()
    subscription = dispatcher.subscribe(rl.ConnectionConnectedEvent, callback)
    assert subscription.active


def test_a_bound_method_without_the_event_parameter_is_refused() -> None:
    with pytest.raises(TypeError, match=r"on_nothing\(\)"):
        rl.EventDispatcher().subscribe(rl.LifecycleEvent, _Listener().on_nothing)  # type: ignore[arg-type]


def test_the_decorator_form_refuses_too() -> None:
    dispatcher = rl.EventDispatcher()
    with pytest.raises(TypeError, match="takes one argument"):

        @dispatcher.subscribe(rl.PoolExhaustedEvent)  # type: ignore[arg-type]
        def alert() -> None:
            pass

    assert not dispatcher.has_listeners(rl.PoolExhaustedEvent)


def test_a_signature_that_cannot_be_read_is_accepted() -> None:
    class Opaque:
        @property
        def __signature__(self) -> Any:
            raise ValueError("no signature")

        def __call__(self, *args: Any) -> None:
            pass

    rl.EventDispatcher().subscribe(rl.LifecycleEvent, Opaque())


def test_the_message_says_what_was_given_and_what_to_do() -> None:
    def on_event(pool: Any, event: Any) -> None:
        pass

    with pytest.raises(TypeError) as raised:
        rl.EventDispatcher().subscribe(rl.LifecycleEvent, on_event)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "on_event(pool: 'Any', event: 'Any')" in message
    assert "def on_event(event)" in message


@pytest.mark.parametrize("callback", REFUSED)
def test_register_connection_callback_refuses_it(callback: Any) -> None:
    pool = rl.LifecycleConnectionPool(host="127.0.0.1", port=1)
    with pytest.raises(
        TypeError, match=r"register_connection_callback\(\) expects a callback that takes one"
    ):
        pool.register_connection_callback("connected", callback)
    assert not pool.event_dispatcher.has_listeners(rl.ConnectionConnectedEvent)
    pool.disconnect()


def test_register_connection_callback_accepts_one_parameter_and_star_args() -> None:
    pool = rl.LifecycleConnectionPool(host="127.0.0.1", port=1)
    handle = pool.lifecycle
    assert handle.register_connection_callback("connected", lambda info: None) is not None
    assert handle.register_connection_callback("connected", print) is print
    assert pool.event_dispatcher.has_listeners(rl.ConnectionConnectedEvent)
    pool.disconnect()
