"""Masking credentials in text the library repeats back to the user.

Every exception message, event field, log line and CLI line that contains
user input (a URL, a command) goes through :func:`redact` or
:func:`redact_command` first; the secret is replaced with ``***``.

    >>> from redis_lifecycle._redact import redact, redact_command
    >>> redact("redis://:hunter2@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    >>> redact("rediss://alice:hunter2@[::1")
    'rediss://alice:***@[::1'
    >>> redact("hunter2@localhost:6379")
    '***@localhost:6379'
    >>> redact_command("AUTH alice hunter2")
    'AUTH *** ***'
    >>> redact_command("CONFIG SET requirepass hunter2")
    'CONFIG SET requirepass ***'

The URL rule is deliberately broad: whatever stands before an ``@`` (after
the last ``:`` of it, or all of it when there is no ``:``) is treated as a
password, so ``user@example.com`` becomes ``***@example.com`` too.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "command_secrets", "redact", "redact_command"]

MASK = "***"

# The run of characters before an "@" that can be a URL's userinfo; greedy,
# so a password holding an unencoded "@" is masked up to the last "@".
_USERINFO = re.compile(r"""(?P<info>[^\s/'"<>(),;\\]+)@""")
# redis-py also reads the password from the query string.
_QUERY_PASSWORD = re.compile(r"""(?i)(?P<key>[?&;]password=)[^&\s'"<>]*""")

# Arguments that are secrets in commands: option name -> how many follow it.
_AUTH_ARGUMENTS = {"AUTH": 2, "AUTH2": 2}
_SECRET_CONFIG = frozenset({"requirepass", "masterauth", "masteruser"})
_SPACE = re.compile(r"(\s+)")


def _mask_userinfo(match: re.Match[str]) -> str:
    info = match.group("info")
    user, colon, _ = info.partition(":")
    if colon:
        return f"{user}:{MASK}@"
    return f"{MASK}@"


def redact(text: str) -> str:
    """``text`` with the password of every URL-like part replaced by ``***``.

    Also covers malformed URLs (``redis//:PW@host``, ``PW@host:port``,
    ``rediss://user:PW@[::1``) and ``?password=`` in a query string.
    """
    if "@" not in text and "password=" not in text.lower():
        return text
    text = _USERINFO.sub(_mask_userinfo, text)
    return _QUERY_PASSWORD.sub(lambda m: m.group("key") + MASK, text)


def command_secrets(command: str) -> list[str]:
    """The words of ``command`` that :func:`redact_command` masks."""
    words = command.split()
    masked = redact_command(" ".join(words)).split(" ")
    return [word for word, shown in zip(words, masked, strict=True) if shown != word]


def redact_command(command: str) -> str:
    """``command`` with its secret arguments replaced by ``***``.

    ``AUTH [user] password``, the ``AUTH user password`` of ``HELLO`` and
    ``MIGRATE`` (``AUTH2`` too), ``CONFIG SET requirepass|masterauth value``
    and the ``>password`` / ``<password`` rules of ``ACL SETUSER``. Whitespace
    is kept as given; URL-like parts are masked as by :func:`redact`.
    """
    parts = _SPACE.split(command)
    words = [i for i, part in enumerate(parts) if part and not part.isspace()]
    names = [parts[i].upper() for i in words]
    secret: set[int] = set()
    if names and names[0] in ("AUTH", "AUTH2"):
        secret.update(words[1:])
    else:
        for n, name in enumerate(names[1:], start=1):
            if name in _AUTH_ARGUMENTS:
                secret.update(words[n + 1 : n + 1 + _AUTH_ARGUMENTS[name]])
    if names[:2] == ["CONFIG", "SET"]:
        for n in range(2, len(words) - 1, 2):
            if parts[words[n]].lower() in _SECRET_CONFIG:
                secret.add(words[n + 1])
    if names[:2] == ["ACL", "SETUSER"]:
        secret.update(i for i in words[3:] if parts[i][:1] in (">", "<", "#", "!"))
    for i in secret:
        parts[i] = MASK
    return redact("".join(parts))
