"""The ``>>>`` examples in ``redis_lifecycle``'s docstrings run (doctest).

Each module runs in its own interpreter with connections to port 6379
refused, so an example can never reach a Redis that happens to run on this
machine; examples that need a server say so with ``# doctest: +SKIP`` or use
``redis_url`` (the test's own server). Modules whose optional dependency is not
installed are skipped.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import redis_lifecycle
from redis_lifecycle.server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(redis_lifecycle.__file__).parent
SKIP_EXIT = 3

RUN = r"""
import doctest, importlib, sys
sys.path.insert(0, {tests!r})
from run_examples import guard_default_port
guard_default_port()
try:
    module = importlib.import_module({module!r})
except ImportError as error:
    if (error.name or "").split(".")[0] == "redis_lifecycle":
        raise
    print(f"optional dependency missing: {{error.name}}")
    sys.exit({skip})
flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
result = doctest.testmod(module, extraglobs={{"redis_url": {url!r}}}, optionflags=flags)
print(f"{{result.attempted}} examples, {{result.failed}} failed")
sys.exit(1 if result.failed else 0)
"""


def modules_with_examples() -> list[str]:
    names = ["redis_lifecycle"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="redis_lifecycle."):
        names.append(info.name)
    found = []
    for name in names:
        relative = name.split(".")[1:]
        path = PACKAGE.joinpath(*relative)
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if source.exists() and ">>>" in source.read_text(encoding="utf-8"):
            found.append(name)
    return sorted(found)


@pytest.mark.parametrize("module", modules_with_examples())
def test_module_docstring_examples_run(module: str, server: RedisServer) -> None:
    """Every ``>>>`` example of the module passes doctest (or is marked to skip)."""
    code = RUN.format(
        tests=str(Path(__file__).parent), module=module, url=server.url, skip=SKIP_EXIT
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    if result.returncode == SKIP_EXIT:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, f"doctest of {module}:\n{result.stdout}\n{result.stderr}"
