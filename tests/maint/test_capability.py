"""Which redis-py gives maintenance notifications: ``rl.capabilities()``."""

from __future__ import annotations

import redis_lifecycle as rl

from .conftest import SYNC

MAINT = (
    rl.MaintenanceNotificationEvent,
    rl.MaintenanceTimeoutRelaxedEvent,
    rl.MaintenanceTimeoutRestoredEvent,
)


def test_capability_report_follows_the_installed_redis_py() -> None:
    report = rl.capabilities()
    for cls in MAINT:
        capability = report.for_event(cls)
        if SYNC:
            assert capability.available, capability.reason
            assert capability.reason is None
        else:  # redis-py 5.x / 6.x: no maintenance notifications at all
            assert not capability.available
            assert capability.reason == "needs redis-py 7.0 or newer"
    # An older redis-py is not news: nothing is "missing", no warning is due.
    assert not [name for name in report.missing if "maint" in name or "push" in name]


def test_instrumenting_on_any_redis_py_never_fails(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        handle = rl.instrument(client)
        seen: list[rl.LifecycleEvent] = []
        for cls in MAINT:
            handle.dispatcher.subscribe(cls, seen.append)
        assert client.ping()
        assert seen == []
    finally:
        client.close()


def test_waiting_for_them_on_an_older_redis_py_fails_at_once() -> None:
    import pytest

    from redis_lifecycle.testing import EventRecorder

    recorder = EventRecorder(timeout=60)
    if SYNC:
        assert recorder.of(rl.MaintenanceNotificationEvent) == []
        return
    # The reason, not a timeout: it fails before waiting.
    with pytest.raises(AssertionError, match=r"needs redis-py 7\.0 or newer"):
        recorder.wait_for(rl.MaintenanceNotificationEvent)
