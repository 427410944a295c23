"""A redis_lifecycle.EventDispatcher handed to the cluster clients themselves."""

from __future__ import annotations

import pytest
import redis.cluster
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

import redis_lifecycle as rl

from ..helpers import Recorder
from .conftest import Cluster
from .test_cluster_sync import keys_on_every_node

pytest.importorskip("redis.event", reason="redis-py before 5.3 has no redis.event")


def recorded(dispatcher: rl.EventDispatcher) -> Recorder:
    recorder = Recorder()
    dispatcher.subscribe(rl.LifecycleEvent, recorder)
    return recorder


class TestSyncCluster:
    def test_every_node_reports_like_instrument(self, cluster: Cluster) -> None:
        """``RedisCluster(event_dispatcher=d)``: every master's pool is
        instrumented, named ``host:port`` as by ``instrument(cluster)``;
        ``uninstrument(cluster)`` stops the events."""
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = redis.cluster.RedisCluster(
            host=cluster.host, port=cluster.port, event_dispatcher=dispatcher
        )
        for key in keys_on_every_node(cluster):
            client.set(key, "v")
        names = {e.pool_name for e in seen.exactly(rl.ConnectionConnectedEvent)}
        assert names >= {f"{s.host}:{s.port}" for s in cluster.servers}
        handle = rl.instrument(client)
        assert handle.dispatcher is dispatcher
        assert rl.uninstrument(client) is True
        seen.clear()
        for key in keys_on_every_node(cluster):
            client.get(key)
        assert seen.types() == []
        client.close()


class TestAsyncCluster:
    async def test_every_node_reports_like_instrument(self, cluster: Cluster) -> None:
        dispatcher = rl.EventDispatcher()
        seen = recorded(dispatcher)
        client = AsyncRedisCluster(
            host=cluster.host, port=cluster.port, event_dispatcher=dispatcher
        )
        await client.initialize()
        for node in client.get_primaries():
            await client.ping(target_nodes=node)
        names = {e.pool_name for e in seen.exactly(rl.ConnectionConnectedEvent)}
        assert names >= {f"{s.host}:{s.port}" for s in cluster.servers}
        assert rl.instrument(client).dispatcher is dispatcher
        assert rl.uninstrument(client) is True
        seen.clear()
        for node in client.get_primaries():
            await client.ping(target_nodes=node)
        assert seen.types() == []
        await client.aclose()
