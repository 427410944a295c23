"""redis_lifecycle.contrib.logging against a real server: levels, structured fields, structlog."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.contrib.logging import DEFAULT_LOGGER_NAME, EventLogger, log_events
from redis_lifecycle.server import RedisServer

from ..helpers import checkout, wait_until


@pytest.fixture
def pool(server: RedisServer) -> Iterator[rl.LifecycleBlockingConnectionPool]:
    pool = rl.LifecycleBlockingConnectionPool(
        host=server.host, port=server.port, max_connections=1, timeout=0.05, pool_name="logs"
    )
    yield pool
    pool.disconnect()


def records_of(caplog: pytest.LogCaptureFixture, event_type: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "redis_type", None) == event_type]


class TestStdlibLogging:
    def test_levels_follow_severity(
        self,
        pool: rl.LifecycleBlockingConnectionPool,
        admin: redis.Redis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Per-command events log at DEBUG, connects at INFO, trouble at WARNING."""
        caplog.set_level(logging.DEBUG, logger=DEFAULT_LOGGER_NAME)
        log_events(pool)
        client = redis.Redis(connection_pool=pool)
        client.ping()
        held = checkout(pool)
        with pytest.raises(redis.ConnectionError):
            checkout(pool)
        pool.release(held)
        admin.client_kill_filter(_id=str(client.client_id()))
        client.ping()
        assert {r.levelno for r in records_of(caplog, "connection_acquired")} == {logging.DEBUG}
        assert {r.levelno for r in records_of(caplog, "connected")} == {logging.INFO}
        assert {r.levelno for r in records_of(caplog, "pool_exhausted")} == {logging.WARNING}
        assert {r.levelno for r in records_of(caplog, "error")} == {logging.WARNING}
        closed = records_of(caplog, "disconnected")
        assert [r.redis_reason for r in closed] == ["server_closed"]  # type: ignore[attr-defined]
        assert closed[0].levelno == logging.WARNING
        assert {r.levelno for r in records_of(caplog, "reconnected")} == {logging.INFO}

    def test_records_carry_structured_fields(
        self, pool: rl.LifecycleBlockingConnectionPool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each record has a one-line message and redis_-prefixed fields from the event."""
        caplog.set_level(logging.INFO, logger=DEFAULT_LOGGER_NAME)
        log_events(pool)
        redis.Redis(connection_pool=pool).ping()
        (record,) = records_of(caplog, "connected")
        assert record.getMessage().startswith("connected logs 127.0.0.1:")
        assert record.redis_pool_name == "logs"  # type: ignore[attr-defined]
        assert record.redis_port == pool.connection_kwargs["port"]  # type: ignore[attr-defined]
        assert record.redis_first_connection is True  # type: ignore[attr-defined]
        assert record.redis_connect_time > 0  # type: ignore[attr-defined]
        assert record.redis_connection_id is not None  # type: ignore[attr-defined]

    def test_disabled_levels_are_not_logged(
        self, pool: rl.LifecycleBlockingConnectionPool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the logger at WARNING, routine events produce no records at all."""
        caplog.set_level(logging.WARNING, logger=DEFAULT_LOGGER_NAME)
        log_events(pool)
        redis.Redis(connection_pool=pool).ping()
        assert [r for r in caplog.records if r.name == DEFAULT_LOGGER_NAME] == []

    def test_level_overrides_and_a_named_logger(
        self, pool: rl.LifecycleBlockingConnectionPool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """levels= moves an event to another level; the given logger is used."""
        logger = logging.getLogger("myapp.redis")
        caplog.set_level(logging.DEBUG, logger="myapp.redis")
        log_events(pool, logger, levels={"connected": logging.ERROR})
        redis.Redis(connection_pool=pool).ping()
        (record,) = records_of(caplog, "connected")
        assert record.name == "myapp.redis"
        assert record.levelno == logging.ERROR

    def test_unknown_level_name_is_rejected(self) -> None:
        """An unknown event name in levels= raises ValueError listing the valid names."""
        with pytest.raises(
            ValueError, match=r"unknown event name 'conected'; expected one of: .*, connected,"
        ):
            EventLogger(levels={"conected": logging.INFO})

    def test_unsubscribe_stops_logging(
        self, pool: rl.LifecycleBlockingConnectionPool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The returned subscription stops the logging when unsubscribed."""
        caplog.set_level(logging.DEBUG, logger=DEFAULT_LOGGER_NAME)
        subscription = log_events(pool)
        assert subscription.unsubscribe()
        redis.Redis(connection_pool=pool).ping()
        assert records_of(caplog, "connected") == []

    def test_not_a_source_is_a_type_error(self) -> None:
        """Passing something that has no dispatcher raises TypeError saying what to pass."""
        with pytest.raises(TypeError, match=r"redis_lifecycle.instrument\(client\) first"):
            log_events(object())

    def test_no_password_in_any_record(
        self, password_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No message or field of any record holds the password."""
        caplog.set_level(logging.DEBUG, logger=DEFAULT_LOGGER_NAME)
        client = redis.Redis(**password_server.connection_kwargs())
        log_events(rl.instrument(client))
        client.ping()
        client.close()
        assert password_server.password is not None
        assert records_of(caplog, "connected")
        for record in caplog.records:
            assert password_server.password not in record.getMessage()
            assert password_server.password not in repr(vars(record))


class TestStructlog:
    def test_structlog_logger_gets_key_value_fields(
        self, pool: rl.LifecycleBlockingConnectionPool
    ) -> None:
        """A structlog logger receives the message and the redis_ fields as keywords."""
        structlog = pytest.importorskip("structlog")
        with structlog.testing.capture_logs() as captured:
            log_events(pool, structlog.get_logger("redis"))
            redis.Redis(connection_pool=pool).ping()
            wait_until(lambda: any(e.get("redis_type") == "connected" for e in captured))
        connected = next(e for e in captured if e["redis_type"] == "connected")
        assert connected["log_level"] == "info"
        assert connected["event"].startswith("connected logs")
        assert connected["redis_pool_name"] == "logs"
        acquired = next(e for e in captured if e["redis_type"] == "connection_acquired")
        assert acquired["log_level"] == "debug"
