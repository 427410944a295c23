"""Run redis-py's own test suite twice, bare and instrumented, and compare.

redis_lifecycle promises never to change how redis-py behaves. This checks it
against the strictest witness there is: redis-py's own tests, from the source
distribution of the installed version (downloaded once with ``pip download``
and cached in ``.cache/``). A ``redis-server`` on a free port serves both
runs. The first run is bare redis-py; the second loads
``scripts/redis_py_suite_plugin.py``, which instruments every pool the tests
create with every event subscribed and ``Instrumentation`` on.

Exit status 1 if a test that passed bare did not pass instrumented, if
redis_lifecycle logged an error about itself, if no event was delivered
(the hooks did not run) or if no test passed bare (nothing was compared); 0
otherwise. Tests that fail bare (a feature this
server lacks, say) are reported only as a count: they say nothing about
redis_lifecycle.

    python scripts/redis_py_suite.py                 # the default files, ~3 min
    python scripts/redis_py_suite.py tests/test_connection_pool.py
    python scripts/redis_py_suite.py --cluster       # the sync cluster tests, ~5 min
    python scripts/redis_py_suite.py --cluster tests/test_asyncio/test_cluster.py   # ~11 min
    python scripts/redis_py_suite.py --sentinel      # the sentinel tests, ~15 s

With ``--cluster`` it forms a cluster of six servers on free ports (three
primaries, each with a replica, as redis-py's own CI does) and runs
redis-py's sync cluster tests against it (see ``CLUSTER_FILES``). redis-py's
conftest sees ``cluster_enabled`` and runs the cluster-only tests. The few
that do not pass bare are only counted.

With ``--sentinel`` it starts three sentinels on free ports that monitor the
server as ``redis-py-test`` (the service redis-py's conftest asks for) and runs
redis-py's sentinel tests, sync and asyncio (``SENTINEL_FILES``), with
``--sentinels`` pointing at them: ``Sentinel.master_for`` clients and their
``SentinelConnectionPool`` against real sentinels, besides the tests that
mock the sentinels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"

#: redis-py's test files about connections, pools and the commands that use
#: them, sync and asyncio, that need only one plain server (no cluster,
#: sentinel, TLS or modules).
DEFAULT_FILES = (
    "tests/test_connection_pool.py",
    "tests/test_connection.py",
    "tests/test_commands.py",
    "tests/test_pipeline.py",
    "tests/test_pubsub.py",
    "tests/test_lock.py",
    "tests/test_retry.py",
    "tests/test_multiprocessing.py",
    "tests/test_monitor.py",
    "tests/test_scripting.py",
    "tests/test_encoding.py",
    "tests/test_asyncio/test_connection_pool.py",
    "tests/test_asyncio/test_connection.py",
    "tests/test_asyncio/test_commands.py",
    "tests/test_asyncio/test_pipeline.py",
    "tests/test_asyncio/test_pubsub.py",
    "tests/test_asyncio/test_lock.py",
    "tests/test_asyncio/test_retry.py",
)


#: redis-py's cluster tests (``--cluster``): by default the sync ones, about
#: 5 min for both runs. The asyncio ones (``tests/test_asyncio/test_cluster.py``)
#: take about 11 min more: pass them by name.
CLUSTER_FILES = ("tests/test_cluster.py",)

#: redis-py's sentinel tests (``--sentinel``), and the service they ask the
#: sentinels for (redis-py's conftest default of ``--master-service``).
SENTINEL_FILES = ("tests/test_sentinel.py", "tests/test_asyncio/test_sentinel.py")
SENTINEL_SERVICE = "redis-py-test"

#: Where a pytest configuration can be, with the section that makes it one.
PYTEST_CONFIGS = {
    "pytest.ini": "",
    "pyproject.toml": "[tool.pytest.ini_options]",
    "tox.ini": "[pytest]",
    "setup.cfg": "[tool:pytest]",
}


def has_pytest_config(source: Path) -> bool:
    """Whether redis-py's sdist brought its pytest configuration (8.x does,
    in pyproject.toml; 5.0 ships none)."""
    for name, section in PYTEST_CONFIGS.items():
        path = source / name
        if path.exists() and section in path.read_text(encoding="utf-8"):
            return True
    return False


def progress(message: str) -> None:
    print(f"[redis-py suite] {message}", file=sys.stderr, flush=True)


def redis_py_tests(version: str) -> Path:
    """The source tree of redis-py ``version`` with its tests, without its
    ``redis`` package (the installed one is what runs)."""
    tree = CACHE / f"redis-py-{version}"
    if (tree / "tests").is_dir():
        return tree
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"downloading the redis-py {version} source distribution")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"redis=={version}",
                "--dest",
                tmp,
            ],
            check=True,
        )
        (archive,) = Path(tmp).glob("redis-*.tar.gz")
        with tarfile.open(archive) as sdist:
            top = sdist.getnames()[0].split("/")[0]
            members = [
                m
                for m in sdist.getmembers()
                if m.name.startswith(f"{top}/tests/")
                or m.name in {f"{top}/{config}" for config in PYTEST_CONFIGS}
            ]
            if hasattr(tarfile, "data_filter"):  # 3.12, and 3.10.12/3.11.4 on
                sdist.extractall(tmp, members=members, filter="data")
            else:
                sdist.extractall(tmp, members=members)
        source = Path(tmp) / top
        if not has_pytest_config(source):
            # Older sdists ship no pytest configuration: without one, pytest
            # would take this repository's (strict markers, warnings as errors).
            (source / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
        source.rename(tree)
    return tree


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    from redis_lifecycle.server import free_port

    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise SystemExit("no free port pair (port, port + 10000) for a cluster node")


def start_cluster(binary: str) -> list[Any]:
    """Six cluster-enabled servers formed into one cluster (three primaries,
    three replicas) by ``redis-cli --cluster create``; stopped again if the
    cluster does not form."""
    from redis_lifecycle.server import RedisServer

    cli = shutil.which("redis-cli", path=str(Path(binary).parent)) or shutil.which("redis-cli")
    if cli is None:
        raise SystemExit("--cluster needs redis-cli (Debian: redis-tools) to form the cluster")
    servers: list[Any] = []
    try:
        for _ in range(6):
            node = RedisServer(
                binary,
                port=cluster_port(),
                extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            )
            servers.append(node.start())
        addresses = [f"{node.host}:{node.port}" for node in servers]
        progress(f"forming a cluster of {' '.join(addresses)}")
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 60
        for node in servers:
            client = redis.Redis(host=node.host, port=node.port)
            try:
                while True:
                    info = client.cluster("INFO")
                    state = info.get("cluster_state") if isinstance(info, dict) else None
                    if state == "ok" and int(info.get("cluster_known_nodes", 0)) == 6:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the cluster did not form within 60 s: {info}")
                    time.sleep(0.2)
            finally:
                client.close()
    except BaseException:
        for node in servers:
            node.stop()
        raise
    return servers


class SentinelProcess:
    """One ``redis-server --sentinel`` on a free port, with its own directory
    (a sentinel rewrites its configuration file)."""

    def __init__(self, binary: str, primary: Any) -> None:
        from redis_lifecycle.server import free_port

        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-lifecycle-sentinel-")
        config = Path(self.dir) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir}/sentinel.log\n"
            f"sentinel monitor {SENTINEL_SERVICE} {primary.host} {primary.port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 5000\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 60000\n"
        )
        self.process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_sentinels(binary: str, primary: Any) -> list[SentinelProcess]:
    """Three sentinels monitoring ``primary`` as :data:`SENTINEL_SERVICE`,
    once each answers for it and knows the other two (they find each other
    through the primary, every two seconds); stopped again if they do not."""
    import redis

    sentinels: list[SentinelProcess] = []
    try:
        sentinels = [SentinelProcess(binary, primary) for _ in range(3)]
        progress(f"starting sentinels on {', '.join(str(s.port) for s in sentinels)}")
        deadline = time.monotonic() + 60
        for sentinel in sentinels:
            client = redis.Redis(host=sentinel.host, port=sentinel.port, socket_timeout=1)
            try:
                while True:
                    try:
                        address = client.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
                        others = client.sentinel_sentinels(SENTINEL_SERVICE)
                    except redis.exceptions.ConnectionError:
                        address, others = None, []
                    if address is not None and len(others) == len(sentinels) - 1:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"the sentinels did not see {primary.port} and each other within"
                            f" 60 s (sentinel {sentinel.port}: {address}, {len(others)} others)"
                        )
                    time.sleep(0.2)
            finally:
                client.close()
    except BaseException:
        for sentinel in sentinels:
            sentinel.stop()
        raise
    return sentinels


def run(
    tree: Path, files: list[str], url: str, instrumented: bool, extra: tuple[str, ...] = ()
) -> tuple[dict[str, str], dict[str, Any]]:
    """One pytest run: the outcome of each test by its id, and what the
    plugin reported (``events`` by type, ``logged`` lines; empty when bare)."""
    label = "instrumented" if instrumented else "bare"
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        report = Path(tmp) / "report.json"
        env = {**os.environ, "REDIS_LIFECYCLE_SUITE_REPORT": str(report)}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "scripts"), env.get("PYTHONPATH")])
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:redis_lifecycle",  # our own plugin: not needed, and the bare run stays bare
            *(["-p", "redis_py_suite_plugin"] if instrumented else []),
            "-W",
            "ignore",
            f"--rootdir={tree}",
            f"--redis-url={url}",
            f"--junit-xml={junit}",
            *extra,
            *files,
        ]
        progress(f"{label} run: {len(files)} paths")
        started = time.monotonic()
        subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, check=False)
        if not junit.exists():
            raise SystemExit(f"the {label} run reported no results (pytest could not start?)")
        outcomes = parse_junit(junit)
        progress(f"{label} run: {len(outcomes)} tests in {time.monotonic() - started:.0f} s")
        reported = json.loads(report.read_text()) if report.exists() else {}
    return outcomes, {"events": {}, "logged": [], **reported}


#: What redis_lifecycle logs when it finds someone else's function on top of
#: one of its class-level wrappers as it removes them. redis-py's own tests
#: do that with ``mock.patch.object(ClusterNode, "execute_command")``: the
#: warning is right, and says nothing wrong about redis_lifecycle.
FOREIGN_WRAPPER = ("was wrapped again by another library", "was replaced again by another library")


def is_foreign_wrapper(line: str) -> bool:
    return any(message in line for message in FOREIGN_WRAPPER)


def node_id(classname: str, name: str) -> str:
    """pytest's node id from a JUnit ``classname`` (``tests.test_x.TestY``)
    and test name."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        if parts[cut - 1].startswith("test_"):
            path = "/".join(parts[:cut]) + ".py"
            return "::".join([path, *parts[cut:], name])
    return f"{classname}::{name}"


def parse_junit(path: Path) -> dict[str, str]:
    """The outcome of each test in a JUnit report, by pytest node id."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = node_id(case.get("classname") or "", case.get("name") or "")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                break
        outcomes[test_id] = outcome
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "files", nargs="*", help=f"redis-py test files (default: {len(DEFAULT_FILES)})"
    )
    parser.add_argument("--url", help="a Redis to use (default: start a redis-server here)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="run redis-py's cluster tests against a six-node cluster formed here "
        "(or the cluster node given with --url)",
    )
    parser.add_argument(
        "--sentinel",
        action="store_true",
        help="run redis-py's sentinel tests against three sentinels started here",
    )
    args = parser.parse_args(argv)
    if args.sentinel and (args.cluster or args.url):
        parser.error("--sentinel starts its own server and sentinels: not with --cluster or --url")

    import redis

    from redis_lifecycle.server import RedisServer, find_server_binary

    tree = redis_py_tests(redis.__version__)
    defaults = CLUSTER_FILES if args.cluster else SENTINEL_FILES if args.sentinel else DEFAULT_FILES
    files = args.files or [f for f in defaults if (tree / f).exists()]
    servers: list[Any] = []
    url = args.url
    if url is None:
        binary, reasons = find_server_binary()
        if binary is None:
            raise SystemExit("no Redis server binary: " + "; ".join(reasons) + "; or pass --url")
        servers = start_cluster(binary) if args.cluster else [RedisServer(binary).start()]
        url = servers[0].url
    extra: tuple[str, ...] = ()
    try:
        if args.sentinel:
            sentinels = start_sentinels(binary, servers[0])
            servers += sentinels
            # redis-py 5.0's tests mock every sentinel: no --sentinels option.
            if "--sentinels" in (tree / "tests" / "conftest.py").read_text(encoding="utf-8"):
                extra = ("--sentinels", ",".join(f"{s.host}:{s.port}" for s in sentinels))
        bare, _ = run(tree, files, url, instrumented=False, extra=extra)
        instrumented, report = run(tree, files, url, instrumented=True, extra=extra)
        broken = sorted(
            t for t, o in bare.items() if o == "passed" and instrumented.get(t) != "passed"
        )
        # redis-py has timing-sensitive tests: one that passes instrumented on
        # a second or third try, alone, is reported as flaky, not broken.
        flaky: list[str] = []
        for _ in range(2):
            if not broken:
                break
            again, again_report = run(tree, broken, url, instrumented=True, extra=extra)
            report["logged"] += again_report["logged"]
            flaky += [t for t in broken if again.get(t) == "passed"]
            broken = [t for t in broken if again.get(t) != "passed"]
    finally:
        for server in servers:
            server.stop()

    passed = sum(1 for o in bare.values() if o == "passed")
    print(f"redis-py {redis.__version__}: {len(bare)} tests in {len(files)} files")
    print(f"  passed bare: {passed}; of those, not passed instrumented: {len(broken)}")
    print(f"  failed or skipped bare (not compared): {len(bare) - passed}")
    events = report["events"]
    print(f"  events delivered while instrumented: {sum(events.values()):,}")
    for name, count in sorted(events.items()):
        print(f"    {name:32} {count:,}")
    for test in flaky:
        print(f"  flaky (passed instrumented when run again): {test}")
    for test in broken:
        print(f"  BROKEN: {test} ({instrumented.get(test, 'not run')})")
    logged = [line for line in report["logged"] if not is_foreign_wrapper(line)]
    for line in report["logged"]:
        print(f"  {'LOGGED' if line in logged else 'note (a test patched a class)'}: {line}")
    if not passed:
        print(f"  nothing passed bare, so nothing was compared: run pytest in {tree} to see why")
    ok = passed > 0 and not broken and not logged and sum(events.values()) > 0
    print("OK: redis-py's tests behave the same instrumented" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
