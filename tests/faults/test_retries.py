"""Retries made by redis-py's ``Retry``, against real refusals and resets:
exactly one ``retry`` per retry redis-py made (socket connects counted by an
audit hook) and one ``retries_exhausted`` per operation it gave up on."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer, free_port

from ..helpers import Recorder

RETRIES = 3
#: What redis-py retries here on every supported version: 5.0 hands the
#: socket's own OSError to the connect's Retry, later versions a ConnectionError.
SUPPORTED = (redis.ConnectionError, redis.TimeoutError, OSError)
RETRY_ON = [redis.ConnectionError, redis.TimeoutError]
#: ExponentialBackoff(cap, base).compute(n) is min(cap, base * 2**n): no jitter.
BASE, CAP = 0.001, 0.05
EXPECTED_BACKOFFS = [min(CAP, BASE * 2**n) for n in range(1, RETRIES + 1)]


class _ConnectCounter:
    """Counts ``socket.connect`` calls to one port. Audit hooks cannot be
    removed, so one is installed for the process and switched per test."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.count = 0

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect" or self.port is None:
            return
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == self.port:
            self.count += 1

    def start(self, port: int) -> None:
        self.port = port
        self.count = 0

    def stop(self) -> int:
        self.port = None
        return self.count


COUNTER = _ConnectCounter()
sys.addaudithook(COUNTER)


@pytest.fixture
def connects() -> Any:
    yield COUNTER
    COUNTER.stop()


def _sync_client(port: int, **kwargs: Any) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        retry=Retry(ExponentialBackoff(cap=CAP, base=BASE), RETRIES, supported_errors=SUPPORTED),
        retry_on_error=list(RETRY_ON),
        socket_timeout=5,
        **kwargs,
    )


def _async_client(port: int, **kwargs: Any) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host="127.0.0.1",
        port=port,
        retry=AsyncRetry(
            ExponentialBackoff(cap=CAP, base=BASE), RETRIES, supported_errors=SUPPORTED
        ),
        retry_on_error=list(RETRY_ON),
        socket_timeout=5,
        **kwargs,
    )


def _subscribe(handle: rl.LifecycleHandle) -> Recorder:
    recorder = Recorder()
    handle.dispatcher.subscribe(rl.ConnectionRetryEvent, recorder)
    handle.dispatcher.subscribe(rl.ConnectionRetriesExhaustedEvent, recorder)
    handle.dispatcher.subscribe(rl.ConnectionCreatedEvent, recorder)
    return recorder


def _by_operation(recorder: Recorder, cls: Any, operation: str) -> list[Any]:
    return [e for e in recorder.exactly(cls) if e.operation == operation]


def _check_refused(recorder: Recorder, caught: BaseException, connects: int, port: int) -> None:
    retries = recorder.exactly(rl.ConnectionRetryEvent)
    [exhausted] = recorder.exactly(rl.ConnectionRetriesExhaustedEvent)
    assert connects == RETRIES + 1
    assert len(retries) == RETRIES
    assert [e.attempt for e in retries] == list(range(1, RETRIES + 1))
    assert {e.max_attempts for e in retries} == {RETRIES}
    assert [e.backoff for e in retries] == pytest.approx(EXPECTED_BACKOFFS)
    assert {e.operation for e in retries} == {"connect"}
    assert {e.command for e in retries} == {None}
    assert all(isinstance(e.error, (redis.ConnectionError, OSError)) for e in retries)
    assert exhausted.attempts == RETRIES + 1
    assert exhausted.operation == "connect"
    # redis-py raises the last failure (5.0: the socket's error, wrapped by
    # connect() into the ConnectionError the caller gets).
    assert exhausted.error is caught or exhausted.error is caught.__context__
    # One connection_created per socket attempt: the same count, seen by the hooks.
    assert len(recorder.exactly(rl.ConnectionCreatedEvent)) == connects
    for event in (*retries, exhausted):
        assert (event.host, event.port) == ("127.0.0.1", port)
        assert event.connection_id is not None
        assert event.pool_name == f"127.0.0.1:{port}/0"


def test_refused_connect_sync(connects: _ConnectCounter) -> None:
    port = free_port()  # nothing listens there
    client = _sync_client(port)
    handle = rl.instrument(client)
    recorder = _subscribe(handle)
    legacy: list[dict[str, Any]] = []
    handle.register_connection_callback("retry", legacy.append)
    handle.register_connection_callback("retries_exhausted", legacy.append)
    connects.start(port)
    with pytest.raises(redis.ConnectionError) as caught:
        client.get("key")
    _check_refused(recorder, caught.value, connects.stop(), port)
    assert [d["type"] for d in legacy] == ["retry"] * RETRIES + ["retries_exhausted"]
    assert [d.get("attempt") for d in legacy[:RETRIES]] == [1, 2, 3]
    assert legacy[-1]["attempts"] == RETRIES + 1
    client.close()


def test_refused_connect_asyncio(connects: _ConnectCounter) -> None:
    port = free_port()

    async def main() -> tuple[Recorder, BaseException]:
        client = _async_client(port)
        recorder = _subscribe(rl.instrument(client))
        connects.start(port)
        try:
            await client.get("key")
        except redis.ConnectionError as error:
            caught: BaseException = error
        else:
            raise AssertionError("the GET succeeded against a closed port")
        await client.aclose()
        return recorder, caught

    recorder, caught = asyncio.run(main())
    _check_refused(recorder, caught, connects.stop(), port)


def _client_id(client: Any) -> int:
    return int(client.client_id())


def test_reset_is_one_command_retry_sync(
    server: RedisServer, admin: redis.Redis, connects: _ConnectCounter
) -> None:
    # A single-connection client sends on its connection without a checkout
    # probe, so the killed connection fails inside the command's Retry.
    client = _sync_client(server.port, single_connection_client=True)
    recorder = _subscribe(rl.instrument(client))
    victim = _client_id(client)
    assert admin.client_kill_filter(_id=str(victim)) == 1
    connects.start(server.port)
    assert client.set("key", "secret-value-1") is True
    assert connects.stop() == 1  # the reconnect of the one retry
    [retry] = recorder.exactly(rl.ConnectionRetryEvent)
    assert (retry.operation, retry.command, retry.attempt) == ("command", "SET", 1)
    assert retry.backoff == pytest.approx(EXPECTED_BACKOFFS[0])
    assert isinstance(retry.error, redis.ConnectionError)
    assert "secret-value-1" not in repr(retry)
    assert "secret-value-1" not in str(retry.to_dict())
    assert recorder.exactly(rl.ConnectionRetriesExhaustedEvent) == []
    client.close()


def test_reset_is_one_command_retry_asyncio(
    server: RedisServer, admin: redis.Redis, connects: _ConnectCounter
) -> None:
    async def main() -> Recorder:
        client = _async_client(server.port, single_connection_client=True)
        recorder = _subscribe(rl.instrument(client))
        victim = int(await client.client_id())
        assert admin.client_kill_filter(_id=str(victim)) == 1
        connects.start(server.port)
        assert await client.get("key") is None
        assert connects.stop() == 1
        await client.aclose()
        return recorder

    recorder = asyncio.run(main())
    [retry] = recorder.exactly(rl.ConnectionRetryEvent)
    assert (retry.operation, retry.command, retry.attempt) == ("command", "GET", 1)
    assert recorder.exactly(rl.ConnectionRetriesExhaustedEvent) == []


def _check_killed_server(recorder: Recorder, caught: BaseException, connects: int) -> None:
    """A command on a connection whose server was killed: the command's Retry
    retries it; each retry reconnects through the connect's own Retry, which
    is refused every time and gives up."""
    connect_retries = _by_operation(recorder, rl.ConnectionRetryEvent, "connect")
    connect_gave_up = _by_operation(recorder, rl.ConnectionRetriesExhaustedEvent, "connect")
    command_retries = _by_operation(recorder, rl.ConnectionRetryEvent, "command")
    [command_gave_up] = _by_operation(recorder, rl.ConnectionRetriesExhaustedEvent, "command")
    # Every socket attempt was refused: each is either retried or the last of its connect.
    assert connects == len(connect_retries) + len(connect_gave_up)
    assert connects > 0
    assert all(e.attempts == RETRIES + 1 for e in connect_gave_up)
    # Every failed reconnect but the last is retried by the command's Retry.
    assert len(command_retries) == RETRIES
    assert [e.attempt for e in command_retries] == list(range(1, RETRIES + 1))
    assert {e.command for e in command_retries} == {"GET"}
    assert command_gave_up.attempts == RETRIES + 1
    assert command_gave_up.command == "GET"
    assert command_gave_up.error is caught
    assert len(connect_gave_up) == RETRIES  # one refused reconnect per command retry
    assert len(recorder.exactly(rl.ConnectionCreatedEvent)) == connects


def test_killed_server_sync(server: RedisServer, connects: _ConnectCounter) -> None:
    client = _sync_client(server.port, single_connection_client=True)
    recorder = _subscribe(rl.instrument(client))
    client.ping()
    recorder.clear()
    server.kill()
    connects.start(server.port)
    with pytest.raises(redis.ConnectionError) as caught:
        client.get("key")
    _check_killed_server(recorder, caught.value, connects.stop())
    client.close()


def test_killed_server_asyncio(server: RedisServer, connects: _ConnectCounter) -> None:
    async def main() -> tuple[Recorder, BaseException]:
        client = _async_client(server.port, single_connection_client=True)
        recorder = _subscribe(rl.instrument(client))
        await client.ping()
        recorder.clear()
        server.kill()
        connects.start(server.port)
        try:
            await client.get("key")
        except redis.ConnectionError as error:
            caught: BaseException = error
        else:
            raise AssertionError("the GET succeeded against a killed server")
        await client.aclose()
        return recorder, caught

    recorder, caught = asyncio.run(main())
    _check_killed_server(recorder, caught, connects.stop())


def test_no_retry_no_event_and_unhooked_when_unwanted(server: RedisServer) -> None:
    """Nobody listening to retries: redis-py's Retry is left as it is."""
    client = _sync_client(server.port)
    handle = rl.instrument(client)
    handle.dispatcher.subscribe(rl.ConnectionConnectedEvent, lambda e: None)
    assert not hasattr(Retry.call_with_retry, "__rl_original__")
    sub = handle.dispatcher.subscribe(rl.ConnectionRetryEvent, lambda e: None)
    assert hasattr(Retry.call_with_retry, "__rl_original__")
    assert client.ping() is True
    sub.unsubscribe()
    assert not hasattr(Retry.call_with_retry, "__rl_original__")
    client.close()


def test_instrumentation_counts_retries(server: RedisServer, admin: redis.Redis) -> None:
    metrics = rl.Instrumentation()
    client = _sync_client(server.port, single_connection_client=True)
    rl.instrument(client, instrumentation=metrics, pool_name="retrying")
    admin.client_kill_filter(_id=str(_client_id(client)))
    assert client.get("key") is None
    pool = metrics.pool_metrics()["retrying"]
    assert (pool["retries"], pool["retries_exhausted"]) == (1, 0)
    client.close()


def test_exporters_count_retries_and_exhaustions(
    server: RedisServer, admin: redis.Redis, connects: _ConnectCounter
) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
    from redis_lifecycle.contrib.prometheus import LifecycleCollector

    client = _sync_client(server.port, single_connection_client=True)
    handle = rl.instrument(client, pool_name="exported")
    registry = prometheus_client.CollectorRegistry()
    registry.register(LifecycleCollector(handle, per_command=False))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OpenTelemetryMetrics(provider, per_command=False).attach(handle)
    recorder = _subscribe(handle)
    admin.client_kill_filter(_id=str(_client_id(client)))
    assert client.get("key") is None  # one command retry
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.get("key")
    retries = recorder.exactly(rl.ConnectionRetryEvent)
    exhausted = recorder.exactly(rl.ConnectionRetriesExhaustedEvent)
    expected: dict[tuple[str, str], int] = {}
    events: list[rl.ConnectionRetryEvent | rl.ConnectionRetriesExhaustedEvent] = [
        *retries,
        *exhausted,
    ]
    for event in events:
        key = (event.type.value, event.operation)
        expected[key] = expected.get(key, 0) + 1
    names = {"retry": "redis_lifecycle_retries_total"}
    names["retries_exhausted"] = "redis_lifecycle_retries_exhausted_total"
    for (kind, operation), count in expected.items():
        labels = {"pool_name": "exported", "operation": operation}
        assert registry.get_sample_value(names[kind], labels) == count
    data = reader.get_metrics_data()
    assert data is not None
    seen: dict[tuple[str, str], int] = {}
    otel_names = {
        "redis_lifecycle.retries": "retry",
        "redis_lifecycle.retries_exhausted": "retries_exhausted",
    }
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in otel_names:
                    for point in metric.data.data_points:
                        attributes = point.attributes or {}
                        operation = str(attributes["redis_lifecycle.retry.operation"])
                        seen[(otel_names[metric.name], operation)] = int(
                            getattr(point, "value", -1)
                        )
    assert seen == expected
    assert expected[("retry", "command")] == 1 + RETRIES
    provider.shutdown()
    client.close()


def test_a_policy_without_retries_reports_neither(connects: _ConnectCounter) -> None:
    port = free_port()
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        retry=Retry(ExponentialBackoff(cap=CAP, base=BASE), 0, supported_errors=SUPPORTED),
    )
    recorder = _subscribe(rl.instrument(client))
    connects.start(port)
    with pytest.raises(redis.ConnectionError):
        client.get("key")
    assert connects.stop() == 1
    assert recorder.exactly(rl.ConnectionRetryEvent) == []
    assert recorder.exactly(rl.ConnectionRetriesExhaustedEvent) == []
    assert len(recorder.exactly(rl.ConnectionCreatedEvent)) == 1
    client.close()


def test_pipeline_that_kills_its_own_connection_is_retried_once(
    server: RedisServer, connects: _ConnectCounter
) -> None:
    """The pipeline's first command is ``CLIENT KILL`` of its own connection:
    the server closes it mid-pipeline, redis-py's Retry re-runs the whole
    pipeline on a new connection (where that id no longer exists)."""
    pool = redis.ConnectionPool(
        host="127.0.0.1",
        port=server.port,
        max_connections=1,
        retry=Retry(ExponentialBackoff(cap=CAP, base=BASE), RETRIES, supported_errors=SUPPORTED),
        retry_on_error=list(RETRY_ON),
    )
    client = redis.Redis(connection_pool=pool)
    recorder = _subscribe(rl.instrument(client))
    own_id = _client_id(client)  # the pool's only connection
    pipe = client.pipeline(transaction=False)
    pipe.client_kill_filter(_id=str(own_id), skipme=False)
    pipe.set("key", "value")
    connects.start(server.port)
    results = pipe.execute()
    assert connects.stop() == 1  # the reconnect of the one retry
    assert results[1] is True
    [retry] = recorder.exactly(rl.ConnectionRetryEvent)
    assert (retry.operation, retry.command, retry.attempt) == ("pipeline", None, 1)
    assert recorder.exactly(rl.ConnectionRetriesExhaustedEvent) == []
    client.close()
    pool.disconnect()
