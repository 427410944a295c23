"""How the ``redis-lifecycle`` CLI prints: one line per event, coloured only
on a terminal, JSON lines on request, and never a password.

    >>> import io
    >>> from redis_lifecycle._cli.output import Printer
    >>> out = Printer(io.StringIO(), color=False)
    >>> out.line("hello")

Callbacks that print run inline on whichever thread emitted the event; the
printer serialises them with a lock so lines never interleave.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any, TextIO

from .._format import is_problem, json_dict, summary
from ..events import (
    EventType,
    LifecycleEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionLeakEvent,
)

__all__ = ["Printer", "use_color"]

_RESET = "\033[0m"
_STYLES = {
    "dim": "\033[2m",
    "bold": "\033[1m",
    "red": "\033[31m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "blue": "\033[34m",
    "cyan": "\033[36m",
}
_EVENT_STYLE = {
    EventType.CONNECTED: "green",
    EventType.RECONNECTED: "green",
    EventType.POOL_CREATED: "cyan",
    EventType.POOL_RESET: "cyan",
    EventType.MARKED_FOR_RECONNECT: "yellow",
    EventType.CONNECTION_ACQUIRED: "dim",
    EventType.CONNECTION_RELEASED: "dim",
    EventType.CONNECTION_CREATED: "blue",
    EventType.POOL_CONNECTION_CREATED: "blue",
    EventType.CLUSTER_REDIRECT: "yellow",
    EventType.CLUSTER_TOPOLOGY_CHANGED: "cyan",
    EventType.SENTINEL_MASTER_CHANGED: "cyan",
}
_WIDTH = max(len(t.value) for t in EventType)
#: How many of a leak's innermost stack lines are printed under it.
LEAK_LINES = 8


def use_color(stream: TextIO, choice: str) -> bool:
    """``choice`` is ``always``, ``never`` or ``auto`` (a terminal, and no
    ``NO_COLOR`` in the environment)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Printer:
    """Writes the CLI's lines to ``stream``; ``secrets`` are masked in every line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        color: bool,
        as_json: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.stream = stream
        self.color = color
        self.as_json = as_json
        self.secrets = tuple(s for s in secrets if s)
        self.started = time.time()
        self._lock = threading.Lock()
        #: Set once the output's reader has gone away.
        self.closed = False
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self.unicode = encoding == "utf8"

    def style(self, text: str, name: str) -> str:
        if not self.color or name not in _STYLES:
            return text
        return f"{_STYLES[name]}{text}{_RESET}"

    def mark(self, ok: bool | None) -> str:
        """A check, a cross, or a dash for skipped."""
        if ok is None:
            return self.style("-", "yellow")
        symbol = ("\u2713" if ok else "\u2717") if self.unicode else ("ok" if ok else "XX")
        return self.style(symbol, "green" if ok else "red")

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def line(self, text: str = "") -> None:
        """Write one line (masked) and flush; after the reader went away (a
        broken pipe, as with ``| head``), write nothing more."""
        with self._lock:
            if self.closed:
                return
            try:
                self.stream.write(self._mask(text) + "\n")
                self.stream.flush()
            except BrokenPipeError:
                self.closed = True
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self.stream.fileno())

    def json_line(self, data: dict[str, Any]) -> None:
        self.line(json.dumps(data, sort_keys=False, default=str))

    def event(self, event: LifecycleEvent, prefix: str = "") -> None:
        """One event: a readable line, or a JSON object with ``--json``."""
        if self.as_json:
            self.json_line(json_dict(event))
            return
        self.line(self.event_text(event.type, event.timestamp, summary(event), event, prefix))
        if isinstance(event, PoolConnectionLeakEvent):  # where it was taken, innermost last
            for frame in event.stack[-LEAK_LINES:]:
                self.line(self.style(f"{'':>{_WIDTH + 16}}{frame}", "red"))

    def event_text(
        self,
        event_type: EventType,
        timestamp: float,
        text: str,
        event: LifecycleEvent | None = None,
        prefix: str = "",
    ) -> str:
        """``"  +1.234s  connected  <details>"`` with the name padded and coloured."""
        offset = self.style(f"+{max(timestamp - self.started, 0.0):7.3f}s", "dim")
        name = event_type.value
        details = text[len(name) :].strip() if text.startswith(name) else text
        problem = event is not None and is_problem(event)
        style = "red" if problem else _EVENT_STYLE.get(event_type, "")
        if isinstance(event, PoolConnectionAcquiredEvent) and event.pending:
            style = "yellow"  # it waited behind others: the pool is saturated
        label = self.style(name.ljust(_WIDTH), style)
        if problem:
            details = self.style(details, "red")
        elif style == "dim":
            details = self.style(details, "dim")
        return f"    {offset}  {prefix}{label}  {details}"
