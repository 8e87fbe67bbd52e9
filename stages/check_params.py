"""check_params: validate every key of params.yaml before any stage touches its outputs.

The first stage of dvc.yaml. Every other stage depends on its output, so DVC runs it
first whenever params.yaml changes; a bad value stops `dvc repro` / `dvc exp run` here,
with one line per bad key (key, value, what is allowed), and every output already
produced stays as it was. Writes ``params.ok``, whose content never changes, so a valid
edit re-runs only the stages that read the edited keys.

It also checks that the local files the settings name are there (``model.local_path``,
``data.local_dir``, ``eval.local_dir`` with source ``local``; the sample files), and that
dvc.yaml has a training stage (``train_<name>``) for every strategy params.yaml lists.

Under `dvc exp run -S key=bad`, the bad keys are also set back to their values in the
experiment's baseline commit, and keys the baseline lacks (added with `-S +key=value`) are
removed (the log says so), so the workspace is left as it was before the command. DVC
keeps ``params.ok`` (``persist: true``), so a rejected run leaves `dvc status` as it was.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from thinktune.atomic import atomic_file
from thinktune.config.local_inputs import RELATED_KEYS, local_problems
from thinktune.config.params import ParamsError, load_yaml, parse_params, read_raw
from thinktune.config.presets import edit_yaml, yaml_value
from thinktune.errors import run_stage
from thinktune.logs import get_logger

log = get_logger("check_params")

STAMP = "params.yaml passed thinktune's validation\n"


def restore_from_baseline(params_path: Path, keys: list[str], baseline_rev: str) -> list[str]:
    """Set ``keys`` back to their values at ``baseline_rev``, and remove those the baseline
    lacks (added with `-S +key=value`); only if the baseline's file validates. Return what
    was done, one entry per key."""
    shown = subprocess.run(["git", "show", f"{baseline_rev}:{params_path.as_posix()}"], capture_output=True,
                           text=True, check=False)
    if shown.returncode != 0:
        return []
    baseline = load_yaml(shown.stdout) or {}
    try:
        parse_params(baseline)
    except ParamsError:
        return []
    restored = []
    with edit_yaml(params_path) as data:
        for key in keys:
            *parents, leaf = key.split(".")
            here, there = data, baseline
            try:
                for part in parents:
                    here, there = here[part], there[part]
            except (KeyError, TypeError):
                continue
            if not isinstance(here, dict) or leaf not in here:
                continue
            if not isinstance(there, dict) or leaf not in there:
                del here[leaf]
                restored.append(f"{key} removed")
            elif here[leaf] != there[leaf]:
                here[leaf] = yaml_value(there[leaf])
                restored.append(f"{key} = {there[leaf]!r}")
    return restored


def untrained_strategies(strategies: list[str], dvc_yaml: Path) -> list[str]:
    """One line per strategy without a ``train_<name>`` stage in dvc.yaml, and per ``train_<name>``
    stage whose strategy params.yaml does not list (empty: they match, or there is no dvc.yaml: the
    params are checked outside a pipeline)."""
    if not dvc_yaml.is_file():
        return []
    stages = (load_yaml(dvc_yaml.read_text()) or {}).get("stages", {})
    missing = [f"strategies.{name}: dvc.yaml has no stage train_{name}; copy the train_deep block, rename it "
               f"train_{name} and replace `deep` by `{name}` in it" for name in strategies if f"train_{name}" not in stages]
    extra = [f"strategies: dvc.yaml trains {stage[6:]!r} (stage {stage}) but strategies does not list it; list it, "
             f"or remove the {stage} block from dvc.yaml" for stage in stages
             if stage.startswith("train_") and stage[6:] not in strategies]
    return missing + extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--out", type=Path, default=Path("params.ok"))
    args = parser.parse_args(argv)
    try:
        params = parse_params(read_raw(args.params), origin=str(args.params))
        missing = local_problems(params)
        if missing:
            raise ParamsError("\n".join(f"{args.params}: {line}" for line in missing),
                              keys=[key for line in missing for key in RELATED_KEYS[line.split(":")[0]]])
        untrained = untrained_strategies(params.strategy_names, args.dvc_yaml)
        if untrained:
            raise ParamsError("\n".join(f"{args.params}: {line}" for line in untrained), keys=["strategies"])
    except ParamsError as exc:
        baseline = os.environ.get("DVC_EXP_BASELINE_REV")
        if baseline and exc.keys:
            restored = restore_from_baseline(args.params, exc.keys, baseline)
            if restored:
                log.info("experiment not run; %s set back to the baseline's %s", args.params, ", ".join(restored))
        raise
    with atomic_file(args.out) as fh:
        fh.write(STAMP)
    log.info("%s is valid", args.params)


if __name__ == "__main__":
    run_stage(main)
