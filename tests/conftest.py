"""Real servers for the test suite.

``redis_url`` is a session-wide server found by the chain in DESIGN.md
(``REDIS_URL``, else a ``redis-server`` on ``PATH`` started on a free port).
``server`` is a fresh server owned by one test, for tests that kill, restart
or reconfigure it; ``unix_server`` the same, reached over its unix socket.
Every test ends with nothing instrumented (checked by ``_no_leftovers``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer, ServerInfo, discover_server, find_server_binary

from .helpers import Recorder


@pytest.fixture(scope="session")
def redis_info() -> Iterator[ServerInfo]:
    info, reasons = discover_server()
    if info is None:
        pytest.skip("no Redis server for integration tests: " + "; ".join(reasons))
    yield info
    if info.server is not None:
        info.server.stop()


@pytest.fixture
def redis_url(redis_info: ServerInfo) -> str:
    return redis_info.url


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server this test owns: it may kill, restart or pause it."""
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("this test must own its server: " + "; ".join(reasons))
    with RedisServer(binary) as owned:
        yield owned


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("this test must own its server: " + "; ".join(reasons))
    with RedisServer(binary, password="s3cr3t-Pa55word") as owned:
        yield owned


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """An uninstrumented client of ``server``, for CLIENT KILL and the like."""
    client = redis.Redis(**server.connection_kwargs())  # type: ignore[arg-type]
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Each test leaves no instrumented pool and no class-level wrapper behind."""
    yield
    from redis_lifecycle.instrument import _handles

    for handle in list(_handles.values()):
        target = handle.target
        if target is not None:
            rl.uninstrument(target)


def pytest_report_header() -> str:
    return f"redis-py {redis.__version__}; REDIS_URL={os.environ.get('REDIS_URL', '(unset)')}"
