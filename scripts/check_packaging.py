"""Build the sdist and wheel, install each into a fresh virtualenv, and import it.

    python scripts/check_packaging.py [--out DIR] [--keep]

For each artifact: a new venv, ``pip install <artifact>`` (dependencies from
the package index), then inside that venv:

* the distributions installed are only ``redis-lifecycle``, ``redis``,
  ``wrapt`` and what those two require themselves (no extra pulled in);
* ``redis-lifecycle``'s unconditional requirements are exactly redis and wrapt;
* ``import redis_lifecycle`` works, its ``__version__`` is the one in
  ``redis_lifecycle/_version.py`` (the single source, also the artifacts'
  version), it imports no optional dependency (OpenTelemetry, Prometheus,
  pytest), and ``py.typed`` is installed;
* the ``redis-lifecycle`` console script and the ``pytest11`` entry point are
  registered.

The sdist must also carry the tests, docs and changelog. Exit status 1 with
what differed; prints ``packaging: N passed, N failed`` last.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = ROOT / "redis_lifecycle" / "_version.py"

INSIDE = r"""
import importlib, importlib.metadata as md, json, pathlib, re, sys

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def requirement_name(requirement):
    return canonical(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])

def unconditional(dist):
    return [r for r in (md.requires(dist) or []) if ";" not in r or "extra ==" not in r]

allowed = {"redis-lifecycle", "redis", "wrapt", "pip", "setuptools", "wheel"}
todo = ["redis", "wrapt"]
while todo:
    name = todo.pop()
    for requirement in unconditional(name):
        marker = requirement.split(";", 1)[1] if ";" in requirement else ""
        dep = requirement_name(requirement)
        if dep in allowed:
            continue
        try:
            md.version(dep)
        except md.PackageNotFoundError:
            continue  # a requirement whose marker does not apply here
        allowed.add(dep)
        todo.append(dep)

installed = sorted({canonical(d.metadata["Name"]) for d in md.distributions()})
before = set(sys.modules)
import redis_lifecycle
import redis_lifecycle.asyncio, redis_lifecycle.testing, redis_lifecycle.events
loaded = sorted(
    m for m in set(sys.modules) - before
    if m.split(".")[0] in ("opentelemetry", "prometheus_client", "pytest", "_pytest")
)
package = pathlib.Path(redis_lifecycle.__file__).parent
scripts = [e.name for e in md.entry_points(group="console_scripts")]
plugins = [e.value for e in md.entry_points(group="pytest11")]
print(json.dumps({
    "installed": installed,
    "allowed": sorted(allowed),
    "requires": sorted(requirement_name(r) for r in unconditional("redis-lifecycle")),
    "version": redis_lifecycle.__version__,
    "dist_version": md.version("redis-lifecycle"),
    "optional_loaded": loaded,
    "py_typed": (package / "py.typed").exists(),
    "console_script": "redis-lifecycle" in scripts,
    "pytest11": "redis_lifecycle.pytest_plugin" in plugins,
}))
"""


def source_version() -> str:
    match = re.search(r'__version__\s*=\s*"([^"]+)"', VERSION_FILE.read_text(encoding="utf-8"))
    if match is None:
        msg = f"no __version__ = '...' in {VERSION_FILE}"
        raise SystemExit(msg)
    return match.group(1)


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
            print(f"ok    {what}")
        else:
            self.failed.append(what)
            print(f"FAIL  {what}")


def build(out: Path) -> tuple[Path, Path]:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def check_artifact(artifact: Path, version: str, checks: Checks, keep: bool) -> None:
    venv = Path(tempfile.mkdtemp(prefix="rl-pkg-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                str(artifact),
            ],
            check=True,
        )
        result = subprocess.run(
            [str(python), "-c", INSIDE], capture_output=True, text=True, cwd=venv, check=False
        )
        if result.returncode != 0:
            checks.check(False, f"{artifact.name}: import in a fresh venv\n{result.stderr}")
            return
        facts = json.loads(result.stdout.strip().splitlines()[-1])
        extra = sorted(set(facts["installed"]) - set(facts["allowed"]))
        name = artifact.name
        checks.check(
            not extra, f"{name}: installs only redis, wrapt and their deps (extra: {extra})"
        )
        checks.check(
            facts["requires"] == ["redis", "wrapt"],
            f"{name}: requires exactly redis and wrapt (got {facts['requires']})",
        )
        checks.check(
            facts["version"] == facts["dist_version"] == version,
            f"{name}: __version__ {facts['version']} = metadata {facts['dist_version']}"
            f" = _version.py {version}",
        )
        checks.check(
            not facts["optional_loaded"],
            f"{name}: import loads no optional dependency (loaded: {facts['optional_loaded']})",
        )
        checks.check(facts["py_typed"], f"{name}: py.typed installed")
        checks.check(facts["console_script"], f"{name}: redis-lifecycle console script")
        checks.check(facts["pytest11"], f"{name}: pytest11 entry point")
        cli = subprocess.run(
            [str(venv / "bin" / "redis-lifecycle"), "--help"], capture_output=True, text=True
        )
        checks.check(
            cli.returncode == 0 and "demo" in cli.stdout, f"{name}: redis-lifecycle --help"
        )
    finally:
        if keep:
            print(f"kept {venv}")
        else:
            shutil.rmtree(venv, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and check the distributions.")
    parser.add_argument("--out", default=str(ROOT / "dist"), help="where to build")
    parser.add_argument("--keep", action="store_true", help="keep the virtualenvs")
    args = parser.parse_args(argv)

    checks = Checks()
    version = source_version()
    sdist, wheel = build(Path(args.out))
    checks.check(f"-{version}" in wheel.name, f"wheel {wheel.name} carries version {version}")
    checks.check(f"-{version}" in sdist.name, f"sdist {sdist.name} carries version {version}")
    with tarfile.open(sdist) as archive:
        names = {"/".join(n.split("/")[1:]) for n in archive.getnames()}
    for needed in (
        "redis_lifecycle/__init__.py",
        "redis_lifecycle/py.typed",
        "CHANGELOG.md",
        "README.md",
        "tox.ini",
        "docs/index.md",
        "tests/conftest.py",
    ):
        checks.check(needed in names, f"sdist contains {needed}")
    for artifact in (wheel, sdist):
        check_artifact(artifact, version, checks, args.keep)
    print(f"packaging: {checks.passed} passed, {len(checks.failed)} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
