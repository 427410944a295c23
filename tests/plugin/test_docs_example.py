"""docs/testing.md's worked example runs, exactly as printed, and passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from redis_lifecycle.server import find_server_binary

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
# A fenced python block announced by ``<!-- file: NAME -->`` on the line before.
BLOCK = re.compile(r"<!-- file: (?P<name>[\w.]+) -->\n```python\n(?P<code>.*?)\n```", re.S)


def example_files() -> dict[str, str]:
    return {m["name"]: m["code"] + "\n" for m in BLOCK.finditer(DOC.read_text())}


def test_the_page_announces_the_example_files() -> None:
    """The page carries the service module and its test as extractable blocks."""
    assert sorted(example_files()) == ["inventory.py", "test_inventory.py"]


@pytest.mark.skipif(find_server_binary()[0] is None, reason="the example kills its server")
def test_worked_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tests of the worked example pass against a server they kill and restart."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # owned=True must ignore it
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for name, code in example_files().items():
        pytester.makepyfile(**{name.removesuffix(".py"): code})
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2)
