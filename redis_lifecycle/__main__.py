"""``python -m redis_lifecycle``: the ``redis-lifecycle`` command.

    $ python -m redis_lifecycle demo

See :mod:`redis_lifecycle.cli`. Callbacks run inline.
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
