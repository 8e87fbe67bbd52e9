"""Peak memory (RSS) and wall time of each pipeline stage, run one at a time through DVC.

    python -m perf.stage_memory                          # every stage of dvc.yaml, in pipeline order
    python -m perf.stage_memory -S train.precision=fp32 -S eval.precision=fp32
    python -m perf.stage_memory --stages train_deep@42 eval_checkpoints@deep-42-livecodebench

Each stage runs as ``dvc repro --single-item --force <stage>`` (so it really runs, never
restored from the run cache) in a child process; its peak RSS is the kernel's high-water
mark over the child and everything it waited for (``wait4``'s ``ru_maxrss``: DVC itself and
the stage's command), the figure ``/usr/bin/time -v`` reports. ``-S key=value`` sets params
for the run as ``dvc exp run -S`` would, and puts params.yaml back afterwards. The target
this project holds itself to: every stage under 4 GiB, so an 8 GB laptop runs the default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import yaml

LIMIT_GIB = 4.0


def pipeline_stages() -> list[str]:
    """Stage names (``name@item`` for foreach stages) in the order ``dvc repro`` runs them."""
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True, check=True)
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def run_stage(stage: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GiB, exit code) of ``dvc repro --single-item --force stage``."""
    started = time.perf_counter()
    process = subprocess.Popen(["dvc", "repro", "--single-item", "--force", stage])
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 2**20, process.returncode


def set_params(path: Path, assignments: list[str]) -> None:
    params = yaml.safe_load(path.read_text())
    for assignment in assignments:
        key, value = assignment.split("=", 1)
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="*", default=None, help="default: every stage, in pipeline order")
    parser.add_argument("-S", dest="set", action="append", default=[], help="key=value for params.yaml during the run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    stages = args.stages or pipeline_stages()
    params_file = Path("params.yaml")
    saved = params_file.read_text()
    rows = []
    try:
        if args.set:
            set_params(params_file, args.set)
        for stage in stages:
            wall, peak, code = run_stage(stage)
            rows.append({"stage": stage, "wall_s": round(wall, 1), "peak_rss_gib": round(peak, 2), "exit_code": code})
            print(f"== {stage}: {wall:.0f} s, peak RSS {peak:.2f} GiB", flush=True)
            if code:
                break
    finally:
        params_file.write_text(saved)

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; params: {args.set or 'as committed'}")
    print(f"{'stage':<28} {'wall':>7} {'peak RSS':>9}")
    for row in rows:
        flag = "" if row["peak_rss_gib"] <= LIMIT_GIB else f"  over {LIMIT_GIB:g} GiB"
        print(f"{row['stage']:<28} {row['wall_s']:>6.0f}s {row['peak_rss_gib']:>7.2f} G{flag}")
    print(f"{'all stages':<28} {sum(r['wall_s'] for r in rows):>6.0f}s {max(r['peak_rss_gib'] for r in rows):>7.2f} G")
    if args.json:
        args.json.write_text(json.dumps({"set": args.set, "stages": rows}, indent=1) + "\n")
    if any(r["exit_code"] for r in rows):
        raise SystemExit(f"{rows[-1]['stage']} failed (exit code {rows[-1]['exit_code']})")


if __name__ == "__main__":
    main()
