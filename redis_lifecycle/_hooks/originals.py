"""What redis-py itself defines, looking through this library's patches.

The lowest module of the hooks: :class:`~redis_lifecycle._hooks.state.PoolState`
and the patchers both read redis-py's own methods through it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["unpatched"]


def unpatched(cls: type, name: str) -> Any:
    """``cls.name`` as redis-py defines it, looking through our patches."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            function = klass.__dict__[name]
            return getattr(function, "__rl_original__", function)
    return None
