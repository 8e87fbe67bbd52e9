"""Scripts that measure the evaluation harness (see perf/README.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def load_file(relative_path: str) -> ModuleType:
    """A module of the repository that is not on the import path (tests/, data/sample/)."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_model_arguments(parser) -> None:
    """The options every decoding script shares: which params, base model, problems and precision."""
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--problems", type=Path, default=Path("data/sample/livecodebench_sample.jsonl"))
    parser.add_argument("--precision", default=None, help="default: eval.precision")


def sample_chats(params, problems_path: Path) -> list[list[dict]]:
    """The evaluation's chats for the LiveCodeBench problems in ``problems_path`` (a sample file),
    as the study prompts them."""
    from thinktune.benchmarks.base import get_benchmark
    from thinktune.data.chat import eval_messages

    benchmark = get_benchmark("livecodebench")
    problems = benchmark.load_problems(params.eval.model_copy(update={"source": "sample",
                                                                      "sample_file": str(problems_path)}))
    return [eval_messages(params.format.system_prompt, benchmark.user_prompt(p, "study")) for p in problems]
