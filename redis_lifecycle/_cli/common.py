"""What the CLI's commands share: reading a URL without leaking its password,
and turning a first failed contact into one clear line (exit status 2).

    >>> from redis_lifecycle._cli.common import parse_url
    >>> parse_url("redis://:hunter2@127.0.0.1:6380/1").address
    '127.0.0.1:6380/1'

Nothing here runs callbacks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions as rexc

from .._redact import MASK, redact
from ..events import describe_error

__all__ = ["CliError", "CliTarget", "first_contact", "parse_url"]


class CliError(Exception):
    """Bad input or an unreachable server: printed as one line, exit status 2."""


class CliTarget:
    """A parsed ``redis://``, ``rediss://`` or ``unix://`` URL."""

    def __init__(self, url: str, address: str, password: str | None) -> None:
        self.url = url
        self.address = address
        self.password = password

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def mask(self, text: str) -> str:
        text = redact(text)
        return text.replace(self.password, MASK) if self.password else text


def parse_url(url: str) -> CliTarget:
    """Check ``url`` (without connecting); :class:`CliError` saying what is wrong."""
    try:
        parts = urlsplit(url)
        password = unquote(parts.password) if parts.password else None
    except ValueError as error:  # e.g. "Invalid IPv6 URL" for redis://[::1/0
        msg = f"bad URL {redact(url)[:60]!r}: {error}; expected e.g. redis://localhost:6379/0"
        raise CliError(msg) from None
    target = CliTarget(url, url, password)
    if parts.scheme not in ("redis", "rediss", "unix"):
        shown = f"{parts.scheme}://" if parts.scheme else repr(redact(url)[:40])
        msg = (
            f"unsupported URL {shown}: expected redis://host:port/db, rediss://... (TLS) "
            "or unix:///path/to/redis.sock"
        )
        raise CliError(msg)
    if parts.scheme in ("redis", "rediss") and parts.path not in ("", "/"):
        _check_db_path(parts.path, target)
    try:
        kwargs: dict[str, Any] = redis.ConnectionPool.from_url(url).connection_kwargs
    except ValueError as error:
        msg = f"bad URL: {target.mask(str(error))}; expected e.g. redis://localhost:6379/0"
        raise CliError(msg) from None
    for name in ("socket_timeout", "socket_connect_timeout"):
        value = kwargs.get(name)
        if value is not None and not 0 < value < float("inf"):
            msg = (
                f"bad URL: {name}={value!r} is not a positive number of seconds; "
                f"e.g. redis://localhost:6379/0?{name}=5, or leave it out"
            )
            raise CliError(msg)
    if parts.scheme == "unix" and not kwargs.get("path"):
        msg = "bad URL: unix:// needs the socket's path, e.g. unix:///run/redis/redis.sock"
        raise CliError(msg)
    db = kwargs.get("db", 0) or 0
    if kwargs.get("path"):
        target.address = f"unix:{kwargs['path']}/{db}"
    else:
        target.address = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
    return target


def _check_db_path(path: str, target: CliTarget) -> None:
    """:class:`CliError` for a db path redis-py would silently read as db 0
    (``/abc``, ``/0/extra``): it reads the path as ``int`` or ignores it."""
    text = unquote(path).replace("/", "")
    try:
        int(text)
    except ValueError:
        shown = target.mask(path)[:40]
        msg = (
            f"bad URL: the path {shown!r} is not a database number (redis-py would quietly "
            "use db 0); expected e.g. redis://localhost:6379/0 (db 0) or .../1 (db 1)"
        )
        raise CliError(msg) from None


def first_contact(client: Any, target: CliTarget) -> None:
    """PING once; :class:`CliError` if the server cannot be reached or refuses us."""
    try:
        client.ping()
    except Exception as error:
        raise CliError(describe_failure(error, target)) from None


def describe_failure(error: BaseException, target: CliTarget) -> str:
    """One line for a failed first contact, never holding the password."""
    text = target.mask(describe_error(error) or "")
    auth_error = getattr(rexc, "AuthenticationError", ())
    if isinstance(error, auth_error) or any(
        marker in text for marker in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username")
    ):
        return (
            f"authentication failed at {target.address}: {text}; "
            "check the password in the URL (redis://:PASSWORD@host:port/db)"
        )
    if isinstance(error, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
        return f"cannot reach {target.address}: {text}; is the server running?"
    return f"{target.address} answered PING with an error: {text}"
