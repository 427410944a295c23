"""The pure parts of scripts/library_suites.py: how it points the libraries'
test suites at the server it starts (the runs themselves are the script's)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "library_suites.py"


@pytest.fixture(scope="module")
def suites() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("library_suites", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["library_suites"] = module
    spec.loader.exec_module(module)
    return module


class _Address:
    """What the script reads of a RedisServer or its Sentinel."""

    def __init__(self, port: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.unix_path = "/tmp/x/redis.sock"


def _settings(tree: Path, name: str, text: str) -> Path:
    folder = tree / "tests" / "settings"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_django_redis_settings_point_at_the_server_socket_and_sentinel(
    suites: types.ModuleType, tmp_path: Path
) -> None:
    plain = _settings(
        tmp_path,
        "sqlite.py",
        'LOCATION = ["redis://127.0.0.1:6379?db=1", "127.0.0.1:6379:1"]\n'
        'MISSING = "redis://127.0.0.1:56379?db=1"\n',
    )
    usock = _settings(tmp_path, "sqlite_usock.py", 'LOCATION = "unix:///tmp/redis.sock?db=11"\n')
    sentinel = _settings(tmp_path, "sqlite_sentinel.py", 'SENTINELS = [("127.0.0.1", 26379)]\n')
    suites.point_django_redis(tmp_path, _Address(41234), _Address(45678))

    assert plain.read_text() == (
        'LOCATION = ["redis://127.0.0.1:41234?db=1", "127.0.0.1:41234:1"]\n'
        # the address the tests expect to find nothing at is left alone
        'MISSING = "redis://127.0.0.1:56379?db=1"\n'
    )
    assert usock.read_text() == 'LOCATION = "unix:///tmp/x/redis.sock?db=11"\n'
    assert sentinel.read_text() == 'SENTINELS = [("127.0.0.1", 45678)]\n'


def test_django_redis_settings_naming_the_default_redis_another_way_stop_the_run(
    suites: types.ModuleType, tmp_path: Path
) -> None:
    # a new release writing the address differently must not reach 6379
    _settings(tmp_path, "sqlite.py", 'LOCATION = "redis://localhost:6379?db=1"\n')
    with pytest.raises(SystemExit, match=r"sqlite\.py"):
        suites.point_django_redis(tmp_path, _Address(41234), None)


def test_testcontainers_stand_in_hands_out_the_server(
    suites: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, object] = {}
    exec(compile(suites.TESTCONTAINERS_STANDIN, "testcontainers/redis.py", "exec"), namespace)
    monkeypatch.setenv("LIBRARY_SUITE_REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("LIBRARY_SUITE_REDIS_PORT", "41234")
    container_class = namespace["RedisContainer"]
    assert isinstance(container_class, type)
    with container_class("redis:latest") as container:
        assert container.get_container_host_ip() == "127.0.0.1"
        assert container.get_exposed_port(container.port) == 41234
