"""``instrument(client)``: lifecycle events from a redis-py client you already have.

    >>> import redis, redis_lifecycle as rl
    >>> client = redis.Redis(host="localhost", port=6379)
    >>> handle = rl.instrument(client)
    >>> @handle.register_connection_callback("connected")
    ... def on_connected(event):
    ...     print("connected to", event["host"], event["port"])
    >>> rl.uninstrument(client)
    True

Callbacks run inline, on the thread whose Redis command caused the event,
unless an :class:`~redis_lifecycle.AsyncCallbackExecutor` is given as
``async_callbacks``. A callback that raises is logged and never fails the
command (see :class:`~redis_lifecycle.CallbackErrorHandler` for the other
strategies).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._capabilities import check_redis_py
from ._delivery import Delivery
from ._hooks.attach import detach_pool, pool_state_of
from ._redact import redact
from .dispatcher import EventDispatcher, Subscription, _check_callback
from .errors import CallbackErrorHandler
from .events import (
    EVENT_CLASS_BY_TYPE,
    EventType,
    LifecycleEvent,
)

if TYPE_CHECKING:
    from .executor import AsyncCallbackExecutor
    from .health import HealthCheckResult
    from .metrics import Instrumentation

__all__ = ["LifecycleHandle", "find_handle", "instrument", "uninstrument"]

_lock = threading.RLock()
LegacyCallback = Callable[[dict[str, Any]], Any]
_LegacyCallbackT = TypeVar("_LegacyCallbackT", bound=LegacyCallback)


def event_class_for(name: EventType | str) -> type[LifecycleEvent]:
    """The event class for a legacy name; :class:`ValueError` listing the names."""
    try:
        return EVENT_CLASS_BY_TYPE[EventType(name)]
    except ValueError:
        valid = ", ".join(repr(t.value) for t in EventType)
        msg = f"unknown event name {name!r}; expected one of: {valid}"
        raise ValueError(msg) from None


class _LegacyAdapter:
    """Calls a legacy callback with the event's dict."""

    __slots__ = ("callback",)

    def __init__(self, callback: LegacyCallback) -> None:
        self.callback = callback

    def __call__(self, event: LifecycleEvent) -> Any:
        return self.callback(event.to_dict())

    def __repr__(self) -> str:
        return str(getattr(self.callback, "__qualname__", repr(self.callback)))


class CallbackRegistry:
    """Legacy name-based callbacks on top of a dispatcher (shared by the
    handle and the lifecycle pools)."""

    def __init__(self, dispatcher: EventDispatcher) -> None:
        self.dispatcher = dispatcher
        self._legacy: dict[tuple[type[LifecycleEvent], Any], list[Subscription]] = {}
        self._lock = threading.Lock()

    def register(self, name: EventType | str, callback: LegacyCallback | None = None) -> Any:
        event_cls = event_class_for(name)
        if callback is None:

            def decorator(func: LegacyCallback) -> LegacyCallback:
                self.register(name, func)
                return func

            return decorator
        if not callable(callback):
            shown = redact(repr(callback))
            msg = f"callback must be callable, got {type(callback).__name__}: {shown}"
            raise TypeError(msg)
        _check_callback(callback, "register_connection_callback()")
        subscription = self.dispatcher.subscribe(event_cls, _LegacyAdapter(callback), exact=True)
        with self._lock:
            self._legacy.setdefault((event_cls, callback), []).append(subscription)
        return callback

    def deregister(self, name: EventType | str, callback: LegacyCallback) -> bool:
        event_cls = event_class_for(name)
        with self._lock:
            subscriptions = self._legacy.get((event_cls, callback))
            if not subscriptions:
                return False
            subscription = subscriptions.pop()
            if not subscriptions:
                del self._legacy[(event_cls, callback)]
        return subscription.unsubscribe()


class LifecycleHandle:
    """What :func:`instrument` returns: the way to listen to one client's pool.

    ``dispatcher`` receives every event of the instrumented pool(s);
    ``register_connection_callback(name, callback)`` subscribes a legacy
    callback that receives a ``dict`` (see :meth:`LifecycleEvent.to_dict`).
    """

    def __init__(
        self,
        target: Any,
        delivery: Delivery,
        callbacks: CallbackRegistry | None = None,
    ) -> None:
        self._target_ref = weakref.ref(target)
        self._delivery = delivery
        self._callbacks = callbacks or CallbackRegistry(delivery.dispatcher)
        self._pools: list[weakref.ref[Any]] = []
        #: The arguments it was made with (those given), checked against a
        #: later ``instrument()`` of the same target.
        self._options: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []
        #: Extra ``pool_stats()`` rows for pools that are not pool objects
        #: (asyncio cluster nodes).
        self._stats_sources: list[Callable[[], list[dict[str, Any]]]] = []

    @property
    def dispatcher(self) -> EventDispatcher:
        """The dispatcher events go to."""
        return self._delivery.dispatcher

    @property
    def delivery(self) -> Delivery:
        return self._delivery

    @property
    def instrumentation(self) -> Instrumentation | None:
        return self._delivery.instrumentation

    @property
    def target(self) -> Any:
        """The instrumented client or pool (``None`` once it is gone)."""
        return self._target_ref()

    def pools(self) -> list[Any]:
        """The pools this handle instruments (one, or one per cluster node)."""
        return [pool for ref in self._pools if (pool := ref()) is not None]

    @overload
    def register_connection_callback(
        self, name: EventType | str, callback: _LegacyCallbackT
    ) -> _LegacyCallbackT: ...

    @overload
    def register_connection_callback(
        self, name: EventType | str, callback: None = None
    ) -> Callable[[_LegacyCallbackT], _LegacyCallbackT]: ...

    def register_connection_callback(
        self, name: EventType | str, callback: LegacyCallback | None = None
    ) -> Any:
        """Call ``callback(event_dict)`` for every event named ``name``.

        Names are the :class:`~redis_lifecycle.EventType` values
        (``"connected"``, ``"disconnected"``, ...); ``"connected"`` receives
        first connections only, ``"reconnected"`` the others. Without
        ``callback``, returns a decorator. Returns the callback.
        """
        return self._callbacks.register(name, callback)

    def deregister_connection_callback(
        self, name: EventType | str, callback: LegacyCallback
    ) -> bool:
        """Undo one :meth:`register_connection_callback`; ``False`` if not registered."""
        return self._callbacks.deregister(name, callback)

    def health_check(self, command: str = "PING") -> HealthCheckResult:
        """Run ``command`` on a pooled connection; see :func:`redis_lifecycle.health_check`."""
        from .health import health_check

        target = self.target
        if target is None:
            msg = "the instrumented client has been garbage-collected"
            raise RuntimeError(msg)
        result: HealthCheckResult = health_check(target, command)  # a coroutine for asyncio
        return result

    def pool_stats(self) -> list[dict[str, Any]]:
        """Per pool: ``pool_name``, ``max_connections``, ``timeout``, ``active``,
        ``idle`` and ``total`` connections, read now; ``waiting``, the callers
        waiting for a connection now, and ``waiting_peak``, the most at once
        since the previous ``pool_stats()`` of that pool (both counted in a
        blocking pool's checkout while a per-command event is wanted or leak
        detection is on; ``None`` otherwise, and 0 for pools that never wait)."""
        from ._hooks.saturation import saturation

        stats = [row for source in self._stats_sources for row in source()]
        for pool in self.pools():
            state = pool_state_of(pool)
            if state is None:
                continue
            active, idle = state.counts(pool)
            waiting, peak = saturation(state)
            stats.append(
                {
                    "pool_name": state.name,
                    "max_connections": state.size,
                    "timeout": state.timeout,
                    "active": active,
                    "idle": idle,
                    "total": state.total(pool),
                    "waiting": waiting,
                    "waiting_peak": peak,
                }
            )
        return stats

    async def drain(self) -> None:
        """Wait for the ``async def`` callbacks this handle's events started
        (and those they start meanwhile); events keep flowing.

        Raises the first :class:`~redis_lifecycle.CallbackError` kept from them
        under strategy ``"raise"``. See :mod:`redis_lifecycle._coroutine_callbacks`.
        """
        from ._coroutine_callbacks import drain

        await drain(self._delivery)

    async def aclose(self) -> None:
        """Stop emitting (like :func:`uninstrument`), then wait for the
        ``async def`` callbacks already started, so a shutdown loses none."""
        from ._coroutine_callbacks import drain

        target = self.target
        with _lock:
            if target is not None and _handles.get(id(target)) is self:
                del _handles[id(target)]
            self._detach()
        await drain(self._delivery)

    def _add_pool(self, pool: Any) -> None:
        self._pools.append(weakref.ref(pool))

    def _detach(self) -> None:
        for pool in self.pools():
            detach_pool(pool)
        self._pools.clear()
        for closer in self._closers:
            closer()
        self._closers.clear()
        self._stats_sources.clear()

    def __repr__(self) -> str:
        names = [s["pool_name"] for s in self.pool_stats()]
        return f"<LifecycleHandle pools={names!r}>"


# Handles by the id of what was instrumented; entries vanish with their target.
_handles: dict[int, LifecycleHandle] = {}


def _make_delivery(
    event_dispatcher: EventDispatcher | None,
    async_callbacks: AsyncCallbackExecutor | None,
    callback_error_handler: CallbackErrorHandler | None,
    instrumentation: Instrumentation | None,
    leak_detection: float | None = None,
) -> Delivery:
    if event_dispatcher is not None and not isinstance(event_dispatcher, EventDispatcher):
        msg = (
            "event_dispatcher must be a redis_lifecycle.EventDispatcher, got "
            f"{type(event_dispatcher).__module__}.{type(event_dispatcher).__qualname__}"
        )
        raise TypeError(msg)
    if callback_error_handler is not None and not isinstance(
        callback_error_handler, CallbackErrorHandler
    ):
        msg = (
            "callback_error_handler must be a redis_lifecycle.CallbackErrorHandler, "
            f"got {redact(repr(callback_error_handler))}; e.g. CallbackErrorHandler('raise')"
        )
        raise TypeError(msg)
    from .executor import AsyncCallbackExecutor
    from .metrics import Instrumentation

    if async_callbacks is not None and not isinstance(async_callbacks, AsyncCallbackExecutor):
        msg = (
            "async_callbacks must be a redis_lifecycle.AsyncCallbackExecutor, "
            f"got {redact(repr(async_callbacks))}; e.g. AsyncCallbackExecutor(pool_size=4)"
        )
        raise TypeError(msg)
    if instrumentation is not None and not isinstance(instrumentation, Instrumentation):
        msg = (
            "instrumentation must be a redis_lifecycle.Instrumentation, "
            f"got {redact(repr(instrumentation))}; e.g. Instrumentation()"
        )
        raise TypeError(msg)
    return Delivery(
        event_dispatcher or EventDispatcher(),
        executor=async_callbacks,
        error_handler=callback_error_handler,
        instrumentation=instrumentation,
        leak_threshold=check_leak_detection(leak_detection),
    )


def check_executor_running(async_callbacks: Any, where: str) -> None:
    """:class:`RuntimeError` if ``async_callbacks`` is an
    :class:`~redis_lifecycle.AsyncCallbackExecutor` that was shut down."""
    if async_callbacks is None:
        return
    from .executor import AsyncCallbackExecutor

    if isinstance(async_callbacks, AsyncCallbackExecutor) and not async_callbacks.accepting:
        msg = (
            f"{where} was given async_callbacks={async_callbacks!r}, which is shut down: "
            "its callbacks would run inline on the emitting thread instead of on its "
            "workers. Give an executor that is running (a new AsyncCallbackExecutor(), "
            "shut down after the clients that use it are closed), or leave out "
            "async_callbacks to run callbacks inline"
        )
        raise RuntimeError(msg)


def check_leak_detection(value: Any) -> float | None:
    """``leak_detection`` as seconds (``None``: off); :class:`TypeError` or
    :class:`ValueError` for anything but a positive number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"leak_detection must be a number of seconds or None, got {type(value).__name__}"
        raise TypeError(msg)
    if not value > 0:
        msg = f"leak_detection must be more than 0 seconds, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _describe(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


_OPTION_NAMES = (
    "event_dispatcher",
    "async_callbacks",
    "callback_error_handler",
    "instrumentation",
    "pool_name",
    "leak_detection",
)


def _differences(handle: LifecycleHandle, given: dict[str, Any]) -> list[str]:
    """The arguments in ``given`` (those not ``None``) that ``handle`` was not
    made with: objects compared by identity, ``pool_name`` by value."""
    delivery = handle.delivery
    current = {
        "event_dispatcher": delivery.dispatcher,
        "async_callbacks": delivery.executor,
        "callback_error_handler": delivery.error_handler,
        "instrumentation": delivery.instrumentation,
    }
    differ = []
    for name in _OPTION_NAMES:
        value = given.get(name)
        if value is None:
            continue
        if name in ("pool_name", "leak_detection"):
            if value != handle._options.get(name):
                differ.append(name)
        elif value is not current[name]:
            differ.append(name)
    return differ


def _check_same_options(client: Any, handle: LifecycleHandle, given: dict[str, Any]) -> None:
    differ = _differences(handle, given)
    if not differ:
        return
    names = ", ".join(differ)
    msg = (
        f"{_describe(client)} is already instrumented, with a different {names} than "
        f"this instrument() call gives; instrument() does not change the arguments of an "
        f"instrumented client. Either call redis_lifecycle.uninstrument() on it first, "
        f"or leave out {names} and subscribe on the existing handle "
        f"(redis_lifecycle.instrument(client).dispatcher)"
    )
    raise ValueError(msg)


def instrument(
    client: Any,
    *,
    event_dispatcher: EventDispatcher | None = None,
    async_callbacks: AsyncCallbackExecutor | None = None,
    callback_error_handler: CallbackErrorHandler | None = None,
    instrumentation: Instrumentation | None = None,
    pool_name: str | None = None,
    leak_detection: float | None = None,
) -> LifecycleHandle:
    """Emit lifecycle events for ``client``'s connections and pool(s).

    ``client`` is a ``redis.Redis``, ``redis.asyncio.Redis``, a cluster
    client, a client from ``Sentinel.master_for``/``slave_for``, a
    connection pool, or a single connection (``redis.Connection``,
    ``redis.UnixDomainSocketConnection``, ``redis.SSLConnection`` or their
    asyncio forms). Raises :class:`TypeError` for anything else, leaving
    nothing instrumented.

    Instrumenting something that is instrumented already (by
    ``instrument()``, a lifecycle pool, ``instrument_all()`` or a
    dispatcher passed to redis-py) returns its handle, provided every
    argument given here is the one it was instrumented with (``None``
    means "not given"). An argument that differs raises :class:`ValueError`
    naming it, and changes nothing: ``uninstrument()`` first to instrument
    it anew, or subscribe on the existing handle's ``dispatcher``.

    ``leak_detection=SECONDS`` (off by default) reports each connection
    checked out for longer than that and still not returned, while it is
    held: :class:`~redis_lifecycle.PoolConnectionLeakEvent`, with the stack
    that checked it out, and a warning in the log. It records every
    checkout's stack (see the guide "Finding leaked connections and
    undersized pools" for what that costs).

    Raises :class:`RuntimeError` if ``async_callbacks`` is an executor that
    was shut down (see :class:`~redis_lifecycle.AsyncCallbackExecutor`).
    """
    given = {
        "event_dispatcher": event_dispatcher,
        "async_callbacks": async_callbacks,
        "callback_error_handler": callback_error_handler,
        "instrumentation": instrumentation,
        "pool_name": pool_name,
        "leak_detection": leak_detection,
    }
    check_executor_running(async_callbacks, "instrument()")
    return _instrument(client, given)


def _instrument(client: Any, given: dict[str, Any]) -> LifecycleHandle:
    """:func:`instrument` without its executor check (``instrument_all()``'s
    new pools: an executor shut down since is warned about per event)."""
    from ._hooks.targets import resolve_target

    event_dispatcher = given.get("event_dispatcher")
    async_callbacks = given.get("async_callbacks")
    callback_error_handler = given.get("callback_error_handler")
    instrumentation = given.get("instrumentation")
    pool_name = given.get("pool_name")
    leak_detection = given.get("leak_detection")
    check_redis_py()  # warns once if this redis-py lacks a name the hooks need
    with _lock:
        existing = find_handle(client)
        if existing is not None:
            _check_same_options(client, existing, given)
            return existing
        target = resolve_target(client)  # TypeError before anything changes
        delivery = _make_delivery(
            event_dispatcher,
            async_callbacks,
            callback_error_handler,
            instrumentation,
            leak_detection,
        )
        handle = LifecycleHandle(client, delivery)
        handle._options = {name: value for name, value in given.items() if value is not None}
        try:
            target.attach(handle, pool_name)
        except BaseException:
            handle._detach()
            raise
        _handles[id(client)] = handle
        weakref.finalize(client, _handles.pop, id(client), None)
        return handle


def find_handle(client: Any) -> LifecycleHandle | None:
    """The handle serving ``client`` (a client, pool or connection), however
    it was instrumented; ``None`` if it is not."""
    handle = _handles.get(id(client))
    if handle is not None and handle.target is client:
        return handle
    pool_state = pool_state_of(getattr(client, "connection_pool", None) or client)
    if pool_state is not None and pool_state.handle is not None:
        found: LifecycleHandle = pool_state.handle
        return found
    from ._hooks.state import CONNECTIONS

    connection_state = CONNECTIONS.get(id(client))  # a connection, pooled or alone
    if connection_state is not None and connection_state.pool_state is not None:
        owner: LifecycleHandle | None = connection_state.pool_state.handle
        if owner is not None:
            return owner
    manager = getattr(client, "nodes_manager", None)  # a cluster set up by a dispatcher
    if manager is not None:
        handle = _handles.get(id(manager))
        if handle is not None and handle.target is manager:
            return handle
    return None


def uninstrument(client: Any) -> bool:
    """Stop emitting events for ``client``; it keeps working unchanged.

    ``client`` may also be the pool of an instrumented client (the pool stays
    instrumented if the client object goes away before it), or a client
    whose pools a :class:`~redis_lifecycle.EventDispatcher` passed to
    redis-py instrumented. Returns ``False`` if it was not instrumented.
    Raises :class:`TypeError` for anything that is not a redis-py client,
    pool or connection (a typo would otherwise pass silently).
    """
    with _lock:
        handle = find_handle(client)
        if handle is None:
            _check_uninstrumentable(client)
            return False
        for key, known in list(_handles.items()):
            if known is handle:
                del _handles[key]
        handle._detach()
        return True


def _check_uninstrumentable(obj: Any) -> None:
    """:class:`TypeError` if ``obj`` is nothing ``instrument()`` accepts."""
    from ._hooks.targets import resolve_target

    try:
        resolve_target(obj)
    except TypeError as error:
        msg = str(error).replace("instrument() expects", "uninstrument() expects", 1)
        raise TypeError(msg) from None


def handle_for(client: Any) -> LifecycleHandle | None:
    """The handle of an instrumented client or pool, else ``None``."""
    handle = _handles.get(id(client))
    return handle if handle is not None and handle.target is client else None


def register_handle(client: Any, handle: LifecycleHandle) -> None:
    """Record ``handle`` as the one for ``client`` (used by lifecycle pools)."""
    with _lock:
        _handles[id(client)] = handle
        weakref.finalize(client, _handles.pop, id(client), None)
