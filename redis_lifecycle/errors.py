"""What happens when a callback raises.

    >>> import redis_lifecycle as rl
    >>> handler = rl.CallbackErrorHandler("raise")

Strategies:

- ``"log"`` (the default): a ``logging`` warning with the traceback, on the
  logger named ``redis_lifecycle``. The other callbacks still run and the
  Redis command is unaffected.
- ``"ignore"``: nothing is reported (the failure is still counted by
  :class:`~redis_lifecycle.Instrumentation`).
- ``"raise"``: the failure is re-raised as :class:`CallbackError` (the event
  attached, the original exception as ``__cause__``) to the code that ran the
  Redis command, *after* the pool is consistent again: a connection whose
  ``connection_acquired`` callback raised is released first. When the event
  fired while redis-py was already raising an error of its own, redis-py's
  error wins and the callback failure is logged instead: a callback never
  hides a redis-py exception. Callbacks that run on an
  :class:`~redis_lifecycle.AsyncCallbackExecutor` have no caller to raise
  to; their failures are collected and raised by ``shutdown()``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from .events import LifecycleEvent

__all__ = ["CallbackError", "CallbackErrorHandler", "ErrorStrategy"]

logger = logging.getLogger("redis_lifecycle")

ErrorStrategy = Literal["ignore", "log", "raise"]
_STRATEGIES: tuple[str, ...] = ("ignore", "log", "raise")


class CallbackError(Exception):
    """A lifecycle callback raised (strategy ``"raise"``).

    ``event`` is the event being delivered, ``callback`` the callback that
    failed; the original exception is ``__cause__``. When
    :meth:`AsyncCallbackExecutor.shutdown
    <redis_lifecycle.AsyncCallbackExecutor.shutdown>` raises for several
    failures at once, ``errors`` holds each of them (the first is also this
    error's ``event``, ``callback`` and ``__cause__``); otherwise it is empty.
    """

    def __init__(
        self,
        message: str,
        event: LifecycleEvent | None,
        callback: Any = None,
        errors: tuple[CallbackError, ...] = (),
    ) -> None:
        super().__init__(message)
        self.event = event
        self.callback = callback
        self.errors = errors


def _callback_name(callback: Any) -> str:
    return str(getattr(callback, "__qualname__", None) or repr(callback))


class CallbackErrorHandler:
    """Decides what a callback failure does; see the module docstring."""

    __slots__ = ("strategy",)

    def __init__(self, strategy: ErrorStrategy = "log") -> None:
        if not isinstance(strategy, str) or strategy not in _STRATEGIES:
            msg = (
                f"strategy must be one of {', '.join(map(repr, _STRATEGIES))}, got {strategy!r}; "
                'e.g. CallbackErrorHandler("raise")'
            )
            raise ValueError(msg)
        self.strategy: ErrorStrategy = strategy

    def handle(
        self, error: BaseException, event: LifecycleEvent, callback: Any
    ) -> CallbackError | None:
        """Report a failure; return the :class:`CallbackError` to raise, if any.

        The caller raises it when it is safe to (after the pool is consistent);
        this method itself never raises.
        """
        strategy = self.strategy
        if strategy == "ignore":
            return None
        message = (
            f"redis_lifecycle callback {_callback_name(callback)} raised "
            f"{type(error).__name__} on {event!r}"
        )
        if strategy == "raise":
            wrapped = CallbackError(message, event, callback)
            wrapped.__cause__ = error
            return wrapped
        logger.warning(message, exc_info=(type(error), error, error.__traceback__))
        return None

    def log(self, error: CallbackError) -> None:
        """Log a :class:`CallbackError` that could not be raised (redis-py was
        raising an error of its own)."""
        cause = error.__cause__ or error
        logger.warning(
            "%s (not raised: redis-py was raising an error of its own)",
            error,
            exc_info=(type(cause), cause, cause.__traceback__),
        )

    def __repr__(self) -> str:
        return f"CallbackErrorHandler(strategy={self.strategy!r})"
