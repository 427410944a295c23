"""The ``redis-lifecycle`` CLI, run as a subprocess against real servers."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redis_lifecycle._cli.demo import DEMO_EVENTS
from redis_lifecycle.server import RedisServer, free_port

from ..helpers import wait_until

ALL_EVENTS = [t.value for t in DEMO_EVENTS]


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "redis_lifecycle", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


class Lines:
    """Reads a subprocess's stdout on a thread so the test can wait with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)

    def drain(self) -> list[str]:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return self.lines

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.drain()]

    def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for record in self.json():
                if predicate(record):
                    return record
            return None

        result: dict[str, Any] = wait_until(found, timeout, what)
        return result

    def finish(self, timeout: float = 20.0) -> None:
        self._thread.join(timeout)


@pytest.fixture
def watcher(server: RedisServer) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "redis_lifecycle",
            "watch",
            server.url,
            "--json",
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines = Lines(process)
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class TestDemo:
    def test_demo_owns_a_server_and_sees_every_one_server_event(self) -> None:
        """`demo` with no arguments starts its own server, prints every event name and exits 0."""
        result = run_cli("demo")
        assert result.returncode == 0, result.stdout + result.stderr
        for name in ALL_EVENTS:
            assert f" {name} " in result.stdout, f"{name} missing from demo output"
        assert "Server killed (SIGKILL) and restarted" in result.stdout
        assert "skipped" not in result.stdout
        assert f"all {len(ALL_EVENTS)} lifecycle events seen" in result.stdout
        assert "Traceback" not in result.stdout + result.stderr
        assert "\033[" not in result.stdout  # no colour when stdout is not a terminal

    def test_demo_against_an_existing_server_skips_the_kill_step(self, server: RedisServer) -> None:
        """`demo --url` keeps the server running, skips the kill step, still sees every event."""
        pid_before = server.process.pid if server.process else None
        result = run_cli("demo", "--url", server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "skipped: needs a server the demo owns" in result.stdout
        for name in ALL_EVENTS:
            assert f" {name} " in result.stdout, f"{name} missing from demo --url output"
        assert server.is_running()
        assert server.process is not None
        assert server.process.pid == pid_before

    def test_demo_never_prints_the_password(self, password_server: RedisServer) -> None:
        """`demo --url` with a password in the URL never shows the password."""
        assert password_server.password is not None
        result = run_cli("demo", "--url", password_server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert password_server.password not in result.stdout + result.stderr


class TestWatch:
    def test_watch_json_survives_a_kill_and_restart(
        self, server: RedisServer, watcher: tuple[subprocess.Popen[str], Lines]
    ) -> None:
        """`watch --json` prints JSON lines through a kill and restart, then a summary on SIGINT."""
        process, lines = watcher
        lines.wait_for(lambda r: r["type"] == "health_check" and r["healthy"], "a healthy check")
        server.kill()
        lines.wait_for(lambda r: r["type"] == "disconnected", "disconnected after the kill")
        lines.wait_for(
            lambda r: r["type"] == "health_check" and not r["healthy"], "an unhealthy check"
        )
        server.restart()
        back = lines.wait_for(lambda r: r["type"] == "reconnected", "reconnected after restart")
        lines.wait_for(
            lambda r: (
                r["type"] == "health_check" and r["healthy"] and r["timestamp"] >= back["timestamp"]
            ),
            "a healthy check after the restart",
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        lines.finish()
        records = lines.json()  # every line parses as JSON
        summary = records[-1]
        assert summary["type"] == "summary"
        assert summary["outages"] == 1
        assert summary["still_down"] is False
        assert summary["health_checks"]["unhealthy"] >= 1
        assert summary["events"]["reconnected"] >= 1
        disconnected = next(r for r in records if r["type"] == "disconnected")
        assert disconnected["reason"] in ("server_closed", "error")
        assert disconnected["port"] == server.port

    def test_watch_human_output_stops_after_count(self, server: RedisServer) -> None:
        """`watch --count 2` prints readable event lines and a summary, then exits 0."""
        result = run_cli("watch", server.url, "--interval", "0.1", "--count", "2")
        assert result.returncode == 0, result.stderr
        assert "health_check" in result.stdout
        assert "summary for 127.0.0.1" in result.stdout
        assert "2 healthy, 0 unhealthy" in result.stdout

    def test_watch_takes_leak_detection_and_refuses_a_bad_one(self, server: RedisServer) -> None:
        """`--leak-detection 5` watches the pool's checkouts (none is held that
        long: no leak line); `--leak-detection 0` is refused with status 2."""
        result = run_cli(
            "watch", server.url, "--interval", "0.1", "--count", "2", "--leak-detection", "5"
        )
        assert result.returncode == 0, result.stderr
        assert "2 healthy, 0 unhealthy" in result.stdout
        assert "connection_leak" not in result.stdout
        refused = run_cli("watch", server.url, "--leak-detection", "0")
        assert refused.returncode == 2
        assert "expected a positive number of seconds" in refused.stderr


class TestBadInput:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://127.0.0.1:6380/0", "unsupported URL http://"),
            ("redis://127.0.0.1:notaport/0", "bad URL"),
        ],
    )
    def test_malformed_url_exits_2_with_one_line(self, url: str, expected: str) -> None:
        """A URL redis-py cannot use gives exit status 2 and one line on stderr."""
        result = run_cli("watch", url)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert expected in result.stderr
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize("command", ["watch", "demo"])
    def test_unreachable_server_exits_2_with_one_line(self, command: str) -> None:
        """A URL nobody listens on gives exit status 2 and 'cannot reach' on one line."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        args = ("watch", url) if command == "watch" else ("demo", "--url", url)
        result = run_cli(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "cannot reach 127.0.0.1:" in result.stderr

    def test_wrong_password_exits_2_without_showing_it(self, password_server: RedisServer) -> None:
        """A wrong password gives exit status 2, says authentication failed, never shows it."""
        wrong = "not-the-Pa55word"
        url = f"redis://:{wrong}@127.0.0.1:{password_server.port}/0"
        result = run_cli("watch", url)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        assert "authentication failed at 127.0.0.1:" in result.stderr
        assert wrong not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr

    def test_bad_interval_is_a_usage_error(self) -> None:
        """A non-positive --interval is refused by the argument parser with status 2."""
        result = run_cli("watch", "redis://127.0.0.1:1/0", "--interval", "0")
        assert result.returncode == 2
        assert "expected a positive number of seconds" in result.stderr


class TestRefusedInput:
    """Input the CLI used to accept silently (or with the wrong outcome)."""

    @pytest.mark.parametrize("path", ["/abc", "/0/extra", "/s3cr3t-Pa55word"])
    def test_a_db_path_that_is_not_a_number_exits_2(self, path: str) -> None:
        """redis-py reads /abc as db 0 without a word; the CLI refuses it, password masked."""
        url = f"redis://:s3cr3t-Pa55word@127.0.0.1:{free_port()}{path}"
        for args in (("watch", url), ("demo", "--url", url)):
            result = run_cli(*args)
            assert result.returncode == 2, result.stdout + result.stderr
            assert result.stdout == ""
            assert result.stderr.count("\n") == 1
            assert "is not a database number" in result.stderr
            assert "Traceback" not in result.stderr
            assert "s3cr3t-Pa55word" not in result.stderr

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("socket_timeout=-1", "socket_timeout=-1.0 is not a positive number of seconds"),
            ("socket_connect_timeout=0", "socket_connect_timeout=0.0 is not a positive number"),
            ("socket_timeout=inf", "socket_timeout=inf is not a positive number"),
        ],
    )
    def test_a_timeout_in_the_url_that_cannot_work_exits_2(
        self, server: RedisServer, query: str, expected: str
    ) -> None:
        """The URL's own timeouts win over the CLI's; a negative one is refused up front
        (a listening server, so the failure is not a refused connection)."""
        result = run_cli("watch", f"{server.url}?{query}", "--count", "1")
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout == ""
        assert expected in result.stderr
        assert "answered PING" not in result.stderr

    def test_a_unix_url_without_a_path_exits_2(self) -> None:
        """unix:// alone used to be shown as localhost:6379 and fail to connect."""
        result = run_cli("watch", "unix://")
        assert result.returncode == 2
        assert "unix:// needs the socket's path" in result.stderr
        assert "localhost:6379" not in result.stderr

    def test_a_numeric_db_path_is_still_used(self, server: RedisServer) -> None:
        """The check refuses only what redis-py would ignore: /3 selects db 3."""
        admin = redis.Redis(host=server.host, port=server.port, db=3)
        admin.set("marker", "x")
        result = run_cli(
            "watch", f"redis://{server.host}:{server.port}/3", "--count", "1",
            "--command", "GET marker",
        )  # fmt: skip
        admin.close()
        assert result.returncode == 0, result.stderr
        assert "1 healthy, 0 unhealthy" in result.stdout

    def test_an_unknown_health_check_command_exits_2_with_the_servers_error(
        self, password_server: RedisServer
    ) -> None:
        """`watch --command NOSUCHCMD`: the server's error on one line, exit 2, no password."""
        result = run_cli("watch", password_server.url, "--command", "NOSUCHCMD", "--count", "3")
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "health-check command 'NOSUCHCMD' failed at 127.0.0.1:" in result.stderr
        assert "unknown command" in result.stderr
        assert "unreachable" not in result.stderr
        assert password_server.password is not None
        assert password_server.password not in result.stderr

    def test_a_failing_auth_command_masks_its_password(self, server: RedisServer) -> None:
        """`--command "AUTH user PW"` refused by the server: the error never shows PW."""
        secret = "Planted-Pa55"
        result = run_cli("watch", server.url, "--json", "--command", f"AUTH nobody {secret}")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "health-check command 'AUTH *** ***' failed" in result.stderr
        assert secret not in result.stdout + result.stderr

    def test_a_command_that_starts_failing_while_watching_exits_1(
        self, server: RedisServer
    ) -> None:
        """A command that fails later is reported as failed, not as an outage; exit 1."""
        admin = redis.Redis(host=server.host, port=server.port)
        admin.set("counter", 0)
        process = subprocess.Popen(
            [sys.executable, "-m", "redis_lifecycle", "watch", server.url, "--json",
             "--interval", "0.1", "--command", "INCR counter"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        lines = Lines(process)
        try:
            lines.wait_for(
                lambda r: r["type"] == "health_check" and r["healthy"], "a healthy check"
            )
            admin.set("counter", "not a number")
            lines.wait_for(
                lambda r: r["type"] == "health_check" and not r["healthy"], "a failed check"
            )
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) == 1
            lines.finish()
            summary = lines.json()[-1]
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)
            admin.close()
        assert summary["type"] == "summary"
        assert summary["command_errors"] >= 1
        assert "not an integer" in summary["last_command_error"]
        assert summary["outages"] == 0
        assert summary["still_down"] is False

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (("--interval", "-1"), "expected a positive number of seconds"),
            (("--interval", "inf"), "expected a positive number of seconds"),
            (("--interval", "nan"), "expected a positive number of seconds"),
            (("--interval", "abc"), "expected a positive number of seconds"),
            (("--count", "0"), "expected a whole number of health checks"),
            (("--count", "-2"), "expected a whole number of health checks"),
            (("--command", ""), "expected a Redis command such as PING"),
            (("--command", "   "), "expected a Redis command such as PING"),
        ],
    )
    def test_bad_numbers_and_an_empty_command_are_usage_errors(
        self, args: tuple[str, ...], expected: str
    ) -> None:
        """Refused by the argument parser (exit 2) before any connection, no traceback."""
        result = run_cli("watch", "redis://127.0.0.1:1/0", *args)
        assert result.returncode == 2
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
