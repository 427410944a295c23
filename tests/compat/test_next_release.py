"""The next redis-py, played: private names renamed in a copy of redis-py.

``scripts/next_release.py`` renames each name (CI runs every one); here three
of them: the health-check ping, the socket attempt and a pool's list.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_renamed_names_keep_commands_working_and_are_reported() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "next_release.py"),
            "--names",
            "_send_ping,_connect,_available_connections",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {
        line.split(":")[0].split("] ")[-1]: line
        for line in done.stdout.splitlines()
        if "] " in line
    }
    assert "pass: switched off: health_check" in lines["_send_ping"]
    assert "pass: switched off: connection_created" in lines["_connect"]
    assert ": pass:" in lines["_available_connections"]
