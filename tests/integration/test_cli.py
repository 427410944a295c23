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

from redis_lifecycle._demo import DEMO_EVENTS
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
        """`demo --url` keeps the server running, skips the kill step, still sees all 13."""
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
