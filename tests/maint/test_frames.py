"""Pure logic: reading a maintenance push frame, and the proxy's frame cutter."""

from __future__ import annotations

import pytest

from redis_lifecycle._hooks.maint import _event_fields, _kind_of

from .proxy import encode_push, frame_end


@pytest.mark.parametrize(
    ("frame", "kind", "fields"),
    [
        (
            [b"MOVING", 3, 15, b"10.0.0.2:6380"],
            "moving",
            {"target_host": "10.0.0.2", "target_port": 6380, "ttl": 15},
        ),
        ([b"MOVING", 4, 15, None], "moving", {"ttl": 15}),
        (
            ["MOVING", 5, 15, "[::1]:6379"],
            "moving",
            {"target_host": "[::1]", "target_port": 6379, "ttl": 15},
        ),
        ([b"MIGRATING", 6, 10], "migrating", {"ttl": 10}),
        ([b"FAILED_OVER", 7], "failed_over", {}),
        ([b"SMIGRATING", 8, b"1-5,9"], "smigrating", {"slots": "1-5,9"}),
        (
            [b"SMIGRATED", 9, [[b"a:1", b"b:2", b"1-5"], [b"a:1", b"c:3", b"9"]]],
            "smigrated",
            {"slots": "a:1->b:2:1-5, a:1->c:3:9"},
        ),
    ],
)
def test_fields_read_as_redis_py_reads_them(
    frame: list[object], kind: str, fields: dict[str, object]
) -> None:
    assert _kind_of(frame) == kind
    found = _event_fields(kind, frame)
    assert found.pop("notification_id") == frame[1]
    assert found == fields


@pytest.mark.parametrize(
    "frame", [[b"message", b"chan", b"x"], [b"invalidate", [b"k"]], [], None, [b"\xff"]]
)
def test_other_pushes_are_not_maintenance(frame: object) -> None:
    assert _kind_of(frame) is None


def test_frame_end_waits_for_a_whole_frame() -> None:
    push = encode_push("SMIGRATED", 1, [["a:1", "b:2", "1-5"]])
    reply = b"+OK\r\n"
    data = push + reply
    assert frame_end(data, 0) == len(push)
    assert frame_end(data, len(push)) == len(data)
    for cut in range(1, len(push)):
        assert frame_end(push[:cut], 0) is None
    assert frame_end(b"%1\r\n+a\r\n:1\r\n", 0) == 12
    assert frame_end(b"$-1\r\n", 0) == 5
