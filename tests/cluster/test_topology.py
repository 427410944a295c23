"""Cluster redirects and slot-map changes, provoked for real, sync and asyncio.

A dedicated cluster (three primaries, each with a replica, plus a spare
server outside it) so that moving slots, failing over and adding or removing
nodes never disturbs the shared cluster of the other tests; each test puts it
back as it found it. Redirect counts are checked against the server's own
count of the redirects it sent (``INFO errorstats``), so they are exact on
every redis-py, whatever it does with the redirect afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as acluster
from redis.cluster import RedisCluster
from redis.crc import key_slot

import redis_lifecycle as rl
from redis_lifecycle.server import RedisServer, find_server_binary
from redis_lifecycle.testing import EventRecorder

from ..helpers import Recorder, wait_until
from .conftest import _node_args

PRIMARIES = 3


def _redis(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, decode_responses=True)


class TopologyCluster:
    """Six nodes (three primaries with a replica each) and two spare servers
    (one per test flavour: a forgotten node stays banned for a minute)."""

    def __init__(self, servers: list[RedisServer], spares: list[RedisServer]) -> None:
        self.servers = servers
        self.spares = spares

    @property
    def port(self) -> int:
        return self.servers[0].port

    def on(self, server: RedisServer, *args: Any) -> Any:
        with _redis(server) as node:
            return node.execute_command(*args)

    def node_id(self, server: RedisServer) -> str:
        return str(self.on(server, "CLUSTER", "MYID"))

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in [*self.servers, *self.spares] if s.port == port)

    def slots(self, via: RedisServer | None = None) -> list[Any]:
        with _redis(via or self.servers[0]) as node:
            return list(node.execute_command("CLUSTER", "SLOTS"))

    def primaries(self) -> list[RedisServer]:
        return [self.server_on(int(entry[2][1])) for entry in self.slots()]

    def owner_of(self, slot: int) -> RedisServer:
        for start, end, primary, *_ in self.slots():
            if start <= slot <= end:
                return self.server_on(int(primary[1]))
        raise AssertionError(f"no node owns slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer | None:
        for _start, _end, owner, *replicas in self.slots():
            if int(owner[1]) == primary.port and replicas:
                return self.server_on(int(replicas[0][1]))
        return None

    def slot_count(self, primary: RedisServer) -> int:
        return sum(
            end - start + 1
            for start, end, owner, *_ in self.slots()
            if int(owner[1]) == primary.port
        )

    def redirects(self, server: RedisServer, kind: str) -> int:
        """How many ``MOVED`` or ``ASK`` replies ``server`` has sent."""
        with _redis(server) as node:
            stats = node.info("errorstats")
        entry = stats.get(f"errorstat_{kind.upper()}")
        return int(entry["count"]) if entry else 0

    def converged(self) -> bool:
        """Every node of the cluster sees the same slot map, all slots served."""
        maps = []
        for server in self.servers:
            with _redis(server) as node:
                info = node.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
                slots = node.execute_command("CLUSTER", "SLOTS")
                maps.append(sorted((s, e, *(n[1] for n in nodes)) for s, e, *nodes in slots))
        return all(m == maps[0] for m in maps) and sum(m[1] - m[0] + 1 for m in maps[0]) == 16384

    def replicating(self, replica: RedisServer) -> bool:
        """``replica``'s link to its primary is up (it can take over)."""
        with _redis(replica) as node:
            info = node.info("replication")
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def wait_converged(self) -> None:
        wait_until(self.converged, timeout=30, what="the cluster to agree on its slot map")

    def set_slot_owner(self, slot: int, owner: RedisServer) -> None:
        owner_id = self.node_id(owner)
        for server in self.primaries():
            self.on(server, "CLUSTER", "SETSLOT", slot, "NODE", owner_id)
        wait_until(
            lambda: all(self._owner_seen_by(server, slot) == owner.port for server in self.servers),
            timeout=30,
            what=f"every node to see slot {slot} on {owner.port}",
        )

    def start_migration(
        self, slot: int, key: str, source: RedisServer, target: RedisServer
    ) -> None:
        """``IMPORTING`` / ``MIGRATING`` for ``slot``, then ``MIGRATE`` its ``key``."""
        self.on(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        self.on(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        self.on(source, "MIGRATE", target.host, target.port, key, 0, 5000)

    def move_back(self, slot: int, key: str, source: RedisServer, owner: RedisServer) -> None:
        """Give ``slot`` and ``key`` back to ``source`` whatever state a test left."""
        for server in (source, owner):
            self.on(server, "CLUSTER", "SETSLOT", slot, "STABLE")
        if self.owner_of(slot) is not source:
            self.start_migration(slot, key, owner, source)
        self.set_slot_owner(slot, source)
        self.wait_converged()

    def _owner_seen_by(self, server: RedisServer, slot: int) -> int | None:
        for start, end, primary, *_ in self.slots(server):
            if start <= slot <= end:
                return int(primary[1])
        return None


def _cli(*args: str) -> None:
    done = subprocess.run(["redis-cli", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"redis-cli {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def topology_cluster() -> Iterator[TopologyCluster]:
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("cluster tests need redis-server: " + "; ".join(reasons))
    servers: list[RedisServer] = []
    try:
        for _ in range(PRIMARIES * 2 + 2):
            # a demoted primary resyncs at once (diskless sync otherwise waits 5 s)
            args = (*_node_args(), "--repl-diskless-sync-delay", "0")
            servers.append(RedisServer(binary, extra_args=args).start())
        members, spares = servers[:-2], servers[-2:]
        addresses = [f"{s.host}:{s.port}" for s in members]
        _cli("--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes")
        cluster = TopologyCluster(members, spares)
        wait_until(
            lambda: (
                len(cluster.slots()) == PRIMARIES
                and all(len(entry) == 4 for entry in cluster.slots())
                and cluster.converged()
            ),
            timeout=60,
            what="the six-node cluster to form",
        )
        yield cluster
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def cluster6(topology_cluster: TopologyCluster) -> TopologyCluster:
    topology_cluster.wait_converged()
    return topology_cluster


def _key_on(cluster: TopologyCluster, server: RedisServer, prefix: str) -> tuple[str, int]:
    for i in range(100_000):
        key = f"{prefix}{i}"
        slot = key_slot(key.encode())
        if cluster.owner_of(slot) is server:
            return key, slot
    raise AssertionError("no key found")


def _name(server: RedisServer) -> str:
    return f"{server.host}:{server.port}"


class Runner:
    """Runs the same scenario on a sync or an asyncio ``RedisCluster``."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.loop = asyncio.new_event_loop() if flavour == "asyncio" else None
        self.clients: list[Any] = []

    def client(self, port: int) -> Any:
        client: Any
        if self.loop is not None:
            client = acluster.RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
            self.run(client.initialize())
        else:
            client = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
        self.clients.append(client)
        return client

    def run(self, value: Any) -> Any:
        if self.loop is not None and asyncio.iscoroutine(value):
            return self.loop.run_until_complete(value)
        return value

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        return self.run(method(*args))

    def pipeline(self, client: Any, key: str) -> Any:
        if self.loop is None:
            pipe = client.pipeline()
            pipe.get(key)
            return pipe.execute()

        async def go() -> Any:
            pipe = client.pipeline()
            pipe.get(key)
            return await pipe.execute()

        return self.run(go())

    def close(self) -> None:
        for client in self.clients:
            rl.uninstrument(client)
            if self.loop is not None:
                self.run(client.aclose() if hasattr(client, "aclose") else client.close())
            else:
                client.close()
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "asyncio"])
def runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    runner = Runner(request.param)
    yield runner
    runner.close()


def _instrument(client: Any, recorder: Recorder, **kwargs: Any) -> rl.LifecycleHandle:
    handle = rl.instrument(client, **kwargs)
    for cls in (rl.ClusterRedirectEvent, rl.ClusterTopologyChangedEvent):
        handle.dispatcher.subscribe(cls, recorder)
    return handle


def _other_primary(cluster: TopologyCluster, server: RedisServer) -> RedisServer:
    return next(p for p in cluster.primaries() if p is not server)


class TestRedirects:
    def test_ask_then_moved_while_a_slot_migrates(
        self, cluster6: TopologyCluster, runner: Runner
    ) -> None:
        """A slot migrated key by key (``MIGRATING``/``IMPORTING`` + ``MIGRATE``)
        gives one ``ask`` event per ``ASK`` the source sends; once the slot is
        given to the target (``SETSLOT NODE``), one ``moved`` event per
        ``MOVED`` and one topology change for the patched slot."""
        source = cluster6.primaries()[0]
        target = _other_primary(cluster6, source)
        key, slot = _key_on(cluster6, source, f"ask-{runner.flavour}-")
        client = runner.client(cluster6.port)
        recorder = Recorder()
        _instrument(client, recorder, pool_name="orders")
        helper = EventRecorder().attach(client)  # the pytest plugin's recorder
        assert runner.call(client.set, key, "v")
        asks, moves = cluster6.redirects(source, "ask"), cluster6.redirects(source, "moved")
        try:
            cluster6.start_migration(slot, key, source, target)
            assert runner.call(client.get, key) == "v"  # ASK → ASKING + GET on the target
            assert runner.call(client.get, key) == "v"  # ASK again: redis-py keeps the map
            sent_asks = cluster6.redirects(source, "ask") - asks
            assert sent_asks == 2
            helper.wait_for(rl.ClusterRedirectEvent, timeout=5, count=2, kind="ask", slot=slot)
            redirects = recorder.exactly(rl.ClusterRedirectEvent)
            assert [(e.kind, e.slot) for e in redirects] == [("ask", slot)] * sent_asks
            first = redirects[0]
            assert (first.host, first.port) == (source.host, source.port)
            assert first.pool_name == f"orders/{_name(source)}"
            assert (first.target_host, first.target_port) == (target.host, target.port)
            assert first.to_dict()["type"] == "cluster_redirect"
            assert recorder.exactly(rl.ClusterTopologyChangedEvent) == []
            helper.assert_not_emitted(rl.ClusterTopologyChangedEvent)
            recorder.clear()

            cluster6.set_slot_owner(slot, target)
            assert runner.call(client.get, key) == "v"  # MOVED, then the target
            assert runner.call(client.get, key) == "v"  # the map is patched: no redirect
            assert cluster6.redirects(source, "moved") - moves == 1
            (moved,) = recorder.exactly(rl.ClusterRedirectEvent)
            assert (moved.kind, moved.slot, moved.port, moved.target_port) == (
                "moved",
                slot,
                source.port,
                target.port,
            )
            (change,) = recorder.exactly(rl.ClusterTopologyChangedEvent)
            assert change.reason == "moved"
            assert change.pool_name == "orders"
            assert change.slots_moved == 1
            assert change.slot_moves == ((slot, slot, _name(source), _name(target)),)
            assert (change.nodes_added, change.nodes_removed) == ((), ())
            assert (change.primaries_added, change.primaries_removed) == ((), ())
        finally:
            cluster6.move_back(slot, key, source, target)

    def test_moved_inside_a_cluster_pipeline(
        self, cluster6: TopologyCluster, runner: Runner
    ) -> None:
        """A pipeline's command answered ``MOVED``: one event per ``MOVED``
        the node sent (redis-py may follow it more than once on older
        versions), and the pipeline still returns the value."""
        source = cluster6.primaries()[0]
        target = _other_primary(cluster6, source)
        key, slot = _key_on(cluster6, source, f"pipe-{runner.flavour}-")
        client = runner.client(cluster6.port)
        recorder = Recorder()
        metrics = rl.Instrumentation()
        _instrument(client, recorder, instrumentation=metrics)
        assert runner.call(client.set, key, "p")
        moves = cluster6.redirects(source, "moved")
        try:
            cluster6.start_migration(slot, key, source, target)
            cluster6.set_slot_owner(slot, target)
            assert runner.pipeline(client, key) == ["p"]
            sent = cluster6.redirects(source, "moved") - moves
            assert sent >= 1
            redirects = recorder.exactly(rl.ClusterRedirectEvent)
            assert [(e.kind, e.slot, e.port, e.target_port) for e in redirects] == [
                ("moved", slot, source.port, target.port)
            ] * sent
            pool = metrics.pool_metrics()[_name(source)]
            assert pool["redirects"] == {"moved": sent}
        finally:
            cluster6.move_back(slot, key, source, target)


def _refresh(runner: Runner, client: Any) -> None:
    runner.run(client.nodes_manager.initialize())


class TestTopologyChanges:
    def test_failover_promotes_a_replica(self, cluster6: TopologyCluster, runner: Runner) -> None:
        """``CLUSTER FAILOVER`` on a replica, then a refresh of the map: one
        event naming the promoted and the demoted node and every slot that
        changed primary; a refresh with nothing new fires nothing."""
        # a shard per flavour: the primaries vote once per shard per 2 node timeouts
        primary = cluster6.primaries()[0 if runner.flavour == "sync" else 2]
        replica = cluster6.replica_of(primary)
        assert replica is not None
        owned = cluster6.slot_count(primary)
        wait_until(lambda: cluster6.replicating(replica), timeout=30, what="replication")
        client = runner.client(cluster6.port)
        recorder = Recorder()
        metrics = rl.Instrumentation()
        _instrument(client, recorder, instrumentation=metrics)
        _refresh(runner, client)
        assert recorder.events == []
        try:
            cluster6.on(replica, "CLUSTER", "FAILOVER")
            wait_until(
                lambda: (
                    primary not in cluster6.primaries() and cluster6.replica_of(replica) is primary
                ),
                timeout=30,
                what="the replica to take over",
            )
            cluster6.wait_converged()
            _refresh(runner, client)
            (change,) = recorder.exactly(rl.ClusterTopologyChangedEvent)
            assert change.reason is None
            assert change.primaries_added == (_name(replica),)
            assert change.primaries_removed == (_name(primary),)
            assert (change.nodes_added, change.nodes_removed) == ((), ())
            assert change.slots_moved == owned
            assert {(m.old_primary, m.new_primary) for m in change.slot_moves} == {
                (_name(primary), _name(replica))
            }
            assert metrics.pool_metrics()["cluster"]["topology_changes"] == 1
            _refresh(runner, client)
            assert len(recorder.exactly(rl.ClusterTopologyChangedEvent)) == 1
        finally:
            wait_until(lambda: cluster6.replicating(primary), timeout=30, what="replication")
            cluster6.on(primary, "CLUSTER", "FAILOVER", "TAKEOVER")  # no handshake: at once
            wait_until(
                lambda: (
                    replica not in cluster6.primaries()
                    and cluster6.converged()
                    and cluster6.replicating(replica)
                ),
                timeout=30,
                what="the failback",
            )

    def test_node_added_then_removed(self, cluster6: TopologyCluster, runner: Runner) -> None:
        """``CLUSTER MEET`` + ``CLUSTER REPLICATE`` adds a node to the map;
        ``CLUSTER FORGET`` on every node removes it: one event each."""
        spare = cluster6.spares[0 if runner.flavour == "sync" else 1]
        primary = cluster6.primaries()[1]
        client = runner.client(cluster6.port)
        recorder = Recorder()
        _instrument(client, recorder)
        try:
            with _redis(primary) as node:
                bus_port = node.config_get("cluster-port")["cluster-port"]
            cluster6.on(spare, "CLUSTER", "MEET", primary.host, primary.port, bus_port)
            wait_until(
                lambda: cluster6.node_id(spare) in str(cluster6.on(primary, "CLUSTER", "NODES")),
                timeout=30,
                what="the spare to join",
            )
            cluster6.on(spare, "CLUSTER", "REPLICATE", cluster6.node_id(primary))
            wait_until(
                lambda: all(
                    any(int(r[1]) == spare.port for entry in cluster6.slots(s) for r in entry[3:])
                    for s in cluster6.servers
                ),
                timeout=30,
                what="every node to list the spare as a replica",
            )
            _refresh(runner, client)
            (added,) = recorder.exactly(rl.ClusterTopologyChangedEvent)
            assert added.nodes_added == (_name(spare),)
            assert (added.nodes_removed, added.slots_moved) == ((), 0)
            assert (added.primaries_added, added.primaries_removed) == ((), ())
            recorder.clear()
        finally:
            _forget(cluster6, spare)
        _refresh(runner, client)
        (removed,) = recorder.exactly(rl.ClusterTopologyChangedEvent)
        assert removed.nodes_removed == (_name(spare),)
        assert (removed.nodes_added, removed.slots_moved) == ((), 0)


def _forget(cluster: TopologyCluster, spare: RedisServer) -> None:
    spare_id = cluster.node_id(spare)
    cluster.on(spare, "CLUSTER", "RESET", "HARD")
    for server in cluster.servers:
        cluster.on(server, "CLUSTER", "FORGET", spare_id)
    deadline = time.monotonic() + 30
    while any(
        int(r[1]) == spare.port for s in cluster.servers for e in cluster.slots(s) for r in e[3:]
    ) or any(spare_id in str(cluster.on(s, "CLUSTER", "NODES")) for s in cluster.servers):
        assert time.monotonic() < deadline, "the spare is still known"
        time.sleep(0.05)
    cluster.wait_converged()


class TestExporters:
    def test_prometheus_and_opentelemetry_count_redirects_and_changes(
        self, cluster6: TopologyCluster
    ) -> None:
        """Both exporters count a real ``ASK``, a real ``MOVED`` (by kind, under
        the node that sent it) and the slot-map change the ``MOVED`` made."""
        prometheus_client = pytest.importorskip("prometheus_client")
        pytest.importorskip("opentelemetry.sdk.metrics")
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from redis_lifecycle.contrib.opentelemetry import OpenTelemetryMetrics
        from redis_lifecycle.contrib.prometheus import LifecycleCollector

        source = cluster6.primaries()[1]
        target = _other_primary(cluster6, source)
        key, slot = _key_on(cluster6, source, "export-")
        client = RedisCluster(host="127.0.0.1", port=cluster6.port, decode_responses=True)
        handle = rl.instrument(client)
        registry = prometheus_client.CollectorRegistry()
        registry.register(LifecycleCollector(handle, per_command=False))
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        OpenTelemetryMetrics(provider, per_command=False).attach(handle)
        try:
            client.set(key, "x")
            cluster6.start_migration(slot, key, source, target)
            assert client.get(key) == "x"  # ASK
            cluster6.set_slot_owner(slot, target)
            assert client.get(key) == "x"  # MOVED
            node = _name(source)

            def prom(name: str, **labels: str) -> float | None:
                value = registry.get_sample_value(name, labels)
                return None if value is None else float(value)

            assert prom("redis_lifecycle_cluster_redirects_total", pool_name=node, kind="ask") == 1
            moved = prom("redis_lifecycle_cluster_redirects_total", pool_name=node, kind="moved")
            assert moved == 1
            changes = prom(
                "redis_lifecycle_cluster_changes_total",
                pool_name="cluster",
                reason="moved",
            )
            assert changes == 1
            data = reader.get_metrics_data()
            found: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
            assert data is not None
            for resource in data.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.data.data_points:
                            attrs = tuple(sorted((point.attributes or {}).items()))
                            found[(metric.name, attrs)] = getattr(point, "value", -1)
            pool = "db.client.connection.pool.name"
            kind = "redis_lifecycle.cluster.redirect.kind"
            assert found[("redis_lifecycle.cluster.redirects", ((pool, node), (kind, "ask")))] == 1
            assert (
                found[("redis_lifecycle.cluster.redirects", ((pool, node), (kind, "moved")))] == 1
            )
            reason = "redis_lifecycle.cluster.change.reason"
            assert (
                found[
                    (
                        "redis_lifecycle.cluster.changes",
                        ((pool, "cluster"), (reason, "moved")),
                    )
                ]
                == 1
            )
        finally:
            rl.uninstrument(client)
            client.close()
            provider.shutdown()
            cluster6.move_back(slot, key, source, target)


class TestUninstrument:
    def test_uninstrument_removes_the_node_hooks(self, cluster6: TopologyCluster) -> None:
        """After ``uninstrument`` the nodes read replies through redis-py's own
        ``parse_response`` again and the class wrappers are gone."""
        from redis_lifecycle._hooks.topology import SYNC_CLUSTER_PATCHER

        client = RedisCluster(host="127.0.0.1", port=cluster6.port)
        rl.instrument(client)
        nodes = [n.redis_connection for n in client.nodes_manager.nodes_cache.values()]
        assert all("parse_response" in node.__dict__ for node in nodes)
        assert SYNC_CLUSTER_PATCHER.installed
        rl.uninstrument(client)
        assert not any("parse_response" in node.__dict__ for node in nodes)
        assert not SYNC_CLUSTER_PATCHER.installed
        client.close()


class TestWatch:
    def test_watch_cluster_shows_a_slot_move(self, cluster6: TopologyCluster) -> None:
        """``redis-lifecycle watch URL --cluster --json`` prints the slot-map
        change when a slot moves, and counts it in the summary."""
        import json
        import os
        import signal
        import sys

        source = cluster6.primaries()[0]
        target = _other_primary(cluster6, source)
        _key, slot = _key_on(cluster6, source, "watch-")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "redis_lifecycle",
                "watch",
                f"redis://127.0.0.1:{cluster6.port}",
                "--cluster",
                "--json",
                "--interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            assert process.stdout is not None
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

            read_until(lambda r: r["type"] == "health_check" and r["healthy"])
            cluster6.set_slot_owner(slot, target)
            # While SETSLOT reaches the nodes one by one, a refresh may read the
            # map from a node that has not heard yet: each change it sees is shown.
            change = read_until(
                lambda r: (
                    r["type"] == "cluster_topology_changed"
                    and r["slot_moves"] == [[slot, slot, _name(source), _name(target)]]
                )
            )
            assert (change["nodes_added"], change["nodes_removed"]) == ([], [])
            process.send_signal(signal.SIGINT)
            summary = read_until(lambda r: r["type"] == "summary")
            shown = [r for r in seen if r["type"] == "cluster_topology_changed"]
            assert summary["events"]["cluster_topology_changed"] == len(shown)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            cluster6.set_slot_owner(slot, source)
            cluster6.wait_converged()


class TestFailingCallbacks:
    def test_a_raising_callback_never_breaks_a_redirected_command(
        self, cluster6: TopologyCluster, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Under ``CallbackErrorHandler("raise")`` a callback that raises on
        ``cluster_redirect`` or ``cluster_topology_changed`` is logged: redis-py
        still follows the redirect and the command returns its value."""
        source = cluster6.primaries()[2]
        target = _other_primary(cluster6, source)
        key, slot = _key_on(cluster6, source, "raise-")
        client = RedisCluster(host="127.0.0.1", port=cluster6.port, decode_responses=True)
        handle = rl.instrument(client, callback_error_handler=rl.CallbackErrorHandler("raise"))
        calls: list[str] = []

        def explode(event: rl.LifecycleEvent) -> None:
            calls.append(event.type.value)
            raise RuntimeError("callback failed")

        handle.dispatcher.subscribe(rl.ClusterRedirectEvent, explode)
        handle.dispatcher.subscribe(rl.ClusterTopologyChangedEvent, explode)
        try:
            client.set(key, "kept")
            cluster6.start_migration(slot, key, source, target)
            assert client.get(key) == "kept"  # ASK
            cluster6.set_slot_owner(slot, target)
            assert client.get(key) == "kept"  # MOVED + the patched slot
            assert calls == ["cluster_redirect", "cluster_redirect", "cluster_topology_changed"]
            logged = [r for r in caplog.records if r.name == "redis_lifecycle"]
            assert len(logged) == 3
            assert all(
                r.exc_info is not None and str(r.exc_info[1]) == "callback failed" for r in logged
            )
        finally:
            rl.uninstrument(client)
            client.close()
            cluster6.move_back(slot, key, source, target)


class TestInstrumentAll:
    def test_instrument_all_gives_a_sync_cluster_its_redirects(
        self, cluster6: TopologyCluster
    ) -> None:
        """``instrument_all()`` instruments a new sync ``RedisCluster`` (its
        node pools and itself): a ``MOVED`` reaches the shared dispatcher once,
        and a cluster pipeline is not taken for a cluster of its own."""
        source = cluster6.primaries()[1]
        target = _other_primary(cluster6, source)
        key, slot = _key_on(cluster6, source, "auto-")
        dispatcher = rl.instrument_all()
        recorder = Recorder()
        dispatcher.subscribe(rl.ClusterRedirectEvent, recorder)
        dispatcher.subscribe(rl.ClusterTopologyChangedEvent, recorder)
        client = RedisCluster(host="127.0.0.1", port=cluster6.port, decode_responses=True)
        try:
            client.set(key, "auto")
            pipe = client.pipeline()
            pipe.get(key)
            assert pipe.execute() == ["auto"]
            cluster6.start_migration(slot, key, source, target)
            cluster6.set_slot_owner(slot, target)
            assert client.get(key) == "auto"
            (moved,) = recorder.exactly(rl.ClusterRedirectEvent)
            assert (moved.kind, moved.slot, moved.target_port) == ("moved", slot, target.port)
            (change,) = recorder.exactly(rl.ClusterTopologyChangedEvent)
            assert change.slot_moves == ((slot, slot, _name(source), _name(target)),)
        finally:
            rl.uninstrument_all()
            nodes = [n.redis_connection for n in client.nodes_manager.nodes_cache.values()]
            assert not any("parse_response" in node.__dict__ for node in nodes if node)
            client.close()
            cluster6.move_back(slot, key, source, target)

    def test_a_parse_response_patched_on_the_class_is_called_as_redis_py_would(
        self, cluster6: TopologyCluster
    ) -> None:
        """redis-py's own tests patch ``Redis.parse_response`` with a mock; the
        node's watcher calls it exactly as the client would (no extra ``self``)."""
        from unittest import mock

        client = RedisCluster(host="127.0.0.1", port=cluster6.port)
        rl.instrument(client)
        try:
            with mock.patch.object(redis.Redis, "parse_response") as parse_response:
                parse_response.side_effect = lambda connection, *args, **options: "mocked"
                assert client.get("any-key") == "mocked"
            connection = parse_response.call_args.args[0]
            assert isinstance(connection, redis.connection.AbstractConnection)
            assert parse_response.call_args.args[1] == "GET"
        finally:
            rl.uninstrument(client)
            client.close()

    def test_a_mock_that_calls_the_method_it_replaced_reaches_redis_py(
        self, cluster6: TopologyCluster
    ) -> None:
        """A mock on ``Redis.parse_response`` whose side effect is the node's
        ``parse_response`` taken before the patch (redis-py's tests do this)
        reaches redis-py's method, once, instead of coming back to the mock."""
        from unittest import mock

        client = RedisCluster(host="127.0.0.1", port=cluster6.port, decode_responses=True)
        rl.instrument(client)
        try:
            client.set("real-key", "real")
            node = client.get_node_from_key("real-key")
            real_func = client.get_redis_connection(node).parse_response
            with mock.patch.object(redis.Redis, "parse_response") as parse_response:
                parse_response.side_effect = real_func
                assert client.get("real-key") == "real"
            assert parse_response.call_count == 1
        finally:
            rl.uninstrument(client)
            client.close()
