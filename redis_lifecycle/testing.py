"""Record lifecycle events in tests and assert on them (no pytest needed).

    >>> import redis, redis_lifecycle as rl
    >>> from redis_lifecycle.testing import EventRecorder, matching
    >>> client = redis.Redis(host="localhost", port=6379)   # doctest: +SKIP
    >>> with EventRecorder(client) as recorder:             # doctest: +SKIP
    ...     client.ping()
    ...     recorder.assert_emitted(rl.ConnectionConnectedEvent, count=1, port=6379)
    ...     recorder.assert_not_emitted(rl.ConnectionErrorEvent)
    ...     recorder.assert_sequence([
    ...         rl.ConnectionCreatedEvent,
    ...         matching(rl.ConnectionConnectedEvent, connect_time=lambda s: s < 1),
    ...     ])

An :class:`EventRecorder` subscribes to :class:`~redis_lifecycle.LifecycleEvent`
(or the classes you name) and keeps every event it receives, in arrival
order. It is a plain callback, so it records inline on whatever thread
delivers the event (the thread running the Redis command, an
:class:`~redis_lifecycle.AsyncCallbackExecutor` worker, or the event loop);
it is thread-safe, and :meth:`EventRecorder.wait_for` /
:meth:`EventRecorder.wait_for_async` wait, with a deadline, for events that
arrive from other threads or tasks.

Field expectations (``**fields``) accept a plain value (compared with
``==``; enum fields also equal their string value), a class (``isinstance``,
e.g. ``error=redis.ConnectionError``) or a predicate (any other callable,
called with the field's value).

Assertion failures raise :class:`AssertionError` with what was expected and
then the recorded events, one compact line each. The pytest plugin
(:mod:`redis_lifecycle.pytest_plugin`) hands out recorders through its
``lifecycle_events`` fixture and detaches them after each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from .dispatcher import EventDispatcher, Subscription
from .events import EVENT_CLASSES, LifecycleEvent, PoolConnectionLeakEvent, describe_error

__all__ = ["EventMatcher", "EventRecorder", "RecorderGroup", "matching"]

E = TypeVar("E", bound=LifecycleEvent)

#: Fields every event has (see :class:`~redis_lifecycle.LifecycleEvent`).
COMMON_FIELDS = ("type", "timestamp", "host", "port", "path", "db", "connection_id", "pool_name")

#: How many recorded events a failure message lists before it elides the middle.
MAX_LISTED = 40

DEFAULT_TIMEOUT = 5.0

_MISSING = object()


def _field_names(event_cls: type[LifecycleEvent]) -> tuple[str, ...]:
    """Fields an event of ``event_cls`` (or of one of its subclasses) may have."""
    names = list(COMMON_FIELDS)
    for cls in (event_cls, *EVENT_CLASSES):
        if issubclass(cls, event_cls):
            names.extend(name for name in cls._fields if name not in names)
    return tuple(names)


def _describe_expected_value(value: Any) -> str:
    if isinstance(value, type):
        return f"<instance of {value.__name__}>"
    if callable(value):
        name = getattr(value, "__qualname__", None) or type(value).__name__
        return f"<predicate {name}>"
    if isinstance(value, enum.Enum):
        return repr(value.value)
    return repr(value)


def _value_matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, type):
        return isinstance(actual, expected)
    if callable(expected):
        return bool(expected(actual))
    return bool(actual == expected)


class EventMatcher:
    """An event class plus field expectations; build one with :func:`matching`."""

    __slots__ = ("event_cls", "fields")

    def __init__(self, event_cls: type[LifecycleEvent], fields: dict[str, Any]) -> None:
        if not (isinstance(event_cls, type) and issubclass(event_cls, LifecycleEvent)):
            msg = (
                "expected an event class such as redis_lifecycle.ConnectionConnectedEvent, "
                f"got {event_cls!r}"
            )
            raise TypeError(msg)
        known = _field_names(event_cls)
        unknown = [name for name in fields if name not in known]
        if unknown:
            msg = (
                f"{event_cls.__name__} has no field {', '.join(map(repr, unknown))}; "
                f"its fields are: {', '.join(known)}"
            )
            raise TypeError(msg)
        self.event_cls = event_cls
        self.fields = dict(fields)

    def matches(self, event: LifecycleEvent) -> bool:
        """Whether ``event`` is an instance of the class and every field matches."""
        if not isinstance(event, self.event_cls):
            return False
        for name, expected in self.fields.items():
            actual = getattr(event, name, _MISSING)
            if actual is _MISSING or not _value_matches(actual, expected):
                return False
        return True

    def __repr__(self) -> str:
        if not self.fields:
            return self.event_cls.__name__
        inner = ", ".join(f"{k}={_describe_expected_value(v)}" for k, v in self.fields.items())
        return f"{self.event_cls.__name__}({inner})"


def matching(event_cls: type[LifecycleEvent], **fields: Any) -> EventMatcher:
    """An expectation for :meth:`EventRecorder.assert_sequence`: ``event_cls``
    (or a subclass) whose fields match ``fields`` (values, classes or predicates)."""
    return EventMatcher(event_cls, fields)


#: An item of :meth:`EventRecorder.assert_sequence`.
Expectation = type[LifecycleEvent] | EventMatcher | tuple[type[LifecycleEvent], dict[str, Any]]


def _as_matcher(item: Any) -> EventMatcher:
    if isinstance(item, EventMatcher):
        return item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
        return EventMatcher(item[0], item[1])
    if isinstance(item, type) and issubclass(item, LifecycleEvent):
        return EventMatcher(item, {})
    msg = (
        "assert_sequence() expects event classes or matching(EventClass, field=value) "
        f"items; got {item!r}"
    )
    raise TypeError(msg)


def _format_value(value: Any) -> str:
    if isinstance(value, BaseException):
        return repr(describe_error(value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value)


class EventRecorder:
    """Keeps the events it receives and asserts on them.

    ``EventRecorder(target)`` attaches at once; ``target`` is a redis-py
    client, a pool, a :class:`~redis_lifecycle.LifecycleHandle` or an
    :class:`~redis_lifecycle.EventDispatcher` (see :meth:`attach`).
    ``events`` narrows what is recorded (default: everything). The recorder
    is also a plain callback: ``dispatcher.subscribe(SomeEvent, recorder)``.
    """

    def __init__(
        self,
        target: Any = None,
        *,
        events: Iterable[type[LifecycleEvent]] = (LifecycleEvent,),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._classes = tuple(events)
        for cls in self._classes:
            if not (isinstance(cls, type) and issubclass(cls, LifecycleEvent)):
                msg = (
                    "events= takes event classes such as redis_lifecycle.LifecycleEvent; "
                    f"got {cls!r}"
                )
                raise TypeError(msg)
        self.timeout = timeout
        self._condition = threading.Condition(threading.Lock())
        self._events: list[LifecycleEvent] = []
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._subscriptions: list[Subscription] = []
        # What this recorder instrumented itself, to uninstrument on detach.
        self._instrumented: list[tuple[weakref.ref[Any], Any]] = []
        self._started = time.time()
        if target is not None:
            self.attach(target)

    # -- attaching -----------------------------------------------------------

    def attach(self, target: Any) -> EventRecorder:
        """Record the events of ``target``; returns the recorder.

        A client or pool that is not instrumented yet is instrumented (with a
        dispatcher this recorder already listens to, so its
        ``PoolCreatedEvent`` is recorded too) and is uninstrumented again by
        :meth:`detach`. One that is already instrumented keeps its handle;
        the recorder only subscribes to it. Raises :class:`TypeError` for
        anything :func:`redis_lifecycle.instrument` does not accept.
        """
        from .instrument import LifecycleHandle, find_handle, instrument

        if isinstance(target, EventDispatcher):
            self._subscribe(target)
            return self
        if isinstance(target, LifecycleHandle):
            self._subscribe(target.dispatcher)
            return self
        existing = find_handle(target)
        if existing is not None:  # instrumented by someone else: listen, leave it as it is
            self._subscribe(existing.dispatcher)
            return self
        dispatcher = EventDispatcher()
        subscriptions = [dispatcher.subscribe(cls, self) for cls in self._classes]
        handle = instrument(target, event_dispatcher=dispatcher)
        self._subscriptions.extend(subscriptions)
        self._instrumented.append((weakref.ref(target), handle))
        return self

    def _subscribe(self, dispatcher: EventDispatcher) -> None:
        self._subscriptions.extend(dispatcher.subscribe(cls, self) for cls in self._classes)

    def detach(self) -> None:
        """Stop recording, and uninstrument what :meth:`attach` instrumented.

        The recorded events stay. Safe to call more than once.
        """
        from .instrument import handle_for, uninstrument

        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.unsubscribe()
        instrumented, self._instrumented = self._instrumented, []
        for ref, handle in instrumented:
            target = ref()
            if target is not None and handle_for(target) is handle:
                uninstrument(target)

    @property
    def attached(self) -> bool:
        """Whether it is still subscribed to anything."""
        return any(subscription.active for subscription in self._subscriptions)

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    # -- recording -----------------------------------------------------------

    def __call__(self, event: LifecycleEvent) -> None:
        """Record ``event`` (the recorder's callback)."""
        with self._condition:
            self._events.append(event)
            self._condition.notify_all()
            waiters = list(self._async_waiters)
        for loop, flag in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(flag.set)

    @property
    def events(self) -> list[LifecycleEvent]:
        """A copy of the recorded events, in arrival order."""
        with self._condition:
            return list(self._events)

    def of(self, event_cls: type[E], **fields: Any) -> list[E]:
        """Recorded events of ``event_cls`` (or a subclass) whose fields match."""
        matcher = EventMatcher(event_cls, fields)
        return [event for event in self.events if matcher.matches(event)]  # type: ignore[misc]

    def clear(self) -> None:
        """Forget what was recorded so far (it keeps recording)."""
        with self._condition:
            self._events.clear()

    def __len__(self) -> int:
        with self._condition:
            return len(self._events)

    def __iter__(self) -> Iterator[LifecycleEvent]:
        return iter(self.events)

    # -- assertions ----------------------------------------------------------

    def assert_emitted(
        self, event_cls: type[E], count: int | None = None, **fields: Any
    ) -> list[E]:
        """Assert that an event of ``event_cls`` with these fields was recorded,
        exactly ``count`` times if ``count`` is given. Returns the matches."""
        __tracebackhide__ = True
        matcher = EventMatcher(event_cls, fields)
        events = self.events
        found = [event for event in events if matcher.matches(event)]
        if count is None and not found:
            self._fail(f"expected at least one {matcher}, recorded none", events, matcher)
        if count is not None and len(found) != count:
            self._fail(
                f"expected {_times(count)} {matcher}, recorded {len(found)}", events, matcher
            )
        return found  # type: ignore[return-value]

    def assert_not_emitted(
        self, event_cls: type[LifecycleEvent] = LifecycleEvent, **fields: Any
    ) -> None:
        """Assert that no event of ``event_cls`` with these fields was recorded."""
        __tracebackhide__ = True
        matcher = EventMatcher(event_cls, fields)
        events = self.events
        found = sum(1 for event in events if matcher.matches(event))
        if found:
            self._fail(f"expected no {matcher}, recorded {found}", events, matcher)

    def assert_no_leaks(self) -> None:
        """Assert that no :class:`~redis_lifecycle.PoolConnectionLeakEvent`
        was recorded: no connection stayed checked out past its pool's
        ``leak_detection`` threshold. The failure lists each leak with the
        stack that checked the connection out.

        Instrument with ``leak_detection=SECONDS`` for leaks to be reported;
        a leak is reported while the connection is held, so a test that
        returns its connections late shows here too.
        """
        __tracebackhide__ = True
        matcher = EventMatcher(PoolConnectionLeakEvent, {})
        events = self.events
        leaks = [event for event in events if isinstance(event, PoolConnectionLeakEvent)]
        if leaks:
            self._fail(
                f"expected no leaked connection, recorded {len(leaks)}"
                f" (connection {', '.join(str(e.connection_id) for e in leaks)})",
                events,
                matcher,
            )

    def assert_sequence(
        self, expected: Sequence[Expectation], *, strict: bool = False
    ) -> list[LifecycleEvent]:
        """Assert that events matching ``expected`` were recorded in this order.

        Items are event classes or :func:`matching` expectations. By default
        other events may come in between (an ordered subsequence); with
        ``strict=True`` they must be consecutive recorded events. Returns the
        events that matched, one per item.
        """
        __tracebackhide__ = True
        matchers = [_as_matcher(item) for item in expected]
        if not matchers:
            msg = "assert_sequence() needs at least one expected event"
            raise ValueError(msg)
        events = self.events
        found = _find_sequence(events, matchers, strict)
        if isinstance(found, list):
            return found
        wanted = ", ".join(map(repr, matchers))
        kind = "consecutive" if strict else "in order"
        if strict:
            detail = f"longest consecutive run matched {found} of {len(matchers)}"
        else:
            after = f" after event {_nth_match_index(events, matchers, found)}" if found else ""
            detail = f"matched {found} of {len(matchers)}, then no {matchers[found]}{after}"
        self._fail(f"expected {kind}: [{wanted}]; {detail}", events, None)

    def wait_for(
        self,
        event_cls: type[E],
        timeout: float | None = None,
        *,
        count: int = 1,
        **fields: Any,
    ) -> E:
        """Wait until ``count`` events of ``event_cls`` with these fields have
        been recorded (counting those already recorded); return the
        ``count``-th. Fails after ``timeout`` seconds (default
        :attr:`timeout`). For events delivered on other threads; in a
        coroutine use :meth:`wait_for_async`."""
        __tracebackhide__ = True
        _fail_if_unavailable(event_cls)
        matcher = EventMatcher(event_cls, fields)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._condition:
            seen = 0
            while True:
                for event in self._events[seen:]:
                    if matcher.matches(event):
                        count -= 1
                        if count <= 0:
                            return event  # type: ignore[return-value]
                seen = len(self._events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
        self._fail_wait(matcher, limit)

    async def wait_for_async(
        self,
        event_cls: type[E],
        timeout: float | None = None,
        *,
        count: int = 1,
        **fields: Any,
    ) -> E:
        """:meth:`wait_for` for coroutines: awaits without blocking the event
        loop, so events delivered by the loop itself arrive meanwhile."""
        __tracebackhide__ = True
        _fail_if_unavailable(event_cls)
        matcher = EventMatcher(event_cls, fields)
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        flag = asyncio.Event()
        waiter = (loop, flag)
        seen = 0
        with self._condition:
            self._async_waiters.add(waiter)
        try:
            while True:
                flag.clear()
                with self._condition:
                    fresh = self._events[seen:]
                    seen = len(self._events)
                for event in fresh:
                    if matcher.matches(event):
                        count -= 1
                        if count <= 0:
                            return event  # type: ignore[return-value]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(flag.wait(), remaining)
        finally:
            with self._condition:
                self._async_waiters.discard(waiter)
        self._fail_wait(matcher, limit)

    def _fail_wait(self, matcher: EventMatcher, timeout: float) -> NoReturn:
        __tracebackhide__ = True
        events = self.events
        found = sum(1 for event in events if matcher.matches(event))
        what = f"{matcher}" if found == 0 else f"more {matcher} (recorded {found})"
        self._fail(f"no {what} within {timeout:g}s", events, matcher)

    # -- failure messages ----------------------------------------------------

    def _fail(
        self, headline: str, events: list[LifecycleEvent], matcher: EventMatcher | None
    ) -> NoReturn:
        __tracebackhide__ = True
        raise AssertionError(headline + "\n" + self.format_events(events, matcher))

    def format_events(
        self, events: list[LifecycleEvent] | None = None, matcher: EventMatcher | None = None
    ) -> str:
        """The recorded events, one compact line each (what failures print).

        With ``matcher``, events of its class are marked ``>``.
        """
        if events is None:
            events = self.events
        if not events:
            return "recorded events: none"
        lines = [f"recorded events ({len(events)}):"]
        shown: list[int | None] = list(range(len(events)))
        if len(events) > MAX_LISTED:
            head = MAX_LISTED // 4
            tail = MAX_LISTED - head
            shown = [*range(head), None, *range(len(events) - tail, len(events))]
        for index in shown:
            if index is None:
                omitted = len(events) - MAX_LISTED
                lines.append(f"  ... {omitted} more ...")
                continue
            event = events[index]
            mark = ">" if matcher is not None and isinstance(event, matcher.event_cls) else " "
            lines.append(f"{mark}{index:>3} {self.describe(event)}")
            if isinstance(event, PoolConnectionLeakEvent):  # where it was taken
                lines.append("      checked out at (most recent call last):")
                lines.extend(f"        {line}" for line in event.stack or ("(no frame)",))
        return "\n".join(lines)

    def describe(self, event: LifecycleEvent) -> str:
        """One compact line for ``event``: time since the recorder started,
        name, address, connection, pool and the event's own fields."""
        origin = event.origin
        parts = [f"+{event.timestamp - self._started:.3f}s", f"{event.type.value:<23}"]
        address = None
        if origin.path is not None or origin.host is not None:
            address = f"{origin.address()}/{origin.db}"
            parts.append(address)
        if origin.connection_id is not None:
            parts.append(f"conn={origin.connection_id}")
        if origin.pool_name is not None and origin.pool_name not in (address, f"unix:{address}"):
            parts.append(f"pool={origin.pool_name}")
        parts.extend(
            f"{name}={_format_value(value)}"
            for name, value in event.fields().items()
            # the event's type already says it; a leak's stack follows its
            # line; nobody waiting and no leak say nothing
            if name not in ("first_connection", "stack")
            and not (name in ("pending", "reported_leak") and not value)
        )
        return " ".join(parts)

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<EventRecorder {state} events={len(self)}>"


def _times(count: int) -> str:
    return "exactly 1" if count == 1 else f"exactly {count}"


def _find_sequence(
    events: list[LifecycleEvent], matchers: list[EventMatcher], strict: bool
) -> list[LifecycleEvent] | int:
    """The events matching ``matchers`` in order, or how far the best try got."""
    if not strict:
        found: list[LifecycleEvent] = []
        for event in events:
            if matchers[len(found)].matches(event):
                found.append(event)
                if len(found) == len(matchers):
                    return found
        return len(found)
    best = 0
    for start in range(len(events)):
        run = 0
        while (
            run < len(matchers)
            and start + run < len(events)
            and matchers[run].matches(events[start + run])
        ):
            run += 1
        if run == len(matchers):
            return events[start : start + run]
        best = max(best, run)
    return best


def _nth_match_index(
    events: list[LifecycleEvent], matchers: list[EventMatcher], matched: int
) -> int:
    """Index of the event that matched ``matchers[matched - 1]`` in an in-order scan."""
    position = 0
    for index, event in enumerate(events):
        if matchers[position].matches(event):
            position += 1
            if position == matched:
                return index
    return -1


class RecorderGroup:
    """Hands out recorders and detaches them all at once (the
    ``lifecycle_events`` fixture; usable as a context manager without pytest)."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.recorders: list[EventRecorder] = []
        self._lock = threading.Lock()

    def attach(
        self,
        target: Any,
        *,
        events: Iterable[type[LifecycleEvent]] = (LifecycleEvent,),
    ) -> EventRecorder:
        """A new :class:`EventRecorder` attached to ``target``."""
        recorder = EventRecorder(events=events, timeout=self.timeout)
        with self._lock:
            self.recorders.append(recorder)
        recorder.attach(target)
        return recorder

    def close(self) -> None:
        """Detach every recorder (uninstrumenting what they instrumented)."""
        with self._lock:
            recorders, self.recorders = self.recorders, []
        for recorder in reversed(recorders):
            recorder.detach()

    def __enter__(self) -> RecorderGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fail_if_unavailable(event_cls: type[Any]) -> None:
    """Fail at once, instead of at the timeout, when the installed redis-py
    cannot produce ``event_cls`` (see :func:`redis_lifecycle.capabilities`)."""
    __tracebackhide__ = True
    from ._capabilities import capabilities

    try:
        capability = capabilities().for_event(event_cls)
    except KeyError:  # not an event class of the catalogue (a base class)
        return
    if not capability.available:
        msg = (
            f"{event_cls.__name__} cannot be produced on this redis-py "
            f"({capability.reason}); waiting for it would only time out"
        )
        raise AssertionError(msg)
