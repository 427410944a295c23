"""A real Redis Cluster for the cluster tests: three masters on loopback.

Three ``redis-server --cluster-enabled yes`` processes (each a
:class:`~redis_lifecycle.server.RedisServer` on a free port, with its cluster
bus on another free port), joined by ``redis-cli --cluster create``, plus a
fourth, *spare* master that holds no slot until a test moves one to it (to
make the client discover a node after instrumentation). The
cluster is shared by the session; a test that kills a node restarts it (same
port, same ``nodes.conf``) and the ``cluster`` fixture checks before each test
that all three nodes are back and the cluster state is ``ok``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from redis_lifecycle.server import RedisServer, find_server_binary, free_port

MASTERS = 3


class Cluster:
    """The running cluster: its servers, and helpers to wait for it."""

    def __init__(self, servers: list[RedisServer], spare: RedisServer, cli: str) -> None:
        self.servers = servers
        self.spare = spare
        self.cli = cli

    def all_servers(self) -> list[RedisServer]:
        return [*self.servers, self.spare]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """Port of the first node: a startup node for clients."""
        return self.servers[0].port

    def ports(self) -> set[int]:
        return {server.port for server in self.servers}

    def server_on(self, port: int) -> RedisServer:
        return next(server for server in self.all_servers() if server.port == port)

    def state_ok(self) -> bool:
        """Every node answers and reports ``cluster_state:ok`` with all slots."""
        for server in self.all_servers():
            if not server.is_running():
                return False
            try:
                with redis.Redis(host=server.host, port=server.port, socket_timeout=2) as node:
                    info = node.cluster("INFO")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            if int(info["cluster_known_nodes"]) != MASTERS + 1:
                return False
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.state_ok():
            if time.monotonic() > deadline:
                logs = "\n".join(s.log_tail(5) for s in self.all_servers())
                pytest.fail(
                    f"the test cluster did not reach cluster_state:ok in {timeout}s:\n{logs}"
                )
            time.sleep(0.05)

    def ensure_running(self) -> None:
        """Restart any node a previous test left dead, then wait for ``ok``."""
        for server in self.all_servers():
            if not server.is_running():
                server.start()
        self.wait_ok()

    def node_id(self, server: RedisServer) -> str:
        with redis.Redis(host=server.host, port=server.port, decode_responses=True) as node:
            return str(node.execute_command("CLUSTER", "MYID"))

    def owner_of(self, slot: int) -> RedisServer:
        with redis.Redis(host=self.host, port=self.port) as node:
            for start, end, master, *_ in node.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return self.server_on(int(master[1]))
        msg = f"no node owns slot {slot}"
        raise AssertionError(msg)

    def move_slot(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """Move an empty ``slot`` from ``source`` to ``target`` the documented
        way (IMPORTING, MIGRATING, then SETSLOT NODE everywhere)."""
        source_id, target_id = self.node_id(source), self.node_id(target)

        def on(server: RedisServer, *args: object) -> None:
            with redis.Redis(host=server.host, port=server.port) as node:
                node.execute_command("CLUSTER", "SETSLOT", slot, *args)

        on(target, "IMPORTING", source_id)
        on(source, "MIGRATING", target_id)
        on(target, "NODE", target_id)
        on(source, "NODE", target_id)
        for server in self.all_servers():
            if server is not source and server is not target:
                on(server, "NODE", target_id)


def _node_args() -> tuple[str, ...]:
    return (
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        # the bus port defaults to port + 10000, which may not exist or be taken
        "--cluster-port",
        str(free_port()),
        "--cluster-node-timeout",
        "5000",
        "--cluster-require-full-coverage",
        "no",
        # else the spare turns replica when a test moves its only slot back
        "--cluster-allow-replica-migration",
        "no",
    )


def _cli(cli: str, *args: str) -> None:
    done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"redis-cli {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def cluster_servers() -> Iterator[Cluster]:
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("cluster tests need redis-server: " + "; ".join(reasons))
    cli = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if cli is None:
        pytest.skip("cluster tests need redis-cli (or valkey-cli) on PATH for --cluster create")
    servers: list[RedisServer] = []
    try:
        for _ in range(MASTERS):
            servers.append(RedisServer(binary, extra_args=_node_args()).start())
        spare = RedisServer(binary, extra_args=_node_args()).start()
        servers.append(spare)
        addresses = [f"{s.host}:{s.port}" for s in servers[:MASTERS]]
        _cli(cli, "--cluster", "create", *addresses, "--cluster-yes")
        _cli(cli, "--cluster", "add-node", f"{spare.host}:{spare.port}", addresses[0])
        cluster = Cluster(servers[:MASTERS], spare, cli)
        cluster.wait_ok()
        yield cluster
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def cluster(cluster_servers: Cluster) -> Cluster:
    """The session cluster, with every node up and ``cluster_state:ok``."""
    cluster_servers.ensure_running()
    return cluster_servers


@pytest.fixture
def cluster_client(cluster: Cluster) -> Iterator[redis.cluster.RedisCluster]:
    """An uninstrumented ``RedisCluster`` on the test cluster."""
    client = redis.cluster.RedisCluster(host=cluster.host, port=cluster.port)
    yield client
    client.close()
