"""Training logs in DVCLive's format, without DVCLive touching any repository.

``dvclive.Live()`` opens the DVC repository around the working directory and, when it finds
a git repository that is not a DVC one, runs ``dvc init`` there (which also ``git add``s the
new files) - whatever ``dvcyaml``/``save_dvc_exp`` say (dvclive 3.49, ``dvclive.dvc.get_dvc_repo``).
A library call must not change the caller's repository, so :class:`RepoFreeLive` skips that
repository lookup by overriding dvclive's private ``Live._init_dvc`` (no public option skips
it; the ``DVCLIVE_TEST`` switch is dvclive's own test hook). This module is the only place the
project relies on a private dvclive name; ``tests/test_training_run.py`` fails when an upgrade
renames it or stops calling it. With ``dvcyaml=False``, ``save_dvc_exp=False`` and no ``end()``
(which can ``git add`` inside ``dvc exp run``) the logger only writes files under its folder:
``plots/metrics/<name>.tsv`` (one row per logged step) and ``metrics.json`` (latest values).
The pipeline declares the plots in dvc.yaml itself. Steps are optimizer steps, from 1, the
same numbers as the checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from dvclive import Live


class RepoFreeLive(Live):
    """DVCLive's files only: no repository lookup, ``dvc init``, ``git add``, dvc.yaml or experiment."""

    def _init_dvc(self) -> None:  # see the module docstring
        self._dvc_file = "dvc.yaml"  # never written: dvcyaml=False


def open_live(directory: Path, resume: bool) -> Live:
    """A logger writing to ``directory``; ``resume`` appends to the log already there."""
    return RepoFreeLive(dir=str(directory), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)


def log_step(live: Live, step: int, values: dict[str, float | None]) -> None:
    """One row per metric at optimizer step ``step``; ``metrics.json`` updated (None: not logged)."""
    live.step = step
    for name, value in values.items():
        if value is not None:
            live.log_metric(name, float(value))
    live.make_summary()
