"""Explicit health checks (placeholder: completed by the health-check work)."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["HealthCheckResult", "health_check"]


class HealthCheckResult(NamedTuple):
    """The outcome of :func:`health_check`."""

    healthy: bool
    latency_ms: float
    error: BaseException | None


def health_check(target: Any, command: str = "PING") -> HealthCheckResult:
    """Run ``command`` against ``target``; never raises for a failed check."""
    raise NotImplementedError
