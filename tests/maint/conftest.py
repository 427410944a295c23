"""Fixtures for the maintenance-notification tests: a real server behind
:class:`~tests.maint.proxy.MaintProxy`."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from redis_lifecycle.server import ServerInfo

from .proxy import MaintProxy


def redis_py() -> tuple[int, int]:
    major, minor = redis.__version__.split(".")[:2]
    return int(major), int(minor)


#: redis-py hands maintenance notifications to handlers: sync from 7.0,
#: asyncio from 8.1; its own MaintenanceStartedEvent from 8.2.
SYNC = redis_py() >= (7, 0)
ASYNC = redis_py() >= (8, 1)
NATIVE = redis_py() >= (8, 2)
#: SMIGRATING / SMIGRATED from 7.2.
CLUSTER_KINDS = redis_py() >= (7, 2)


@pytest.fixture
def upstream(redis_info: ServerInfo) -> tuple[str, int]:
    parts = urlsplit(redis_info.url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@pytest.fixture
def proxy(upstream: tuple[str, int]) -> Iterator[MaintProxy]:
    with MaintProxy(*upstream) as running:
        yield running


@pytest.fixture
def moving_target(upstream: tuple[str, int], proxy: MaintProxy) -> Iterator[MaintProxy]:
    """A second proxy to the same server on 127.0.0.2, same port: redis-py
    moves only the host of a ``MOVING`` endpoint, keeping the port."""
    try:
        second = MaintProxy(*upstream, host="127.0.0.2", port=proxy.port)
    except OSError as error:  # pragma: no cover - a loopback without 127.0.0.2
        pytest.fail(f"cannot listen on 127.0.0.2:{proxy.port}: {error}")
    with second:
        yield second
