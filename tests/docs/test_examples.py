"""Every Python example in ``docs/`` runs, against a real server this test owns.

Each page runs in its own interpreter (``tests/docs/run_examples.py``), its
blocks in order in one namespace, with ``redis_url`` pointing at a fresh
``redis-server``. An example proves its point with ``assert`` statements, so a
page whose behaviour drifted from the code fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from redis_lifecycle.server import RedisServer

from .run_examples import SKIP_MARK, blocks

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNNER = Path(__file__).with_name("run_examples.py")


def run(page: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("REDIS_URL", None)  # the examples get the test's own server as redis_url
    return subprocess.run(
        [sys.executable, str(RUNNER), str(page), redis_url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )


def pages_with_examples() -> list[Path]:
    return sorted(
        page
        for page in DOCS.rglob("*.md")
        if any(not b.skipped for b in blocks(page.read_text(encoding="utf-8")))
    )


class TestHarness:
    def test_finds_python_blocks_including_indented_ones_and_honours_skip(self) -> None:
        """Python and indented blocks are found with their line; other languages are not;
        the skip mark skips only the next block."""
        page = "\n".join(
            [
                "# Page",
                "```python",
                "a = 1",
                "```",
                "```bash",
                "echo no",
                "```",
                "- item",
                "",
                "    ```py",
                "    b = a + 1",
                "    ```",
                SKIP_MARK,
                "```python",
                "fragment(",
                "```",
                "<!-- file: shop.py -->",
                "```python",
                "PRICE = 3",
                "```",
            ]
        )
        found = blocks(page)
        assert [(b.line, b.code, b.skipped, b.file) for b in found] == [
            (2, "a = 1\n", False, None),
            (10, "b = a + 1\n", False, None),
            (14, "fragment(\n", True, None),
            (18, "PRICE = 3\n", False, "shop.py"),
        ]

    def test_a_failing_example_fails_with_its_page_line(self, tmp_path: Path) -> None:
        """A raising block makes the runner exit 1 and name the page and line."""
        page = tmp_path / "bad.md"
        page.write_text("text\n\n```python\nassert redis_url == 'x', 'nope'\n```\n")
        result = run(page, "redis://127.0.0.1:1/0")
        assert result.returncode == 1
        assert f"{page}:3: example failed" in result.stderr
        assert "AssertionError: nope" in result.stderr

    def test_example_files_are_importable_and_their_tests_run(self, tmp_path: Path) -> None:
        """``file:`` blocks become importable modules, and a failing ``test_`` file fails
        the page."""
        page = tmp_path / "worked.md"
        page.write_text(
            "<!-- file: shop.py -->\n```python\nPRICE = 3\n```\n"
            "```python\nimport shop\nassert shop.PRICE == 3\n```\n"
            "<!-- file: test_shop.py -->\n```python\nimport shop\n\n"
            "def test_price():\n    assert shop.PRICE == 4\n```\n"
        )
        result = run(page, "redis://127.0.0.1:1/0")
        assert f"{page}:5: ok" in result.stdout
        assert result.returncode == 1
        assert "the example's tests failed" in result.stderr
        assert "1 failed" in result.stdout


def missing_modules(page: Path) -> list[str]:
    """Top-level modules the page's examples import that are not installed
    (an optional extra such as ``otel`` or ``prometheus``)."""
    names: set[str] = set()
    for block in blocks(page.read_text(encoding="utf-8")):
        if block.skipped:
            continue
        for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", block.code, re.M):
            names.add(match.group(1))
    local = {b.file.removesuffix(".py") for b in blocks(page.read_text()) if b.file}
    return sorted(n for n in names - local if importlib.util.find_spec(n) is None)


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page: Path, server: RedisServer) -> None:
    """The page's Python blocks run in order without error against a real server."""
    missing = missing_modules(page)
    if missing:
        pytest.skip(
            f"{page.relative_to(ROOT)} needs {', '.join(missing)}: "
            "pip install -e '.[dev]' runs every page"
        )
    result = run(page, server.url)
    assert result.returncode == 0, (
        f"examples in {page.relative_to(ROOT)} failed:\n{result.stdout}\n{result.stderr}"
    )
    assert ": ok" in result.stdout or "the example's tests passed" in result.stdout
