"""The study's report, from the analysis (``thinktune.analysis.answer``) and the evaluation runs.

``study_metrics`` is the headline that ``metrics/study.json`` holds for `dvc exp show` and `dvc
metrics diff` (few, short columns): the base model's Pass@1, each strategy's Pass@1 at the step
chosen without peeking (mean over seeds), the headline difference with its 95% interval and the
number of problems. ``study_summary`` is ``report/study.json``: the whole analysis, the design
(strategies and their data, seeds, problems, samples) and the environment. ``render_markdown``
writes report/README.md: the answer first, then every checkpoint, every difference, the answers'
shape and where the numbers were made. Nothing here runs a model or computes an interval: every
number is read from the analysis, the runs' summaries, the training logs and the data report.
"""

from __future__ import annotations

from thinktune.analysis.answer import answer_paragraph
from thinktune.config.params import Params
from thinktune.evaluation.records import Run
from thinktune.layout import BASE

# What the original study (1.5B, CodeGen-*-5K, 41 LiveCodeBench AtCoder problems) found,
# printed beside our numbers for orientation; never used to compute anything.
ORIGINAL_STUDY = {
    "base": "7/41",
    "deep": "best at step 400 (11/41), collapsing to 5/41 at step 700",
    "diverse": "best at step 200 (10/41)",
}


def data_sources(params: Params) -> dict[str, str]:
    """strategy -> where its rows really came from (a stand-in run says it is one)."""
    data = params.data
    out = {}
    for strategy, parts in params.strategies.items():
        described = []
        for part in parts:
            dataset = data.datasets[part.dataset]
            if data.source == "hub":
                where = f"{dataset.repo} ({dataset.file})"
            elif data.source == "local":
                where = f"{data.local_dir}/{dataset.file} (a local copy of {dataset.repo})"
            else:
                where = f"{data.sample_dir}/{dataset.sample_file} (the offline stand-in for {dataset.repo})"
            limits = [f"first {part.problems} problems" if part.problems else "",
                      f"at most {part.solutions_per_problem} solutions each" if part.solutions_per_problem else ""]
            limits = [x for x in limits if x]
            described.append(where + (f", {' and '.join(limits)}" if limits else ""))
        out[strategy] = " + ".join(described)
    return out


def study_metrics(result: dict, n_problems: int) -> dict:
    """metrics/study.json: what `dvc exp show` compares across experiments. Every Pass@1 is over all
    the problems (a step chosen split-half is scored on half of them in the analysis; here it is the
    chosen checkpoint's whole-set figure, comparable with the base model's)."""
    d = result["headline"]["difference"]
    chosen = {s: result["checkpoints"][s][str(result["best"][s]["step"])]["estimate"] for s in result["strategies"]}
    return {BASE: {"pass1": result["checkpoints"][BASE]["0"]["estimate"]},
            **{s: {"pass1": pass1} for s, pass1 in chosen.items()},
            "diff": {"pass1": d["estimate"], "lo": d["ci95_low"], "hi": d["ci95_high"]},
            "problems": n_problems}


def generation_environment(runs: list[Run]) -> dict:
    """The precision and device every run's answers were generated with ("mixed" when runs
    disagree, e.g. a shared cache filled on another machine)."""
    found = {key: {run.summary.get("environment", {}).get(key) for run in runs} for key in ("precision", "device")}
    return {key: values.pop() if len(values) == 1 else "mixed" for key, values in found.items()}


def study_summary(result: dict, runs: list[Run], params: Params, data: dict) -> dict:
    """report/study.json: the design, the whole analysis and where the answers were made."""
    base = next(r for r in runs if r.strategy == BASE)
    return {"strategies": {s: {"data": src, "train_chats": data.get(s, {}).get("train_rows")}
                           for s, src in data_sources(params).items()},
            "seeds": params.train.seeds, "n_problems": base.summary["n_problems"],
            "n_samples": base.summary["n_samples"], "benchmark": base.summary["benchmark"],
            "analysis": result, "environment": generation_environment(runs)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _interval(p: dict, sign: str = "+") -> str:
    return f"{100 * p['estimate']:{sign}.1f} [{100 * p['ci95_low']:{sign}.1f}, {100 * p['ci95_high']:{sign}.1f}]"


def _benchmark(context: dict) -> str:
    if context["benchmark"] == "livecodebench":
        return f"LiveCodeBench ({context['platform']}, {', '.join(context['difficulties'])})"
    return context["benchmark"]


def _data_lines(sources: dict[str, str], data: dict) -> list[str]:
    """Each strategy's data source, training chats and what was left out on the way."""
    lines = []
    for strategy, source in sources.items():
        d = data.get(strategy, {})
        counts = "" if not d else (
            f": {d.get('train_rows')} training chats ({d.get('valid_rows')} held out; "
            f"{d.get('load', {}).get('malformed', 0)} malformed rows dropped, {sum(d.get('dropped', {}).values())} "
            f"over the length limit, {d.get('trimmed_for_balance', 0)} trimmed for balance)")
        lines.append(f"- {strategy}: {source}{counts}")
    return lines


def _environment_lines(runs: list[Run], training: dict[tuple[str, int], dict]) -> list[str]:
    """Where the numbers were made: precision, device, library versions, decoding, training speed."""
    lines = []
    base = next(r for r in runs if r.strategy == BASE).summary
    env = base.get("environment", {})
    if env:
        versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "accelerate") if env.get(k))
        lines.append(f"- answers generated in **{env.get('precision')}** on {env.get('device')} "
                     f"({env.get('device_name')}); {versions}")
    if base.get("decoding"):
        lines.append("- decoding: " + ", ".join(f"{k} {v}" for k, v in base["decoding"].items()))
    for (strategy, seed), t in training.items():
        valid = "" if t.get("valid_loss") is None else f", final validation loss {t['valid_loss']:.3f}"
        lines.append(f"- training {strategy} seed {seed}: {t['steps']} steps of {t['chats_per_step']} chats, final "
                     f"loss {t['train_loss']:.3f}{valid}, {t['tokens_per_s']:.0f} tokens/s in "
                     f"{t['environment']['precision']} on {t['environment']['device_name']}")
    return lines


def _checkpoint_lines(result: dict, curve: list[dict]) -> list[str]:
    lines = ["| strategy | step | seeds | Pass@1 [95% interval] | − base [95% interval] (p) | note |",
             "|---|---:|---:|---|---|---|"]
    base = result["checkpoints"][BASE]["0"]
    lines.append(f"| base | 0 | — | {_interval(base, '')} | — | reference: no fine-tuning |")
    for strategy in result["strategies"]:
        chosen = result["best"][strategy]["step"]
        steps = sorted(int(s) for s in result["checkpoints"][strategy])
        for step in steps:
            p = result["checkpoints"][strategy][str(step)]
            seeds = next(r["seeds"] for r in curve if r["strategy"] == strategy and r["step"] == step)
            notes = [n for n, applies in ((f"chosen ({result['best'][strategy]['rule']})", step == chosen),
                                          ("final", step == steps[-1])) if applies]
            vs = p["vs_base"]
            lines.append(f"| {strategy} | {step} | {seeds} | {_interval(p, '')} | {_interval(vs)} "
                         f"(p = {vs['p_value']:.3g}) | {', '.join(notes)} |")
    return lines


def _difference_lines(result: dict) -> list[str]:
    lines = []
    for pair, by_step in result["differences"].items():
        first, second = (s.capitalize() for s in pair.split("-", 1))
        lines += ["", f"| step | {first} − {second} [95% interval] | p | smallest detectable (80% power) |",
                  "|---:|---|---:|---:|"]
        lines += [f"| {step} | {_interval(d)} | {d['p_value']:.3g} | {100 * d['mde']:.1f} |"
                  for step, d in by_step.items()]
    return lines


def analysis_lines(result: dict, curve: list[dict]) -> list[str]:
    """Every checkpoint against the base model, every pair of strategies at every step, the step
    chosen per strategy and peak minus final."""
    lines = ["", "## Every checkpoint", "",
             ("Pass@1 is the mean over the strategy's training seeds and the problems; intervals are 95% "
              "intervals from clustered standard errors over problems and seeds (`thinktune/analysis/intervals.py`), "
              "in points of Pass@1; differences from the base model are paired by problem."), "",
             *_checkpoint_lines(result, curve),
             "", "## Differences between strategies, paired by problem", *_difference_lines(result),
             "", "| strategy | step chosen (rule) | its Pass@1 [95% interval] | peak − final [95% interval] |",
             "|---|---|---|---|"]
    for strategy, best in result["best"].items():
        drop = result["collapse"].get(strategy)
        fall = ("— (one step)" if not drop else "— (the peak is the final step)" if drop["peak_step"] == drop["final_step"]
                else f"{_interval(drop['peak_minus_final'])} (steps {drop['peak_step']} → {drop['final_step']})")
        lines.append(f"| {strategy} | {best['step']} ({best['rule']}) | {_interval(best['pass_at_1'], '')} | {fall} |")
    if result["headline"]["difference"]["seed_variance"] == "not estimated":
        lines += ["", ("One training seed per strategy: seed variance not estimated, so these intervals cover "
                       "problems and samples only, and peak − final has no seed-to-seed interval. Add seeds "
                       "(`dvc exp run -S 'train.seeds=[42,43,44]'`); `python -m thinktune.analysis.power` plans a design "
                       "that can tell the strategies apart (seeds x samples x problems, with its cost).")]
    return lines


def second_view_lines(benchmark: str, result: dict, curve: list[dict]) -> list[str]:
    """Another benchmark scored on every checkpoint: its answer, checkpoints and differences."""
    n = result["headline"]["difference"]["n_problems"]
    return ["", f"## Second view: {benchmark}", "",
            (f"The same checkpoints on {benchmark} ({n} problems scored), an independent view of the question; "
             "steps chosen by the same rule."), "",
            answer_paragraph(result).replace("**Answer: ", f"**On {benchmark}: ", 1), "",
            *_checkpoint_lines(result, curve), *_difference_lines(result)]


def render_markdown(result: dict, context: dict, curve: list[dict], runs: list[Run],
                    training: dict[tuple[str, int], dict], plot_path: str, shape_path: str, sources: dict[str, str],
                    data: dict | None = None, second_views: dict[str, tuple[dict, list[dict]]] | None = None) -> str:
    """report/README.md. ``context``: model, benchmark, platform, difficulties, n_samples, n_problems,
    seeds; ``sources``: each strategy's data source; ``data``: the data report; ``second_views``:
    benchmark -> (its analysis, its curve rows)."""
    lines = [
        f"# {' vs '.join(s.capitalize() for s in result['strategies'][:2])}: results",
        "",
        "Generated by `dvc repro` (stage `report`) from `results/` and `dvclive/`; do not edit.",
        "",
        answer_paragraph(result),
        "",
        f"- base model: `{context['model']}`",
        (f"- benchmark: {_benchmark(context)}, {context['n_problems']} problems, {context['n_samples']} sample(s) "
         f"per problem; training seeds {', '.join(map(str, context['seeds']))}"),
        "- training data per strategy:",
        *("  " + line for line in _data_lines(sources, data or {})),
        *_environment_lines(runs, training),
        "",
        f"![Pass@1 vs training step]({plot_path})",
        *analysis_lines(result, curve),
        *(line for b, (r, c) in (second_views or {}).items() for line in second_view_lines(b, r, c)),
        "",
        "## What the answers look like",
        "",
        ("Reasoning is what the model wrote inside `<think>` … `</think>` before its code; the fine-tuned "
         "models are trained to write it, the base model was not. Means over seeds."),
        "",
        f"![Answer shape vs training step]({shape_path})",
        "",
        "| strategy | step | reasoning tokens (mean) | cut by the token limit | no code block |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in curve:
        lines.append(f"| {r['strategy']} | {r['step']} | {r['mean_reasoning_tokens']:.0f} | "
                     f"{_pct(r['truncated_share'])} | {_pct(r['no_code_share'])} |")
    lines += [
        "",
        "## For orientation: the original study",
        "",
        ("Qwen2.5-Coder-1.5B-Instruct on CodeGen-Deep-5K / -Diverse-5K, one seed, one greedy answer on 41 "
         f"LiveCodeBench AtCoder easy+medium problems: base {ORIGINAL_STUDY['base']}; Deep {ORIGINAL_STUDY['deep']}; "
         f"Diverse {ORIGINAL_STUDY['diverse']}. Numbers above come from this run's settings "
         "(params.yaml); on a GPU with the hub, `python -m thinktune.config.presets paper && dvc exp run` runs the "
         "full study."),
        "",
        ("Per-problem records (raw answers, graded code, verdict per test): `results/<benchmark>/base/base.jsonl` "
         "and `results/<benchmark>/<strategy>/seed-<seed>/<checkpoint>.jsonl`."),
        "",
    ]
    return "\n".join(lines)
