"""redis-py's own event system (``redis.event``), as the delivery layer sees it.

:class:`~redis_lifecycle.EventDispatcher` passes every redis-py event on to a
real ``redis.event.EventDispatcher`` made here. Which of those events announce
an object to instrument, and what to do with it, is registered from above
(:mod:`redis_lifecycle._native`, imported with the package) with
:func:`register_announcement`: this module imports nothing of the hooks or
the facade.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dispatcher import EventDispatcher

__all__ = ["ANNOUNCED", "ensure_loaded", "new_native_dispatcher", "register_announcement"]

Announce = Callable[["EventDispatcher", Any, "FrameType | None"], None]

#: The redis-py events that announce something to instrument, by exact class
#: (redis-py's dispatcher matches ``type(event)`` too); filled by ``_load``.
ANNOUNCED: dict[type, Announce] = {}
#: The same, by ``redis.event`` class name, as registered.
_HANDLERS: dict[str, Announce] = {}


def register_announcement(name: str, handler: Announce) -> None:
    """Run ``handler(dispatcher, event, caller_frame)`` after redis-py's own
    listeners for each ``redis.event.<name>`` an EventDispatcher passes on."""
    _HANDLERS[name] = handler
    if _event is not None:
        cls = getattr(_event, name, None)
        if cls is not None:
            ANNOUNCED[cls] = handler


#: ``redis.event``, imported on first use (importing redis_lifecycle imports
#: no redis); ``None`` on redis-py before 5.3.
_event: Any = None
_loaded = False


#: :class:`~redis_lifecycle.EventDispatcher`, as given to :func:`ensure_loaded`.
_dispatcher_class: type | None = None


def _load() -> Any:
    global _event, _loaded
    if not _loaded:
        try:
            import redis.event as event_module

            module: Any = event_module
        except ImportError:  # redis-py before 5.3
            module = None
        _event = module
        if module is not None:
            for name, handler in _HANDLERS.items():
                cls = getattr(module, name, None)
                if cls is not None:
                    ANNOUNCED[cls] = handler
            interface = getattr(module, "EventDispatcherInterface", None)
            if interface is not None and _dispatcher_class is not None:
                interface.register(_dispatcher_class)
        _loaded = True
    return _event


class _NoNativeDispatcher:
    """Stands in for redis-py's dispatcher on a redis-py without one."""

    def dispatch(self, event: object) -> None:
        pass

    async def dispatch_async(self, event: object) -> None:
        pass


def new_native_dispatcher() -> Any:
    """A fresh ``redis.event.EventDispatcher`` with redis-py's default listeners
    (which also makes ``ANNOUNCED`` ready)."""
    module = _load()
    if module is None:
        return _NoNativeDispatcher()
    return module.EventDispatcher()


def ensure_loaded(dispatcher_class: type) -> None:
    """Import ``redis.event`` (if redis-py has it) and register
    ``dispatcher_class`` (:class:`~redis_lifecycle.EventDispatcher`) as a virtual subclass of
    ``redis.event.EventDispatcherInterface``."""
    global _dispatcher_class
    _dispatcher_class = dispatcher_class
    _load()
