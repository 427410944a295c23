"""Sync Sentinel: managed clients report the discovered address, discovery
connections are told apart, and a failover shows up with the new address."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

import redis_lifecycle as rl
from redis_lifecycle._hooks.sentinel import SENTINEL_PATCHER, is_discovery

from ..helpers import Recorder, wait_until
from .conftest import SERVICE, SentinelSetup


@pytest.fixture
def make_sentinel(sentinel_setup: SentinelSetup) -> Iterator[Callable[[], Sentinel]]:
    """Builds ``Sentinel`` objects whose clients (managed and discovery) are
    all disconnected after the test: no socket is left for the garbage
    collector to close during a later test."""
    made: list[Sentinel] = []
    clients: list[redis.Redis] = []

    def make() -> Sentinel:
        sentinel = Sentinel(sentinel_setup.sentinels)
        for name in ("master_for", "slave_for"):
            factory = getattr(sentinel, name)

            def tracked(*args: Any, _factory: Any = factory, **kwargs: Any) -> Any:
                client = _factory(*args, **kwargs)
                clients.append(client)
                return client

            setattr(sentinel, name, tracked)
        made.append(sentinel)
        return sentinel

    yield make
    for client in clients:
        client.connection_pool.disconnect()
    for sentinel in made:
        for discovery in sentinel.sentinels:
            discovery.connection_pool.disconnect()


def managed(recorder: Recorder) -> list[rl.LifecycleEvent]:
    return [e for e in recorder.events if not is_discovery(e)]


class TestManagedClients:
    def test_master_client_events_carry_the_discovered_master(
        self,
        sentinel_setup: SentinelSetup,
        recorder: Recorder,
        make_sentinel: Callable[[], Sentinel],
    ) -> None:
        """A ``master_for`` client's events name the master sentinel gave it,
        never redis-py's placeholder ``localhost:6379``."""
        sentinel = make_sentinel()
        client = sentinel.master_for(SERVICE)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert client.set("k", "v")
        connected = recorder.wait_for(rl.ConnectionConnectedEvent, lambda e: not is_discovery(e))
        assert (connected.host, connected.port) == ("127.0.0.1", sentinel_setup.master.port)
        assert connected.pool_name == f"{SERVICE}/master"
        for event in managed(recorder):
            assert event.port != 6379, event
            assert event.host != "localhost", event
        created = [e for e in managed(recorder) if isinstance(e, rl.ConnectionCreatedEvent)]
        assert created
        assert all(e.port == sentinel_setup.master.port for e in created)

    def test_replica_client_events_carry_the_replica(
        self,
        sentinel_setup: SentinelSetup,
        recorder: Recorder,
        make_sentinel: Callable[[], Sentinel],
    ) -> None:
        """A ``slave_for`` client's events name the replica and its pool is
        ``<service>/replica``."""
        sentinel = make_sentinel()
        client = sentinel.slave_for(SERVICE)
        rl.instrument(client).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        client.get("k")
        connected = recorder.wait_for(rl.ConnectionConnectedEvent, lambda e: not is_discovery(e))
        assert connected.port == sentinel_setup.replica.port
        assert connected.pool_name == f"{SERVICE}/replica"

    def test_discovery_connections_are_distinguishable(
        self,
        sentinel_setup: SentinelSetup,
        recorder: Recorder,
        make_sentinel: Callable[[], Sentinel],
    ) -> None:
        """The sentinel queries emit under ``sentinel:<host>:<port>`` with the
        sentinel's address, and ``is_discovery`` tells them apart."""
        sentinel = make_sentinel()
        client = sentinel.master_for(SERVICE)
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        client.ping()
        discovery = [e for e in recorder.events if is_discovery(e)]
        assert discovery, f"no discovery events; saw {recorder.types()}"
        name = f"sentinel:127.0.0.1:{sentinel_setup.sentinel.port}"
        assert {e.pool_name for e in discovery} == {name}
        assert {e.port for e in discovery} == {sentinel_setup.sentinel.port}
        assert managed(recorder), "the managed pool emitted nothing"
        assert sorted(s["pool_name"] for s in handle.pool_stats()) == [f"{SERVICE}/master", name]

    def test_uninstrument_removes_everything(
        self,
        sentinel_setup: SentinelSetup,
        recorder: Recorder,
        make_sentinel: Callable[[], Sentinel],
    ) -> None:
        """After ``uninstrument`` neither pool emits, the Sentinel wrappers are
        gone, and the client still works."""
        gc.collect()  # clients of earlier tests release the wrappers when collected
        assert not SENTINEL_PATCHER.installed
        sentinel = make_sentinel()
        client = sentinel.master_for(SERVICE)
        rl.instrument(client).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert SENTINEL_PATCHER.installed
        assert rl.uninstrument(client)
        assert not SENTINEL_PATCHER.installed
        recorder.clear()
        client.connection_pool.disconnect()
        assert client.set("k", "v")
        assert recorder.events == []


class TestFailover:
    def test_sentinel_failover_is_seen_with_the_new_address(
        self,
        sentinel_setup: SentinelSetup,
        recorder: Recorder,
        make_sentinel: Callable[[], Sentinel],
    ) -> None:
        """``SENTINEL FAILOVER``: the old master's connection is closed and the
        same client reconnects, with events naming the promoted replica."""
        old, new = sentinel_setup.master, sentinel_setup.replica
        sentinel = make_sentinel()
        client = sentinel.master_for(SERVICE)
        rl.instrument(client).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert client.set("before", "1")
        first = recorder.wait_for(rl.ConnectionConnectedEvent, lambda e: not is_discovery(e))
        assert first.port == old.port
        sentinel_setup.admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
        sentinel_setup.wait(
            lambda: sentinel_setup.master_address()[1] == new.port, "the sentinel to promote"
        )

        def writes_to_new_master() -> bool:
            try:
                client.set("after", "1")
            except redis.RedisError:
                return False
            return any(
                e.port == new.port
                for e in recorder.of(rl.ConnectionConnectedEvent)
                if not is_discovery(e)
            )

        wait_until(writes_to_new_master, timeout=30, what="a write through the new master")
        closed = [
            e
            for e in recorder.of(rl.ConnectionDisconnectedEvent)
            if not is_discovery(e) and e.port == old.port
        ]
        assert closed, f"no disconnect from the old master; saw {recorder.types()}"
        moved = [
            e
            for e in recorder.of(rl.ConnectionReconnectedEvent)
            if not is_discovery(e) and e.port == new.port
        ]
        assert moved, "the same connection object should reconnect, to the new address"
        assert moved[0].connection_id == first.connection_id
        (change,) = recorder.exactly(rl.SentinelMasterChangedEvent)
        assert change.service_name == SERVICE
        assert (change.old_host, change.old_port) == ("127.0.0.1", old.port)
        assert (change.new_host, change.new_port) == ("127.0.0.1", new.port)
        assert (change.host, change.port) == ("127.0.0.1", new.port)
        assert change.pool_name == f"{SERVICE}/master"


class TestWatch:
    def test_watch_sentinel_shows_the_failover(self, sentinel_setup: SentinelSetup) -> None:
        """``redis-lifecycle watch SENTINEL_URL --sentinel SERVICE --json`` prints
        ``sentinel_master_changed`` after ``SENTINEL FAILOVER`` and counts it."""
        import json
        import os
        import signal
        import subprocess
        import sys

        old, new = sentinel_setup.master, sentinel_setup.replica
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redis_lifecycle",
                "watch",
                f"redis://127.0.0.1:{sentinel_setup.sentinel.port}",
                "--sentinel",
                SERVICE,
                "--json",
                "--interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        seen: list[dict[str, Any]] = []

        def read_until(predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            assert process.stdout is not None
            deadline = time.monotonic() + 60  # a health check is printed every 0.2 s
            for line in process.stdout:  # ends when the process does
                assert time.monotonic() < deadline, [r["type"] for r in seen]
                record: dict[str, Any] = json.loads(line)
                seen.append(record)
                if predicate(record):
                    return record
            raise AssertionError(f"watch ended first; saw {[r['type'] for r in seen]}")

        try:
            read_until(lambda r: r["type"] == "health_check" and r["healthy"])
            sentinel_setup.admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
            change = read_until(lambda r: r["type"] == "sentinel_master_changed")
            assert change["service_name"] == SERVICE
            assert (change["old_port"], change["new_port"]) == (old.port, new.port)
            process.send_signal(signal.SIGINT)
            summary = read_until(lambda r: r["type"] == "summary")
            assert summary["events"]["sentinel_master_changed"] == 1
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
