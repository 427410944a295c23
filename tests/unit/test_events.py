"""The event classes: names, fields, immutability, legacy dicts, reprs."""

from __future__ import annotations

import pytest

import redis_lifecycle as rl
from redis_lifecycle.events import EVENT_CLASS_BY_TYPE, EVENT_CLASSES, EventOrigin

TCP = EventOrigin(host="10.0.0.1", port=6380, db=2, connection_id=7, pool_name="cache")
UNIX = EventOrigin(path="/tmp/redis.sock", db=0, connection_id=8, pool_name="local")


class TestCatalogue:
    def test_every_event_type_has_exactly_one_class(self) -> None:
        """Each name maps to one class and back."""
        assert len(EVENT_CLASSES) == len(rl.EventType)
        assert {cls.type for cls in EVENT_CLASSES} == set(rl.EventType)
        for cls in EVENT_CLASSES:
            assert EVENT_CLASS_BY_TYPE[cls.type] is cls

    def test_pool_connection_created_does_not_collide_with_connection_created(self) -> None:
        """The pool-level event has its own legacy name."""
        assert rl.PoolConnectionCreatedEvent.type.value == "pool_connection_created"
        assert rl.ConnectionCreatedEvent.type.value == "connection_created"

    def test_reconnected_is_a_connected_event(self) -> None:
        """Subscribers to ConnectionConnectedEvent receive reconnects too."""
        assert issubclass(rl.ConnectionReconnectedEvent, rl.ConnectionConnectedEvent)
        assert rl.ConnectionConnectedEvent.first_connection is True
        assert rl.ConnectionReconnectedEvent.first_connection is False

    def test_every_event_is_slotted(self) -> None:
        """No event instance carries a __dict__ (cheap to build, can't grow)."""
        for cls in EVENT_CLASSES:
            for klass in cls.__mro__[:-1]:
                assert "__slots__" in klass.__dict__, klass

    @pytest.mark.parametrize(
        ("cls", "own_slot"),
        [
            (rl.PoolConnectionAcquiredEvent, "_wait_time"),
            (rl.PoolConnectionReleasedEvent, "_held_time"),
        ],
    )
    def test_per_command_event_slots_are_the_ones_the_hooks_fill(
        self, cls: type[rl.LifecycleEvent], own_slot: str
    ) -> None:
        """The sync hooks build these two events with ``object.__new__`` and
        fill exactly these slots (redis_lifecycle/_sync.py): a slot added to
        either class must be filled there too, or its property would raise."""
        slots = {slot for klass in cls.__mro__ for slot in getattr(klass, "__slots__", ())}
        assert slots == {
            "_timestamp",
            "_origin",
            own_slot,
            "_active_connections",
            "_idle_connections",
        }

    def test_event_type_is_a_str_enum(self) -> None:
        """EventType values compare equal to the plain names."""
        assert rl.EventType.CONNECTED == "connected"
        assert str(rl.CloseReason.SERVER_CLOSED) == "server_closed"


class TestFields:
    def test_fields_are_read_only(self) -> None:
        """Public fields cannot be assigned."""
        event = rl.PoolConnectionAcquiredEvent(1.0, TCP, 0.5, 3, 1)
        with pytest.raises(AttributeError):
            event.wait_time = 2.0  # type: ignore[misc]
        with pytest.raises(AttributeError):
            event.host = "elsewhere"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            event.extra = 1  # type: ignore[attr-defined]

    def test_common_fields_come_from_the_origin(self) -> None:
        """host/port/db/connection_id/pool_name read the shared origin."""
        event = rl.ConnectionConnectedEvent(12.5, TCP, 0.25)
        assert (event.host, event.port, event.path, event.db) == ("10.0.0.1", 6380, None, 2)
        assert (event.connection_id, event.pool_name) == (7, "cache")
        assert event.timestamp == 12.5
        assert event.connect_time == 0.25

    def test_reconnected_carries_downtime(self) -> None:
        """A reconnect reports connect time and downtime."""
        event = rl.ConnectionReconnectedEvent(1.0, TCP, 0.1, 3.5)
        assert event.fields() == {"first_connection": False, "connect_time": 0.1, "downtime": 3.5}


class TestLegacyDict:
    def test_tcp_dict_has_host_and_port_not_path(self) -> None:
        """TCP events give host and port."""
        data = rl.ConnectionDisconnectedEvent(1.0, TCP, rl.CloseReason.ERROR, None).to_dict()
        assert data["type"] == "disconnected"
        assert (data["host"], data["port"]) == ("10.0.0.1", 6380)
        assert "path" not in data
        assert data["reason"] is rl.CloseReason.ERROR

    def test_unix_dict_has_path_not_host(self) -> None:
        """Unix-socket events give path instead of host and port."""
        data = rl.ConnectionCreatedEvent(1.0, UNIX).to_dict()
        assert data["path"] == "/tmp/redis.sock"
        assert "host" not in data
        assert "port" not in data

    def test_error_events_carry_the_exception(self) -> None:
        """The legacy dict of an error event has the exception itself under 'error'."""
        error = ConnectionRefusedError(111, "refused")
        data = rl.ConnectionErrorEvent(1.0, TCP, error, "connect").to_dict()
        assert data["error"] is error
        assert data["phase"] == "connect"


class TestRepr:
    def test_repr_names_class_fields_and_error_message(self) -> None:
        """repr shows the class, address and fields, errors as 'Type: message'."""
        error = ConnectionError("Connection closed by server.")
        text = repr(rl.ConnectionErrorEvent(1.0, TCP, error, "io"))
        assert text.startswith("ConnectionErrorEvent(host='10.0.0.1', port=6380")
        assert "error='ConnectionError: Connection closed by server.'" in text
        assert "phase='io'" in text

    def test_describe_error_handles_empty_messages(self) -> None:
        """An exception without a message is described by its type alone."""
        assert rl.events.describe_error(TimeoutError()) == "TimeoutError"
        assert rl.events.describe_error(None) is None
