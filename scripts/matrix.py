"""Run the redis-py x Python compatibility matrix through tox and print a table.

    python scripts/matrix.py ci            # what CI runs (see below): about 3 minutes
    python scripts/matrix.py full          # 24 cells: redis-py 5.0 ... 8.2 x Python 3.10 ... 3.13
    python scripts/matrix.py full --python 311 --redis 50,82   # a slice
    python scripts/matrix.py full -- -k reconnect             # extra pytest arguments

``ci`` runs the whole suite on the newest redis-py, and the integration tests
(every ``tests/`` folder except ``unit``, ``plugin`` and ``docs``) on the
oldest (5.0.x) and a middle one (7.4.x), all on the Python running this script;
``ci --no-newest`` leaves out the first when the caller already ran the suite
on the newest redis-py.
Each cell writes a JUnit report; the table counts passed, failed (failures and
errors) and skipped tests from it. Exit status is non-zero if any cell failed.

tox finds ``pythonX.Y`` on ``PATH``. pyenv's shims only expose the selected
versions, so the interpreters under ``$(pyenv root)/versions`` are put on
``PATH`` first when pyenv is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("310", "311", "312", "313")
REDIS = ("50", "52", "64", "74", "81", "82")
REDIS_LABEL = {
    "50": "5.0.x",
    "52": "5.2.x",
    "64": "6.4.x",
    "74": "7.4.x",
    "81": "8.1.x",
    "82": "8.2.x",
}
NOT_INTEGRATION = {"unit", "plugin", "docs", "__pycache__"}


@dataclass
class Cell:
    env: str
    paths: list[str]
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    status: str = "not run"  # "ok", "failed", "missing python", "not run"
    version: str = ""


def pyenv_path() -> str:
    """``PATH`` with pyenv's installed interpreters in front (when pyenv exists)."""
    path = os.environ.get("PATH", "")
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return path
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
    versions = Path(root.stdout.strip() or "~/.pyenv").expanduser() / "versions"
    bins = sorted(str(p / "bin") for p in versions.glob("3.*") if (p / "bin").is_dir())
    return os.pathsep.join([*bins, path])


def integration_paths() -> list[str]:
    """Every test folder except the pure-logic, plugin and docs ones."""
    tests = ROOT / "tests"
    return sorted(
        f"tests/{p.name}"
        for p in tests.iterdir()
        if p.is_dir() and p.name not in NOT_INTEGRATION and any(p.glob("test_*.py"))
    )


def run_cell(cell: Cell, extra: list[str], env: dict[str, str], reports: Path) -> None:
    report = reports / f"{cell.env}.xml"
    report.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "tox",
        "run",
        "-q",
        "-e",
        cell.env,
        "--",
        *cell.paths,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        *extra,
    ]
    print(f"--- {cell.env}: {' '.join(cell.paths)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    cell.seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    for line in output.splitlines():
        if line.startswith("redis-py "):
            cell.version = line.split()[1]
    if "could not find python" in output.lower() or "skipped because could not find" in output:
        cell.status = "missing python"
        return
    if report.exists():
        suites = ET.parse(report).getroot()
        suite_list = [suites] if suites.tag == "testsuite" else list(suites)
        for suite in suite_list:
            tests = int(suite.get("tests", 0))
            failures = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            cell.failed += failures
            cell.skipped += skipped
            cell.passed += tests - failures - skipped
    cell.status = "ok" if result.returncode == 0 else "failed"
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        print(tail, flush=True)
    print(
        f"    {cell.status}: {cell.passed} passed, {cell.failed} failed, "
        f"{cell.skipped} skipped in {cell.seconds:.0f}s",
        flush=True,
    )


def table(cells: list[Cell]) -> str:
    by_env = {c.env: c for c in cells}
    pythons = [p for p in PYTHONS if any(c.env.startswith(f"py{p}-") for c in cells)]
    redises = [r for r in REDIS if any(c.env.endswith(f"-redis{r}") for c in cells)]
    header = "| redis-py \\ Python | " + " | ".join(f"{p[0]}.{p[1:]}" for p in pythons) + " |"
    lines = [header, "|" + "---|" * (len(pythons) + 1)]
    for r in redises:
        row = [REDIS_LABEL[r]]
        for p in pythons:
            cell = by_env.get(f"py{p}-redis{r}")
            if cell is None:
                row.append("—")
            elif cell.status == "missing python":
                row.append("no interpreter")
            else:
                mark = "" if cell.status == "ok" else " **FAILED**"
                row.append(f"{cell.passed}/{cell.failed}/{cell.skipped}{mark}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("cells: passed/failed/skipped tests; versions actually installed:")
    for cell in cells:
        lines.append(f"- {cell.env}: redis-py {cell.version or '?'} ({cell.seconds:.0f}s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("ci", "full"))
    parser.add_argument("--python", default=",".join(PYTHONS), help="e.g. 310,313")
    parser.add_argument("--redis", default=",".join(REDIS), help="e.g. 50,74,82")
    parser.add_argument("--reports", default=str(ROOT / ".tox" / "matrix-reports"))
    parser.add_argument(
        "--no-newest",
        action="store_true",
        help="ci: leave out the newest redis-py (when the caller already ran the suite on it)",
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)

    env = dict(os.environ, PATH=pyenv_path())
    env.pop("VIRTUAL_ENV", None)
    reports = Path(args.reports)
    reports.mkdir(parents=True, exist_ok=True)
    here = f"{sys.version_info.major}{sys.version_info.minor}"
    if args.mode == "ci":
        integration = integration_paths()
        cells = [
            Cell(f"py{here}-redis50", integration),
            Cell(f"py{here}-redis74", integration),
        ]
        if not args.no_newest:
            cells.insert(0, Cell(f"py{here}-redis82", ["tests"]))
    else:
        pythons = [p.strip() for p in args.python.split(",") if p.strip()]
        redises = [r.strip() for r in args.redis.split(",") if r.strip()]
        bad = [p for p in pythons if p not in PYTHONS] + [r for r in redises if r not in REDIS]
        if bad:
            parser.error(
                f"unknown matrix value(s) {bad}; Python is one of {PYTHONS}, redis one of {REDIS}"
            )
        cells = [Cell(f"py{p}-redis{r}", ["tests"]) for r in redises for p in pythons]

    started = time.monotonic()
    for cell in cells:
        run_cell(cell, args.pytest_args, env, reports)
    print()
    print(table(cells))
    print(f"\ntotal {time.monotonic() - started:.0f}s")
    failed = [c for c in cells if c.status in ("failed", "missing python")]
    passed = sum(c.passed for c in cells)
    failures = sum(c.failed for c in cells)
    skipped = sum(c.skipped for c in cells)
    print(f"{passed} passed, {failures} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
