"""The README's pytest example runs as written (so the README cannot drift)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from redis_lifecycle.server import find_server_binary

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_test_function() -> str:
    """The `def test_...` function of the README's 'in tests' example."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^(def test_\w+\(lifecycle_events.*?)(?=^```)", text, re.S | re.M)
    assert match, "README.md has no pytest example"
    return textwrap.dedent(match.group(1))


@pytest.mark.skipif(find_server_binary()[0] is None, reason="needs a redis-server binary")
def test_readme_pytest_example_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example passes under the plugin against a server it starts."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("import redis\nimport redis_lifecycle as rl\n\n\n" + readme_test_function())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
