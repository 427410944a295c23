"""Lifecycle events: what happened to a redis-py connection or pool, and when.

Subscribe to a class to receive it and its subclasses::

    >>> import redis_lifecycle as rl
    >>> dispatcher = rl.EventDispatcher()
    >>> seen = []
    >>> sub = dispatcher.subscribe(rl.ConnectionConnectedEvent, seen.append)

Subscribing to :class:`ConnectionConnectedEvent` also receives
:class:`ConnectionReconnectedEvent`; subscribing to :class:`LifecycleEvent`
receives everything.

Events are immutable: every public field is a read-only property. They are
slotted, plain classes rather than frozen dataclasses because one is built per
command on the hot path (about 90 ns here against 670 ns for a frozen
dataclass). Connection-scoped fields (``host``, ``port``, ``path``, ``db``,
``connection_id``, ``pool_name``) live in one :class:`EventOrigin` shared by
every event of that connection, so building an event stores two or three
references, not eight values.

Durations are in seconds (``time.perf_counter`` differences), except
:attr:`ConnectionHealthCheckEvent.latency`, which is in **milliseconds**.
``timestamp`` is epoch seconds (``time.time()``). No event ever holds a
password, an AUTH argument or a credential provider.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from ._redact import redact

__all__ = [
    "CloseReason",
    "ClusterRedirectEvent",
    "ClusterTopologyChangedEvent",
    "ConnectionConnectedEvent",
    "ConnectionCreatedEvent",
    "ConnectionDisconnectedEvent",
    "ConnectionErrorEvent",
    "ConnectionHealthCheckEvent",
    "ConnectionMarkedForReconnectEvent",
    "ConnectionReconnectedEvent",
    "ConnectionRetriesExhaustedEvent",
    "ConnectionRetryEvent",
    "EVENT_CLASSES",
    "ErrorCategory",
    "EventOrigin",
    "EventType",
    "LifecycleEvent",
    "MaintenanceNotificationEvent",
    "MaintenanceTimeoutRelaxedEvent",
    "MaintenanceTimeoutRestoredEvent",
    "PoolConnectionAcquiredEvent",
    "PoolConnectionCreatedEvent",
    "PoolConnectionLeakEvent",
    "PoolConnectionReleasedEvent",
    "PoolCreatedEvent",
    "PoolExhaustedEvent",
    "PoolResetEvent",
    "SentinelMasterChangedEvent",
    "SlotMove",
    "describe_error",
    "error_category",
]


class EventType(str, enum.Enum):
    """The name of each event, as used by legacy callbacks and in ``to_dict()``."""

    CONNECTION_CREATED = "connection_created"
    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    HEALTH_CHECK = "health_check"
    MARKED_FOR_RECONNECT = "marked_for_reconnect"
    POOL_CREATED = "pool_created"
    POOL_CONNECTION_CREATED = "pool_connection_created"
    CONNECTION_ACQUIRED = "connection_acquired"
    CONNECTION_RELEASED = "connection_released"
    POOL_EXHAUSTED = "pool_exhausted"
    POOL_RESET = "pool_reset"
    MAINTENANCE_NOTIFICATION = "maintenance_notification"
    MAINTENANCE_TIMEOUT_RELAXED = "maintenance_timeout_relaxed"
    MAINTENANCE_TIMEOUT_RESTORED = "maintenance_timeout_restored"
    CONNECTION_LEAK = "connection_leak"
    CLUSTER_REDIRECT = "cluster_redirect"
    CLUSTER_TOPOLOGY_CHANGED = "cluster_topology_changed"
    SENTINEL_MASTER_CHANGED = "sentinel_master_changed"
    RETRY = "retry"
    RETRIES_EXHAUSTED = "retries_exhausted"

    def __str__(self) -> str:
        return self.value


class CloseReason(str, enum.Enum):
    """Why a connection's socket was closed (:attr:`ConnectionDisconnectedEvent.reason`)."""

    #: The application (or redis-py on its behalf) closed it: ``close()``,
    #: ``pool.disconnect()``, a connection marked for reconnect being released.
    APPLICATION = "application"
    #: An I/O error, timeout or failed handshake closed it.
    ERROR = "error"
    #: redis-py's health check (``health_check_interval``) failed on it.
    HEALTH_CHECK_FAILED = "health_check_failed"
    #: It was inherited across ``os.fork()`` and dropped in the child.
    FORK = "fork"
    #: Its pool was reset (``pool.reset()``), or it was marked for reconnect
    #: by a pool-wide action.
    POOL_RESET = "pool_reset"
    #: The server closed it (``CLIENT KILL``, ``timeout``, a server restart, a
    #: load balancer): a reset, or an EOF seen on the socket.
    SERVER_CLOSED = "server_closed"

    def __str__(self) -> str:
        return self.value


class ErrorCategory(str, enum.Enum):
    """Whose problem an error is (:attr:`ConnectionErrorEvent.category`): the
    categories of redis-py 8.2's ``RedisError.error_type``, given the same way
    on every supported redis-py (see :func:`error_category`)."""

    #: The network or the socket: refused, reset or closed connections,
    #: timeouts, a server still loading, an unreachable cluster.
    NETWORK = "network"
    #: The TLS layer: handshake, certificates.
    TLS = "tls"
    #: Credentials or permissions: wrong password, no permission.
    AUTH = "auth"
    #: The server answered with an error, or refused the connection because
    #: it is full (``maxclients``).
    SERVER = "server"

    def __str__(self) -> str:
        return self.value


#: redis-py exception class names by category, checked along the class's MRO
#: (by name: older redis-py lacks some of them).
_CATEGORY_BY_CLASS = {
    "MaxClientsReachedError": ErrorCategory.SERVER,
    "RedisClusterUnreachableError": ErrorCategory.NETWORK,
    "AuthenticationError": ErrorCategory.AUTH,
    "AuthorizationError": ErrorCategory.AUTH,
    "AuthenticationWrongNumberOfArgsError": ErrorCategory.AUTH,
    "NoPermissionError": ErrorCategory.AUTH,
    "SSLError": ErrorCategory.TLS,
    "BusyLoadingError": ErrorCategory.NETWORK,
    "ConnectionError": ErrorCategory.NETWORK,
    "TimeoutError": ErrorCategory.NETWORK,
}
_MAX_CLIENTS_MESSAGE = "max number of clients reached"


def error_category(error: BaseException) -> ErrorCategory:
    """The :class:`ErrorCategory` of ``error``, the same on every redis-py.

    The category redis-py 8.2 gives each of its exception classes
    (``error_type``), read from the class so that older redis-py, which has
    no ``error_type``, gives the same: authentication and permission errors
    ``auth``; connection and timeout errors (and any ``OSError``)
    ``network``; every other redis-py error ``server``. Two refinements,
    as redis-py's own docstrings describe these errors: a connect refused
    because the server reached ``maxclients`` is ``server`` (8.2's
    ``MaxClientsReachedError``; before, a ``ConnectionError`` with that
    message), and an unreachable cluster (``RedisClusterUnreachableError``)
    is ``network``. A TLS error anywhere in the chain of causes is ``tls``.
    A class the table does not know keeps the ``error_type`` it carries.
    """
    if _MAX_CLIENTS_MESSAGE in str(error):
        return ErrorCategory.SERVER
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None:
            break
        if any(k.__name__ == "SSLError" for k in type(cause).__mro__):
            return ErrorCategory.TLS
        cause = cause.__cause__ or cause.__context__
    for klass in type(error).__mro__:
        category = _CATEGORY_BY_CLASS.get(klass.__name__)
        if category is not None and (
            klass.__module__.startswith("redis") or klass.__name__ == "TimeoutError"
        ):
            return category
    error_type = getattr(getattr(error, "error_type", None), "value", None)
    if error_type in ErrorCategory._value2member_map_:
        return ErrorCategory(error_type)
    if isinstance(error, (OSError, EOFError)):
        return ErrorCategory.NETWORK
    return ErrorCategory.SERVER


def describe_error(error: BaseException | None) -> str | None:
    """Return ``"TypeName: message"`` for an exception, ``None`` for ``None``.

    redis-py 7.2+ hides the message in ``repr()`` of its errors; this is the
    form used in logs, reprs and metric labels.
    """
    if error is None:
        return None
    message = redact(str(error))
    name = type(error).__name__
    return f"{name}: {message}" if message else name


class EventOrigin:
    """Where an event comes from: one connection, or one pool.

    Built once per connection (or pool) and shared by all of its events.
    ``connection_id`` is ``None`` for pool-level events that concern no single
    connection (``pool_created``, ``pool_exhausted``, ``pool_reset``).
    """

    __slots__ = ("connection_id", "db", "host", "path", "pool_name", "port")

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        db: int | None = None,
        connection_id: int | None = None,
        pool_name: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.db = db
        self.connection_id = connection_id
        self.pool_name = pool_name

    def for_connection(self, connection_id: int) -> EventOrigin:
        """A copy of this (pool) origin naming one connection."""
        return EventOrigin(
            host=self.host,
            port=self.port,
            path=self.path,
            db=self.db,
            connection_id=connection_id,
            pool_name=self.pool_name,
        )

    def address(self) -> str:
        """``host:port`` or the unix socket path, for logs and labels."""
        if self.path is not None:
            return self.path
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"EventOrigin(host={self.host!r}, port={self.port!r}, path={self.path!r},"
            f" db={self.db!r}, connection_id={self.connection_id!r},"
            f" pool_name={self.pool_name!r})"
        )


_NO_ORIGIN = EventOrigin()


class LifecycleEvent:
    """Base of every event. Subscribe to it to receive all events.

    Fields common to all events: :attr:`type`, :attr:`timestamp`, and where a
    connection or pool is concerned :attr:`host`, :attr:`port` (TCP/TLS) or
    :attr:`path` (unix socket), :attr:`db`, :attr:`connection_id` and
    :attr:`pool_name`.
    """

    __slots__ = ("_origin", "_timestamp")

    #: The event's name; also the legacy callback name.
    type: ClassVar[EventType]
    #: Names of the fields this class adds to the common ones, in order.
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, timestamp: float, origin: EventOrigin | None = None) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN

    @property
    def timestamp(self) -> float:
        """When it happened, in epoch seconds (``time.time()``)."""
        return self._timestamp

    @property
    def origin(self) -> EventOrigin:
        """The connection or pool this event concerns."""
        return self._origin

    @property
    def host(self) -> str | None:
        """Server host of the connection or pool (TCP/TLS); ``None`` for unix sockets."""
        return self._origin.host

    @property
    def port(self) -> int | None:
        """Server port (TCP/TLS); ``None`` for unix sockets."""
        return self._origin.port

    @property
    def path(self) -> str | None:
        """Unix socket path; ``None`` for TCP/TLS."""
        return self._origin.path

    @property
    def db(self) -> int | None:
        """Database number the connection selects."""
        return self._origin.db

    @property
    def connection_id(self) -> int | None:
        """Stable id of the connection object, unique in this process.

        ``None`` for pool-wide events."""
        return self._origin.connection_id

    @property
    def pool_name(self) -> str | None:
        """Name of the pool: the ``pool_name`` given, else the server address."""
        return self._origin.pool_name

    def fields(self) -> dict[str, Any]:
        """The event-specific fields (not the common ones), by name."""
        return {name: getattr(self, name) for name in self._fields}

    def to_dict(self) -> dict[str, Any]:
        """The legacy callback payload.

        Always ``type`` (the plain name) and ``timestamp``; ``host`` and
        ``port`` for TCP/TLS or ``path`` for unix sockets; ``db``,
        ``connection_id``, ``pool_name``; then the event's own fields
        (``error`` for error events).
        """
        origin = self._origin
        data: dict[str, Any] = {"type": self.type.value, "timestamp": self._timestamp}
        if origin.path is not None:
            data["path"] = origin.path
        else:
            data["host"] = origin.host
            data["port"] = origin.port
        data["db"] = origin.db
        data["connection_id"] = origin.connection_id
        data["pool_name"] = origin.pool_name
        for name in self._fields:
            data[name] = getattr(self, name)
        return data

    def __repr__(self) -> str:
        origin = self._origin
        where = (
            f"path={origin.path!r}"
            if origin.path is not None
            else (f"host={origin.host!r}, port={origin.port!r}")
        )
        parts = [where, f"db={origin.db!r}"]
        if origin.connection_id is not None:
            parts.append(f"connection_id={origin.connection_id!r}")
        parts.append(f"pool_name={origin.pool_name!r}")
        for name in self._fields:
            value = getattr(self, name)
            if isinstance(value, BaseException):
                parts.append(f"{name}={describe_error(value)!r}")
            elif isinstance(value, enum.Enum):
                parts.append(f"{name}={value.value!r}")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class ConnectionCreatedEvent(LifecycleEvent):
    """A connection with no socket is about to attempt a connect.

    Fires before every socket connect attempt, so a connect that redis-py
    retries fires it once per attempt.
    """

    __slots__ = ()
    type = EventType.CONNECTION_CREATED


class ConnectionConnectedEvent(LifecycleEvent):
    """A connection object connected for the first time (socket and handshake done).

    Subscribing to this class also receives :class:`ConnectionReconnectedEvent`;
    the legacy name ``"connected"`` receives first connections only.
    """

    __slots__ = ("_connect_time",)
    type = EventType.CONNECTED
    _fields: ClassVar[tuple[str, ...]] = ("first_connection", "connect_time")
    first_connection: ClassVar[bool] = True

    def __init__(self, timestamp: float, origin: EventOrigin | None, connect_time: float) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._connect_time = connect_time

    @property
    def connect_time(self) -> float:
        """Seconds from the first socket attempt to the end of the handshake."""
        return self._connect_time


class ConnectionReconnectedEvent(ConnectionConnectedEvent):
    """The same connection object connected again after it had been disconnected."""

    __slots__ = ("_downtime",)
    type = EventType.RECONNECTED
    _fields = ("first_connection", "connect_time", "downtime")
    first_connection: ClassVar[bool] = False

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        connect_time: float,
        downtime: float,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._connect_time = connect_time
        self._downtime = downtime

    @property
    def downtime(self) -> float:
        """Seconds since this connection's previous disconnect."""
        return self._downtime


class ConnectionDisconnectedEvent(LifecycleEvent):
    """A connected connection's socket was closed.

    Fires once per close of a connection that had connected; a connection that
    failed its handshake reports :class:`ConnectionErrorEvent` only.
    """

    __slots__ = ("_error", "_reason")
    type = EventType.DISCONNECTED
    _fields = ("reason", "error")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        reason: CloseReason,
        error: BaseException | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._reason = reason
        self._error = error

    @property
    def reason(self) -> CloseReason:
        """Why it was closed."""
        return self._reason

    @property
    def error(self) -> BaseException | None:
        """The exception that caused the close, if any."""
        return self._error


class ConnectionErrorEvent(LifecycleEvent):
    """A connection error: connect, handshake, command I/O or timeout.

    Fires for each failed socket attempt (``phase="connect"``), a failed
    handshake, and each close on an error, just before that close's
    ``disconnected``. ``error`` is the exception redis-py raises to its
    caller, the very object the caller catches, on every supported redis-py;
    where redis-py raised it over a lower error (a socket reset, the socket's
    own timeout) that one is its ``__cause__`` or ``__context__``. For
    ``phase="connect"`` it is each attempt's socket error (redis-py raises
    its ``ConnectionError`` over the last one once it stops retrying).

    ``phase`` is ``"connect"`` (the socket could not be opened),
    ``"handshake"`` (AUTH/HELLO/SELECT/CLIENT SETNAME failed), ``"io"``
    (reading or writing a command failed, including timeouts) or
    ``"health_check"`` (redis-py's own health check failed and closed the
    connection). ``category`` says whose problem it is
    (:class:`ErrorCategory`).
    """

    __slots__ = ("_error", "_phase")
    type = EventType.ERROR
    _fields = ("error", "phase", "category")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        error: BaseException,
        phase: str,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._error = error
        self._phase = phase

    @property
    def error(self) -> BaseException:
        """The exception."""
        return self._error

    @property
    def phase(self) -> str:
        """``"connect"``, ``"handshake"``, ``"io"`` or ``"health_check"``."""
        return self._phase

    @property
    def category(self) -> ErrorCategory:
        """``network``, ``tls``, ``auth`` or ``server``: see :func:`error_category`."""
        return error_category(self._error)


class ConnectionHealthCheckEvent(LifecycleEvent):
    """A health check ran: explicit (:func:`redis_lifecycle.health_check`) or
    redis-py's own (``health_check_interval``, PubSub's health ping).

    redis-py's own check fires when its reply is read or the ping fails; a
    failed one comes before the close it caused. A ping redis-py sends inside
    a (re)connect's handshake is reported after that ``connected`` or
    ``reconnected`` (before the handshake's ``error`` if it fails)."""

    __slots__ = ("_command", "_error", "_healthy", "_latency")
    type = EventType.HEALTH_CHECK
    _fields = ("healthy", "latency", "command", "error")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        healthy: bool,
        latency: float,
        command: str,
        error: BaseException | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._healthy = healthy
        self._latency = latency
        self._command = command
        self._error = error

    @property
    def healthy(self) -> bool:
        """Whether the server answered as expected."""
        return self._healthy

    @property
    def latency(self) -> float:
        """Round trip of the check, in **milliseconds**."""
        return self._latency

    @property
    def command(self) -> str:
        """The command sent, e.g. ``"PING"``; passwords in it are shown as ``***``."""
        return self._command

    @property
    def error(self) -> BaseException | None:
        """The exception when unhealthy, else ``None``."""
        return self._error


class ConnectionMarkedForReconnectEvent(LifecycleEvent):
    """A connection was marked to reconnect on its next release or use.

    ``reason``: ``"fork"`` (inherited by a forked child), ``"pool_reset"``,
    ``"topology_change"`` (cluster), ``"maintenance"`` (server maintenance
    notifications) or ``"requested"`` (any other caller of redis-py's
    ``mark_for_reconnect``).
    """

    __slots__ = ("_reason",)
    type = EventType.MARKED_FOR_RECONNECT
    _fields = ("reason",)

    def __init__(self, timestamp: float, origin: EventOrigin | None, reason: str) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._reason = reason

    @property
    def reason(self) -> str:
        """Why it was marked."""
        return self._reason


class PoolCreatedEvent(LifecycleEvent):
    """A pool was created, or first seen by :func:`redis_lifecycle.instrument`."""

    __slots__ = ("_size", "_timeout")
    type = EventType.POOL_CREATED
    _fields = ("size", "timeout")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        size: int,
        timeout: float | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._size = size
        self._timeout = timeout

    @property
    def size(self) -> int:
        """``max_connections``."""
        return self._size

    @property
    def timeout(self) -> float | None:
        """Seconds a checkout may wait (blocking pools); ``None`` for pools that never wait."""
        return self._timeout


class PoolConnectionCreatedEvent(LifecycleEvent):
    """The pool made a new connection object (it is not connected yet)."""

    __slots__ = ("_total_connections",)
    type = EventType.POOL_CONNECTION_CREATED
    _fields = ("total_connections",)

    def __init__(
        self, timestamp: float, origin: EventOrigin | None, total_connections: int
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._total_connections = total_connections

    @property
    def total_connections(self) -> int:
        """Connection objects the pool holds, this one included."""
        return self._total_connections


class _PoolCountsEvent(LifecycleEvent):
    __slots__ = ("_active_connections", "_idle_connections")
    _active_connections: int
    _idle_connections: int

    @property
    def active_connections(self) -> int:
        """Connections checked out after this event."""
        return self._active_connections

    @property
    def idle_connections(self) -> int:
        """Connections in the pool, ready to be checked out, after this event."""
        return self._idle_connections


class PoolConnectionAcquiredEvent(_PoolCountsEvent):
    """A connection was checked out of the pool (connected and ready)."""

    __slots__ = ("_pending", "_wait_time")
    type = EventType.CONNECTION_ACQUIRED
    _fields = ("wait_time", "active_connections", "idle_connections", "pending")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        wait_time: float,
        active_connections: int,
        idle_connections: int,
        pending: int = 0,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._wait_time = wait_time
        self._active_connections = active_connections
        self._idle_connections = idle_connections
        self._pending = pending

    @property
    def wait_time(self) -> float:
        """Seconds the checkout took, less any connect or reconnect inside it."""
        return self._wait_time

    @property
    def pending(self) -> int:
        """Other callers already waiting for a connection of this pool when
        this checkout started: threads in a ``BlockingConnectionPool``, tasks
        in an asyncio ``BlockingConnectionPool``. Always 0 for pools that
        never wait (``ConnectionPool``: it fails at once when full)."""
        return self._pending


class PoolConnectionReleasedEvent(_PoolCountsEvent):
    """A connection was returned to the pool."""

    __slots__ = ("_held_time", "_reported_leak")
    type = EventType.CONNECTION_RELEASED
    _fields = ("held_time", "active_connections", "idle_connections", "reported_leak")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        held_time: float,
        active_connections: int,
        idle_connections: int,
        reported_leak: bool = False,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._held_time = held_time
        self._active_connections = active_connections
        self._idle_connections = idle_connections
        self._reported_leak = reported_leak

    @property
    def reported_leak(self) -> bool:
        """Whether this checkout was reported as a leak
        (:class:`PoolConnectionLeakEvent`) before it came back."""
        return self._reported_leak

    @property
    def held_time(self) -> float:
        """Seconds from the checkout (or from instrumentation, if it was
        already out) to the call that returned it."""
        return self._held_time


class PoolExhaustedEvent(LifecycleEvent):
    """A checkout failed because no connection was free.

    ``ConnectionPool`` fails at once when ``max_connections`` are out
    (``waited`` is about 0); ``BlockingConnectionPool`` fails after waiting
    ``timeout`` seconds (``waited`` is about ``timeout``).
    """

    __slots__ = ("_size", "_timeout", "_waited")
    type = EventType.POOL_EXHAUSTED
    _fields = ("size", "timeout", "waited")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        size: int,
        timeout: float | None,
        waited: float,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._size = size
        self._timeout = timeout
        self._waited = waited

    @property
    def size(self) -> int:
        """``max_connections``."""
        return self._size

    @property
    def timeout(self) -> float | None:
        """The pool's checkout timeout in seconds; ``None`` if it never waits."""
        return self._timeout

    @property
    def waited(self) -> float:
        """Seconds the failed checkout waited."""
        return self._waited


class PoolResetEvent(LifecycleEvent):
    """The pool was reset: after ``os.fork()`` (reason ``"fork"``) or by a call
    to ``reset()`` (reason ``"explicit"``). Its connections are dropped."""

    __slots__ = ("_connections_dropped", "_reason")
    type = EventType.POOL_RESET
    _fields = ("reason", "connections_dropped")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        reason: str,
        connections_dropped: int,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._reason = reason
        self._connections_dropped = connections_dropped

    @property
    def reason(self) -> str:
        """``"fork"`` or ``"explicit"``."""
        return self._reason

    @property
    def connections_dropped(self) -> int:
        """Connection objects the pool held before the reset."""
        return self._connections_dropped


class MaintenanceNotificationEvent(LifecycleEvent):
    """The server pushed a maintenance notification on a connection and
    redis-py handled it (redis-py 7.0+ sync, 8.1+ asyncio, RESP3 with
    maintenance notifications on).

    Fires once per notification received, on the connection it arrived on,
    before redis-py acts on it (relaxes timeouts, hands connections off to a
    new endpoint, refreshes a cluster's slot map). A server sends a
    notification on every connection it concerns, so one maintenance usually
    gives one event per open connection.

    ``kind`` is one of ``"moving"`` (the endpoint moves to ``target_host``:
    ``target_port`` within ``ttl`` seconds), ``"migrating"`` / ``"migrated"``
    (a shard migration starts / ends), ``"failing_over"`` / ``"failed_over"``
    (a failover starts / ends), ``"smigrating"`` / ``"smigrated"`` (Redis
    Cluster: slots ``slots`` start / finish moving). ``ttl`` is given by
    ``moving``, ``migrating`` and ``failing_over``; ``target_host`` and
    ``target_port`` by ``moving`` (``None`` when the server gives no new
    address: redis-py then only relaxes timeouts); ``slots`` by
    ``smigrating`` (the slot ranges, as sent) and ``smigrated`` (the ranges
    that moved, ``"source->destination:ranges"`` joined by ``", "``).
    """

    __slots__ = ("_kind", "_notification_id", "_slots", "_target_host", "_target_port", "_ttl")
    type = EventType.MAINTENANCE_NOTIFICATION
    _fields = ("kind", "notification_id", "target_host", "target_port", "ttl", "slots")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        kind: str,
        notification_id: int | None,
        target_host: str | None = None,
        target_port: int | None = None,
        ttl: float | None = None,
        slots: str | None = None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._kind = kind
        self._notification_id = notification_id
        self._target_host = target_host
        self._target_port = target_port
        self._ttl = ttl
        self._slots = slots

    @property
    def kind(self) -> str:
        """``moving``, ``migrating``, ``migrated``, ``failing_over``,
        ``failed_over``, ``smigrating`` or ``smigrated``."""
        return self._kind

    @property
    def notification_id(self) -> int | None:
        """The notification's sequence number, as the server sent it."""
        return self._notification_id

    @property
    def target_host(self) -> str | None:
        """``moving``: the host the endpoint moves to; else ``None``."""
        return self._target_host

    @property
    def target_port(self) -> int | None:
        """``moving``: the port the endpoint moves to; else ``None``."""
        return self._target_port

    @property
    def ttl(self) -> float | None:
        """Seconds the notification stays valid (``moving``, ``migrating``,
        ``failing_over``); else ``None``."""
        return self._ttl

    @property
    def slots(self) -> str | None:
        """``smigrating`` / ``smigrated``: the slot ranges concerned; else ``None``."""
        return self._slots


class _MaintenanceTimeoutEvent(LifecycleEvent):
    """Base of the relaxed-timeout events (not in the catalogue)."""

    __slots__ = ("_kind", "_notification_id", "_relaxed_timeout", "_scope")
    _fields: ClassVar[tuple[str, ...]] = ("scope", "kind", "notification_id", "relaxed_timeout")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        scope: str,
        kind: str | None,
        notification_id: int | None,
        relaxed_timeout: float | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._scope = scope
        self._kind = kind
        self._notification_id = notification_id
        self._relaxed_timeout = relaxed_timeout

    @property
    def scope(self) -> str:
        """``"connection"`` (a migration or failover relaxes the connection it
        arrived on) or ``"pool"`` (a ``moving`` relaxes every connection of
        the pool to the moving endpoint, and the ones it makes until the
        notification's ``ttl`` ends)."""
        return self._scope

    @property
    def kind(self) -> str | None:
        """The kind of the notification that caused it (as in
        :attr:`MaintenanceNotificationEvent.kind`); ``None`` when redis-py
        ended a relaxation without a notification (the connection closed, a
        ``moving`` took the connection over)."""
        return self._kind

    @property
    def notification_id(self) -> int | None:
        """That notification's sequence number, or ``None``."""
        return self._notification_id

    @property
    def relaxed_timeout(self) -> float | None:
        """The relaxed socket timeout in seconds (``MaintNotificationsConfig.relaxed_timeout``;
        ``None`` means blocking reads)."""
        return self._relaxed_timeout


class MaintenanceTimeoutRelaxedEvent(_MaintenanceTimeoutEvent):
    """redis-py relaxed socket timeouts because of a maintenance notification.

    Fires after :class:`MaintenanceNotificationEvent`, when redis-py applies
    ``MaintNotificationsConfig.relaxed_timeout``: on the connection
    (``scope="connection"``: ``migrating``, ``failing_over``,
    ``smigrating``) or on the pool (``scope="pool"``: ``moving``, once per
    notification however many connections receive it). On redis-py 8.2+ it
    is redis-py's own ``MaintenanceStartedEvent``; on older redis-py it is
    seen by hooks. Not fired when redis-py does not relax (``relaxed_timeout=-1``,
    or a connection already under a ``moving``). Paired with a
    :class:`MaintenanceTimeoutRestoredEvent`.
    """

    __slots__ = ()
    type = EventType.MAINTENANCE_TIMEOUT_RELAXED


class MaintenanceTimeoutRestoredEvent(_MaintenanceTimeoutEvent):
    """redis-py restored the normal socket timeouts a maintenance had relaxed.

    Fires when the relaxation announced by a
    :class:`MaintenanceTimeoutRelaxedEvent` ends: the completing notification
    arrived (``migrated``, ``failed_over``, ``smigrated``), a ``moving``'s
    ``ttl`` ran out (``scope="pool"``), or (redis-py 8.2+) the connection
    was closed or taken over by a ``moving`` while relaxed (``kind`` is then
    ``None``). On redis-py 8.2+ it is redis-py's own
    ``MaintenanceCompletedEvent``; on older redis-py it is seen by hooks.
    """

    __slots__ = ()
    type = EventType.MAINTENANCE_TIMEOUT_RESTORED


class PoolConnectionLeakEvent(LifecycleEvent):
    """A connection has been checked out for longer than the pool's
    ``leak_detection`` threshold and is *still* out.

    Fires once per checkout, while the connection is held, from the leak
    watchdog: a daemon thread for sync pools (callbacks run on that thread),
    a timer on the event loop for asyncio pools (callbacks run on the loop).
    The watchdog looks every ``threshold / 4`` seconds (at most every second),
    so it fires between ``threshold`` and about ``1.25 * threshold`` after
    the checkout. If the connection is returned later, its
    ``connection_released`` has ``reported_leak=True``. Only with
    ``leak_detection=SECONDS`` on ``instrument()``, ``instrument_all()`` or a
    lifecycle pool.
    """

    __slots__ = ("_held_time", "_stack", "_task_name", "_thread_name", "_threshold")
    type = EventType.CONNECTION_LEAK
    _fields = ("held_time", "threshold", "thread_name", "task_name", "stack")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        held_time: float,
        threshold: float,
        thread_name: str | None,
        task_name: str | None,
        stack: tuple[str, ...],
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._held_time = held_time
        self._threshold = threshold
        self._thread_name = thread_name
        self._task_name = task_name
        self._stack = stack

    @property
    def held_time(self) -> float:
        """Seconds the connection has been out, when this fired."""
        return self._held_time

    @property
    def threshold(self) -> float:
        """The ``leak_detection`` threshold in seconds."""
        return self._threshold

    @property
    def thread_name(self) -> str | None:
        """Name of the thread that checked it out (``None`` if it has ended)."""
        return self._thread_name

    @property
    def task_name(self) -> str | None:
        """Name of the asyncio task that checked it out; ``None`` for sync pools."""
        return self._task_name

    @property
    def stack(self) -> tuple[str, ...]:
        """The checkout's call stack, ``"path:line in function"`` each,
        outermost first (as in a Python traceback), without this library's,
        redis-py's, and the thread or event loop start-up frames. The last
        line is the line of your code that took the connection (see
        :attr:`caller`)."""
        return self._stack

    @property
    def caller(self) -> str | None:
        """The innermost line of :attr:`stack`: where your code checked the
        connection out (``None`` if every frame was left out)."""
        return self._stack[-1] if self._stack else None


class ClusterRedirectEvent(LifecycleEvent):
    """A cluster node answered a command with a ``MOVED`` or ``ASK`` redirect.

    Fires once per redirect reply the client reads (``RedisCluster`` and the
    asyncio ``RedisCluster``, single commands and cluster pipelines alike),
    as the reply is read and before redis-py follows it. ``host``, ``port``
    and ``pool_name`` are those of the node that redirected (and
    ``connection_id`` its connection); ``target_host`` / ``target_port`` the
    node it sent the client to, as the server wrote it (a redirect without a
    host is relative to the node that sent it, as redis-py reads it).
    """

    __slots__ = ("_kind", "_slot", "_target_host", "_target_port")
    type = EventType.CLUSTER_REDIRECT
    _fields = ("kind", "slot", "target_host", "target_port")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        kind: str,
        slot: int,
        target_host: str,
        target_port: int,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._kind = kind
        self._slot = slot
        self._target_host = target_host
        self._target_port = target_port

    @property
    def kind(self) -> str:
        """``"moved"`` (the slot now lives on the target) or ``"ask"`` (the
        slot is being migrated: ask the target this once)."""
        return self._kind

    @property
    def slot(self) -> int:
        """The hash slot of the command's keys."""
        return self._slot

    @property
    def target_host(self) -> str:
        """Host of the node redirected to."""
        return self._target_host

    @property
    def target_port(self) -> int:
        """Port of the node redirected to."""
        return self._target_port


class SlotMove(tuple[int, int, "str | None", "str | None"]):
    """One range of slots whose primary changed:
    ``(first_slot, last_slot, old_primary, new_primary)``, the primaries as
    ``"host:port"`` (``None`` where no node served the slot)."""

    __slots__ = ()

    @property
    def first_slot(self) -> int:
        return self[0]

    @property
    def last_slot(self) -> int:
        return self[1]

    @property
    def old_primary(self) -> str | None:
        return self[2]

    @property
    def new_primary(self) -> str | None:
        return self[3]

    def __repr__(self) -> str:
        return f"SlotMove({self[0]}-{self[1]}: {self[2]} -> {self[3]})"


class ClusterTopologyChangedEvent(LifecycleEvent):
    """The client's slot map changed: nodes added or removed, primaries
    changed (a replica promoted, a primary demoted) or slots moved.

    Fires after each refresh of the slot map that changed something: a full
    refresh (redis-py's ``NodesManager.initialize``: after a connection
    error, a ``CLUSTERDOWN``, every so many ``MOVED`` redirects, or when
    called) and the single-slot patch redis-py applies on each ``MOVED``. A
    refresh that changed nothing fires nothing, nor does the client's first
    load of the map. Nodes are named ``"host:port"``. ``pool_name`` is the
    ``pool_name`` given to :func:`~redis_lifecycle.instrument`, else
    ``"cluster"``; ``host``/``port`` are ``None``.
    """

    __slots__ = (
        "_nodes_added",
        "_nodes_removed",
        "_primaries_added",
        "_primaries_removed",
        "_reason",
        "_slot_moves",
    )
    type = EventType.CLUSTER_TOPOLOGY_CHANGED
    _fields = (
        "reason",
        "nodes_added",
        "nodes_removed",
        "primaries_added",
        "primaries_removed",
        "slots_moved",
        "slot_moves",
    )

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        reason: str | None,
        nodes_added: tuple[str, ...],
        nodes_removed: tuple[str, ...],
        primaries_added: tuple[str, ...],
        primaries_removed: tuple[str, ...],
        slot_moves: tuple[SlotMove, ...],
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._reason = reason
        self._nodes_added = nodes_added
        self._nodes_removed = nodes_removed
        self._primaries_added = primaries_added
        self._primaries_removed = primaries_removed
        self._slot_moves = slot_moves

    @property
    def reason(self) -> str | None:
        """What made redis-py refresh: ``"moved"`` (a ``MOVED`` redirect),
        ``"connection_error"`` (a node could not be reached),
        ``"cluster_down"`` (``CLUSTERDOWN`` or a slot no node serves), or
        ``None`` when redis-py does not say (an explicit call)."""
        return self._reason

    @property
    def nodes_added(self) -> tuple[str, ...]:
        """Nodes (primaries and replicas) in the map now and not before."""
        return self._nodes_added

    @property
    def nodes_removed(self) -> tuple[str, ...]:
        """Nodes in the map before and not now."""
        return self._nodes_removed

    @property
    def primaries_added(self) -> tuple[str, ...]:
        """Nodes that are primaries now and were not (promoted replicas, new primaries)."""
        return self._primaries_added

    @property
    def primaries_removed(self) -> tuple[str, ...]:
        """Nodes that were primaries and are not now (demoted or gone)."""
        return self._primaries_removed

    @property
    def slots_moved(self) -> int:
        """How many slots have a different primary now."""
        return sum(move[1] - move[0] + 1 for move in self._slot_moves)

    @property
    def slot_moves(self) -> tuple[SlotMove, ...]:
        """The moved slots as ranges, in slot order (see :class:`SlotMove`)."""
        return self._slot_moves


class SentinelMasterChangedEvent(LifecycleEvent):
    """A Sentinel-managed master pool found its service's master at a new address.

    Fires when a ``SentinelConnectionPool`` (sync or asyncio, from
    ``Sentinel.master_for``) asks the sentinels for the master, as it does
    before each connect, and the answer differs from the address it had:
    after a failover, when it connects again. The pool's first discovery
    fires nothing. ``host``/``port`` are the new master's,
    ``pool_name`` the managed pool's (``"<service>/master"``).
    """

    __slots__ = ("_new_host", "_new_port", "_old_host", "_old_port", "_service_name")
    type = EventType.SENTINEL_MASTER_CHANGED
    _fields = ("service_name", "old_host", "old_port", "new_host", "new_port")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        service_name: str,
        old_host: str,
        old_port: int,
        new_host: str,
        new_port: int,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._service_name = service_name
        self._old_host = old_host
        self._old_port = old_port
        self._new_host = new_host
        self._new_port = new_port

    @property
    def service_name(self) -> str:
        """The Sentinel service (``master_for``'s name)."""
        return self._service_name

    @property
    def old_host(self) -> str:
        """Host of the master the pool knew before."""
        return self._old_host

    @property
    def old_port(self) -> int:
        """Port of the master the pool knew before."""
        return self._old_port

    @property
    def new_host(self) -> str:
        """Host of the master the sentinels name now."""
        return self._new_host

    @property
    def new_port(self) -> int:
        """Port of the master the sentinels name now."""
        return self._new_port


class ConnectionRetryEvent(LifecycleEvent):
    """redis-py's ``Retry`` is about to retry an operation on this connection.

    Fires once per retry that a connection's ``Retry`` object
    (``redis.retry.Retry`` or ``redis.asyncio.retry.Retry``, the one given
    as ``retry=`` to the client or pool) makes, after redis-py's own failure
    handler ran (so after the failed attempt's ``error`` and
    ``disconnected``) and before it sleeps ``backoff`` seconds: a command,
    a pipeline, a connect or a health check that fails and is tried again.
    An operation that fails once and is not retried (the error is not
    retryable, or ``retries=0``) fires none. A cluster client's own
    re-routing loop is not a ``Retry`` and fires none (see the guide).
    """

    __slots__ = ("_attempt", "_backoff", "_command", "_error", "_max_attempts", "_operation")
    type = EventType.RETRY
    _fields = ("attempt", "max_attempts", "backoff", "error", "operation", "command")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        attempt: int,
        max_attempts: int | None,
        backoff: float,
        error: BaseException,
        operation: str,
        command: str | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._attempt = attempt
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._error = error
        self._operation = operation
        self._command = command

    @property
    def attempt(self) -> int:
        """Which retry this is: 1 for the first retry of the operation."""
        return self._attempt

    @property
    def max_attempts(self) -> int | None:
        """The most retries ``Retry`` makes (its ``retries``); ``None`` when it
        retries forever (a negative ``retries``)."""
        return self._max_attempts

    @property
    def backoff(self) -> float:
        """Seconds ``Retry`` sleeps before this retry (its backoff's value)."""
        return self._backoff

    @property
    def error(self) -> BaseException:
        """The error of the attempt that failed."""
        return self._error

    @property
    def operation(self) -> str:
        """What is retried: ``"command"``, ``"pipeline"``, ``"connect"``,
        ``"health_check"`` or ``"other"``."""
        return self._operation

    @property
    def command(self) -> str | None:
        """The command's name only (``"GET"``, ``"PING"`` for a health check),
        never its arguments; ``None`` for a connect, a pipeline or anything
        that is not one command."""
        return self._command


class ConnectionRetriesExhaustedEvent(LifecycleEvent):
    """redis-py's ``Retry`` gave up on an operation on this connection: every
    retry it allows failed, and it raises ``error`` to the caller.

    Fires once, after the last attempt's failure handler ran (its ``error``
    and ``disconnected``), when the failures outnumber the ``Retry``'s
    ``retries``. An error that ``Retry`` does not retry at all (not in its
    ``supported_errors``, or refused by its ``is_retryable``) does not fire
    it, nor does a policy that allows no retry (``retries=0``).
    """

    __slots__ = ("_attempts", "_command", "_error", "_operation")
    type = EventType.RETRIES_EXHAUSTED
    _fields = ("attempts", "error", "operation", "command")

    def __init__(
        self,
        timestamp: float,
        origin: EventOrigin | None,
        attempts: int,
        error: BaseException,
        operation: str,
        command: str | None,
    ) -> None:
        self._timestamp = timestamp
        self._origin = origin if origin is not None else _NO_ORIGIN
        self._attempts = attempts
        self._error = error
        self._operation = operation
        self._command = command

    @property
    def attempts(self) -> int:
        """How many times the operation was tried in all: the first try and
        every retry (``retries + 1``)."""
        return self._attempts

    @property
    def error(self) -> BaseException:
        """The final error: the one ``Retry`` raises (redis-py 5.0's connect
        raises a ``ConnectionError`` of its own over it to the caller)."""
        return self._error

    @property
    def operation(self) -> str:
        """As :attr:`ConnectionRetryEvent.operation`."""
        return self._operation

    @property
    def command(self) -> str | None:
        """As :attr:`ConnectionRetryEvent.command`: the name only."""
        return self._command


#: Every concrete event class, in catalogue order.
EVENT_CLASSES: tuple[type[LifecycleEvent], ...] = (
    ConnectionCreatedEvent,
    ConnectionConnectedEvent,
    ConnectionReconnectedEvent,
    ConnectionDisconnectedEvent,
    ConnectionErrorEvent,
    ConnectionHealthCheckEvent,
    ConnectionMarkedForReconnectEvent,
    PoolCreatedEvent,
    PoolConnectionCreatedEvent,
    PoolConnectionAcquiredEvent,
    PoolConnectionReleasedEvent,
    PoolExhaustedEvent,
    PoolResetEvent,
    MaintenanceNotificationEvent,
    MaintenanceTimeoutRelaxedEvent,
    MaintenanceTimeoutRestoredEvent,
    PoolConnectionLeakEvent,
    ClusterRedirectEvent,
    ClusterTopologyChangedEvent,
    SentinelMasterChangedEvent,
    ConnectionRetryEvent,
    ConnectionRetriesExhaustedEvent,
)

#: Event class by its name.
EVENT_CLASS_BY_TYPE: dict[EventType, type[LifecycleEvent]] = {
    cls.type: cls for cls in EVENT_CLASSES
}
