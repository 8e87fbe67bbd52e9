"""LiveCodeBench's own grader, for the benchmarks that compare ours with it.

The grader ships in the PyPI package ``nvidia-livecodebench`` (LiveCodeBench's
``lcb_runner`` renamed ``livecodebench``): ``livecodebench/evaluation/testing_util.py``
(``run_test``: one program, all its tests, in the calling process) and
``livecodebench/evaluation/compute_code_generation_metrics.py`` (``codegen_metrics``:
what ``lcb_runner`` calls to grade a benchmark run; one worker process per program from
a ``ProcessPoolExecutor``, and inside it ``check_correctness``, which starts a
``multiprocessing.Manager`` and a ``multiprocessing.Process`` that calls ``run_test``).

``ensure_installed`` puts the package, without its dependencies (OpenAI, Anthropic,
datasets, ... which grading never uses), in its own folder under the thinktune cache
(``$THINKTUNE_CACHE`` or ``~/.cache/thinktune``), never in the project's environment.

``run_codegen_metrics`` grades programs with the official code (``evaluate_generations``,
which ``codegen_metrics`` grades with, without the pass@k summary) in a child Python
process (``python -m perf._official``): ``run_test`` installs signal handlers,
``reliability_guard`` sets ``os.kill``, ``os.remove``, ``subprocess.Popen`` ... to None,
and the metrics module changes ``sys.set_int_max_str_digits`` on import, none of which
should reach the process that runs our grader.

How the child imports the official code (the only liberty taken with it): the
package's ``__init__`` files import every metric the package has (code execution, test
output prediction, pandas, ...). The child registers the two packages ``livecodebench``
and ``livecodebench.evaluation`` as empty modules pointing at the installed folders, so
that importing ``livecodebench.evaluation.compute_code_generation_metrics`` loads only
that module and what it imports itself (``testing_util``, ``pass_k_utils``, ``metric``;
numpy and tqdm, both in the project's requirements). The official code itself runs
unchanged. The start method is set to ``fork`` (the Linux default LiveCodeBench was
written for), so the worker processes inherit those modules as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OFFICIAL_PACKAGE = "nvidia-livecodebench"
OFFICIAL_VERSION = "26.3"
_MARKER = Path("livecodebench", "evaluation", "testing_util.py")


def install_dir() -> Path:
    root = os.environ.get("THINKTUNE_CACHE") or Path.home() / ".cache" / "thinktune"
    return Path(root) / f"{OFFICIAL_PACKAGE}-{OFFICIAL_VERSION}"


def ensure_installed() -> Path:
    """The folder holding the official package (``pip install --no-deps --target`` on first use)."""
    target = install_dir()
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        print(f"installing {OFFICIAL_PACKAGE}=={OFFICIAL_VERSION} (no dependencies) into {target}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--target", str(partial), f"{OFFICIAL_PACKAGE}=={OFFICIAL_VERSION}"],
            check=True,
        )
        if not (partial / _MARKER).is_file():
            raise RuntimeError(f"{OFFICIAL_PACKAGE}=={OFFICIAL_VERSION} has no {_MARKER}: its layout changed")
        try:
            partial.rename(target)
        except OSError:  # another run installed it meanwhile
            if not (target / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def sample(tests: list[dict[str, str]], func_name: str | None) -> dict[str, str]:
    """A problem as ``codegen_metrics`` takes it (``CodeGenerationProblem.get_evaluation_sample``)."""
    return {"input_output": json.dumps({
        "inputs": [t["input"] for t in tests],
        "outputs": [t["output"] for t in tests],
        "fn_name": func_name,
    })}


def run_codegen_metrics(
    problems: list[dict[str, Any]], programs: list[str], *, timeout: int, processes: int,
) -> dict[str, Any]:
    """Grade ``programs[i]`` on ``problems[i]`` (each ``{"tests": [...], "func_name": ...}``)
    with the official ``codegen_metrics`` in a child process.

    Returns ``{"results": [per-test codes of each program], "passed": [bool, ...],
    "metadata": [dict, ...], "wall_s": seconds inside codegen_metrics, "cpu_s": CPU seconds
    of the grading process and its ended children meanwhile}``. The per-test
    codes are the official ones: True passed, -1 global timeout (process killed), -2
    wrong answer, -3 time limit, -4 runtime or compile error; a program stops at its
    first failure. ``passed`` is the official rule (every code > 0).
    """
    if len(problems) != len(programs):
        raise ValueError("one program per problem")
    folder = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="thinktune-official-") as tmp:
        jobs, out = Path(tmp) / "jobs.json", Path(tmp) / "results.json"
        jobs.write_text(json.dumps({
            "samples": [sample(p["tests"], p.get("func_name")) for p in problems],
            "programs": programs,
        }))
        repo = Path(__file__).resolve().parent.parent
        subprocess.run(
            [sys.executable, "-m", "perf._official", "--install-dir", str(folder), "--jobs", str(jobs),
             "--out", str(out), "--timeout", str(timeout), "--processes", str(processes)],
            check=True, cwd=repo, stdout=subprocess.DEVNULL,  # the official code prints progress there
        )
        return json.loads(out.read_text())


# --------------------------------------------------------------------------------------
# The child process


def _import_official(folder: Path):  # type: ignore[no-untyped-def]  # the official module
    import importlib
    import types

    sys.path.insert(0, str(folder))
    for name in ("livecodebench", "livecodebench.evaluation"):
        package = types.ModuleType(name)
        package.__path__ = [str(folder.joinpath(*name.split(".")))]
        sys.modules[name] = package
    metrics = importlib.import_module("livecodebench.evaluation.compute_code_generation_metrics")
    pass_k = importlib.import_module("livecodebench.evaluation.pass_k_utils")
    return metrics, pass_k


def _child(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="grade with the official codegen_metrics (internal)")
    parser.add_argument("--install-dir", type=Path, required=True)
    parser.add_argument("--jobs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    args = parser.parse_args(argv)

    import multiprocessing

    multiprocessing.set_start_method("fork")
    metrics, pass_k = _import_official(args.install_dir)
    jobs = json.loads(args.jobs.read_text())
    started, cpu_started = time.perf_counter(), _cpu_s()
    # evaluate_generations is what codegen_metrics grades with; codegen_metrics itself adds
    # pass@k and its standard error over the problems, which divides by zero for one program
    results, metadata = metrics.evaluate_generations(
        jobs["samples"], [[program] for program in jobs["programs"]],
        num_process_evaluate=args.processes, timeout=args.timeout,
    )
    wall_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    passed = pass_k.extract_instance_results(results)
    n = len(jobs["programs"])
    args.out.write_text(json.dumps({
        "results": [results[i][0] for i in range(n)],
        "passed": [bool(passed[i][0]) for i in range(n)],
        "metadata": [metadata[i][0] for i in range(n)],
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }, default=repr))


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (the grader's workers)."""
    import resource

    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))


if __name__ == "__main__":
    _child()
