"""``ConnectionErrorEvent.category``: the same category for the same error
on every redis-py, matching redis-py 8.2's own ``error_type`` where it has one."""

from __future__ import annotations

import asyncio
import inspect
import ssl

import pytest
import redis
import redis.exceptions as rexc

import redis_lifecycle as rl
from redis_lifecycle.events import error_category

NETWORK, TLS, AUTH, SERVER = (
    rl.ErrorCategory.NETWORK,
    rl.ErrorCategory.TLS,
    rl.ErrorCategory.AUTH,
    rl.ErrorCategory.SERVER,
)


def raised_over(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit __context__ is the point
    except BaseException as error:
        return error


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (rexc.ConnectionError("Connection closed by server."), NETWORK),
        (rexc.TimeoutError("Timeout reading from socket"), NETWORK),
        (rexc.BusyLoadingError("loading"), NETWORK),
        (ConnectionResetError(104, "Connection reset by peer"), NETWORK),
        (TimeoutError("timed out"), NETWORK),
        (asyncio.TimeoutError(), NETWORK),
        (rexc.AuthenticationError("invalid password"), AUTH),
        (rexc.NoPermissionError("NOPERM"), AUTH),
        (rexc.ResponseError("WRONGTYPE"), SERVER),
        (rexc.ConnectionError("max number of clients reached"), SERVER),
        (raised_over(rexc.ConnectionError("Error 1 connecting"), ssl.SSLError("bad cert")), TLS),
        (ValueError("not redis"), SERVER),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_category_by_error(error: BaseException, category: rl.ErrorCategory) -> None:
    assert error_category(error) is category


def test_the_event_carries_the_category_in_its_dict() -> None:
    error = rexc.AuthenticationError("invalid password")
    event = rl.ConnectionErrorEvent(0.0, None, error, "handshake")
    assert event.category is AUTH
    assert event.to_dict()["category"] == "auth"


def test_new_redis_py_errors_are_classified_when_they_exist() -> None:
    max_clients = getattr(rexc, "MaxClientsReachedError", None)
    unreachable = getattr(rexc, "RedisClusterUnreachableError", None)
    if max_clients is None or unreachable is None:
        pytest.skip(f"redis-py {redis.__version__} has neither error (they came in 8.2)")
    assert error_category(max_clients("max number of clients reached")) is SERVER
    assert error_category(unreachable("no node answered")) is NETWORK


def test_same_as_redis_py_error_type_for_every_redis_py_error() -> None:
    """Where redis-py (8.2+) gives its errors an ``error_type``, the category
    agrees with it for every exception class, but the two refined ones."""
    refined = {"MaxClientsReachedError", "RedisClusterUnreachableError"}
    compared = 0
    for name, cls in vars(rexc).items():
        if not (inspect.isclass(cls) and issubclass(cls, Exception)) or name in refined:
            continue
        try:
            error = cls("12182 127.0.0.1:6380")  # what MOVED/ASK errors parse
        except (TypeError, ValueError):
            continue
        error_type = getattr(error, "error_type", None)
        if error_type is None:
            continue
        compared += 1
        assert error_category(error).value == error_type.value, name
    if compared == 0:
        pytest.skip(f"redis-py {redis.__version__} gives its errors no error_type (before 7.2)")
    assert compared > 10
