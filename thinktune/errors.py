"""Errors a user can fix: a bad setting or a bad input file.

Stages end on them with one line naming the key or file and the fix (``run_stage``),
never with a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class InputError(ValueError):
    """A setting or input file is wrong; the message names it and says how to fix it."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; an :class:`InputError` ends it with its message and status 2."""
    try:
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
