"""pytest fixtures for redis_lifecycle (loaded through the ``pytest11`` entry point).

Work in progress: fixtures land in the next commit.
"""

from __future__ import annotations
