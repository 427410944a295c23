"""The hooks' evidence helpers, on real sockets: an EOF seen on a socket, and
the guard against redis-py 5.x's reconnect recursion."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest

from redis_lifecycle._hooks import STACK_ROOM, check_recursion, eof_seen


@pytest.fixture
def pair() -> Any:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_eof_seen_after_the_peer_closes(pair: Any) -> None:
    left, right = pair
    assert eof_seen(left) is False  # open and quiet
    right.close()
    assert eof_seen(left) is True
    assert eof_seen(left) is True  # a peek: the EOF is still there to read


def test_data_waiting_is_not_an_eof(pair: Any) -> None:
    left, right = pair
    right.sendall(b"+PONG\r\n")
    right.close()
    assert eof_seen(left) is False  # data comes first
    assert left.recv(7) == b"+PONG\r\n"  # and was not consumed


def test_a_socket_with_a_timeout_is_not_waited_on(pair: Any) -> None:
    left, _ = pair
    left.settimeout(30)  # a recv would wait this long for data that never comes
    assert eof_seen(left) is False


def test_no_socket_or_a_closed_one_is_not_an_eof(pair: Any) -> None:
    left, _ = pair
    assert eof_seen(None) is False
    left.close()
    assert eof_seen(left) is False


def _recurse(wrapper: Any, depth: list[int]) -> None:
    """A function that recurses through itself, asking the guard each time."""
    check_recursion(wrapper)
    depth[0] += 1
    _recurse(wrapper, depth)


def test_a_reentered_hook_raises_recursion_error_with_room_left() -> None:
    depth = [0]
    with pytest.raises(RecursionError, match="reconnect recursion"):
        _recurse(_recurse.__code__, depth)
    # Stopped by the guard, short of the limit by about STACK_ROOM frames.
    assert 0 < depth[0] < sys.getrecursionlimit() - STACK_ROOM


def test_a_hook_that_is_not_reentered_never_raises() -> None:
    def once() -> None:
        check_recursion(once.__code__)

    def deep(left: int) -> None:
        if left:
            deep(left - 1)
        else:
            once()  # deep, but the hook is on the stack only once

    # Less than STACK_ROOM frames left at the check, below pytest's own frames.
    deep(sys.getrecursionlimit() - STACK_ROOM)
