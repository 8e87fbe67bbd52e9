"""One prepared check of what only a GPU exercises (bf16 numerics, flex attention, CUDA graphs),
sized for a short GPU lease, in phases with their own time budgets:

    python -m perf.gpu_check --accept-fallback attention=flex_attention --json "$OUT/gpu_check.json"   # a GPU, <= 480 s
    python -m perf.gpu_check --tiny --json /tmp/check.json      # a CPU, tiny models: seconds

0. ``preflight`` (``perf._gpu_eval``): imports and the installed packages' requirements, a tiny
   flex-attention compile (compiled once for train and eval), a tiny CUDA graph capture, the
   FlashAttention 2 probe, Liger's import; each failure names its fix, a failed import skips the rest.
1. ``packed_vs_padded``: one step's chats, loss and LoRA gradients through the project's
   padding-free row (flex attention on CUDA; sdpa on a CPU, recorded) vs a right-padded sdpa
   batch, bf16. Control: chats that see each other.
2. ``graphs_vs_eager``: decode-engine greedy tokens with CUDA graphs vs eager (and vs the
   ``buckets`` shapes the graphs replay); ``buckets`` stands in for graphs without CUDA. Also the
   project's chooser, greedy and sampled, whose token choice the graph captures with the forward:
   graphs vs ``buckets``, token for token.
3. ``engine_vs_peft``: engine logits with a LoRA adapter applied unmerged by ModelHost vs PEFT's
   own unmerged model decoded by the same engine, bf16 (they must agree); control: the bf16 merge.
4. ``eval_decode`` (``perf._gpu_eval``): decode tokens/s and peak memory through the evaluation's
   entry, ``LocalGenerator``: n = 1 greedy at batch 41 unmerged with graphs on and off and merged
   (reference), n = 16 sampled.
5. ``gpu_throughput``: ``python -m perf.gpu_throughput --preset paper --phases train`` (``--tiny``
   with ``--tiny``) in a child process with the budget left: training tokens/s and MFU.

Every fallback (attention, loss, CUDA graphs) is collected in the report's ``fallbacks`` and
warned; one that ``--accept-fallback WHAT=USED`` does not name makes the exit status 1, as a
phase that did not pass does.
Each phase's record has its status (passed / FAILED / failed: an error / interrupted by its
budget), elapsed seconds and figures; the JSON is rewritten after every phase, the machine
described at its top. Models are random-initialised (``perf._gpu_study``) and token ids
synthetic: no weights, no tokenizer, no hub, and no dvc/dvclive/trl/datasets import. The
tolerances are in ``perf/_gpu_checks.py``; the runbook in perf/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perf import _gpu_checks as checks
from perf import _gpu_eval as gpu_eval
from perf._gpu_study import REPO, preset_params
from perf.gpu_throughput import PhaseBudget, free_device_memory, hard_limit
from thinktune.atomic import write_json
from thinktune.logs import get_logger

log = get_logger("gpu_check")
PHASES = ("preflight", "packed_vs_padded", "graphs_vs_eager", "engine_vs_peft", "eval_decode", "gpu_throughput")
# Share of --budget-s each phase may use; gpu_throughput gets whatever is left of the total.
SHARES = {"preflight": 0.0625, "packed_vs_padded": 0.125, "graphs_vs_eager": 0.1, "engine_vs_peft": 0.1,
          "eval_decode": 0.35}
FORBIDDEN = ("dvc", "dvclive", "trl", "datasets", "hydra", "omegaconf")  # the GPU box lacks them
THROUGHPUT_KEYS = {"train": ("status", "tokens_per_s", "seconds_per_step", "peak_memory_bytes", "mfu", "mfu_formula",
                             "attention", "loss", "fallbacks")}


def describe_machine() -> dict:
    import os

    import torch

    from thinktune.models.hardware import describe_environment

    on_cuda = torch.cuda.is_available()
    return describe_environment("bf16") | {
        "gpu": torch.cuda.get_device_name(0) if on_cuda else None, "is_cpu": not on_cuda, "cuda": torch.version.cuda,
        "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if on_cuda else None,
        "python": sys.version.split()[0], "cpu_count": os.cpu_count()}


def throughput_phase(record: dict, args, remaining: float) -> str:
    """perf.gpu_throughput's training phase in a child process, with what is left less 30 s (the
    decode is measured through the evaluation's own entry by eval_decode)."""
    per_phase = max(10, int(remaining - 30))
    out = (args.json.parent if args.json else Path(tempfile.mkdtemp())) / "gpu_throughput.json"
    command = [sys.executable, "-m", "perf.gpu_throughput", "--preset", "paper", "--phases", "train", "--max-seconds",
               str(per_phase), "--json", str(out), *(["--tiny"] if args.tiny else [])]
    record.update({"command": " ".join(command[1:]), "json": str(out), "max_seconds_per_phase": per_phase})
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(20, remaining - 5),
                         check=False)
    out.with_suffix(".log").write_text(run.stdout + run.stderr)
    record.update({"returncode": run.returncode, "stdout_tail": run.stdout[-2000:]})
    if not out.is_file():
        record["stderr_tail"] = run.stderr[-2000:]
        return "failed: no JSON written"
    report = json.loads(out.read_text())
    record["machine_device_name"] = report.get("machine", {}).get("device_name")
    for section, keys in THROUGHPUT_KEYS.items():
        record[section] = {k: report.get(section, {}).get(k) for k in keys}
    record["fallbacks"] = record["train"]["fallbacks"] or []
    return "measured" if run.returncode == 0 else f"measured with errors (exit {run.returncode})"


def imported_distributions() -> list[str]:
    """The installed distributions whose modules this process imported (the wheels it needs)."""
    from importlib import metadata

    from perf.gpu_wheels import canonical

    owners = metadata.packages_distributions()
    top = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({canonical(d) for name in top for d in owners.get(name, [])} - {"thinktune"})


class Check:
    def __init__(self, args):
        import torch

        self.args = args
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.scale = checks.TINY if args.tiny else checks.FULL
        self.params = preset_params("paper")
        self.started = time.perf_counter()
        self.report = {"check": "gpu_check", "command": " ".join(["python -m perf.gpu_check", *args.argv]),
                       "machine": describe_machine(), "tiny": args.tiny, "budget_s": args.budget_s,
                       "weights": "random-initialised; synthetic token ids", "phases": {}, "fallbacks": []}

    def save(self) -> None:
        self.report["elapsed_s"] = time.perf_counter() - self.started
        self.report["forbidden_imports"] = sorted(m for m in FORBIDDEN if m in sys.modules)
        self.report["imported_distributions"] = imported_distributions()
        if self.args.json:
            write_json(self.args.json, self.report)

    def budget(self, name: str) -> float:
        left = self.args.budget_s - (time.perf_counter() - self.started)
        return left if name not in SHARES else min(left, SHARES[name] * self.args.budget_s)

    def run(self, name: str) -> None:
        record = self.report["phases"][name] = {"status": "running"}
        budget = self.budget(name)
        if name != "preflight" and self.report["phases"].get("preflight", {}).get("imports_ok") is False:
            record.update(status="skipped: the preflight's imports failed", budget_s=budget, elapsed_s=0.0)
            self.save()
            return
        record["budget_s"] = budget
        self.save()
        began = time.perf_counter()
        log.info("%s: starting (budget %.0f s)", name, budget)
        try:
            if budget < 5:
                record["status"] = "skipped: no budget left"
            else:
                with hard_limit(budget), tempfile.TemporaryDirectory() as work:
                    record["status"] = self.phase(name, record, budget, Path(work))
        except PhaseBudget:
            record["status"] = f"interrupted by its budget ({budget:.0f} s)"
        except Exception as exc:  # recorded; the next phase still runs
            log.exception("%s failed", name)
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        record["elapsed_s"] = time.perf_counter() - began
        for fallback in record.get("fallbacks", []):
            self.add_fallback(name, fallback)
        free_device_memory()
        log.info("%s: %s after %.1f s", name, record["status"], record["elapsed_s"])
        self.save()

    def add_fallback(self, phase: str, fallback: dict) -> None:
        """A slower path taken: accepted only where ``--accept-fallback WHAT=USED`` names it."""
        accepted = f"{fallback['what']}={fallback['used']}" in self.args.accept_fallback
        self.report["fallbacks"].append({"phase": phase, **fallback, "accepted": accepted})
        log.warning("%s: %s fell back to %s (%s)%s", phase, fallback["what"], fallback["used"], fallback["why"],
                    "; accepted by --accept-fallback" if accepted else "")

    def phase(self, name: str, record: dict, budget: float, work: Path) -> str:
        scale, device, lora = self.scale, self.device, self.params.lora
        if name == "preflight":
            return gpu_eval.preflight(record, device)
        if name == "eval_decode":
            return gpu_eval.eval_decode(record, checks.TINY if self.args.tiny else checks.FULL_EVAL, device, lora,
                                        self.params.eval, work)
        if name == "packed_vs_padded":
            return checks.packed_vs_padded(record, scale, device, lora)
        if name == "graphs_vs_eager":
            return checks.graphs_vs_eager(record, scale, device)
        if name == "engine_vs_peft":
            return checks.engine_vs_peft(record, scale, device, lora, self.params.train, work)
        return throughput_phase(record, self.args, budget)


def summary(report: dict) -> list[str]:
    m = report["machine"]
    lines = [(f"machine: {m['gpu'] or 'a CPU, no GPU (' + str(m['device_name']) + ')'}; torch {m['torch']}, "
              f"transformers {m['transformers']}, peft {m['peft']}")]
    for name, r in report["phases"].items():
        head = f"{name} [{r['status']}] {r.get('elapsed_s', 0):.1f} s"
        if "error" in r:
            lines.append(f"{head}: {r['error'][:300]}")
        elif name == "preflight" and "steps" in r:
            lines.append(f"{head}: " + ("; ".join(r["problems"]) if r["problems"] else
                                         ", ".join(f"{k} {v.get('status', 'ok') if isinstance(v, dict) else v}"
                                                   for k, v in r["steps"].items())))
        elif name == "eval_decode" and "runs" in r:
            lines.append(f"{head}: " + "; ".join(
                f"{run} {v['tokens_per_s'] or 0:,.0f} tok/s (graphs {v['cuda_graphs']}, peak {v['peak_memory_bytes'] / 2**30:.2f}"
                f" GiB)" for run, v in r["runs"].items()))
        elif name == "packed_vs_padded" and "loss_max_rel_diff" in r:
            lines.append(f"{head}: {r['packed_attention']} vs {r['padded_attention']}: loss rel diff "
                         f"{r['loss_max_rel_diff']:.2e}, grads {r['grad_rel_diff']:.2e} of max; control "
                         f"{r['control_loss_max_rel_diff']:.2e}")
        elif name == "graphs_vs_eager" and "vs_eager" in r:
            e = r["vs_eager"]
            lines.append(f"{head}: {r['graph_mode']} vs eager: {e['identical_token_share']:.1%} tokens identical, "
                         f"{e['prompts_identical']}/{r['prompts']} prompts, logits {e['logits_max_rel_diff_on_same_prefix']:.2e}"
                         f" of max; graphs {r['cuda_graphs']} ({r['graphs_off_reason']})")
            if "in_step_choice" in r:
                chosen = r["in_step_choice"]
                lines[-1] += f"; in-step choice vs {chosen['against']}: " + ", ".join(
                    f"{k} {v:.1%}" for k, v in chosen["identical_token_share"].items())
        elif name == "engine_vs_peft" and "engine_changed" in r:
            lines.append(f"{head}: engine changes {r['engine_changed']:.2f} of PEFT's logits, a bf16 merge "
                         f"{r['merge_changed']:.2f}")
        elif name == "gpu_throughput" and "train" in r:
            t = r["train"]
            lines.append(f"{head}: train {t['tokens_per_s'] or 0:,.0f} tok/s, {t['seconds_per_step'] or 0:.2f} s/step, "
                         f"MFU {t['mfu']} ({t['mfu_formula']}), attention {t['attention']}, loss {t['loss']}")
        else:
            lines.append(head)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny models, CPU-friendly: every phase in seconds")
    p.add_argument("--json", type=Path, help="rewritten after every phase")
    p.add_argument("--budget-s", type=float, default=480, help="the whole check's time budget (default 480)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="a subset (to rerun one)")
    p.add_argument("--accept-fallback", nargs="*", default=[], metavar="WHAT=USED",
                   help="fallbacks that do not fail the check, e.g. attention=flex_attention where no FlashAttention "
                        "2 build can travel; any other fallback exits 1")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.tiny:
        import torch

        torch.set_num_threads(1)  # tiny ops: threads only wait on each other (much slower on a busy machine)
    check = Check(args)
    print(summary(check.report)[0], flush=True)
    for name in args.phases:
        check.run(name)
    check.save()
    print("\n".join(summary(check.report)[1:] + [f"total {check.report['elapsed_s']:.1f} s"]
                    + ([f"written to {args.json}"] if args.json else [])))
    if check.report["forbidden_imports"]:
        print(f"imported what the GPU box lacks: {check.report['forbidden_imports']}")
    return verdict(check.report)


def verdict(report: dict) -> int:
    """0 when every phase passed or measured and every fallback was accepted; else 1 (printed why)."""
    failed = [name for name, r in report["phases"].items() if r["status"] not in ("passed", "measured")]
    unaccepted = [f for f in report["fallbacks"] if not f["accepted"]]
    for f in unaccepted:
        print(f"FALLBACK ({f['phase']}): {f['what']} ran as {f['used']}: {f['why']}")
    if failed:
        print(f"not passed: {', '.join(failed)}")
    return 1 if failed or unaccepted else 0


if __name__ == "__main__":
    sys.exit(main())
