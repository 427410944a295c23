"""Play the next redis-py release: rename each private name the library hooks.

    python scripts/next_release.py                  # every private name in the table
    python scripts/next_release.py --names _send_ping,_connect

For each private name in ``redis_lifecycle/_hooks/redis_names.py`` (one at a
time), copies the installed ``redis`` package into a temporary directory,
renames the name throughout its source (``_send_ping`` becomes
``_send_ping_next``), and runs ``next_release_workload.py`` on that copy:

1. bare: if bare redis-py no longer works with the rename, the name is
   reported as skipped (the rename itself broke redis-py);
2. instrumented, every event subscribed: every command must succeed,
   ``instrument()`` must not raise, and each event the workload delivered
   with the real redis-py but no longer delivers must be named in the one
   warning redis_lifecycle issues.

Prints a line per name as it goes, then exits non-zero if any name failed.
Starts its own redis-server on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from redis_lifecycle._hooks.redis_names import REDIS_NAMES
from redis_lifecycle.server import RedisServer

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "next_release_workload.py"


def _run(url: str, mode: str, redis_copy: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if redis_copy is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(redis_copy), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(WORKLOAD), url, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"ok": False, "error": done.stderr[-2000:], "events": [], "warnings": []}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _renamed_copy(name: str, into: Path) -> Path:
    source = Path(redis.__file__).resolve().parent
    target = into / "redis"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        new = pattern.sub(f"{name}_next", text)
        if new != text:
            path.write_text(new, encoding="utf-8")
    return into


def check_name(url: str, name: str, baseline: set[str]) -> tuple[str, str]:
    """``(verdict, detail)`` for one renamed name: pass, fail or skipped."""
    with tempfile.TemporaryDirectory(prefix="rl-next-") as tmp:
        copy = _renamed_copy(name, Path(tmp))
        bare = _run(url, "bare", copy)
        if not bare["ok"]:
            return "skipped", "bare redis-py breaks with this rename"
        inst = _run(url, "instrumented", copy)
    if not inst["ok"]:
        return "fail", "a command failed instrumented:\n" + inst["error"]
    lost = sorted(baseline - set(inst["events"]))
    warning = " ".join(inst["warnings"])
    unnamed = [event for event in lost if event not in warning]
    if unnamed:
        return "fail", f"events lost without a word: {', '.join(unnamed)}"
    if lost and not warning:
        return "fail", "no warning"
    return "pass", f"switched off: {', '.join(lost) or 'nothing the workload sees'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", help="comma-separated private names (default: every one)")
    args = parser.parse_args(argv)
    names = sorted({row.name for row in REDIS_NAMES if row.private for row in [row]})
    names = sorted({part for name in names for part in name.split("|")})
    if args.names:
        names = [name.strip() for name in args.names.split(",") if name.strip()]
    print(f"redis-py {redis.__version__}: {len(names)} private names", flush=True)
    server = RedisServer().start()
    failed = 0
    try:
        base = _run(server.url, "instrumented", None)
        if not base["ok"] or base["warnings"]:
            print("the workload fails on the real redis-py:\n" + base["error"] + str(base))
            return 1
        baseline = set(base["events"])
        print(f"baseline: {len(baseline)} event kinds delivered", flush=True)
        for index, name in enumerate(names, 1):
            verdict, detail = check_name(server.url, name, baseline)
            failed += verdict == "fail"
            print(f"[{index}/{len(names)}] {name}: {verdict}: {detail}", flush=True)
    finally:
        server.stop()
    print("next release: " + ("FAILED" if failed else "every rename is reported or harmless"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
