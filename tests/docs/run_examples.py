"""Run the Python code blocks of one Markdown page, in order, in one namespace.

    python tests/docs/run_examples.py docs/quickstart.md redis://127.0.0.1:6399/0

Used by ``tests/docs/test_examples.py`` (one subprocess per page, so that
pages cannot leak logging setup, registered collectors or threads into each
other). The blocks see ``redis_url``, the URL of a real server the test owns.

Which blocks run: every fenced block whose info string starts with
``python`` or ``py``, including blocks indented inside lists or
admonitions. A block directly preceded by the line
``<!-- docs-test: skip -->`` is not run (for fragments that cannot run on
their own; say why in the prose). A block preceded by
``<!-- file: NAME.py -->`` is a file of a worked example: it is written to a
temporary directory on ``sys.path`` (so later blocks can import it) and, if
its name starts with ``test_``, run with pytest once all blocks ran. Exit
status 1 and the failing block's page line and traceback if any block raises
or the example's tests fail.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
SKIP_MARK = "<!-- docs-test: skip -->"
FILE_MARK = re.compile(r"^<!-- file: (?P<name>[\w.]+) -->$")
LANGUAGES = ("python", "py")


@dataclass
class Block:
    line: int
    code: str
    skipped: bool
    file: str | None = None


def blocks(text: str) -> list[Block]:
    """The Python blocks of a page, with their 1-based starting line."""
    found = []
    for match in FENCE.finditer(text):
        info = match.group("info").strip().split()
        language = info[0].lower().lstrip(".{") if info else ""
        if language not in LANGUAGES:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip().splitlines()
        marker = before[-1].strip() if before else ""
        skipped = marker == SKIP_MARK
        file_mark = FILE_MARK.match(marker)
        body = textwrap.dedent(match.group("body"))
        found.append(Block(line, body, skipped, file_mark["name"] if file_mark else None))
    return found


def guard_default_port() -> None:
    """Refuse connections to port 6379: examples must use ``redis_url``, never a
    server that happens to run on this machine."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == 6379:
            msg = f"docs examples must use redis_url, not {address[0]}:6379"
            raise ConnectionRefusedError(msg)
        original(self, address)  # type: ignore[arg-type]

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]


def run_page(path: Path, redis_url: str) -> int:
    guard_default_port()
    text = path.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "__docs_example__", "redis_url": redis_url}
    files = Path(tempfile.mkdtemp(prefix="docs-example-"))
    sys.path.insert(0, str(files))
    for block in blocks(text):
        if block.skipped:
            print(f"{path}:{block.line}: skipped", flush=True)
            continue
        if block.file is not None:
            (files / block.file).write_text(block.code, encoding="utf-8")
            print(f"{path}:{block.line}: wrote {block.file}", flush=True)
            continue
        try:
            code = compile(block.code, f"{path}:{block.line}", "exec")
            exec(code, namespace)
        except BaseException:
            print(f"{path}:{block.line}: example failed", file=sys.stderr, flush=True)
            traceback.print_exc()
            return 1
        print(f"{path}:{block.line}: ok", flush=True)
    if any(files.glob("test_*.py")):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(files)],
            cwd=files,
            capture_output=True,
            text=True,
        )
        print(result.stdout, flush=True)
        if result.returncode != 0:
            print(f"{path}: the example's tests failed", file=sys.stderr, flush=True)
            print(result.stderr, file=sys.stderr, flush=True)
            return 1
        print(f"{path}: the example's tests passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_page(Path(sys.argv[1]), sys.argv[2]))
