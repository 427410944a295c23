"""Callback and pool metrics (placeholder: completed by the delivery work)."""

from __future__ import annotations

from typing import Any

__all__ = ["Instrumentation"]


class Instrumentation:
    """Callback timings and pool metrics."""

    _wanted: frozenset[type] = frozenset()

    def _attach(self, delivery: Any) -> None:
        pass

    def _observe(self, event: Any) -> None:
        pass

    def _record_callback(self, event_type: Any, seconds: float, failed: bool) -> None:
        pass
