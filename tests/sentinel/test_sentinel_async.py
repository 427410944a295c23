"""asyncio Sentinel: managed clients report the discovered address, discovery
connections are told apart, and a failover shows up with the new address."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio.sentinel import Sentinel

import redis_lifecycle as rl
from redis_lifecycle._hooks.sentinel import is_discovery

from ..helpers import Recorder
from .conftest import SERVICE, SentinelSetup


def managed(recorder: Recorder) -> list[rl.LifecycleEvent]:
    return [e for e in recorder.events if not is_discovery(e)]


class Sentinels:
    """Makes managed clients; closes them and the sentinel clients at the end."""

    def __init__(self, setup: SentinelSetup) -> None:
        self.sentinel = Sentinel(setup.sentinels)
        self.clients: list[Any] = []

    def master_for(self) -> Any:
        self.clients.append(self.sentinel.master_for(SERVICE))
        return self.clients[-1]

    def slave_for(self) -> Any:
        self.clients.append(self.sentinel.slave_for(SERVICE))
        return self.clients[-1]

    async def aclose(self) -> None:
        for client in [*self.clients, *self.sentinel.sentinels]:
            await client.aclose()


@pytest.fixture
async def sentinels(sentinel_setup: SentinelSetup) -> AsyncIterator[Sentinels]:
    made = Sentinels(sentinel_setup)
    yield made
    await made.aclose()


class TestManagedClients:
    async def test_master_and_replica_clients_carry_their_addresses(
        self, sentinel_setup: SentinelSetup, sentinels: Sentinels, recorder: Recorder
    ) -> None:
        """``master_for``/``slave_for`` clients' events name the master and the
        replica sentinel gave them, under ``<service>/master|replica``."""
        master = sentinels.master_for()
        replica = sentinels.slave_for()
        rl.instrument(master).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        rl.instrument(replica).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert await master.set("k", "v")
        await replica.get("k")
        connected = [e for e in recorder.of(rl.ConnectionConnectedEvent) if not is_discovery(e)]
        by_pool = {e.pool_name: e.port for e in connected}
        assert by_pool == {
            f"{SERVICE}/master": sentinel_setup.master.port,
            f"{SERVICE}/replica": sentinel_setup.replica.port,
        }
        for event in managed(recorder):
            assert event.port != 6379, event

    async def test_discovery_connections_are_distinguishable(
        self, sentinel_setup: SentinelSetup, sentinels: Sentinels, recorder: Recorder
    ) -> None:
        """The sentinel queries emit under ``sentinel:<host>:<port>`` with the
        sentinel's own address."""
        client = sentinels.master_for()
        rl.instrument(client).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        await client.ping()
        discovery = [e for e in recorder.events if is_discovery(e)]
        assert discovery, f"no discovery events; saw {recorder.types()}"
        assert {e.pool_name for e in discovery} == {
            f"sentinel:127.0.0.1:{sentinel_setup.sentinel.port}"
        }
        assert {e.port for e in discovery} == {sentinel_setup.sentinel.port}


class TestFailover:
    async def test_sentinel_failover_is_seen_with_the_new_address(
        self, sentinel_setup: SentinelSetup, sentinels: Sentinels, recorder: Recorder
    ) -> None:
        """``SENTINEL FAILOVER``: the old master's connection closes and the
        client reconnects, with events naming the promoted replica."""
        old, new = sentinel_setup.master, sentinel_setup.replica
        client = sentinels.master_for()
        rl.instrument(client).dispatcher.subscribe(rl.LifecycleEvent, recorder)
        assert await client.set("before", "1")
        sentinel_setup.admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
        sentinel_setup.wait(
            lambda: sentinel_setup.master_address()[1] == new.port, "the sentinel to promote"
        )

        def on_new_master() -> bool:
            return any(
                e.port == new.port
                for e in recorder.of(rl.ConnectionConnectedEvent)
                if not is_discovery(e)
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not on_new_master():
            assert loop.time() < deadline, f"no connect to the new master; saw {recorder.types()}"
            with contextlib.suppress(redis.RedisError):
                await client.set("after", "1")
            await asyncio.sleep(0.05)
        closed = [
            e
            for e in recorder.of(rl.ConnectionDisconnectedEvent)
            if not is_discovery(e) and e.port == old.port
        ]
        assert closed, f"no disconnect from the old master; saw {recorder.types()}"
        (change,) = recorder.exactly(rl.SentinelMasterChangedEvent)
        assert change.service_name == SERVICE
        assert (change.old_host, change.old_port) == ("127.0.0.1", old.port)
        assert (change.new_host, change.new_port) == ("127.0.0.1", new.port)
        assert (change.host, change.port) == ("127.0.0.1", new.port)
        assert change.pool_name == f"{SERVICE}/master"
