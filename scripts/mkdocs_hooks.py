"""MkDocs hooks (``mkdocs.yml`` → ``hooks``): pages whose source lives elsewhere.

``docs/changelog.md`` is a placeholder; the site shows the repository's
``CHANGELOG.md`` in its place, so the changelog is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INCLUDED = {"changelog.md": ROOT / "CHANGELOG.md"}


def on_page_read_source(page: Any, config: Any) -> str | None:
    source = INCLUDED.get(page.file.src_uri)
    if source is None:
        return None
    return source.read_text(encoding="utf-8")
