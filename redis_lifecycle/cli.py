"""The ``redis-lifecycle`` command (also ``python -m redis_lifecycle``).

    $ redis-lifecycle demo                        # starts its own server
    $ redis-lifecycle demo --url redis://localhost:6379/0
    $ redis-lifecycle watch redis://localhost:6379/0 --interval 1 --json

``demo`` drives a scripted scenario that makes every lifecycle event fire
and prints them live (:mod:`redis_lifecycle._cli.demo`); ``watch`` streams one
server's events with periodic health checks (:mod:`redis_lifecycle._cli.watch`).
Bad input (a malformed URL, an unreachable server, a wrong password) prints
one line on stderr and exits with status 2; no traceback, never a password.
Callbacks run inline, on the thread that caused each event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TextIO

from ._cli.common import CliError, parse_url
from ._cli.output import Printer, use_color
from ._redact import redact
from ._version import __version__

__all__ = ["main"]

PROG = "redis-lifecycle"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= threading.TIMEOUT_MAX:  # also refuses nan and inf
        msg = f"expected a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _command(text: str) -> str:
    if not text.split():
        msg = f"expected a Redis command such as PING or 'INFO server', got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return text


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        msg = f"expected a whole number of health checks (1 or more), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Typed lifecycle events for redis-py connections and pools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="run a scripted scenario that fires every lifecycle event",
        description=(
            "Start a server (the demo extra's embedded valkey-server, else redis-server on "
            "PATH) and drive connect, checkout/release, exhaustion, kill/restart, health "
            "checks, fork and pool reset, printing every event. Exit status 0 only if all "
            "lifecycle events were seen."
        ),
    )
    demo.add_argument(
        "--url",
        help="use this existing server instead (never killed; the kill/restart step is skipped)",
    )
    demo.add_argument("--color", choices=("auto", "always", "never"), default="auto")

    watch = commands.add_parser(
        "watch",
        help="stream one server's lifecycle events with periodic health checks",
        description=(
            "Connect to URL, health-check it every --interval seconds and print every "
            "lifecycle event as it happens; survives the server going away. Ctrl-C prints "
            "a summary."
        ),
    )
    watch.add_argument("url", metavar="URL", help="redis://[:password@]host:port/db, or unix://")
    watch.add_argument(
        "--interval", type=_positive, default=1.0, help="seconds between health checks (1)"
    )
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=_count, help="stop after this many health checks")
    watch.add_argument(
        "--command",
        type=_command,
        default="PING",
        help="health-check command (PING); if the server answers it with an error, "
        "watch stops with that error (exit status 2, or 1 once watching)",
    )
    watch.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    watch.add_argument(
        "--leak-detection",
        type=_positive,
        metavar="SECONDS",
        help="report a connection of the watching pool held longer than this (off)",
    )
    topology = watch.add_mutually_exclusive_group()
    topology.add_argument(
        "--cluster",
        action="store_true",
        help="URL is a cluster node: watch every node, redirects and slot-map changes",
    )
    topology.add_argument(
        "--sentinel",
        metavar="SERVICE",
        help="URL is a sentinel: watch SERVICE's master and its failovers",
    )

    doctor = commands.add_parser(
        "doctor",
        help="say which events the installed redis-py lets redis_lifecycle produce",
        description=(
            "Check the installed redis-py against every redis-py name the hooks depend on "
            "and list each event as available or not, with the reason. Needs no server."
        ),
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    return parser


def doctor(as_json: bool) -> int:
    """``redis-lifecycle doctor``: the capability report, for people or scripts."""
    from ._capabilities import capabilities

    report = capabilities()
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return 0
    print(f"redis-py {report.redis_py_version}")
    width = max(len(cap.name) for cap in report.events)
    for cap in report.events:
        state = "available" if cap.available else f"unavailable: {cap.reason}"
        print(f"  {cap.name:<{width}}  {state}")
    counts = "available" if report.pool_counts else f"-1 (unknown): {report.pool_counts_reason}"
    print(f"  {'pool counts':<{width}}  {counts}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    stdout = sys.stdout
    try:
        if args.command == "doctor":
            return doctor(args.json)
        with _leak_log_silenced():
            return _run(args, stdout)
    except CliError as error:
        print(f"{PROG}: error: {redact(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


@contextlib.contextmanager
def _leak_log_silenced() -> Iterator[None]:
    """demo and watch print each leak with its stack: no second copy in the log."""
    leak_logger = logging.getLogger("redis_lifecycle.leaks")
    before = leak_logger.propagate
    quiet = logging.NullHandler()  # else logging's last resort prints it
    leak_logger.propagate = False
    leak_logger.addHandler(quiet)
    try:
        yield
    finally:
        leak_logger.removeHandler(quiet)
        leak_logger.propagate = before


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    """demo or watch, as parsed."""
    if args.command == "demo":
        from ._cli.demo import demo

        printer = Printer(stdout, color=use_color(stdout, args.color))
        return demo(printer, args.url)
    from ._cli.watch import watch

    target = parse_url(args.url)
    printer = Printer(
        stdout,
        color=not args.json and use_color(stdout, args.color),
        as_json=args.json,
        secrets=target.secrets,
    )
    return watch(
        target,
        printer,
        interval=args.interval,
        count=args.count,
        command=args.command,
        leak_detection=args.leak_detection,
        cluster=args.cluster,
        sentinel=args.sentinel,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
