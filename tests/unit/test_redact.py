"""The one masking helper: URLs (well-formed or not) and commands."""

from __future__ import annotations

import pytest

import redis_lifecycle as rl
from redis_lifecycle._redact import redact, redact_command
from redis_lifecycle.events import describe_error

PW = "s3cr3t-Pa55word"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"redis://:{PW}@host", "redis://:***@host"),
        (f"redis://:{PW}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis//:{PW}@host", "redis//:***@host"),
        (f"rediss://user:{PW}@[::1", "rediss://user:***@[::1"),
        (f"{PW}@host:6379", "***@host:6379"),
        (f"unix://:{PW}@/tmp/redis.sock", "unix://:***@/tmp/redis.sock"),
        (f"redis://user:p@{PW}@host/0", "redis://user:***@host/0"),
        (f"redis://host/0?password={PW}&db=1", "redis://host/0?password=***&db=1"),
        (f"unsupported URL 'redis//:{PW}@host'", "unsupported URL 'redis//:***@host'"),
        (f"got ('redis://:{PW}@h/0',)", "got ('redis://:***@h/0',)"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("no url here", "no url here"),
    ],
)
def test_redact_masks_the_password(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert PW not in redact(text)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (f"AUTH {PW}", "AUTH ***"),
        (f"auth user {PW}", "auth *** ***"),
        (f"HELLO 3 AUTH user {PW} SETNAME app", "HELLO 3 AUTH *** *** SETNAME app"),
        (f"CONFIG SET requirepass {PW}", "CONFIG SET requirepass ***"),
        (f"config set maxmemory 1mb masterauth {PW}", "config set maxmemory 1mb masterauth ***"),
        (f"ACL SETUSER bob on >{PW} ~*", "ACL SETUSER bob on *** ~*"),
        ("PING", "PING"),
        ("INFO  server", "INFO  server"),
        ("PING hello", "PING hello"),
    ],
)
def test_redact_command_masks_secret_arguments(command: str, expected: str) -> None:
    assert redact_command(command) == expected


def test_error_descriptions_are_masked() -> None:
    described = describe_error(ValueError(f"cannot use redis://:{PW}@host/0"))
    assert described == "ValueError: cannot use redis://:***@host/0"


def test_truncated_text_is_masked_before_it_is_cut() -> None:
    url = "redis://:" + "x" * 60 + f"{PW}@host/0"
    with pytest.raises(TypeError) as info:
        rl.instrument(url)
    assert PW not in str(info.value)
    assert "x" * 60 not in str(info.value)
