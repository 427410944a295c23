"""Run the test suites of libraries built on redis-py, bare and instrumented, and compare.

``scripts/redis_py_suite.py`` holds redis_lifecycle to redis-py's own tests.
This holds it to the tests of real libraries that use redis-py the way
applications do: django-redis (sync: a Django cache backend with its own
connection factories, sharding, Sentinel and unix-socket clients) and arq
(asyncio: a job queue whose workers share a ``redis.asyncio`` pool). Each
library's tests run twice against the same ``redis-server``: bare, then
instrumented by ``scripts/redis_py_suite_plugin.py`` (``instrument_all()``
with every event subscribed and ``Instrumentation`` on), and the outcomes are
compared test by test.

For each library the script

* downloads its source distribution from PyPI once (``pip download
  --no-binary :all: --no-deps``, pinned in :data:`LIBRARIES`) into
  ``.library-suites/`` (gitignored), and unpacks a fresh copy of it into a
  temporary directory for every invocation (stops if it has no ``tests/``);
* creates a virtualenv for it there, once, with the library from that sdist
  (without its declared dependencies: arq asks for ``redis<6``), the
  dependencies and test requirements listed in :data:`LIBRARIES`, and the
  redis-py and wrapt versions of the interpreter running this script (run
  with the Python of an environment that has redis-py 5.0, it tests 5.0);
  redis_lifecycle is not installed there but put on ``PYTHONPATH`` from this
  checkout, so the run tests the working tree;
* starts a ``redis-server`` on a free port (``redis_lifecycle.server``;
  never 6379) and points the suite at it: django-redis's test settings name
  ``127.0.0.1:6379``, a sentinel on 26379 (service names ``127.0.0.1`` and
  ``default_service``) and ``/tmp/redis.sock``; the copy's settings are
  rewritten to this server's port and unix socket and to a sentinel started
  here that monitors it under both names. arq's conftest starts Redis in a
  Docker container with ``testcontainers``; a stand-in ``testcontainers``
  module on ``PYTHONPATH`` hands it this server's host and port instead.

The libraries' own pytest options (coverage, doctests, django-redis's
``--numprocesses``) are dropped (``-o addopts=``) for the ones in
:data:`LIBRARIES`: django-redis runs on four pytest-xdist workers, as its own
configuration allows. Warnings are ignored (``-W ignore``), as in
``redis_py_suite.py``, so a deprecation warning of a newer redis-py does not
turn a test into an error in both runs. The plugin writes one report per
process (pytest-xdist workers included); the script adds them up.

Exit status 1 if a test that passed bare did not pass instrumented (after two
more tries alone, for timing-sensitive tests), if redis_lifecycle logged an
error about itself, if no event was delivered or if no test passed bare; 0
otherwise. Tests that fail or are skipped bare are only counted.

    python scripts/library_suites.py                 # both libraries, ~3 min once set up
    python scripts/library_suites.py arq             # one of them
    python scripts/library_suites.py django-redis -- -k test_backend   # pytest arguments after --

The first run also builds the virtualenvs (about a minute more, with network).
CI runs it on the newest redis-py, after redis-py's own suites.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".library-suites"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_py_suite import is_foreign_wrapper, parse_junit  # noqa: E402


@dataclass(frozen=True)
class Library:
    """A library whose test suite is run: its PyPI name and pinned version,
    what its tests need installed, and the pytest arguments to run them."""

    name: str
    version: str
    #: its runtime dependencies (the library itself is installed without
    #: them, so that it cannot replace the redis-py under test)
    requires: tuple[str, ...]
    #: what its tests need (from its own test dependency group)
    test_requires: tuple[str, ...]
    #: pytest options for every run of its tests
    options: tuple[str, ...] = ()
    #: what to run (arguments after ``--`` replace these)
    tests: tuple[str, ...] = ("tests",)
    sentinel_services: tuple[str, ...] = field(default=())


LIBRARIES = {
    "django-redis": Library(
        name="django-redis",
        version="7.0.0",
        requires=("Django>=5.2,<7.0",),
        # its [dependency-groups] test, without coverage, and the optional
        # serializers and compressors its settings use
        test_requires=("pytest>=9.0", "pytest-mock", "pytest-xdist", "lz4", "msgpack", "pyzstd"),
        sentinel_services=("127.0.0.1", "default_service"),
        # its own configuration runs it on up to four pytest-xdist workers,
        # one settings module each at a time: most of its time is spent in
        # tests that sleep while keys expire, so four workers are not too
        # many for two cores
        options=("--numprocesses=4",),
    ),
    "arq": Library(
        name="arq",
        version="0.28.0",
        requires=("click>=8.0",),
        # its [dependency-groups] testing, at the pytest and pytest-asyncio of
        # its uv.lock (its tests use pytest-asyncio's ``event_loop`` fixture,
        # gone in 1.0), without coverage, pytest-pretty and testcontainers
        test_requires=(
            "pytest==8.4.2",
            "pytest-asyncio==0.23.6",
            "pytest-mock",
            "pytest-timeout",
            "dirty-equals",
            "msgpack",
            "pydantic",
            "pytz",
            "tzdata",
        ),
    ),
}

#: arq's conftest starts Redis with ``testcontainers`` (Docker); this stands
#: in for it, handing out the server this script started.
TESTCONTAINERS_STANDIN = '''\
"""Stand-in for testcontainers.redis, written by scripts/library_suites.py."""
import os


class RedisContainer:
    port = 6379

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def get_container_host_ip(self):
        return os.environ["LIBRARY_SUITE_REDIS_HOST"]

    def get_exposed_port(self, port):
        return int(os.environ["LIBRARY_SUITE_REDIS_PORT"])
'''


def progress(message: str) -> None:
    print(f"[library suites] {message}", file=sys.stderr, flush=True)


def pip(python: Path | str, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", *args], check=True
    )


def sdist(library: Library) -> Path:
    """The library's source distribution, downloaded once from PyPI."""
    folder = CACHE / "sdists"
    pattern = f"{library.name.replace('-', '_')}-{library.version}.tar.gz"
    found = [*folder.glob(pattern), *folder.glob(f"{library.name}-{library.version}.tar.gz")]
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    progress(f"{library.name}: downloading the {library.version} source distribution")
    pip(
        sys.executable,
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{library.name}=={library.version}",
        "--dest",
        str(folder),
    )
    found = [*folder.glob(pattern), *folder.glob(f"{library.name}-{library.version}.tar.gz")]
    if not found:
        raise SystemExit(f"pip downloaded no source distribution of {library.name}")
    return found[0]


def unpack(archive: Path, into: Path) -> Path:
    """The source tree in ``archive``, unpacked under ``into``."""
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        if hasattr(tarfile, "data_filter"):  # 3.12, and 3.10.12/3.11.4 on
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)
    tree = into / top
    if not (tree / "tests").is_dir():
        raise SystemExit(f"the source distribution {archive.name} has no tests/")
    return tree


def environment(library: Library, archive: Path) -> Path:
    """The virtualenv for the library's tests (created once): its Python."""
    redis_version = importlib.metadata.version("redis")
    wrapt_version = importlib.metadata.version("wrapt")
    wanted = [
        f"redis=={redis_version}",
        f"wrapt=={wrapt_version}",
        *library.requires,
        *library.test_requires,
    ]
    key = hashlib.sha256(json.dumps([sys.version, library.version, wanted]).encode()).hexdigest()[
        :10
    ]
    venv = CACHE / f"{library.name}-{library.version}-redis{redis_version}-{key}"
    python = venv / "bin" / "python"
    ready = venv / "ready"
    if ready.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    progress(f"{library.name}: creating {venv.relative_to(ROOT)} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(f"redis=={redis_version}\nwrapt=={wrapt_version}\n")
    pip(python, "install", "-c", str(constraints), *wanted)
    pip(python, "install", "--no-deps", str(archive))
    ready.write_text("\n".join(wanted) + "\n")
    return python


class Sentinel:
    """One ``redis-server --sentinel`` on a free port monitoring ``primary``
    under each of ``services`` (quorum 1)."""

    def __init__(self, binary: str, primary: Any, services: tuple[str, ...]) -> None:
        from redis_lifecycle.server import free_port

        self.host = "127.0.0.1"
        self.port = free_port()
        self.services = services
        self.dir = tempfile.mkdtemp(prefix="redis-lifecycle-sentinel-")
        config = Path(self.dir) / "sentinel.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}"]
        lines.append(f"logfile {self.dir}/sentinel.log")
        for service in services:
            lines.append(f"sentinel monitor {service} {primary.host} {primary.port} 1")
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        import redis

        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    addresses = [client.sentinel_get_master_addr_by_name(s) for s in self.services]
                except redis.exceptions.ConnectionError:
                    addresses = [None]
                if all(addresses):
                    return
                if time.monotonic() > deadline:
                    raise SystemExit(f"the sentinel on {self.port} did not answer within 30 s")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def point_django_redis(tree: Path, server: Any, sentinel: Sentinel | None) -> None:
    """Rewrite django-redis's test settings to this server, its unix socket
    and the sentinel."""
    for settings in (tree / "tests" / "settings").glob("*.py"):
        text = settings.read_text(encoding="utf-8")
        text = text.replace("127.0.0.1:6379", f"{server.host}:{server.port}")
        text = text.replace("unix:///tmp/redis.sock", f"unix://{server.unix_path}")
        if sentinel is not None:
            text = text.replace('("127.0.0.1", 26379)', f'("{sentinel.host}", {sentinel.port})')
        settings.write_text(text, encoding="utf-8")
    left = [
        p.name
        for p in (tree / "tests" / "settings").glob("*.py")
        if re.search(r"\b(6379|26379)\b|/tmp/redis\.sock", p.read_text(encoding="utf-8"))
    ]
    if left:
        raise SystemExit(f"django-redis's settings still name the default Redis: {left}")


def run(
    library: Library,
    python: Path,
    tree: Path,
    env: dict[str, str],
    instrumented: bool,
    tests: list[str],
) -> tuple[dict[str, str], dict[str, Any]]:
    """One pytest run: each test's outcome by id, and the plugin's report."""
    label = "instrumented" if instrumented else "bare"
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        report = Path(tmp) / "report.json"
        command = [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(["-p", "redis_py_suite_plugin"] if instrumented else []),
            "-o",
            "addopts=",
            "-W",
            "ignore",
            f"--rootdir={tree}",
            f"--junit-xml={junit}",
            *library.options,
            *tests,
        ]
        progress(f"{library.name}: {label} run")
        started = time.monotonic()
        subprocess.run(
            command,
            cwd=tree,
            env={**env, "REDIS_LIFECYCLE_SUITE_REPORT": str(report)},
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if not junit.exists():
            raise SystemExit(f"{library.name}: the {label} run reported no results")
        outcomes = parse_junit(junit)
        progress(
            f"{library.name}: {label} run: {len(outcomes)} tests"
            f" in {time.monotonic() - started:.0f} s"
        )
        events: Counter[str] = Counter()
        logged: list[str] = []
        # one report per process: pytest's, and each pytest-xdist worker's
        for path in sorted(Path(tmp).glob("report.json*")):
            reported = json.loads(path.read_text())
            events.update(reported["events"])
            logged += reported["logged"]
    return outcomes, {"events": dict(events), "logged": logged}


def suite(library: Library, binary: str, extra: list[str]) -> bool:
    """Run one library's suite bare and instrumented; print the comparison;
    whether it behaved the same."""
    from redis_lifecycle.server import RedisServer

    started = time.monotonic()
    archive = sdist(library)
    python = environment(library, archive)
    servers: list[Any] = []
    with tempfile.TemporaryDirectory(prefix=f"library-suite-{library.name}-") as tmp:
        tree = unpack(archive, Path(tmp))
        # redis_lifecycle from this checkout and the plugin, without putting
        # the checkout's own ``tests`` package on the path
        path = Path(tmp) / "path"
        path.mkdir()
        (path / "redis_lifecycle").symlink_to(ROOT / "redis_lifecycle")
        shutil.copy(ROOT / "scripts" / "redis_py_suite_plugin.py", path)
        (path / "testcontainers").mkdir()
        (path / "testcontainers" / "__init__.py").write_text("")
        (path / "testcontainers" / "redis.py").write_text(TESTCONTAINERS_STANDIN)
        try:
            server = RedisServer(binary).start()
            servers.append(server)
            progress(f"{library.name}: redis-server on port {server.port}")
            sentinel = None
            if library.sentinel_services:
                sentinel = Sentinel(binary, server, library.sentinel_services)
                servers.append(sentinel)
                sentinel.wait_ready()
                progress(f"{library.name}: sentinel on port {sentinel.port}")
            if library.name == "django-redis":
                point_django_redis(tree, server, sentinel)
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("PYTEST_", "DJANGO_", "VIRTUAL_ENV"))
            }
            env.update(
                PYTHONPATH=str(path),
                LIBRARY_SUITE_REDIS_HOST=server.host,
                LIBRARY_SUITE_REDIS_PORT=str(server.port),
            )
            tests = list(extra or library.tests)
            bare, _ = run(library, python, tree, env, False, tests)
            instrumented, report = run(library, python, tree, env, True, tests)
            broken = sorted(
                t for t, o in bare.items() if o == "passed" and instrumented.get(t) != "passed"
            )
            flaky: list[str] = []
            for _ in range(2):
                if not broken:
                    break
                again, again_report = run(library, python, tree, env, True, broken)
                report["logged"] += again_report["logged"]
                flaky += [t for t in broken if again.get(t) == "passed"]
                broken = [t for t in broken if again.get(t) != "passed"]
        finally:
            for running in reversed(servers):
                running.stop()

    redis_version = importlib.metadata.version("redis")
    passed = sum(1 for o in bare.values() if o == "passed")
    print(f"{library.name} {library.version} on redis-py {redis_version}: {len(bare)} tests")
    print(f"  passed bare: {passed}; of those, not passed instrumented: {len(broken)}")
    print(f"  failed or skipped bare (not compared): {len(bare) - passed}")
    events = report["events"]
    print(f"  events delivered while instrumented: {sum(events.values()):,}")
    for name, count in sorted(events.items()):
        print(f"    {name:32} {count:,}")
    not_compared = sorted((t, o) for t, o in bare.items() if o != "passed")
    for test, outcome in not_compared if len(not_compared) <= 20 else []:
        print(f"    not compared: {test} ({outcome} bare)")
    for test in flaky:
        print(f"  flaky (passed instrumented when run again): {test}")
    for test in broken:
        print(f"  BROKEN: {test} ({instrumented.get(test, 'not run')})")
    logged = [line for line in report["logged"] if not is_foreign_wrapper(line)]
    for line in report["logged"]:
        print(f"  {'LOGGED' if line in logged else 'note (a test patched a class)'}: {line}")
    ok = passed > 0 and not broken and not logged and sum(events.values()) > 0
    print(f"  {'OK' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        epilog="pytest arguments after --, instead of the library's tests",
    )
    parser.add_argument(
        "libraries", nargs="*", help=f"which of {', '.join(LIBRARIES)} (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.libraries if name not in LIBRARIES]
    if unknown:
        parser.error(f"unknown library {', '.join(unknown)}: one of {', '.join(LIBRARIES)}")

    from redis_lifecycle.server import find_server_binary

    binary, reasons = find_server_binary()
    if binary is None:
        raise SystemExit("no Redis server binary: " + "; ".join(reasons))
    started = time.monotonic()
    results = {name: suite(LIBRARIES[name], binary, extra) for name in args.libraries or LIBRARIES}
    failed = [name for name, ok in results.items() if not ok]
    total = time.monotonic() - started
    if failed:
        print(f"FAILED: {', '.join(failed)} ({total:.0f} s)")
        return 1
    print(f"OK: {', '.join(results)} behave the same instrumented ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
