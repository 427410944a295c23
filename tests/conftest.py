"""Real servers for the test suite.

``redis_url`` is a session-wide server found by ``discover_server``
(``REDIS_URL``, else a ``redis-server`` on ``PATH`` started on a free port).
``server`` is a fresh server owned by one test, for tests that kill, restart
or reconfigure it; ``unix_server`` the same, reached over its unix socket.
Every test ends with nothing instrumented (checked by ``_no_leftovers``).
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import redis_lifecycle as rl
from redis_lifecycle.server import (
    RedisServer,
    ServerInfo,
    discover_server,
    find_server_binary,
    free_port,
)

from .helpers import Recorder, leaked_patches_and_state, wait_for_threads_to_end

pytest_plugins = ["pytester"]  # tests/plugin/ runs pytest inside pytest


def _retry_settrace_while_another_thread_installs() -> None:
    """Under a tracer that follows new threads (coverage, through
    ``threading.settrace``), each thread starts with ``sys.settrace``. Before
    Python 3.12, that call fails with ``RuntimeError("Cannot install a trace
    function while another trace function is being installed")`` when
    another thread is inside it at the same moment (python/cpython#98257):
    the new thread dies before its target runs, and a test waiting for it
    hangs or miscounts. For this test session only, the call is retried
    until the other thread is done; without a tracer nothing changes."""
    if sys.version_info >= (3, 12):
        return
    settrace = sys.settrace

    def retrying_settrace(function: Callable[..., Any] | None) -> None:
        for _ in range(10_000):
            try:
                settrace(function)
                return
            except RuntimeError as error:
                if "another trace function" not in str(error):
                    raise
                time.sleep(0.0001)
        settrace(function)

    sys.settrace = retrying_settrace


_retry_settrace_while_another_thread_installs()


@pytest.fixture(scope="session")
def redis_info() -> Iterator[ServerInfo]:
    info, reasons = discover_server()
    if info is None:
        pytest.skip("no Redis server for integration tests: " + "; ".join(reasons))
    yield info
    info.stop()  # an owned process or container; a REDIS_URL server is left alone


@pytest.fixture
def redis_url(redis_info: ServerInfo) -> str:
    return redis_info.url


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server this test owns: it may kill, restart or pause it."""
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("this test must own its server: " + "; ".join(reasons))
    with RedisServer(binary) as owned:
        yield owned


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("this test must own its server: " + "; ".join(reasons))
    with RedisServer(binary, password="s3cr3t-Pa55word") as owned:
        yield owned


@pytest.fixture
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, int, str]]:
    """A server with a TLS port (self-signed CA made by ``openssl``): yields
    ``(server, tls_port, ca_file)``."""
    binary, reasons = find_server_binary()
    if binary is None:
        pytest.skip("this test must own its server: " + "; ".join(reasons))
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH: cannot make a test certificate")
    certs = tmp_path_factory.mktemp("tls")
    ca_key, ca_crt = certs / "ca.key", certs / "ca.crt"
    key, csr, crt = certs / "server.key", certs / "server.csr", certs / "server.crt"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=redis-lifecycle-test-ca",
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs keyUsage.
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
        ]
    )
    run(
        [
            openssl,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            key,
            "-out",
            csr,
        ]
    )
    ext = certs / "ext.cnf"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            crt,
        ]
    )
    tls_port = free_port()
    args = (
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(crt),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(ca_crt),
        "--tls-auth-clients",
        "no",
    )
    with RedisServer(binary, extra_args=args) as owned:
        yield owned, tls_port, str(ca_crt)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    """Threads hand the GIL over every microsecond (instead of every 5 ms),
    so that races between them happen within a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """An uninstrumented client of ``server``, for CLIENT KILL and the like."""
    client = redis.Redis(**server.connection_kwargs())
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Each test leaves no instrumented pool, no class-level wrapper and no
    callback thread behind.

    What the test left instrumented is uninstrumented here (tests may rely on
    that); then the test fails if anything survived it: a patch of redis-py
    still installed, a pool or connection still registered, an executor
    thread still running. A leak in ``uninstrument()`` shows up here.
    """
    threads_before = set(threading.enumerate())
    yield
    from redis_lifecycle._hooks.attach import detach_all
    from redis_lifecycle.instrument import _handles

    rl.uninstrument_all()
    for key, handle in list(_handles.items()):
        target = handle.target
        if target is not None:
            rl.uninstrument(target)
        else:  # the client is gone but its pool may live on in a reference cycle
            handle._detach()
            _handles.pop(key, None)
    # Pools that outlived their client (kept by a traceback, say) are still attached.
    detach_all()
    gc.collect()  # pools in reference cycles drop their state (and our patches) now
    leftovers = leaked_patches_and_state()
    leftovers += [
        f"thread {thread.name!r} still running"
        for thread in wait_for_threads_to_end(threads_before)
    ]
    assert leftovers == [], "the test left behind: " + "; ".join(leftovers)


def pytest_report_header() -> str:
    return f"redis-py {redis.__version__}; REDIS_URL={os.environ.get('REDIS_URL', '(unset)')}"
