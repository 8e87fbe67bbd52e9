"""Errors a user can fix: a bad setting, a bad input file, a source that cannot be reached.

Stages end on them with one line naming the key, file or source and the fix
(``run_stage``), never with a traceback; the traceback is kept in
``$THINKTUNE_CACHE/logs/<stage>.log`` and printed too with ``--debug`` (or
``THINKTUNE_DEBUG=1``). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path


class InputError(ValueError):
    """A setting or input file is wrong; the message names it and says how to fix it."""


class SourceError(InputError):
    """A source named in params.yaml (the hub, PyPI, a local folder) cannot be reached or read."""


def cache_root() -> Path:
    """Where downloads, resume state and error logs are kept (outside the repository)."""
    return Path(os.environ.get("THINKTUNE_CACHE") or Path.home() / ".cache" / "thinktune")


def _stage_name() -> str:
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c") else "stage"


def _keep_traceback(stage: str) -> Path | None:
    """The current exception's full traceback (causes included) in the stage's log file."""
    log_file = cache_root() / "logs" / f"{stage}.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(traceback.format_exc())
    except OSError:
        return None
    return log_file


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; an :class:`InputError` ends it with its message and status 2.

    ``--debug`` (removed from ``sys.argv`` before ``main`` parses it) or ``THINKTUNE_DEBUG=1``
    also prints the traceback."""
    debug = os.environ.get("THINKTUNE_DEBUG", "") not in ("", "0")
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        debug = True
    try:
        main()
    except InputError as exc:
        _keep_traceback(_stage_name())
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
