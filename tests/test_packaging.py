"""Packaging: one version source, and artifacts that install and import cleanly.

The full check (``scripts/check_packaging.py``, also ``tox -e packaging``)
builds the sdist and wheel, installs each into a fresh virtualenv from the
package index and imports it there.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import redis_lifecycle

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


class TestVersion:
    def test_version_comes_from_version_py_only(self) -> None:
        """pyproject declares the version dynamic, read by hatch from _version.py."""
        project = PYPROJECT["project"]
        assert "version" not in project
        assert "version" in project["dynamic"]
        assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "redis_lifecycle/_version.py"

    def test_package_version_matches_version_py_and_changelog(self) -> None:
        """``__version__`` is the one in _version.py, and CHANGELOG.md has a section for it."""
        text = (ROOT / "redis_lifecycle" / "_version.py").read_text(encoding="utf-8")
        match = re.search(r'__version__ = "([^"]+)"', text)
        assert match is not None
        assert redis_lifecycle.__version__ == match.group(1)
        changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
        assert f"## [{redis_lifecycle.__version__}]" in changelog
        assert "## [Unreleased]" in changelog


class TestMetadata:
    def test_core_depends_on_redis_and_wrapt_only(self) -> None:
        """The unconditional dependencies are redis (5.0 to 8.x) and wrapt, nothing else."""
        dependencies = PYPROJECT["project"]["dependencies"]
        names = sorted(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in dependencies)
        assert names == ["redis", "wrapt"]
        redis_spec = next(d for d in dependencies if d.startswith("redis"))
        assert ">=5.0" in redis_spec
        assert "<9" in redis_spec

    def test_supported_pythons_are_declared(self) -> None:
        """requires-python and the classifiers state Python 3.10 to 3.13."""
        project = PYPROJECT["project"]
        assert project["requires-python"] == ">=3.10"
        for minor in (10, 11, 12, 13):
            assert f"Programming Language :: Python :: 3.{minor}" in project["classifiers"]


@pytest.mark.skipif(
    importlib.util.find_spec("build") is None,
    reason="needs the 'build' package (pip install build); tox -e packaging runs this check",
)
def test_sdist_and_wheel_install_into_a_fresh_venv(tmp_path: Path) -> None:
    """Both artifacts install into a fresh venv pulling in only redis and wrapt, and import
    with the right version, py.typed and entry points."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_packaging.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "packaging: " in result.stdout
    assert ", 0 failed" in result.stdout
