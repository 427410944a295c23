"""Subscribe callbacks to event classes.

    >>> import redis_lifecycle as rl
    >>> dispatcher = rl.EventDispatcher()
    >>> @dispatcher.subscribe(rl.PoolExhaustedEvent)
    ... def alert(event):
    ...     print("pool", event.pool_name, "exhausted")
    >>> alert.unsubscribe()
    True

A subscription to a class receives that class and its subclasses: the
matching subscriptions for an event class are resolved once (following the
MRO) and cached until the next subscribe or unsubscribe. Callbacks run
outside the dispatcher's lock, so a callback may subscribe or unsubscribe.

Where callbacks run is decided by the pool or handle that emits: inline on
the thread that caused the event (the default), or on an
:class:`~redis_lifecycle.AsyncCallbackExecutor`.

An :class:`EventDispatcher` is also a complete redis-py event dispatcher
(redis-py 5.3 and newer), so it can be handed to redis-py itself::

    client = redis.Redis(host="localhost", event_dispatcher=dispatcher)

redis-py's own events (``redis.event``) go to a ``redis.event.EventDispatcher``
held inside, so redis-py's listeners (re-authentication with credential
providers) run exactly as they would without redis_lifecycle; and the pools,
connections, PubSub connections and cluster nodes that redis-py announces are
instrumented with this dispatcher (see :mod:`redis_lifecycle._hooks.native`).
"""

from __future__ import annotations

import inspect
import itertools
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._redact import redact
from ._redis_event import ANNOUNCED as _ANNOUNCED
from ._redis_event import new_native_dispatcher as _new_native_dispatcher
from .events import EVENT_CLASSES, LifecycleEvent

if TYPE_CHECKING:
    from redis.event import EventDispatcher as _RedisPyDispatcher

    from ._accumulate import Sink
    from ._delivery import Delivery
else:
    # redis-py's clients annotate ``event_dispatcher=`` with its own concrete
    # class; type checkers see this class as one (it implements the whole
    # interface), while at run time it stays independent of redis-py's, which
    # 5.0-5.2 do not have.
    _RedisPyDispatcher = object

__all__ = ["EventCallback", "EventDispatcher", "Subscription"]

E = TypeVar("E", bound=LifecycleEvent)
EventCallback = Callable[[Any], Any]

_sequence = itertools.count()
#: Whether ``redis.event`` was looked at (on the first dispatcher built).
_native_loaded = [False]


def _check_callback(callback: Callable[..., Any], where: str) -> None:
    """:class:`TypeError` if ``callback`` cannot be called with one positional
    argument (the event). Callables whose signature cannot be read (some
    builtins, some extension types) are accepted: they are called as given."""
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(object())
    except TypeError as error:
        name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
        msg = (
            f"{where} expects a callback that takes one argument (the event); "
            f"{redact(str(name))}{redact(str(signature))[:80]} cannot be called that way "
            f"({error}); give it one parameter, e.g. def on_event(event): ..., "
            "or wrap it: lambda event: ..."
        )
        raise TypeError(msg) from None


class Subscription:
    """One callback subscribed to one event class.

    Returned by :meth:`EventDispatcher.subscribe`. When ``subscribe`` is used
    as a decorator, the decorated name is bound to the subscription, which is
    callable like the original function.
    """

    __slots__ = ("__weakref__", "_dispatcher", "_order", "callback", "event_cls", "exact")

    def __init__(
        self,
        dispatcher: EventDispatcher,
        event_cls: type[LifecycleEvent],
        callback: EventCallback,
        exact: bool,
    ) -> None:
        self._dispatcher = dispatcher
        self._order = next(_sequence)
        self.event_cls = event_cls
        self.callback = callback
        self.exact = exact

    def __call__(self, event: LifecycleEvent) -> Any:
        return self.callback(event)

    @property
    def active(self) -> bool:
        """Whether it still receives events."""
        return self._dispatcher._contains(self)

    def unsubscribe(self) -> bool:
        """Stop receiving events. Returns ``False`` if it was already unsubscribed."""
        return self._dispatcher.unsubscribe(self.event_cls, self)

    def __repr__(self) -> str:
        name = getattr(self.callback, "__qualname__", repr(self.callback))
        return f"<Subscription {self.event_cls.__name__} -> {name}>"


class EventDispatcher(_RedisPyDispatcher):
    """Routes events to the callbacks subscribed to their class or a base class.

    Thread-safe. One dispatcher can serve several pools and clients.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_class: dict[type[LifecycleEvent], list[Subscription]] = {}
        self._resolved: dict[type[LifecycleEvent], tuple[Subscription, ...]] = {}
        self._deliveries: weakref.WeakSet[Delivery] = weakref.WeakSet()
        #: Readers of the per-command figures of this dispatcher's pools
        #: (exporters): see redis_lifecycle/_accumulate.py.
        self._sinks: tuple[Sink, ...] = ()
        #: redis-py's own dispatcher, built on first use.
        self._native: Any = None
        if not _native_loaded[0]:
            _native_loaded[0] = True
            from ._redis_event import ensure_loaded

            ensure_loaded(EventDispatcher)

    @overload
    def subscribe(
        self, event_cls: type[E], callback: None = None, *, exact: bool = False
    ) -> Callable[[Callable[[E], Any]], Subscription]: ...

    @overload
    def subscribe(
        self, event_cls: type[E], callback: Callable[[E], Any], *, exact: bool = False
    ) -> Subscription: ...

    def subscribe(
        self,
        event_cls: type[E],
        callback: Callable[[E], Any] | None = None,
        *,
        exact: bool = False,
    ) -> Subscription | Callable[[Callable[[E], Any]], Subscription]:
        """Call ``callback(event)`` for every event of ``event_cls`` or a subclass.

        With ``exact=True``, subclasses are not delivered. Without
        ``callback``, returns a decorator. Raises :class:`TypeError` if
        ``event_cls`` is not a :class:`LifecycleEvent` subclass or
        ``callback`` is not callable or cannot be called with one argument
        (the event): ``lambda: None`` and ``lambda a, b: None`` are refused
        here rather than failing on every event. Callables whose signature
        cannot be read (some builtins) are accepted as they are.
        """
        if not (isinstance(event_cls, type) and issubclass(event_cls, LifecycleEvent)):
            msg = (
                "subscribe() expects an event class such as "
                f"redis_lifecycle.ConnectionConnectedEvent, got {redact(repr(event_cls))}; "
                "to subscribe by name use handle.register_connection_callback(name, ...)"
            )
            raise TypeError(msg)
        if callback is None:

            def decorator(func: Callable[[E], Any]) -> Subscription:
                return self.subscribe(event_cls, func, exact=exact)

            return decorator
        if not callable(callback):
            shown = redact(repr(callback))
            msg = f"callback must be callable, got {type(callback).__name__}: {shown}"
            raise TypeError(msg)
        _check_callback(callback, "subscribe()")
        subscription = Subscription(self, event_cls, callback, exact)
        with self._lock:
            self._by_class.setdefault(event_cls, []).append(subscription)
            self._changed()
        return subscription

    def unsubscribe(
        self,
        event_cls: type[LifecycleEvent],
        subscription: Subscription | Callable[..., Any],
    ) -> bool:
        """Remove a subscription, or every subscription of ``event_cls`` to
        a callback when given the callback itself. Returns ``False`` if
        nothing was subscribed."""
        with self._lock:
            subscriptions = self._by_class.get(event_cls)
            if not subscriptions:
                return False
            if isinstance(subscription, Subscription):
                if subscription not in subscriptions:
                    return False
                subscriptions.remove(subscription)
            else:
                kept = [sub for sub in subscriptions if sub.callback != subscription]
                if len(kept) == len(subscriptions):
                    return False
                subscriptions[:] = kept
            if not subscriptions:
                del self._by_class[event_cls]
            self._changed()
            return True

    def clear(self) -> None:
        """Remove every subscription."""
        with self._lock:
            self._by_class.clear()
            self._changed()

    def listeners(self, event_cls: type[LifecycleEvent]) -> tuple[Subscription, ...]:
        """The subscriptions an event of exactly ``event_cls`` is delivered to, in
        the order they were made."""
        try:
            return self._resolved[event_cls]
        except KeyError:
            return self._resolve(event_cls)

    def has_listeners(self, event_cls: type[LifecycleEvent]) -> bool:
        """Whether an event of exactly ``event_cls`` would reach any callback."""
        return bool(self.listeners(event_cls))

    def emit(self, event: LifecycleEvent) -> None:
        """Deliver ``event`` inline to its subscribers.

        Pools and handles deliver through their own executor and error
        handler; this method is for events you build yourself (in tests, say).
        A callback that raises is logged and does not stop the others.
        """
        from ._delivery import default_delivery

        default_delivery(self).emit(event)

    # --- redis-py's dispatcher interface (redis.event, 5.3+) ------------------

    def dispatch(self, event: object) -> None:
        """Called by redis-py with one of its own events (``redis.event``).

        redis-py's listeners run first, exactly as redis-py's own dispatcher
        runs them (their exceptions propagate to redis-py unchanged). Then, if
        they succeeded and the event announces pools, a connection, a PubSub connection or
        cluster nodes, they are instrumented with this dispatcher (never
        raising into redis-py). Not for :class:`LifecycleEvent` objects: use
        :meth:`emit`.
        """
        native = self._native or self._native_dispatcher()
        announce = _ANNOUNCED.get(type(event))
        if announce is None:
            native.dispatch(event)
            return
        caller = sys._getframe(1)
        native.dispatch(event)
        announce(self, event, caller)

    async def dispatch_async(self, event: object) -> None:
        """The ``async`` form of :meth:`dispatch` (redis-py's asyncio clients)."""
        native = self._native or self._native_dispatcher()
        announce = _ANNOUNCED.get(type(event))
        caller = sys._getframe(1) if announce is not None else None
        await native.dispatch_async(event)
        if announce is not None:
            announce(self, event, caller)

    def register_listeners(self, mappings: dict[type[object], list[Any]]) -> None:
        """Add redis-py listeners (``redis.event.EventListenerInterface``) for
        redis-py event classes, as ``redis.event.EventDispatcher`` does.

        Raises :class:`NotImplementedError` on a redis-py whose dispatcher has
        no ``register_listeners`` (before 7.0).
        """
        self._native_method("register_listeners")(mappings)

    def unregister_listeners(self, mappings: dict[type[object], list[Any]]) -> None:
        """Remove listeners added by :meth:`register_listeners` (by identity),
        as ``redis.event.EventDispatcher`` does.

        Raises :class:`NotImplementedError` on a redis-py whose dispatcher has
        no ``unregister_listeners`` (before 8.0).
        """
        self._native_method("unregister_listeners")(mappings)

    def _native_dispatcher(self) -> Any:
        with self._lock:
            if self._native is None:
                self._native = _new_native_dispatcher()
            return self._native

    def _native_method(self, name: str) -> Any:
        method = getattr(self._native or self._native_dispatcher(), name, None)
        if method is None:
            import redis

            msg = (
                f"EventDispatcher.{name}() needs redis-py's own {name}(), which redis-py "
                f"{redis.__version__} does not have; upgrade redis-py (7.0+ for "
                "register_listeners, 8.0+ for unregister_listeners)"
            )
            raise NotImplementedError(msg)
        return method

    def _resolve(self, event_cls: type[LifecycleEvent]) -> tuple[Subscription, ...]:
        with self._lock:
            found: list[Subscription] = []
            for base in event_cls.__mro__:
                for subscription in self._by_class.get(base, ()):
                    if not subscription.exact or base is event_cls:
                        found.append(subscription)
            found.sort(key=lambda s: s._order)
            resolved = tuple(found)
            self._resolved[event_cls] = resolved
            return resolved

    def _contains(self, subscription: Subscription) -> bool:
        with self._lock:
            return subscription in self._by_class.get(subscription.event_cls, ())

    def _subscribed_classes(self) -> frozenset[type[LifecycleEvent]]:
        """The concrete event classes that have at least one listener."""
        return frozenset(cls for cls in EVENT_CLASSES if self.listeners(cls))

    def _attach(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.add(delivery)

    def _add_sink(self, sink: Sink) -> None:
        """Hand this dispatcher's pools' per-command figures to ``sink`` too."""
        with self._lock:
            self._sinks = (*self._sinks, sink)
            self._changed()

    def _remove_sink(self, sink: Sink) -> None:
        """Stop handing figures to ``sink``, after what it is owed."""
        with self._lock:
            self._sinks = tuple(s for s in self._sinks if s != sink)
            self._changed()

    def _deliveries_now(self) -> list[Delivery]:
        """The deliveries serving this dispatcher's pools."""
        with self._lock:
            return list(self._deliveries)

    def _changed(self) -> None:
        self._resolved = {}
        for delivery in list(self._deliveries):
            delivery.refresh()

    def __repr__(self) -> str:
        with self._lock:
            count = sum(len(subs) for subs in self._by_class.values())
        return f"<EventDispatcher subscriptions={count}>"
