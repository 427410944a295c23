"""The committed event reference page matches the code it is generated from."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import redis_lifecycle as rl
from redis_lifecycle.events import EVENT_CLASSES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_event_reference.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_event_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TestEventReference:
    def test_committed_page_is_current(self) -> None:
        """docs/reference/events.md is exactly what the generator renders from events.py
        (regenerate with ``python scripts/gen_event_reference.py``)."""
        gen = generator()
        assert gen.PAGE.read_text(encoding="utf-8") == gen.render(), (
            "docs/reference/events.md is stale: run python scripts/gen_event_reference.py"
        )

    def test_every_event_and_field_is_documented_with_a_description(self) -> None:
        """Each event class has a section listing each of its fields with a non-empty
        description, and the latency field says milliseconds."""
        page = generator().render()
        sections = re.split(r"^### ", page, flags=re.MULTILINE)[1:]
        by_name = {s.split("\n", 1)[0].strip(): s for s in sections}
        assert set(by_name) == {cls.__name__ for cls in EVENT_CLASSES}
        for cls in EVENT_CLASSES:
            section = by_name[cls.__name__]
            assert f"Legacy name `{cls.type.value}`" in section
            for field in cls._fields:
                row = next(
                    (line for line in section.splitlines() if line.startswith(f"| `{field}` |")),
                    None,
                )
                assert row is not None, f"{cls.__name__}.{field} missing"
                description = row.rstrip(" |").rsplit("|", 1)[-1].strip()
                assert description, f"{cls.__name__}.{field} has no description"
        latency = next(
            line
            for line in by_name["ConnectionHealthCheckEvent"].splitlines()
            if line.startswith("| `latency` |")
        )
        assert "| ms |" in latency

    def test_every_close_reason_is_explained(self) -> None:
        """Each CloseReason member has a row with its meaning taken from the code comments."""
        page = generator().render()
        for reason in rl.CloseReason:
            row = next(line for line in page.splitlines() if f"`CloseReason.{reason.name}`" in line)
            assert row.rstrip(" |").rsplit("|", 1)[-1].strip(), reason
