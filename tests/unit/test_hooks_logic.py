"""The pure logic of the hooks, without a server: why a connection closed,
the patchers' reference counts, a blocking pool's counts, and the teardown
check that catches what a test leaves behind."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
import redis.exceptions as rexc

from redis_lifecycle import CloseReason
from redis_lifecycle._hooks import ClassPatcher, MethodPatcher, classify_close
from redis_lifecycle._hooks.sync import CONNECTION_PATCHER, blocking_counts
from tests.helpers import leaked_patches_and_state

# --- classify_close ----------------------------------------------------------


def _state(
    mark_reason: str | None = None, resetting: bool = False, in_health_check: bool = False
) -> Any:
    """What classify_close reads of a ConnState."""
    return SimpleNamespace(
        mark_reason=mark_reason,
        pool_state=SimpleNamespace(resetting=resetting),
        in_health_check=in_health_check,
    )


def _connection(pid: int | None = None) -> Any:
    return SimpleNamespace(pid=os.getpid() if pid is None else pid)


def test_a_close_with_nothing_seen_is_the_application() -> None:
    assert classify_close(_connection(), _state(), None, False) is CloseReason.APPLICATION


def test_a_connection_of_another_process_is_a_fork() -> None:
    # before anything else: even a marked connection, even with an error
    reason = classify_close(
        _connection(os.getpid() + 1), _state("pool_reset"), ConnectionResetError(), True
    )
    assert reason is CloseReason.FORK


@pytest.mark.parametrize(
    ("mark", "expected"),
    [
        ("fork", CloseReason.FORK),
        ("pool_reset", CloseReason.POOL_RESET),
        ("maintenance", CloseReason.APPLICATION),
        ("requested", CloseReason.APPLICATION),
    ],
)
def test_a_marked_connection_closes_for_its_mark(mark: str, expected: CloseReason) -> None:
    # the mark wins over a failed health check and an error
    reason = classify_close(_connection(), _state(mark), rexc.ConnectionError("x"), True)
    assert reason is expected


def test_a_resetting_pool_is_a_pool_reset() -> None:
    reason = classify_close(_connection(), _state(resetting=True), OSError("x"), True)
    assert reason is CloseReason.POOL_RESET


@pytest.mark.parametrize(("health_check_failed", "in_health_check"), [(True, False), (False, True)])
def test_a_health_check_close_is_health_check_failed(
    health_check_failed: bool, in_health_check: bool
) -> None:
    state = _state(in_health_check=in_health_check)
    reason = classify_close(_connection(), state, ConnectionResetError(), health_check_failed)
    assert reason is CloseReason.HEALTH_CHECK_FAILED


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(),
        BrokenPipeError(),
        ConnectionAbortedError(),
        EOFError(),
        rexc.ConnectionError("Connection closed by server."),
    ],
)
def test_the_server_closing_is_server_closed(error: BaseException) -> None:
    assert classify_close(_connection(), _state(), error, False) is CloseReason.SERVER_CLOSED


@pytest.mark.parametrize(
    "error", [rexc.TimeoutError("Timeout reading from socket"), rexc.ConnectionError("refused")]
)
def test_another_error_is_error(error: BaseException) -> None:
    assert classify_close(_connection(), _state(), error, False) is CloseReason.ERROR


def test_a_connection_without_a_pid_is_not_a_fork() -> None:
    connection = SimpleNamespace()
    assert classify_close(connection, _state(), None, False) is CloseReason.APPLICATION


# --- the patchers' reference counts -----------------------------------------


def _original(self: Any) -> str:
    return "original"


def _make_class() -> type:
    return type("Patched", (), {"method": _original})


def test_method_patcher_installs_once_and_restores_on_the_last_user() -> None:
    cls = _make_class()
    patcher = MethodPatcher(lambda: [(cls, "method", lambda original: lambda self: "patched")])
    patcher.add_user()
    patcher.add_user()
    assert patcher.installed
    assert cls().method() == "patched"
    patcher.remove_user()
    assert cls().method() == "patched"  # one user left
    patcher.remove_user()
    assert not patcher.installed
    assert cls.__dict__["method"] is _original  # the very function, not a copy


def test_method_patcher_remove_without_a_user_is_a_no_op() -> None:
    cls = _make_class()
    patcher = MethodPatcher(lambda: [(cls, "method", lambda original: lambda self: "patched")])
    patcher.remove_user()
    patcher.add_user()
    assert cls().method() == "patched"  # the extra remove did not go negative
    patcher.remove_user()
    assert cls.__dict__["method"] is _original


def test_method_patcher_skips_a_method_the_class_does_not_define() -> None:
    cls = _make_class()
    sub = type("Sub", (cls,), {})
    patcher = MethodPatcher(lambda: [(sub, "method", lambda original: lambda self: "patched")])
    patcher.add_user()
    try:
        assert "method" not in sub.__dict__
        assert sub().method() == "original"
    finally:
        patcher.remove_user()


def test_class_patcher_counts_users_and_unwraps_exactly() -> None:
    cls = _make_class()
    calls: list[str] = []

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        calls.append("wrapped")
        return wrapped(*args, **kwargs)

    patcher = ClassPatcher(lambda: [(cls, "method", wrapper)])
    patcher.add_user()
    patcher.add_user()
    assert cls().method() == "original"
    assert calls == ["wrapped"]  # wrapped once, not twice
    patcher.remove_user()
    assert patcher.installed
    patcher.remove_user()
    assert not patcher.installed
    assert cls.__dict__["method"] is _original


# --- blocking_counts ---------------------------------------------------------


def _blocking_pool(max_connections: int, created: int, idle: int) -> Any:
    """A BlockingConnectionPool's lists as redis-py keeps them: a LIFO queue
    of ``None`` placeholders (one per connection not yet made) under the idle
    connections."""
    connections = [object() for _ in range(created)]
    queue = [None] * (max_connections - created) + connections[:idle]
    return SimpleNamespace(
        _connections=connections,
        pool=SimpleNamespace(queue=queue),
        max_connections=max_connections,
    )


@pytest.mark.parametrize(
    ("max_connections", "created", "idle"),
    [(10, 0, 0), (10, 3, 0), (10, 3, 3), (10, 3, 1), (2, 2, 0), (2, 2, 2), (1, 1, 1)],
)
def test_blocking_counts(max_connections: int, created: int, idle: int) -> None:
    pool = _blocking_pool(max_connections, created, idle)
    assert blocking_counts(pool) == (created - idle, idle)


def test_blocking_counts_are_clamped_to_what_exists() -> None:
    # the queue and the list are read without the pool's lock: never negative,
    # never more idle than made
    pool = _blocking_pool(5, 2, 0)
    pool.pool.queue = []
    assert blocking_counts(pool) == (2, 0)
    pool.pool.queue = [None] * 3 + [object()] * 4
    assert blocking_counts(pool) == (0, 2)


def test_blocking_counts_of_a_real_pool() -> None:
    import redis

    pool = redis.BlockingConnectionPool(max_connections=4)
    assert blocking_counts(pool) == (0, 0)


# --- the teardown check ------------------------------------------------------


def test_the_teardown_check_reports_a_patch_left_installed() -> None:
    assert leaked_patches_and_state() == []
    CONNECTION_PATCHER.add_user()
    try:
        leaked = leaked_patches_and_state()
    finally:
        CONNECTION_PATCHER.remove_user()
    assert leaked == ["redis_lifecycle._hooks.sync.CONNECTION_PATCHER still installed"]
    assert leaked_patches_and_state() == []
