"""A real Sentinel setup for the Sentinel tests, on loopback.

One master and one replica (``--replicaof``), each a
:class:`~redis_lifecycle.server.RedisServer` on a free port, and one
``redis-server <config> --sentinel`` watching the master as ``mymaster``
(quorum 1, so ``SENTINEL FAILOVER`` needs no other sentinel). Everything is
owned by one test: a failover changes who the master is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis

from redis_lifecycle.server import RedisServer, find_server_binary

SERVICE = "mymaster"


class SentinelServer(RedisServer):
    """``redis-server <generated config> --sentinel`` on a free port."""

    def __init__(self, binary: str, master_port: int, replica_port: int) -> None:
        super().__init__(binary)
        self.master_port = master_port
        self.replica_port = replica_port

    def _command(self) -> list[str]:
        config = os.path.join(self._dir, "sentinel.conf")  # sentinel rewrites it
        with open(config, "w", encoding="utf-8") as out:
            out.write(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self._dir}\n"
                f"logfile {os.path.join(self._dir, 'server.log')}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                # known up front: else found by INFO, polled every 10 s
                f"sentinel known-replica {SERVICE} 127.0.0.1 {self.replica_port}\n"
            )
        return [self.binary, config, "--sentinel"]


class SentinelSetup:
    """The master, replica and sentinel, and helpers to wait on them."""

    def __init__(self, master: RedisServer, replica: RedisServer, sentinel: RedisServer) -> None:
        self.master = master
        self.replica = replica
        self.sentinel = sentinel
        self.admin = redis.Redis(host=sentinel.host, port=sentinel.port, decode_responses=True)

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [(self.sentinel.host, self.sentinel.port)]

    def master_address(self) -> tuple[str, int]:
        host, port = self.admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return host, int(port)

    def replica_ready(self) -> bool:
        """The sentinel knows the replica, sees it up, and it is in sync."""
        for fields in self.admin.sentinel_slaves(SERVICE):  # parsed by redis-py
            if (
                int(fields.get("port", 0)) == self.replica.port
                and fields.get("is_slave")
                and not fields.get("is_sdown")
                and not fields.get("is_disconnected")
                and fields.get("master-link-status") == "ok"
            ):
                return True
        return False

    def wait(self, condition: object, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                logs = "\n".join(s.log_tail(8) for s in (self.master, self.replica, self.sentinel))
                pytest.fail(f"timed out after {timeout}s waiting for {what}:\n{logs}")
            time.sleep(0.05)


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("Sentinel tests need redis-server: " + "; ".join(reasons))
    started: list[RedisServer] = []
    try:
        # replicas sync at once (diskless sync otherwise waits 5 s for more replicas)
        fast_sync = ("--repl-diskless-sync-delay", "0")
        master = RedisServer(binary, extra_args=fast_sync).start()
        started.append(master)
        replica = RedisServer(
            binary, extra_args=("--replicaof", "127.0.0.1", str(master.port), *fast_sync)
        ).start()
        started.append(replica)
        sentinel = SentinelServer(binary, master.port, replica.port).start()
        started.append(sentinel)
        setup = SentinelSetup(master, replica, sentinel)
        setup.wait(setup.replica_ready, "the sentinel to see the replica in sync")
        yield setup
        setup.admin.close()
    finally:
        for server in reversed(started):
            server.stop()
