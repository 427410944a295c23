"""A planted password appears in no exception, event, log record or CLI output.

The server runs with ``requirepass``; every channel the library writes to is
searched for the password after the library has repeated user input that
holds it (a URL, an ``AUTH`` health-check command).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

import redis_lifecycle as rl
from redis_lifecycle.contrib.logging import log_events
from redis_lifecycle.server import RedisServer

from ..helpers import Recorder


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "redis_lifecycle", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.fixture
def secret(password_server: RedisServer) -> str:
    assert password_server.password
    return password_server.password


@pytest.fixture
def client(password_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(**password_server.connection_kwargs())
    yield client
    rl.uninstrument(client)
    client.close()


def test_instrument_error_does_not_repeat_the_url_password(
    password_server: RedisServer, secret: str
) -> None:
    for url in (password_server.url, f"redis//:{secret}@{password_server.host}:1/0"):
        with pytest.raises(TypeError) as info:
            rl.instrument(url)
        assert "***" in str(info.value)
        assert secret not in str(info.value)
        assert secret not in repr(info.value)


@pytest.mark.parametrize(
    "command",
    ["AUTH default {pw}", "AUTH {pw}", "HELLO 2 AUTH default {pw}", "CONFIG SET requirepass {pw}"],
)
def test_health_check_event_and_log_hide_the_password(
    client: redis.Redis,
    secret: str,
    command: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    handle = rl.instrument(client)
    handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, recorder)
    subscription = log_events(handle, logging.getLogger("test.no_secrets"))
    try:
        with caplog.at_level(logging.DEBUG):
            result = handle.health_check(command=command.format(pw=secret))
    finally:
        subscription.unsubscribe()
    assert result.healthy, result  # the real command ran with the real password
    (event,) = recorder.of(rl.ConnectionHealthCheckEvent)
    assert "***" in event.command
    channels = [event.command, repr(event), json.dumps(event.to_dict(), default=str), repr(result)]
    channels += [record.getMessage() for record in caplog.records]
    channels += [repr(record.__dict__) for record in caplog.records]
    assert caplog.records, "the health check was not logged"
    for text in channels:
        assert secret not in text


def test_async_health_check_event_hides_the_password(
    password_server: RedisServer, secret: str
) -> None:
    async def main() -> rl.ConnectionHealthCheckEvent:
        client = aioredis.Redis(**password_server.connection_kwargs())
        recorder = Recorder()
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, recorder)
        try:
            result = await rl.health_check(client, f"AUTH default {secret}")
            assert result.healthy, result
        finally:
            rl.uninstrument(client)
            await client.aclose()
        (event,) = recorder.of(rl.ConnectionHealthCheckEvent)
        return event

    event = asyncio.run(main())
    assert event.command == "AUTH *** ***"
    assert secret not in repr(event)
    assert secret not in json.dumps(event.to_dict(), default=str)


@pytest.mark.parametrize("as_json", [False, True])
def test_watch_output_hides_the_password(
    password_server: RedisServer, secret: str, as_json: bool
) -> None:
    args = ["watch", password_server.url, "--count", "1", "--interval", "0.1"]
    args += ["--command", f"AUTH default {secret}", "--color", "never"]
    if as_json:
        args.append("--json")
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "AUTH *** ***" in done.stdout
    assert secret not in done.stdout
    assert secret not in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis//:{pw}@{host}:{port}/0",
        "{pw}@{host}:{port}",
        ":{pw}@{host}:{port}",
        "redis://:{pw}@[::1/0",
        "redis://:wrong-{pw}@{host}:{port}/0",
    ],
)
@pytest.mark.parametrize("command", ["watch", "demo"])
def test_cli_errors_hide_the_password(
    password_server: RedisServer, secret: str, url: str, command: str
) -> None:
    given = url.format(pw=secret, host=password_server.host, port=password_server.port)
    if command == "watch":
        done = run_cli("watch", given, "--count", "1", "--json")
    else:
        done = run_cli("demo", "--url", given)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "error" in done.stderr
    assert "Traceback" not in done.stderr
    assert secret not in done.stdout
    assert secret not in done.stderr


def test_server_echo_of_secret_arguments_is_masked(client: redis.Redis, secret: str) -> None:
    # Redis repeats the arguments of an unknown command in its error, as a
    # server without HELLO does for "HELLO 3 AUTH user PW".
    recorder = Recorder()
    handle = rl.instrument(client)
    handle.dispatcher.subscribe(rl.ConnectionHealthCheckEvent, recorder)
    result = handle.health_check(command=f"NOSUCHCMD AUTH default {secret}")
    assert not result.healthy
    assert isinstance(result.error, redis.ResponseError)
    assert "unknown command" in str(result.error)
    (event,) = recorder.of(rl.ConnectionHealthCheckEvent)
    assert event.command == "NOSUCHCMD AUTH *** ***"
    for text in (str(event.error), repr(event), json.dumps(event.to_dict(), default=str)):
        assert secret not in text
    assert event.error is result.error
    assert result.error.__cause__ is None
    assert result.error.__suppress_context__


def test_watch_command_echo_is_masked(password_server: RedisServer, secret: str) -> None:
    args = ["watch", password_server.url, "--count", "1", "--json"]
    done = run_cli(*args, "--command", f"NOSUCHCMD AUTH default {secret}")
    # The server refuses the command: watch stops with its error (echo included).
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "health-check command 'NOSUCHCMD AUTH *** ***' failed" in done.stderr
    assert "unknown command" in done.stderr
    assert "'AUTH' '***' '***'" in done.stderr  # the server's echo, masked
    assert secret not in done.stdout
    assert secret not in done.stderr
