"""The top-level namespace: sorted, complete, lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import redis_lifecycle as rl


def test_all_is_sorted_and_unique() -> None:
    """__all__ is in sorted order with no duplicates."""
    assert rl.__all__ == sorted(set(rl.__all__))


def test_every_name_in_all_resolves_and_nothing_is_missing() -> None:
    """Every exported name resolves, and every lazily exported name is in __all__."""
    assert set(rl._EXPORTS) == set(rl.__all__)
    for name in rl.__all__:
        assert getattr(rl, name) is not None, name


def test_every_event_class_is_exported() -> None:
    """Every event class and their base are reachable from the top level."""
    for cls in rl.events.EVENT_CLASSES:
        assert getattr(rl, cls.__name__) is cls
    assert rl.LifecycleEvent is rl.events.LifecycleEvent


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A typo fails the usual way."""
    with pytest.raises(AttributeError, match="instrumnet"):
        rl.instrumnet  # noqa: B018


def test_importing_the_package_does_not_import_redis() -> None:
    """`import redis_lifecycle` (what the pytest plugin costs every test run) loads
    neither redis nor the hooks until a name is used."""
    code = (
        "import sys, redis_lifecycle.pytest_plugin\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "assert 'redis_lifecycle._hooks.sync' not in sys.modules\n"
        "import redis_lifecycle as rl; rl.LifecycleConnectionPool\n"
        "assert 'redis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
