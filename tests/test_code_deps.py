"""Every stage depends on the project code it runs, and only on that code.

For each ``python -m stages.X`` command in dvc.yaml the first-party import closure
(thinktune.codedeps) must be covered by the stage's ``deps:`` (a file, or a folder holding
it); a code dependency that covers none of it would re-run the stage for nothing. The
closure finder itself is checked on a small package written here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from thinktune.codedeps import (
    ROOT,
    code_digest,
    import_closure,
    needed_files,
    stage_code_deps,
    with_generated_code_deps,
)


def stage_commands() -> list[tuple[str, str, list[str]]]:
    """(stage, module, deps) for every stage whose command runs ``python -m stages.X``."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    found = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        match = re.search(r"python -m (stages\.\w+)", body["cmd"])
        if match:
            found.append((name, match.group(1), [str(d) for d in body.get("deps", [])]))
    return found


STAGES = stage_commands()


def covers(dep: str, path: Path) -> bool:
    dep_path = ROOT / dep
    return path == dep_path or dep_path in path.parents


def test_dvc_yaml_code_deps_are_the_generated_ones():
    """One source for a stage's code deps: the imports. dvc.yaml holds what
    ``python -m thinktune.codedeps`` writes, and nothing hand-kept beside it."""
    text = (ROOT / "dvc.yaml").read_text()
    assert with_generated_code_deps(text) == text, "run python -m thinktune.codedeps to regenerate dvc.yaml's code deps"


def test_a_folder_stands_for_its_files_only_when_the_stage_runs_them_all():
    evaluation = stage_code_deps("stages.eval_checkpoints")
    assert "thinktune/grading" in evaluation and "thinktune/grading/verdicts.py" not in evaluation
    assert "thinktune/training" not in evaluation and "thinktune/analysis" not in evaluation
    report = stage_code_deps("stages.report")
    assert "thinktune/analysis/stats.py" in report or "thinktune/analysis" in report
    assert not any(dep.startswith(("thinktune/grading", "thinktune/generation")) for dep in report)


def test_every_stage_of_dvc_yaml_is_checked():
    assert {name for name, _, _ in STAGES} >= {"check_params", "fetch_model", "fetch_data", "format_think",
                                                 "train_deep", "train_diverse", "eval_base", "eval_checkpoints",
                                                 "plot", "report"}


def test_each_run_depends_on_every_setting_but_the_seed_list():
    """A training or evaluation stage per (strategy, seed[, benchmark]) must not depend on `train.seeds`
    or `eval.benchmarks` (adding one would re-run every run) and must depend on every other key it reads."""
    from thinktune.config.params import TrainParams

    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    every_train_key = {f"train.{k}" for k in TrainParams.model_fields} - {"train.seeds"}
    from thinktune.config.params import load_params

    for name in (f"train_{s}" for s in load_params(ROOT / "params.yaml").strategies):
        params = set(doc["stages"][name]["do"]["params"])
        assert "train" not in params and "train.seeds" not in params, name
        assert every_train_key <= params, f"{name} misses {sorted(every_train_key - params)}"
    from thinktune.config.params import PROBLEM_SELECTION, EvalParams

    # The problem selection decides data/raw/eval/<benchmark>.jsonl, the stage's data dep: a LiveCodeBench
    # filter must not re-run HumanEval's evaluations.
    every_eval_key = {f"eval.{k}" for k in EvalParams.model_fields if k not in (*PROBLEM_SELECTION, "benchmarks")}
    for name in ("eval_base", "eval_checkpoints"):  # one stage per run and benchmark: not on either list
        params = set(doc["stages"][name].get("do", doc["stages"][name])["params"])
        assert not {p for p in params if str(p).startswith("train")}, name
        assert "eval" not in params and "eval.benchmarks" not in params, name
        assert not {f"eval.{k}" for k in PROBLEM_SELECTION} & params, name
        assert every_eval_key <= params, f"{name} misses {sorted(every_eval_key - params)}"


@pytest.mark.parametrize(("stage", "module", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_depends_on_every_file_it_imports(stage, module, deps):
    missing = [p.relative_to(ROOT).as_posix() for p in needed_files(module) if not any(covers(d, p) for d in deps)]
    assert not missing, f"dvc.yaml stage {stage} runs {missing} without depending on them: add them to its deps"


@pytest.mark.parametrize(("stage", "module", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_depends_on_no_code_it_does_not_run(stage, module, deps):
    needed = needed_files(module)
    code_deps = [d for d in deps if d.split("/")[0] in ("stages", "thinktune")]
    unused = [d for d in code_deps if not any(covers(d, p) for p in needed)]
    assert not unused, f"dvc.yaml stage {stage} depends on {unused}, which it never imports: remove them"


@pytest.mark.parametrize("module", ["stages.plot", "stages.report"])
def test_plot_and_report_run_neither_the_evaluator_nor_the_sandbox(module):
    ran = {p.relative_to(ROOT).as_posix() for p in import_closure(module)}
    heavy = {"thinktune/evaluation/evaluate.py", "thinktune/generation/engine.py", "thinktune/generation/chats.py", "thinktune/models/host.py",
             "thinktune/grading/verdicts.py", "thinktune/generation/parallel.py", "thinktune/grading/sandbox/__init__.py"}
    assert not ran & heavy, sorted(ran & heavy)


def test_eval_stage_does_not_run_the_training_package():
    ran = {p.relative_to(ROOT).as_posix() for p in import_closure("stages.eval_checkpoints")}
    assert not any(p.startswith("thinktune/training/") for p in ran), sorted(ran)


def write_package(root: Path) -> Path:
    files = {
        "stages/__init__.py": '"""docstring only"""\n',
        "stages/go.py": "from thinktune import a, registry\n",
        "thinktune/__init__.py": '"""docstring only"""\n',
        "thinktune/a.py": "import os\n\ndef later():\n    from thinktune.b import f\n    return f\n",
        "thinktune/b.py": "from .sub import c\nf = 1\n",
        "thinktune/sub/__init__.py": "X = 1\n",
        "thinktune/sub/c.py": textwrap.dedent("""\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from thinktune import never
            else:
                from thinktune import logs
            """),
        "thinktune/never.py": "",
        "thinktune/registry.py": 'PLUGINS = {"x": "thinktune.plugin:THING", "y": "thinktune.missing:Y"}\n',
        "thinktune/plugin.py": "THING = 1\n",
        "thinktune/logs.py": "",
        "thinktune/unrelated.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_closure_follows_lazy_relative_and_registry_imports_and_packages_but_not_type_checking(tmp_path):
    root = write_package(tmp_path)
    found = {p.relative_to(root).as_posix() for p in import_closure("stages.go", root)}
    assert found == {"stages/__init__.py", "stages/go.py", "thinktune/__init__.py", "thinktune/a.py",
                     "thinktune/b.py", "thinktune/sub/__init__.py", "thinktune/sub/c.py", "thinktune/logs.py",
                     "thinktune/registry.py", "thinktune/plugin.py"}
    needed = {p.relative_to(root).as_posix() for p in needed_files("stages.go", root)}
    # docstring-only files and the exempt logs module cannot change an output
    assert needed == found - {"stages/__init__.py", "thinktune/__init__.py", "thinktune/logs.py"}


def test_code_digest_changes_with_a_file_the_module_runs_and_not_otherwise(tmp_path):
    root = write_package(tmp_path)
    before = code_digest("stages.go", root)
    (root / "thinktune" / "unrelated.py").write_text("x = 2\n")
    (root / "thinktune" / "logs.py").write_text("# exempt\n")
    assert code_digest("stages.go", root) == before
    (root / "thinktune" / "sub" / "c.py").write_text((root / "thinktune" / "sub" / "c.py").read_text() + "\n# edit\n")
    assert code_digest("stages.go", root) != before


def test_the_evaluation_cache_key_covers_the_evaluation_closure():
    from thinktune.evaluation import evaluate as evaluation

    closure = {p.relative_to(ROOT).as_posix() for p in needed_files("thinktune.evaluation.evaluate")}
    assert {"thinktune/models/host.py", "thinktune/generation/engine.py", "thinktune/grading/verdicts.py", "thinktune/analysis/stats.py",
            "thinktune/evaluation/records.py", "thinktune/grading/sandbox/client.py"} <= closure
    assert evaluation.code_digest is code_digest


def test_bytecode_caches_in_a_code_folder_change_no_stage(tmp_path):
    """Many stages depend on whole thinktune/ folders; Python writes ``__pycache__`` into them
    whenever a module runs (unless PYTHONDONTWRITEBYTECODE is set), and .dvcignore keeps that
    from reading as a code change."""
    import json
    import shutil
    import subprocess
    import sys

    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))

    def status() -> dict:  # the report stage only: its folder dep is one no other test writes into
        out = subprocess.run([dvc, "status", "--json", "report"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    cache = ROOT / "thinktune" / "reporting" / "__pycache__"
    made = not cache.exists()
    stray = cache / f"probe-{tmp_path.name}.cpython-311.pyc"
    before = status()
    cache.mkdir(exist_ok=True)
    try:
        stray.write_bytes(b"\x00" * 16)
        assert status() == before
    finally:
        stray.unlink()
        if made:
            shutil.rmtree(cache, ignore_errors=True)
