"""Pure logic of the topology hooks: slot ranges and refresh reasons."""

from __future__ import annotations

import pytest
from redis.exceptions import ClusterDownError, MovedError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

from redis_lifecycle._hooks.topology import _refresh_reason, _slot_moves
from redis_lifecycle.events import SlotMove


class TestSlotMoves:
    def test_consecutive_slots_with_the_same_move_form_one_range(self) -> None:
        before = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b"}
        after = {0: "c", 1: "c", 2: "a", 3: "c", 4: "c"}
        moves = _slot_moves(before, after)
        assert moves == ((0, 1, "a", "c"), (3, 4, "b", "c"))
        assert all(isinstance(m, SlotMove) for m in moves)
        assert (moves[1].first_slot, moves[1].old_primary, moves[1].new_primary) == (3, "b", "c")
        assert repr(moves[0]) == "SlotMove(0-1: a -> c)"

    def test_a_slot_that_lost_or_gained_its_primary_is_a_move(self) -> None:
        assert _slot_moves({7: "a"}, {}) == ((7, 7, "a", None),)
        assert _slot_moves({}, {7: "a"}) == ((7, 7, None, "a"),)
        assert _slot_moves({7: "a"}, {7: "a"}) == ()


class TestRefreshReason:
    def test_redis_py_arguments_win(self) -> None:
        assert _refresh_reason({"last_failed_node_name": "h:1"}) == "connection_error"
        assert _refresh_reason({"additional_startup_nodes_info": [("h", 1)]}) == "moved"

    @pytest.mark.parametrize(
        ("error", "reason"),
        [
            (MovedError("1 127.0.0.1:7000"), "moved"),
            (ClusterDownError("CLUSTERDOWN"), "cluster_down"),
            (SlotNotCoveredError("slot"), "cluster_down"),
            (RedisConnectionError("refused"), "connection_error"),
            (ValueError("other"), None),
        ],
    )
    def test_the_error_being_handled(self, error: Exception, reason: str | None) -> None:
        try:
            raise error
        except Exception:
            assert _refresh_reason({}) == reason

    def test_nothing_in_flight_is_no_reason(self) -> None:
        assert _refresh_reason({}) is None
