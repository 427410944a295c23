"""``redis.asyncio.cluster.RedisCluster``: events from every node (which are
not pool objects), nodes found later, a killed master, uninstrument."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

import redis_lifecycle as rl
from redis_lifecycle._hooks.aio_cluster import NODE_PATCHER, NODES

from ..helpers import Recorder
from .conftest import Cluster
from .test_cluster_sync import keys_on_every_node, owned_by


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host=cluster.host, port=cluster.port)
    yield client
    await client.aclose()


class TestEveryNode:
    async def test_nodes_found_by_the_first_initialize_emit(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """Instrumented before it connects, the client's first topology
        discovery attaches every master: each emits pool_created, connects,
        and reports acquire/release with its own address and name."""
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        for key in keys_on_every_node(cluster):
            await client.set(key, "v")
            assert await client.get(key) == b"v"
        created = {e.port for e in recorder.of(rl.PoolCreatedEvent)}
        assert cluster.ports() <= created
        for cls in (
            rl.ConnectionConnectedEvent,
            rl.PoolConnectionCreatedEvent,
            rl.PoolConnectionAcquiredEvent,
            rl.PoolConnectionReleasedEvent,
        ):
            ports = {e.port for e in recorder.of(cls)}
            assert ports == cluster.ports(), f"{cls.__name__} only from {ports}"
        for event in recorder.events:
            assert event.pool_name == f"127.0.0.1:{event.port}"
        rows = {s["pool_name"]: s for s in handle.pool_stats()}
        for port in cluster.ports():
            row = rows[f"127.0.0.1:{port}"]
            assert row["active"] == 0
            assert row["idle"] == row["total"] >= 1

    async def test_pool_name_prefixes_the_node_name(
        self, cluster: Cluster, client: RedisCluster
    ) -> None:
        """``instrument(cluster, pool_name=P)`` names nodes ``P/host:port``."""
        await client.initialize()
        handle = rl.instrument(client, pool_name="orders")
        names = {s["pool_name"] for s in handle.pool_stats()}
        assert names == {f"orders/127.0.0.1:{p}" for p in cluster.ports()}


class TestPerCommandFigures:
    async def test_instrumentation_counts_every_node_checkout_without_events(
        self, cluster: Cluster, client: RedisCluster
    ) -> None:
        """Instrumentation alone: each node's checkouts and returns are
        recorded by the node hooks (CommandFigures.add_wait / add_held, no
        event built), one per command, per node."""
        metrics = rl.Instrumentation()
        handle = rl.instrument(client, instrumentation=metrics)
        keys = keys_on_every_node(cluster)
        await client.initialize()
        before = {name: m["acquisitions"] for name, m in metrics.pool_metrics().items()}
        rounds = 3
        for _ in range(rounds):
            for key in keys:
                await client.get(key)
        pools = metrics.pool_metrics()
        per_node = {name: m["acquisitions"] - before.get(name, 0) for name, m in pools.items()}
        assert sum(per_node.values()) == rounds * len(keys)
        assert {name for name, count in per_node.items() if count} == {
            f"127.0.0.1:{port}" for port in cluster.ports()
        }
        for metric in pools.values():
            assert metric["releases"] == metric["acquisitions"]
        assert rl.PoolConnectionAcquiredEvent not in handle.dispatcher._subscribed_classes()


class TestTopologyChanges:
    async def test_node_discovered_by_a_moved_redirect_emits(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """A slot moved to a node the client never knew: the MOVED redirect
        builds that node, which is attached and emits with its address."""
        await client.initialize()
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        spare = cluster.spare
        key = f"rl:moved:{uuid.uuid4().hex}"
        slot = key_slot(key.encode())
        owner = cluster.owner_of(slot)
        cluster.move_slot(slot, owner, spare)
        try:
            await client.set(key, "on-the-spare")
            assert await client.get(key) == b"on-the-spare"
            created = recorder.wait_for(rl.PoolCreatedEvent, lambda e: e.port == spare.port)
            assert created.pool_name == f"127.0.0.1:{spare.port}"
            recorder.wait_for(rl.ConnectionConnectedEvent, lambda e: e.port == spare.port)
            recorder.wait_for(rl.PoolConnectionAcquiredEvent, lambda e: e.port == spare.port)
        finally:
            await client.delete(key)
            cluster.move_slot(slot, spare, owner)

    async def test_killed_master_reports_its_node_and_client_recovers(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """SIGKILL of a master: ``error`` and ``disconnected`` carry that node's
        address, no healthy node is blamed; after a restart the client
        connects to it again."""
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        keys = keys_on_every_node(cluster)
        for key in keys:
            await client.set(key, "v")
        key = keys[0]
        victim = cluster.owner_of(key_slot(key.encode()))
        recorder.clear()
        victim.kill()
        try:
            with pytest.raises((redis.ConnectionError, redis.exceptions.ClusterDownError)):
                await client.get(key)
            errors = [e for e in recorder.of(rl.ConnectionErrorEvent) if e.port == victim.port]
            assert errors, f"no error event for the killed node; saw {recorder.types()}"
            down = [e for e in recorder.of(rl.ConnectionDisconnectedEvent) if e.port == victim.port]
            assert down, f"no disconnect for the killed node; saw {recorder.types()}"
            others = cluster.ports() - {victim.port}
            assert not [e for e in recorder.of(rl.ConnectionErrorEvent) if e.port in others]
        finally:
            victim.start()
        cluster.wait_ok()
        recorder.clear()
        key = owned_by(cluster, victim, keys)
        for _ in range(300):  # until the restarted master accepts the write again
            try:
                await client.set(key, "again")
                break
            except redis.RedisError:
                await asyncio.sleep(0.1)
        assert await client.get(key) == b"again"
        back = [e for e in recorder.of(rl.ConnectionConnectedEvent) if e.port == victim.port]
        seen = [(e.type.value, e.port) for e in recorder.events]
        assert back, f"no (re)connect to {victim.port}; saw {seen}"


class TestUninstrument:
    async def test_uninstrument_silences_every_node(
        self, cluster: Cluster, client: RedisCluster, recorder: Recorder
    ) -> None:
        """After ``uninstrument`` no node emits, the node wrappers are gone and
        no node stays registered; the client keeps working."""
        await client.initialize()
        with warnings.catch_warnings():
            # clusters of earlier tests release the wrappers when collected; redis-py
            # 7.x leaves a refreshed-away ClusterNode unclosed, which warns here
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        handle = rl.instrument(client)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert NODE_PATCHER.installed
        assert rl.uninstrument(client)
        assert not NODE_PATCHER.installed
        assert not NODES
        assert handle.pool_stats() == []
        for key in keys_on_every_node(cluster):
            await client.set(key, "v")
        assert recorder.events == []


class TestInstrumentAll:
    async def test_a_cluster_built_under_instrument_all_emits_from_every_node(
        self, cluster: Cluster, recorder: Recorder
    ) -> None:
        """An asyncio ``RedisCluster`` has no pool for ``instrument_all()``'s
        pool wrappers to catch: the client itself is instrumented when built.
        Every master reports checkouts to the shared dispatcher, and after
        ``uninstrument_all()`` none does and the client keeps working."""
        dispatcher = rl.instrument_all()
        try:
            dispatcher.subscribe(rl.LifecycleEvent, recorder)
            client = RedisCluster(host=cluster.host, port=cluster.port)
            keys = keys_on_every_node(cluster)
            try:
                for key in keys:
                    await client.set(key, "v")
                for cls in (rl.PoolCreatedEvent, rl.PoolConnectionAcquiredEvent):
                    ports = {e.port for e in recorder.of(cls)}
                    assert ports == cluster.ports(), f"{cls.__name__} only from {ports}"
                assert rl.uninstrument_all()
                recorder.clear()
                for key in keys:
                    assert await client.get(key) == b"v"
                assert recorder.events == []
            finally:
                await client.aclose()
        finally:
            rl.uninstrument_all()


class TestLeakDetection:
    async def test_a_command_blocked_on_a_node_is_reported_while_it_blocks(
        self, client: RedisCluster, recorder: Recorder
    ) -> None:
        """The asyncio cluster's nodes (not pool objects) are watched too: the
        loop's timer reports a BLPOP blocked past the threshold, with the
        task's name and the test's line."""
        import sys

        await client.initialize()
        handle = rl.instrument(client, leak_detection=0.2)
        handle.dispatcher.subscribe(rl.LifecycleEvent, recorder)
        key = f"leaks:{uuid.uuid4()}"
        frame = sys._getframe()
        line = f"{frame.f_code.co_filename}:{frame.f_lineno + 1} in {frame.f_code.co_name}"
        await client.blpop([key], timeout=1)
        [leak] = recorder.exactly(rl.PoolConnectionLeakEvent)
        assert leak.caller == line
        assert leak.task_name == asyncio.current_task().get_name()  # type: ignore[union-attr]
        released = [
            e for e in recorder.exactly(rl.PoolConnectionReleasedEvent) if e.port == leak.port
        ]
        assert released[-1].reported_leak is True
