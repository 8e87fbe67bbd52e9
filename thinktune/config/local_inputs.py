"""The local files a setting names, checked before any stage runs (``check_params``).

:func:`local_problems` lists those that are not there, one line each starting with the key to
fix. Kept apart from ``thinktune.models.hub`` (hub downloads), which the fetch stages use, so
that the stages downloading or training run none of this.
"""

from __future__ import annotations

from pathlib import Path

# The keys a missing local input may come from (a rejected `-S` sets them back).
RELATED_KEYS = {
    "model.local_path": ["model.source", "model.local_path"],
    "data.local_dir": ["data.source", "data.local_dir", "data.datasets"],
    "data.sample_dir": ["data.source", "data.sample_dir", "data.datasets"],
    "eval.local_dir": ["eval.source", "eval.local_dir", "eval.lcb_release", "eval.benchmarks"],
    "eval.sample_file": ["eval.source", "eval.sample_file", "eval.benchmarks"],
}


def local_problems(params) -> list[str]:
    """One line per local input a setting names that is not there (empty: all present), each
    starting with its key (a key of :data:`RELATED_KEYS`).

    Checked by ``check_params`` before any stage runs, and again by the stage that reads it."""
    problems = []
    model, data, eval_ = params.model, params.data, params.eval
    if model.source == "local" and not (Path(model.local_path) / "config.json").is_file():
        problems.append(f"model.local_path: {model.local_path} holds no config.json; point it at a folder with a "
                        "saved model (save_pretrained)")
    if data.source == "local":
        for name, dataset in data.datasets.items():
            path = Path(data.local_dir) / dataset.file
            if not path.is_file():
                problems.append(f"data.local_dir: {path} (data.datasets.{name}.file) not found; copy the file there "
                                "or set data.local_dir to the folder holding it")
    if data.source == "sample":
        for name, dataset in data.datasets.items():
            path = Path(data.sample_dir) / dataset.sample_file
            if not path.is_file():
                problems.append(f"data.sample_dir: {path} (data.datasets.{name}.sample_file) not found; the committed "
                                "value is data/sample")
    if eval_.source == "local" and "livecodebench" in eval_.benchmarks:
        from thinktune.benchmarks.livecodebench import RELEASE_FILES

        files = RELEASE_FILES.get(eval_.lcb_release, [])
        missing = [name for name in files if not (Path(eval_.local_dir) / name).is_file()]
        if missing:
            problems.append(f"eval.local_dir: {eval_.local_dir} lacks {missing} of LiveCodeBench {eval_.lcb_release}; "
                            "copy them there from the hub's livecodebench/code_generation_lite")
    if eval_.source == "sample" and "livecodebench" in eval_.benchmarks and not Path(eval_.sample_file).is_file():
        problems.append(f"eval.sample_file: {eval_.sample_file} not found; the committed value is "
                        "data/sample/livecodebench_sample.jsonl")
    return problems
