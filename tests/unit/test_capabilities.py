"""The capability report: pure logic over the table of redis-py names."""

from __future__ import annotations

import logging
import warnings

import pytest

import redis_lifecycle as rl
from redis_lifecycle import _capabilities
from redis_lifecycle._hooks.redis_names import COUNTS, REDIS_NAMES, RedisName
from redis_lifecycle.events import EVENT_CLASSES

EVENT_NAMES = {cls.type.value for cls in EVENT_CLASSES}


def test_table_rows_are_unique_and_name_known_events() -> None:
    paths = [row.path for row in REDIS_NAMES]
    assert len(paths) == len(set(paths))
    for row in REDIS_NAMES:
        assert row.events, row.path
        for event in row.events:
            assert event in EVENT_NAMES or event == COUNTS, (row.path, event)


def test_installed_redis_py_has_every_name_it_should() -> None:
    report = _capabilities.build_report()
    assert report.missing == ()
    assert report.pool_counts


def test_a_missing_name_switches_off_exactly_its_events() -> None:
    rows = (
        RedisName("redis.connection", "AbstractConnection", "_send_ping_gone", ("health_check",)),
        RedisName("redis.connection", "ConnectionPool", "release", ("connection_released",)),
    )
    report = _capabilities.build_report(rows)
    off = {cap.name for cap in report.unavailable}
    assert off == {"health_check"}
    reason = report.for_event(rl.ConnectionHealthCheckEvent).reason
    assert reason == "redis.connection.AbstractConnection._send_ping_gone is missing"
    assert report.missing == ("redis.connection.AbstractConnection._send_ping_gone",)
    assert "health_check" in report.summary()
    assert report.to_dict()["events"]["health_check"]["available"] is False


def test_a_feature_newer_than_the_installed_redis_py_is_not_a_missing_name() -> None:
    rows = (
        RedisName(
            "redis.connection", "AbstractConnection", "future_hook", ("pool_reset",), since=(99, 0)
        ),
    )
    report = _capabilities.build_report(rows)
    assert report.for_event(rl.PoolResetEvent).reason == "needs redis-py 99.0 or newer"
    assert report.missing == ()


def test_missing_pool_lists_make_counts_unknown() -> None:
    rows = (
        RedisName(
            "redis.connection", "ConnectionPool", "_renamed_list", (COUNTS,), True, private=True
        ),
    )
    report = _capabilities.build_report(rows)
    assert not report.pool_counts
    assert report.unavailable == ()
    assert "-1" in report.summary()


def test_the_warning_is_issued_once_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = (
        RedisName("redis.connection", "AbstractConnection", "_send_ping_gone", ("health_check",)),
    )
    monkeypatch.setattr(_capabilities, "_report", _capabilities.build_report(rows))
    monkeypatch.setattr(_capabilities, "_warned", False)
    with (
        caplog.at_level(logging.WARNING, logger="redis_lifecycle"),
        warnings.catch_warnings(record=True) as issued,
    ):
        warnings.simplefilter("always")
        _capabilities.check_redis_py()
        _capabilities.check_redis_py()
    assert [type(w.message) for w in issued] == [rl.RedisPyCompatibilityWarning]
    assert "health_check" in str(issued[0].message)
    assert [r for r in caplog.records if "_send_ping_gone" in r.getMessage()]


def test_no_warning_when_nothing_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_capabilities, "_report", _capabilities.build_report())
    monkeypatch.setattr(_capabilities, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _capabilities.check_redis_py()


def test_waiting_for_an_unavailable_event_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis_lifecycle.testing import EventRecorder

    rows = (
        RedisName("redis.connection", "AbstractConnection", "_send_ping_gone", ("health_check",)),
    )
    monkeypatch.setattr(_capabilities, "_report", _capabilities.build_report(rows))
    recorder = EventRecorder()
    with pytest.raises(AssertionError, match="_send_ping_gone is missing"):
        recorder.wait_for(rl.ConnectionHealthCheckEvent, timeout=60)


def test_doctor_lists_every_event(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from redis_lifecycle.cli import main

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["events"]) == EVENT_NAMES
    for entry in report["events"].values():  # only features newer than this redis-py are off
        assert entry["available"] or entry["reason"].startswith("needs redis-py"), entry
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "health_check" in text
    assert "available" in text
