"""Off-thread callbacks (placeholder: completed by the delivery work)."""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncCallbackExecutor"]


class AsyncCallbackExecutor:
    """Runs callbacks on worker threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def _submit(self, delivery: Any, event: Any, subscriptions: Any) -> bool:
        raise NotImplementedError
