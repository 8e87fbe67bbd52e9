"""Working as a team, and mistakes that cost nothing, on the tiny pipeline.

A runs the pipeline, commits, pushes to a bare git remote and a local DVC remote; B clones,
pulls and goes on; experiments travel with `dvc exp push/pull`, finished stages with the run
cache. Then the usual mistakes, each of which must stop with one line, before anything is
lost: a bad row, an unreachable hub, a rejected `-S`, unequal training sets; and every local
input is a dependency. Everything is local: no network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dvc_project import every_stage, fails, make_project, ran, sh

pytestmark = pytest.mark.e2e

EXPERIMENT = ["dvc", "exp", "run", "-n", "lora-r8", "-S", "lora.r=8"]
# Team work needs one run per strategy, not the seeds x benchmarks grid that tests/test_pipeline_e2e.py
# covers: half the stages to run, and the experiment retrains two runs instead of four.
SEEDS, BENCHMARKS = (1,), ("livecodebench",)


@pytest.fixture(scope="module")
def team(tmp_path_factory, repo_root, tiny_model_dir) -> dict:
    """A's repository, run and shared (README, "Working as a team"); B's clone, pulled."""
    work = tmp_path_factory.mktemp("team")
    a, env = make_project(repo_root, work, tiny_model_dir, SEEDS, BENCHMARKS)
    origin, storage = work / "origin.git", work / "dvc-storage"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], work, env)
    sh(["git", "remote", "add", "origin", str(origin)], a, env)
    sh(["dvc", "remote", "add", "-d", "storage", str(storage)], a, env)
    assert ran(sh(["dvc", "repro"], a, env)) == every_stage(SEEDS, BENCHMARKS)
    sh(["git", "add", "-A"], a, env)  # dvc.lock, .dvc/config (the remote), the outputs' .gitignore files
    sh(["git", "commit", "-qm", "results of the default run"], a, env)
    sh(["dvc", "push"], a, env)
    sh(["git", "push", "-q", "origin", "main"], a, env)

    b = work / "b"
    sh(["git", "clone", "-q", str(origin), str(b)], work, env)
    sh(["dvc", "pull"], b, env)
    return {"a": a, "b": b, "env": env, "work": work}


@pytest.fixture()
def clone_b(team):
    """B's clone; afterwards back at its last commit, whatever the test did or failed to undo,
    so that one failure does not cascade into the next test."""
    yield team["b"], team["env"]
    for f in (team["b"] / "inputs").rglob("*"):
        if f.is_file() and f.name != ".gitignore":
            f.unlink()
    restore(team["b"], team["env"])


def files_of(root: Path, *paths: str) -> dict[str, bytes]:
    out = {}
    for path in paths:
        target = root / path
        for f in sorted([target] if target.is_file() else target.rglob("*")):
            if f.is_file():
                out[str(f.relative_to(root))] = f.read_bytes()
    assert out, paths
    return out


def test_clone_and_pull_give_an_up_to_date_workspace(team):
    b, env = team["b"], team["env"]
    assert (b / "report/README.md").read_text() == (team["a"] / "report/README.md").read_text()
    assert ran(sh(["dvc", "repro"], b, env)) == set()
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], b, env)


def test_experiment_and_run_cache_travel_so_b_restores_instead_of_retraining(team, clone_b):
    a, b, env = team["a"], team["b"], team["env"]
    output = sh(EXPERIMENT, a, env)
    assert {"train_deep@1", "train_diverse@1"} <= ran(output)
    assert yaml.safe_load((a / "params.yaml").read_text())["lora"]["r"] == 8  # the workspace holds the experiment
    sh(["dvc", "exp", "push", "origin", "lora-r8"], a, env)
    sh(["dvc", "push", "--run-cache"], a, env)

    sh(["dvc", "exp", "pull", "origin", "lora-r8"], b, env)
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], b, env))
    assert "lora-r8" in json.dumps(shown)
    sh(["dvc", "pull", "--run-cache"], b, env)
    again = sh(["dvc", "exp", "run", "-n", "lora-r8-b", "-S", "lora.r=8"], b, env)
    assert not {stage for stage in ran(again) if stage.startswith(("train_", "eval_"))}
    assert "Stage 'train_deep@1' is cached - skipping run" in again
    a_metrics = json.loads((a / "metrics/study.json").read_text())
    assert json.loads((b / "metrics/study.json").read_text()) == a_metrics


def test_metrics_show_and_compact_exp_show_fit_120_columns(team):
    a, env = team["a"], team["env"]
    widest = max(map(len, sh(["dvc", "metrics", "show"], a, env).splitlines()))
    assert widest <= 120, widest
    # The README's compact view, plus the key the experiment varied.
    keep = r"Experiment|(base|deep|diverse|diff)\.pass1|diff\.(lo|hi)|lora\.r$"
    table = sh(["dvc", "exp", "show", "--drop", ".*", "--keep", keep], a, env | {"COLUMNS": "120"})
    header = next(line for line in table.splitlines() if "Experiment" in line).split()
    assert sorted(header) == ["Experiment", "base.pass1", "deep.pass1", "diff.hi", "diff.lo", "diff.pass1",
                              "diverse.pass1", "lora.r"]
    assert "lora-r8" in table
    assert max(map(len, table.splitlines())) <= 120, table
    assert "…" not in table, table  # nothing cut to fit
    diff = sh(["dvc", "metrics", "diff", "--all"], a, env)
    # header + the headline: base, deep, diverse Pass@1, the difference and its interval, the problems
    assert len(diff.splitlines()) == 1 + 7, diff


def test_a_local_data_file_is_a_dependency(clone_b):
    b, env = clone_b
    local = b / "inputs" / "codegen"
    shutil.copy(b / "data/sample/codegen_deep.jsonl", local / "CodeGen-Deep-5K.jsonl")
    shutil.copy(b / "data/sample/codegen_diverse.jsonl", local / "CodeGen-Diverse-5K.jsonl")
    sh(["dvc", "exp", "run", "-S", "data.source=local"], b, env)  # the same rows: nothing downstream re-runs
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], b, env)

    rows = (local / "CodeGen-Deep-5K.jsonl").read_text().splitlines(keepends=True)
    (local / "CodeGen-Deep-5K.jsonl").write_text("".join(rows[:-1]))  # a row deleted
    status = sh(["dvc", "status"], b, env)
    assert "fetch_data:" in status and "inputs/codegen" in status, status
    (b / "inputs/livecodebench/test.jsonl").write_text("{}\n")  # eval.local_dir is one too
    assert "inputs/livecodebench" in sh(["dvc", "status"], b, env)


def restore(repo: Path, env: dict) -> None:
    """Back to the last commit: its params and dvc.lock (git), its outputs (`dvc checkout`)."""
    sh(["git", "checkout", "-q", "--", "."], repo, env)
    sh(["dvc", "checkout", "-q", "--force"], repo, env)
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], repo, env)


def kept(root: Path) -> dict[str, bytes]:
    return files_of(root, "params.yaml", "params.ok", "models/base", "data/raw", "data/formatted", "models/deep")


def one_error_line(output: str, expected: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), output


def test_a_bad_row_stops_fetch_data_and_keeps_every_output(clone_b):
    b, env = clone_b
    before, status = kept(b), sh(["dvc", "status"], b, env)
    sample = b / "data/sample/codegen_deep.jsonl"
    rows = sample.read_text().splitlines(keepends=True)
    sample.write_text("".join(rows[:4]) + rows[4][:-20] + "\n" + "".join(rows[5:]))  # line 5 cut short
    output = fails(["dvc", "repro"], b, env)
    one_error_line(output, "data/sample/codegen_deep.jsonl:5: not valid JSON")
    assert kept(b) == before

    row = json.loads(rows[4])
    del row["input"]
    sample.write_text("".join(rows[:4]) + json.dumps(row) + "\n" + "".join(rows[5:]))
    output = fails(["dvc", "repro"], b, env)
    one_error_line(output, "data/sample/codegen_deep.jsonl:5: missing `input`; every row needs")
    assert kept(b) == before
    log = Path(env["THINKTUNE_CACHE"]) / "logs" / "fetch_data.log"
    assert "Traceback" in log.read_text()  # kept for --debug readers
    sample.write_text("".join(rows))
    assert sh(["dvc", "status"], b, env) == status


def test_unequal_training_sets_stop_before_training(clone_b):
    b, env = clone_b
    before = kept(b)
    sample = b / "data/sample/codegen_diverse.jsonl"
    rows = sample.read_text().splitlines(keepends=True)
    trained_on = {json.loads(line)["problem_id"] for line in (b / "data/formatted/diverse/train.jsonl").open()}
    gone = next(i for i, row in enumerate(rows) if json.loads(row)["id"] in trained_on)
    sample.write_text("".join(rows[:gone] + rows[gone + 1:]))  # one training chat fewer for Diverse
    output = fails(["dvc", "repro"], b, env)
    one_error_line(output, "format.balance: the strategies would train on unequal numbers of chats (deep 9, "
                           "diverse 8)")
    assert not {stage for stage in ran(output) if stage.startswith("train_")}
    assert files_of(b, "models/base", "data/formatted", "models/deep") == \
           {k: v for k, v in before.items() if k.startswith(("models/", "data/formatted"))}



def test_no_hub_fails_in_one_line_and_keeps_the_base_model(clone_b):
    """The full study's `python -m thinktune.config.presets paper && dvc repro`, on a machine without the hub."""
    b, env = clone_b
    before, status = kept(b), sh(["dvc", "status"], b, env)
    sh([sys.executable, "-m", "thinktune.config.presets", "paper"], b, env)
    output = fails(["dvc", "repro"], b, env)
    one_error_line(output, "")
    assert "cannot reach the Hugging Face hub" in output and ("model.source" in output or "data.source" in output)
    assert {k: v for k, v in kept(b).items() if k not in ("params.yaml",)} == \
           {k: v for k, v in before.items() if k not in ("params.yaml",)}
    sh(["git", "checkout", "-q", "--", "params.yaml"], b, env)  # the committed params again
    assert kept(b) == before
    # check_params ran (valid params) before fetch_model failed, and recorded them in dvc.lock;
    # re-running it is all that takes (nothing else runs: no output was lost).
    assert ran(sh(["dvc", "repro"], b, env)) <= {"check_params"}
    assert sh(["dvc", "status"], b, env) == status


def test_a_rejected_set_leaves_params_and_status_as_they_were(clone_b):
    b, env = clone_b
    before, status = kept(b), sh(["dvc", "status"], b, env)
    for bad, message in ((["-S", "lora.r=-1"], "params.yaml: lora.r: -1 is not allowed"),
                         (["-S", "+lora.rr=3"], "params.yaml: lora.rr: unknown key")):
        output = fails(["dvc", "exp", "run", *bad], b, env)
        one_error_line(output, message)
        assert ran(output) <= {"check_params"}
        assert kept(b) == before  # params.yaml byte for byte, params.ok still there
        assert sh(["dvc", "status"], b, env) == status
    assert ran(sh(["dvc", "repro"], b, env)) == set()
