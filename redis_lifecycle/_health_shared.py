"""What the sync and asyncio health checks share: the result, parsing the
command, judging the reply, reporting the event (with secrets masked).

:mod:`redis_lifecycle.health` (sync, and the public entry point) and
:mod:`redis_lifecycle._health_asyncio` both build on it; neither imports the
other's helpers.
"""

from __future__ import annotations

from time import time
from typing import Any, NamedTuple

import redis.exceptions as rexc

from ._delivery import Delivery
from ._hooks import emit
from ._hooks.state import CONNECTIONS, real_connection
from ._redact import MASK, command_secrets, redact_command
from .events import ConnectionHealthCheckEvent, EventOrigin, describe_error

__all__ = [
    "HealthCheckResult",
    "_expected_reply",
    "_masked_error",
    "_parse_command",
    "_reply_matches",
    "_report",
    "_where",
]


class HealthCheckResult(NamedTuple):
    """The outcome of :func:`health_check`.

    ``bool(result)`` is ``result.healthy`` (a plain tuple would always be true).
    """

    #: Whether the command got the expected reply.
    healthy: bool
    #: The command's round trip in milliseconds (until the failure, if it failed).
    latency_ms: float
    #: Why it failed; ``None`` when healthy.
    error: BaseException | None

    def __bool__(self) -> bool:
        return self.healthy

    def __repr__(self) -> str:
        return (
            f"HealthCheckResult(healthy={self.healthy!r}, latency_ms={self.latency_ms:.3f},"
            f" error={describe_error(self.error)!r})"
        )


def _parse_command(command: Any) -> list[str]:
    if not isinstance(command, str) or not command.split():
        msg = (
            "health_check() expects command as a non-empty str such as 'PING' or "
            f"'INFO server'; got {redact_command(repr(command))}"
        )
        raise TypeError(msg)
    return command.split()


def _expected_reply(args: list[str]) -> str | None:
    """What a PING must answer; ``None`` for other commands."""
    if args[0].upper() != "PING":
        return None
    return "PONG" if len(args) == 1 else args[1]


def _reply_matches(response: Any, expected: str) -> bool:
    if isinstance(response, bytes):
        response = response.decode("utf-8", errors="replace")
    if isinstance(response, list) and len(response) == 2:  # PING while subscribed
        return _reply_matches(response[1] or "PONG", expected)
    return isinstance(response, str) and response == expected


def _where(connection: Any) -> tuple[Delivery, EventOrigin] | None:
    """Where an instrumented connection's events go, else ``None``."""
    state = CONNECTIONS.get(id(real_connection(connection)))
    if state is None or state.pool_state is None:
        return None
    return state.pool_state.delivery, state.origin


def _report(
    where: tuple[Delivery, EventOrigin] | None,
    latency: float,
    error: BaseException | None,
    command: str,
) -> HealthCheckResult:
    healthy = error is None
    error = _masked_error(error, command)
    if where is not None:
        delivery, origin = where
        if ConnectionHealthCheckEvent in delivery.wanted:
            emit(
                delivery,
                ConnectionHealthCheckEvent(
                    time(), origin, healthy, latency, redact_command(command), error
                ),
            )
    return HealthCheckResult(healthy, latency, error)


def _masked_error(error: BaseException | None, command: str) -> BaseException | None:
    """``error``, or a copy without the command's secrets if the server echoed them.

    Redis repeats the arguments of a command it does not know ("with args
    beginning with: 'AUTH' 'user' 'PW'"); the copy has the same type (or
    ``RedisError``), the masked message and the original traceback.
    """
    if error is None:
        return None
    secrets = command_secrets(command)
    if not secrets:
        return error
    message = str(error)
    masked = message
    for secret in secrets:
        masked = masked.replace(f"'{secret}'", f"'{MASK}'")
        if len(secret) >= 4:  # short words (a user name "u") only where quoted
            masked = masked.replace(secret, MASK)
    if masked == message:
        return error
    try:
        copy: BaseException = type(error)(masked)
    except Exception:
        copy = rexc.RedisError(masked)
    copy.__suppress_context__ = True  # the original, with the secret, is not chained
    return copy.with_traceback(error.__traceback__)
