"""Where a training run keeps its work until it is published, and the adapters' model cards.

DVC deletes a stage's outputs before it runs the stage again, so nothing a killed training left
in ``models/<strategy>`` or ``dvclive/`` survives to be resumed from. A run therefore works in
its own folder of the project cache, ``$THINKTUNE_CACHE/train/<run>-<key>/``, where ``key``
hashes everything that determines the result (base model and data contents, LoRA and training
params, context length, the training code, library versions, resolved precision, process
count): a run with other settings or code can never pick up this state, and a queued ``dvc exp
run`` (which runs in a temporary copy of the workspace) finds it too. Outputs declared
``persist: true`` would also survive, but DVC would cache and push the optimizer state with
them and the published folder would no longer be adapter-only. The folder holds::

    run.json                     what the key was computed from
    adapters/checkpoint-<step>/  published adapters, each written atomically as it is saved
    live/                        the DVCLive log of the current attempt
    interrupted/attempt-<n>/     the logs of killed attempts, kept whole
    state/step-<step>/           the latest resume point (accelerate.save_state: adapter,
                                 optimizer, scheduler, grad scaler, RNG of every process, progress)
    state/step-<step>/live/      the DVCLive log as it was at that step

When the run ends, the adapters and logs are copied to the stage's outputs in one atomic
rename each and the folder is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import yaml
from filelock import FileLock, Timeout

from thinktune.atomic import atomic_dir
from thinktune.layout import list_checkpoints

STATE_DIR = re.compile(r"^step-(\d+)$")


def run_key(fingerprint: dict) -> str:
    """A short stable hash of a JSON-serialisable description of the run."""
    blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_sha256(package_dir: Path) -> str:
    """Hash of the training code: a changed loop never resumes an old run's state."""
    digest = hashlib.sha256()
    for path in sorted(Path(package_dir).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class RunStore:
    """The working folder of one training run (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.adapters = self.root / "adapters"
        self.live = self.root / "live"
        self.interrupted = self.root / "interrupted"
        self.states = self.root / "state"
        self._lock = FileLock(self.root / ".lock", timeout=0, thread_local=False)

    def lock(self) -> None:
        """Hold the folder for this process; a second run of the same settings stops with a message
        at once (no waiting). The OS releases the lock when the process dies, however it dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RuntimeError(f"another training with the same settings is using {self.root}; "
                               "wait for it or stop it") from None

    def unlock(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def latest_state(self) -> tuple[int, Path] | None:
        if not self.states.is_dir():
            return None
        found = [(int(m.group(1)), p) for p in self.states.iterdir() if (m := STATE_DIR.match(p.name))]
        return max(found) if found else None

    def start_fresh(self, fingerprint: dict) -> None:
        """Clear what an attempt killed before its first resume point left (its log is kept
        aside, as every interrupted attempt's); record what the key was computed from."""
        self._move_log_aside()
        for path in (self.adapters, self.states):
            shutil.rmtree(path, ignore_errors=True)
        (self.root / "run.json").write_text(json.dumps(fingerprint, indent=2, sort_keys=True, default=str) + "\n")

    def set_aside_interrupted_log(self, resume_step: int) -> Path | None:
        """Move the killed attempt's whole log to ``interrupted/attempt-<n>`` and restore the log
        as it was at the resume point, for the new attempt to append to."""
        moved = self._move_log_aside()
        snapshot = self.states / f"step-{resume_step}" / "live"
        if snapshot.is_dir():
            shutil.copytree(snapshot, self.live)
        return moved

    def _move_log_aside(self) -> Path | None:
        if not self.live.is_dir():
            return None
        n = 1 + sum(1 for _ in self.interrupted.glob("attempt-*")) if self.interrupted.is_dir() else 1
        moved = self.interrupted / f"attempt-{n}"
        moved.parent.mkdir(parents=True, exist_ok=True)
        self.live.rename(moved)
        return moved

    def state_dir_partial(self, step: int, clear: bool = False) -> Path:
        """Where the processes write the state of ``step`` before it becomes the resume point
        (``clear``: remove what a killed attempt may have left there)."""
        partial = self.states / f".partial-step-{step}"
        if clear:
            shutil.rmtree(partial, ignore_errors=True)
        return partial

    def commit_state(self, step: int) -> Path:
        """Make the state written to ``state_dir_partial(step)`` the resume point; drop older ones."""
        final = self.states / f"step-{step}"
        shutil.copytree(self.live, self.state_dir_partial(step) / "live", dirs_exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(self.state_dir_partial(step), final)
        for path in self.states.iterdir():
            if path != final:
                shutil.rmtree(path, ignore_errors=True)
        return final

    def publish(self, out_dir: Path, live_dir: Path) -> list[Path]:
        """Copy the adapters and logs to the stage's outputs, each folder replaced in one rename."""
        with atomic_dir(out_dir) as tmp:
            for checkpoint in list_checkpoints(self.adapters):
                shutil.copytree(checkpoint, tmp / checkpoint.name)
        with atomic_dir(live_dir) as tmp:
            if self.live.is_dir():
                shutil.copytree(self.live, tmp, dirs_exist_ok=True)
            if self.interrupted.is_dir() and any(self.interrupted.iterdir()):
                shutil.copytree(self.interrupted, tmp / "interrupted")
        return list_checkpoints(out_dir)

    def remove(self) -> None:
        self.unlock()
        shutil.rmtree(self.root, ignore_errors=True)


def model_card(*, strategy: str, step: int, total_steps: int, base_model: str, data_sha256: str,
               params: dict, metrics: dict) -> str:
    """README.md of one adapter checkpoint: what it is and exactly how it was trained."""
    front = {"base_model": base_model, "library_name": "peft", "tags": ["lora", "thinktune", strategy]}
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
        f"# thinktune LoRA adapter: {strategy}, step {step}", "",
        (f"A LoRA adapter for `{base_model}`, fine-tuned on the thinktune study's *{strategy}* chats "
         f"(reasoning in `<think>` before the code; loss on the answer only). Optimizer step {step} of "
         f"{total_steps}."), "",
        "Load it with PEFT on top of the base model:", "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base_model}"), "<this folder>")',
        "```", "",
        "| | |", "|---|---|",
        f"| strategy | {strategy} |",
        f"| step | {step} of {total_steps} |",
        f"| base model | {base_model} |",
        f"| training data (sha256 of the formatted train + valid files) | `{data_sha256}` |",
        *[f"| {name} | {value} |" for name, value in metrics.items()],
        "", "## Parameters", "", "```yaml", yaml.safe_dump(params, sort_keys=True).rstrip(), "```", "",
    ]
    return "\n".join(lines)
