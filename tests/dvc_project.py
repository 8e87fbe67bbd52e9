"""A throwaway git + DVC copy of this repository whose params are the tiny-model preset.

Shared by the end-to-end test (tests/test_pipeline_e2e.py) and the team and mistake tests
(tests/test_team.py): a tiny random Qwen2 model stands in for the real one (no download),
selected through a conf/ preset exactly as a user would add one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

STAGES_RUN = re.compile(r"Running stage '([^']+)'")
SEEDS = (1, 2)  # the tiny study: 2 training seeds x 2 samples per problem, through every stage and the analysis
BENCHMARKS = ("livecodebench", "humaneval")  # HumanEval as the second view, on every checkpoint


def every_stage(seeds=SEEDS, benchmarks=BENCHMARKS) -> set[str]:
    return {"check_params", "fetch_model", "fetch_data", "format_think", "plot", "report",
            *(f"eval_base@{b}" for b in benchmarks),
            *(f"train_{s}@{seed}" for s in ("deep", "diverse") for seed in seeds),
            *(f"eval_checkpoints@{s}-{seed}-{b}" for s in ("deep", "diverse") for seed in seeds for b in benchmarks)}


EVERY_STAGE = every_stage()


def tiny_preset(tiny_model_dir: Path, seeds=SEEDS, benchmarks=BENCHMARKS) -> dict:
    return {
        "model": {"source": "local", "name": "tiny-random-qwen2", "local_path": str(tiny_model_dir)},
        "data": {"source": "sample", "splits": ["train"]},
        "format": {"max_length": 4096},
        "train": {"epochs": 1, "effective_batch_size": 4, "micro_batch_tokens": 4096, "save_steps": 2,
                  "logging_steps": 1, "precision": "fp32", "gradient_checkpointing": False, "seeds": list(seeds)},
        "eval": {"source": "sample", "date_from": None, "max_new_tokens": 24, "batch_size": 16,
                 "timeout_s": 3.0, "workers": 2, "n_samples": 2, "temperature": 0.7, "benchmarks": list(benchmarks),
                 "max_problems": 12},  # HumanEval's first 12
    }


def project_env(work: Path) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {"PATH": bin_dir + os.pathsep + os.environ["PATH"],
                         "THINKTUNE_CACHE": str(work / "cache"), "DVC_NO_ANALYTICS": "1",
                         "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                         "GIT_COMMITTER_EMAIL": "t@t", "HF_HUB_OFFLINE": "1"}


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-6000:]}"
    return output


def fails(cmd: list[str], cwd: Path, env: dict) -> str:
    """Run a command that must fail; its output."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{' '.join(cmd)} succeeded:\n{output[-6000:]}"
    return output


def ran(output: str) -> set[str]:
    return set(STAGES_RUN.findall(output))


def make_project(repo_root: Path, work: Path, tiny_model_dir: Path, seeds=SEEDS,
                 benchmarks=BENCHMARKS) -> tuple[Path, dict]:
    """``work/repo``: the repository's tracked and unignored files, the tiny preset applied (with
    these training seeds and benchmarks), committed in a fresh git repository (nothing run yet)."""
    repo = work / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=repo_root, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = repo_root / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(src, repo / name)
            except FileNotFoundError:  # a file another test planted for a moment, gone again
                continue
    (repo / "conf" / "presets" / "tiny.yaml").write_text(yaml.safe_dump(tiny_preset(tiny_model_dir, seeds, benchmarks)))
    env = project_env(work)
    sh([sys.executable, "-m", "thinktune.config.presets", "tiny"], repo, env)  # as the README applies `paper`
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "copy"], repo, env)
    return repo, env
