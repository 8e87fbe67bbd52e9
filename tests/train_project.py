"""A throwaway project for running the train stage as a command on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from thinktune.data.chat import training_messages

REPO = Path(__file__).resolve().parent.parent


def make_project(root: Path, n_chats: int = 12, n_valid: int = 2, **train: object) -> Path:
    """params.yaml (the repo's, tiny training settings + ``train``) and formatted Deep chats."""
    data = root / "data" / "deep"
    data.mkdir(parents=True, exist_ok=True)
    rows = [{"problem_id": f"p{i}", "messages": training_messages(
        "SYS", f"problem {i} " + "y " * (i % 5) * 3, "think " * (4 + i % 7), f"print({i})")}
        for i in range(n_chats + n_valid)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n_chats]))
    (data / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[n_chats:]))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["name"] = "tiny-random-qwen2"
    params["format"]["max_length"] = 512
    params["lora"].update(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    params["train"].update(epochs=1, learning_rate=1e-3, effective_batch_size=4, save_steps=2,
                           logging_steps=1, precision="fp32", gradient_checkpointing=False,
                           micro_batch_tokens=512, num_processes=1)
    params["train"].update(train)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


SEED = 42  # the repo's params.yaml trains with seeds [42]: outputs under seed-42/


def stage_command(root: Path, tiny_model_dir: Path, models: str = "models") -> list[str]:
    return [sys.executable, "-m", "stages.train", "deep", "--seed", str(SEED), "--params", str(root / "params.yaml"),
            "--data", str(root / "data"), "--base-model", str(tiny_model_dir), "--models", str(root / models),
            "--live", str(root / "dvclive")]


def stage_env(cache: Path) -> dict:
    return os.environ | {"THINKTUNE_CACHE": str(cache), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def run_stage(root: Path, tiny_model_dir: Path, cache: Path, models: str = "models") -> str:
    done = subprocess.run(stage_command(root, tiny_model_dir, models), cwd=REPO, env=stage_env(cache),
                          capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def adapter_weights(models: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {p.parent.name: load_file(p) for p in sorted(models.glob(f"deep/seed-{SEED}/checkpoint-*/adapter_model.safetensors"))}


def max_difference(a: dict[str, dict], b: dict[str, dict]) -> float:
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    worst = 0.0
    for checkpoint, tensors in a.items():
        assert tensors.keys() == b[checkpoint].keys()
        for name, tensor in tensors.items():
            worst = max(worst, float((tensor - b[checkpoint][name]).abs().max()))
    return worst
