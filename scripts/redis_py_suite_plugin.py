"""pytest plugin for running redis-py's own test suite instrumented.

Loaded by ``scripts/redis_py_suite.py`` (``-p redis_py_suite_plugin``) into
the second of its two runs. At start-up every pool and asyncio cluster client
redis-py's tests create is instrumented (``instrument_all``) with every event subscribed and
``Instrumentation`` on: the heaviest configuration, so every hook runs. At the
end it writes, to the JSON file named by ``REDIS_LIFECYCLE_SUITE_REPORT``, how
many events of each type were delivered and every error that redis_lifecycle
logged about itself (``internal error``), so the caller can show that the
hooks ran and did not fail quietly. Under pytest-xdist each worker writes
its own file, named by the worker's id after that name
(``report.json.gw0``, ...).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Any

import redis_lifecycle as rl

_events: Counter[str] = Counter()
_logged: list[str] = []


class _Collect(logging.Handler):
    """Keeps what the ``redis_lifecycle`` logger says at WARNING and above."""

    def emit(self, record: logging.LogRecord) -> None:
        _logged.append(self.format(record))


def _count(event: rl.LifecycleEvent) -> None:
    _events[event.type] += 1


_handler = _Collect(logging.WARNING)


def pytest_configure(config: Any) -> None:
    dispatcher = rl.EventDispatcher()
    dispatcher.subscribe(rl.LifecycleEvent, _count)
    rl.instrument_all(event_dispatcher=dispatcher, instrumentation=rl.Instrumentation())
    logging.getLogger("redis_lifecycle").addHandler(_handler)


def pytest_unconfigure(config: Any) -> None:
    rl.uninstrument_all()
    logging.getLogger("redis_lifecycle").removeHandler(_handler)
    path = os.environ.get("REDIS_LIFECYCLE_SUITE_REPORT")
    if path:
        # under pytest-xdist every worker process reports in a file of its own
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            path = f"{path}.{worker}"
        with open(path, "w", encoding="utf-8") as report:
            json.dump({"events": dict(_events), "logged": _logged}, report, indent=1)
