"""Sync ``RedisCluster``: events from every node, new nodes, a killed master."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

import redis_lifecycle as rl
from redis_lifecycle._hooks.attach import pool_state_of
from redis_lifecycle._hooks.cluster import NODE_PATCHER

from ..helpers import Recorder, wait_until
from ..integration.gc_inside_locks import run_in_child
from .conftest import Cluster


def keys_on_every_node(cluster: Cluster, count: int = 60) -> list[str]:
    """``count`` keys whose slots cover every master."""
    keys = [f"rl:{uuid.uuid4().hex}:{i}" for i in range(count)]
    owners = {cluster.owner_of(key_slot(k.encode())).port for k in keys}
    assert owners == cluster.ports(), f"keys only reach {owners}"
    return keys


def owned_by(cluster: Cluster, server: object, keys: list[str]) -> str:
    """A key of ``keys`` whose slot ``server`` owns now."""
    for key in keys:
        if cluster.owner_of(key_slot(key.encode())) is server:
            return key
    msg = f"{server} owns none of the test keys' slots any more"
    raise AssertionError(msg)


@pytest.fixture
def client(cluster: Cluster) -> Iterator[RedisCluster]:
    client = RedisCluster(host=cluster.host, port=cluster.port)
    yield client
    client.close()


class TestEveryNode:
    def test_events_come_from_every_master(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """Keys spread across slots give acquire/release and connect events
        from each master, each carrying that node's host, port and name."""
        # RedisCluster() connects to its startup node at once; redis-py before
        # 8.x keeps that connection open, so it never connects after instrument()
        already = {
            node.port
            for node in client.get_nodes()
            if any(c._sock for c in node.redis_connection.connection_pool._available_connections)
        }
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        for key in keys_on_every_node(cluster):
            client.set(key, "v")
            assert client.get(key) == b"v"
        for cls in (rl.PoolConnectionAcquiredEvent, rl.PoolConnectionReleasedEvent):
            ports = {e.port for e in recorder.of(cls)}
            assert ports == cluster.ports(), f"{cls.__name__} only from {ports}"
        for event in recorder.events:
            assert event.host == "127.0.0.1"
            assert event.pool_name == f"127.0.0.1:{event.port}"
        connected = {e.port for e in recorder.of(rl.ConnectionConnectedEvent)}
        assert connected == cluster.ports() - already

    def test_pool_stats_lists_one_pool_per_node(
        self, cluster: Cluster, client: RedisCluster
    ) -> None:
        """``pool_stats()`` has one entry per node, named after it."""
        handle = rl.instrument(client)
        for key in keys_on_every_node(cluster):
            client.set(key, "v")
        names = sorted(s["pool_name"] for s in handle.pool_stats())
        assert names == sorted(f"127.0.0.1:{p}" for p in cluster.ports())
        assert all(s["active"] == 0 and s["idle"] >= 1 for s in handle.pool_stats())

    def test_pool_name_prefixes_the_node_name(self, cluster: Cluster, client: RedisCluster) -> None:
        """``instrument(cluster, pool_name=P)`` names node pools ``P/host:port``."""
        handle = rl.instrument(client, pool_name="orders")
        names = {s["pool_name"] for s in handle.pool_stats()}
        assert names == {f"orders/127.0.0.1:{p}" for p in cluster.ports()}

    def test_instrument_twice_returns_the_same_handle(self, client: RedisCluster) -> None:
        """A second ``instrument()`` of a cluster changes nothing."""
        handle = rl.instrument(client)
        assert rl.instrument(client) is handle
        assert len(handle.pool_stats()) == len(client.get_nodes())


class TestUninstrument:
    def test_uninstrument_silences_every_node_and_removes_the_node_hook(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """After ``uninstrument`` no node emits, node pools have their own class
        back, the ``create_redis_node`` wrapper is gone and the client works."""
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        pools = handle.pools()
        assert NODE_PATCHER.installed
        assert rl.uninstrument(client)
        assert not NODE_PATCHER.installed
        assert all(pool_state_of(pool) is None for pool in pools)
        assert all(type(pool) is redis.ConnectionPool for pool in pools)
        recorder.clear()
        for key in keys_on_every_node(cluster):
            client.set(key, "v")
        assert recorder.events == []

    def test_instrument_uninstrument_instrument(
        self, cluster: Cluster, client: RedisCluster
    ) -> None:
        """Instrumenting again after ``uninstrument`` gives events again."""
        rl.instrument(client)
        rl.uninstrument(client)
        recorder = Recorder()
        rl.instrument(client).dispatcher.subscribe(rl.PoolConnectionAcquiredEvent, recorder)
        for key in keys_on_every_node(cluster):
            client.get(key)
        assert {e.port for e in recorder.events} == cluster.ports()


class TestTopologyChanges:
    def test_node_discovered_after_instrumentation_emits(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """A slot moved to a node the client never knew makes it build that
        node (MOVED), whose pool is attached and emits with its address."""
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        spare = cluster.spare
        assert all(node.port != spare.port for node in client.get_nodes())
        key = f"rl:moved:{uuid.uuid4().hex}"
        slot = key_slot(key.encode())
        owner = cluster.owner_of(slot)
        cluster.move_slot(slot, owner, spare)
        try:
            client.set(key, "on-the-spare")
            assert client.get(key) == b"on-the-spare"
            created = recorder.wait_for(rl.PoolCreatedEvent, lambda e: e.port == spare.port)
            assert created.pool_name == f"127.0.0.1:{spare.port}"
            recorder.wait_for(rl.ConnectionConnectedEvent, lambda e: e.port == spare.port)
            recorder.wait_for(rl.PoolConnectionAcquiredEvent, lambda e: e.port == spare.port)
            assert f"127.0.0.1:{spare.port}" in {s["pool_name"] for s in handle.pool_stats()}
        finally:
            client.delete(key)
            cluster.move_slot(slot, spare, owner)

    def test_killed_master_reports_its_node_and_client_recovers(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """SIGKILL of a master gives ``error`` and ``disconnected`` for that
        node only (the others are merely closed by redis-py's topology refresh);
        once it is restarted the client reconnects to it."""
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        keys = keys_on_every_node(cluster)
        for key in keys:
            client.set(key, "v")
        key = keys[0]
        victim = cluster.owner_of(key_slot(key.encode()))
        recorder.clear()
        victim.kill()
        try:
            with pytest.raises((redis.ConnectionError, redis.exceptions.ClusterDownError)):
                client.get(key)
            down = recorder.wait_for(
                rl.ConnectionDisconnectedEvent, lambda e: e.port == victim.port
            )
            assert down.pool_name == f"127.0.0.1:{victim.port}"
            errors = [e for e in recorder.of(rl.ConnectionErrorEvent) if e.port == victim.port]
            assert errors, f"no error event for the killed node; saw {recorder.types()}"
            others = cluster.ports() - {victim.port}
            blamed: list[rl.LifecycleEvent]
            blamed = [e for e in recorder.of(rl.ConnectionErrorEvent) if e.port in others]
            blamed += [
                e
                for e in recorder.of(rl.ConnectionDisconnectedEvent)
                if e.port in others
                and (e.error is not None or e.reason != rl.CloseReason.APPLICATION)
            ]
            assert not blamed, "the healthy nodes were blamed for the killed node's error"
        finally:
            victim.start()
        cluster.wait_ok()
        key = owned_by(cluster, victim, keys)

        def recovered() -> bool:
            try:  # the restarted master persisted nothing: write, then read back
                return bool(client.set(key, "again")) and client.get(key) == b"again"
            except redis.RedisError:
                return False

        wait_until(recovered, timeout=30, what="the client to write to the restarted master")
        back = [
            e
            for e in recorder.of(rl.ConnectionConnectedEvent)  # connected or reconnected
            if e.port == victim.port and e.timestamp > down.timestamp
        ]
        assert back, f"no (re)connect to the restarted node; saw {recorder.types()}"


def test_cluster_finalized_while_another_attaches_does_not_deadlock(cluster: Cluster) -> None:
    """A collection that starts while instrument() stores a cluster under
    its lock may finalize another, dead, instrumented cluster, whose
    finalizer takes the same lock (tests/integration/gc_inside_locks.py; in a
    child process with a deadline, so that a deadlock fails this test)."""
    run_in_child("cluster", f"{cluster.host}:{cluster.port}")


class TestLeakDetection:
    def test_a_command_blocked_on_a_node_is_reported_while_it_blocks(
        self, client: RedisCluster, recorder: Recorder
    ) -> None:
        """``leak_detection`` on a cluster watches every node's pool: a BLPOP
        blocked past it is reported with the test's line, and its release
        says so."""
        import sys

        handle = rl.instrument(client, leak_detection=0.2)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        key = f"leaks:{uuid.uuid4()}"
        frame = sys._getframe()
        line = f"{frame.f_code.co_filename}:{frame.f_lineno + 1} in {frame.f_code.co_name}"
        client.blpop([key], timeout=1)
        [leak] = recorder.exactly(rl.PoolConnectionLeakEvent)
        assert leak.caller == line
        released = [
            e for e in recorder.exactly(rl.PoolConnectionReleasedEvent) if e.port == leak.port
        ]
        assert released[-1].reported_leak is True
