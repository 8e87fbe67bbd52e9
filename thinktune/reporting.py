"""The study's answer, from the evaluation summaries and the per-problem records.

``build_study`` turns the Pass@1 of every checkpoint into the table (strategy, checkpoint,
step, Pass@1, solved/total, 95% interval, paired test against the base model, answer
shape, note), the study's summary that ``report/study.json`` holds (base; best and final step
and Pass@1 per strategy; best Deep vs best Diverse; the precision and device the answers were
generated with) and the headline that ``metrics/study.json`` holds for `dvc exp show` and `dvc
metrics diff` (Pass@1 of the base model and of each strategy's best checkpoint: few, short
columns). ``render_markdown`` writes report/README.md. Nothing here runs a model: every number
is read from ``results/<target>/summary.json``, ``results/<target>/<checkpoint>.jsonl``,
``dvclive/train_<strategy>/summary.json`` and ``data/formatted/report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinktune.atomic import read_jsonl
from thinktune.params import STRATEGIES
from thinktune.stats import discordant, mcnemar_exact
from thinktune.study_answer import answer_paragraph

# Differences with a paired p-value below this are called significant in the text.
ALPHA = 0.05

# What the original study (1.5B, CodeGen-*-5K, 41 LiveCodeBench AtCoder problems) found,
# printed beside our numbers for orientation; never used to compute anything.
ORIGINAL_STUDY = {
    "base": "7/41",
    "deep": "best at step 400 (11/41), collapsing to 5/41 at step 700",
    "diverse": "best at step 200 (10/41)",
}


@dataclass(frozen=True)
class Point:
    strategy: str  # "base", "deep" or "diverse"
    checkpoint: str
    step: int
    pass_at_1: float
    solved: int
    total: int
    ci95_low: float
    ci95_high: float
    mean_reasoning_tokens: float
    truncated_share: float
    no_code_share: float


_POINT_FIELDS = ("step", "pass_at_1", "solved", "total", "ci95_low", "ci95_high", "mean_reasoning_tokens",
                 "truncated_share", "no_code_share")


def load_solved(records_file: Path) -> dict[str, bool]:
    """question_id -> whether any sample of the problem passed, from one results file."""
    return {r["question_id"]: r["n_correct"] > 0 for r in read_jsonl(records_file)}


def points_of(evals: dict[str, dict]) -> dict[str, list[Point]]:
    """Checkpoints of each target, in step order."""
    out = {}
    for target in ("base", *STRATEGIES):
        checkpoints = evals[target]["checkpoints"]
        out[target] = sorted((Point(strategy=target, checkpoint=name, **{f: m[f] for f in _POINT_FIELDS})
                              for name, m in checkpoints.items()), key=lambda p: p.step)
        if not out[target]:
            raise ValueError(f"results/{target}/summary.json has no checkpoints: re-run eval_checkpoints@{target}")
    return out


def best(points: list[Point]) -> Point:
    """Highest Pass@1; the earliest step wins a tie (less training for the same score)."""
    return max(points, key=lambda p: (p.pass_at_1, -p.step))


def paired(solved: dict[str, dict[str, dict[str, bool]]], a: Point, b: Point) -> dict:
    """McNemar's exact test of checkpoint a against b over the same problems."""
    sa, sb = solved[a.strategy][a.checkpoint], solved[b.strategy][b.checkpoint]
    if sa.keys() != sb.keys():
        raise ValueError(f"{a.strategy}/{a.checkpoint} and {b.strategy}/{b.checkpoint} were graded on "
                         "different problems; re-run eval_checkpoints for all targets")
    ids = sorted(sa)
    only_a, only_b = discordant([sa[i] for i in ids], [sb[i] for i in ids])
    return {"only_first": only_a, "only_second": only_b, "p_value": round(mcnemar_exact(only_a, only_b), 4)}


def generation_environment(evals: dict[str, dict]) -> dict:
    """The precision and device every target's answers were generated with ("mixed" when
    targets disagree, e.g. a shared cache filled on another machine)."""
    found = {key: {evals[t].get("environment", {}).get(key) for t in evals} for key in ("precision", "device")}
    return {key: values.pop() if len(values) == 1 else "mixed" for key, values in found.items()}


def build_study(evals: dict[str, dict], solved: dict[str, dict[str, dict[str, bool]]]) -> dict:
    """Table rows, the headline ``summary`` and what the answer sentence says.
    ``solved[target][checkpoint][question_id]``."""
    points = points_of(evals)
    base = points["base"][0]
    rows = [_row(base, base, solved, note="reference: no fine-tuning")]
    # The study's summary (report/study.json); the headline of `dvc exp show` is `metrics` below.
    summary: dict = {"n_problems": base.total, "base": {"pass1": base.pass_at_1, "solved": base.solved}}
    for strategy in STRATEGIES:
        top, final = best(points[strategy]), points[strategy][-1]
        for point in points[strategy]:
            notes = [note for note, applies in ((f"best {strategy}", point == top), ("final", point == final),
                                                ("below base", point.pass_at_1 < base.pass_at_1)) if applies]
            rows.append(_row(point, base, solved, note=", ".join(notes)))
        summary[strategy] = {
            "best_step": top.step, "best_pass1": top.pass_at_1,
            "final_step": final.step, "final_pass1": final.pass_at_1,
            "p_best_vs_base": paired(solved, top, base)["p_value"],
        }
    deep, diverse = best(points["deep"]), best(points["diverse"])
    head_to_head = paired(solved, deep, diverse)
    summary["deep_vs_diverse"] = {"deep_only": head_to_head["only_first"],
                                  "diverse_only": head_to_head["only_second"], "p_value": head_to_head["p_value"]}
    summary["environment"] = generation_environment(evals)
    answer = {"n": base.total, "base": base, "deep": deep, "diverse": diverse, **summary["deep_vs_diverse"]}
    metrics = {"base": {"pass1": base.pass_at_1}, **{s: {"pass1": summary[s]["best_pass1"]} for s in STRATEGIES}}
    return {"rows": rows, "summary": summary, "metrics": metrics, "answer": answer}


def _row(point: Point, base: Point, solved: dict, note: str) -> dict:
    versus = None if point.strategy == "base" else paired(solved, point, base)
    return {
        "strategy": point.strategy, "checkpoint": point.checkpoint, "step": point.step,
        "pass_at_1": point.pass_at_1, "solved": point.solved, "total": point.total,
        "ci95_low": point.ci95_low, "ci95_high": point.ci95_high, "vs_base": versus,
        "mean_reasoning_tokens": point.mean_reasoning_tokens, "truncated_share": point.truncated_share,
        "no_code_share": point.no_code_share, "note": note,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _benchmark(context: dict) -> str:
    if context["benchmark"] == "livecodebench":
        return f"LiveCodeBench ({context['platform']}, {', '.join(context['difficulties'])})"
    return context["benchmark"]


def answer_sentence(answer: dict) -> str:
    deep, diverse, base, n = answer["deep"], answer["diverse"], answer["base"], answer["n"]
    scores = (f"best Deep checkpoint (step {deep.step}) solves {deep.solved}/{n}, "
              f"best Diverse checkpoint (step {diverse.step}) {diverse.solved}/{n}, base model {base.solved}/{n}")
    if deep.pass_at_1 == diverse.pass_at_1:
        verdict = "Deep and Diverse tie"
    else:
        verdict = "Deep leads" if deep.pass_at_1 > diverse.pass_at_1 else "Diverse leads"
    strength = ("the difference is significant" if answer["p_value"] < ALPHA else
                "the difference is not significant at this sample size")
    return (f"{verdict}: {scores}. On the problems they disagree on, Deep alone solves {answer['deep_only']} and "
            f"Diverse alone {answer['diverse_only']} (McNemar exact p = {answer['p_value']:.3g}); "
            f"{strength} (alpha = {ALPHA}).")


def _data_line(data: dict) -> list[str]:
    """Training chats per strategy and what was left out on the way (data/formatted/report.json)."""
    if not data:
        return []
    parts = []
    for strategy in STRATEGIES:
        d = data.get(strategy, {})
        dropped = sum(d.get("dropped", {}).values())
        parts.append(f"{strategy} {d.get('train_rows')} training chats ({d.get('valid_rows')} held out; "
                     f"{d.get('load', {}).get('malformed', 0)} malformed rows dropped, {dropped} over the length "
                     f"limit, {d.get('trimmed_for_balance', 0)} trimmed for balance)")
    return ["- training data: " + "; ".join(parts)]


def _environment_lines(evals: dict[str, dict], training: dict[str, dict]) -> list[str]:
    """Where the numbers were made: precision, device, library versions, decoding, training speed."""
    lines = []
    env = evals["base"].get("environment", {})
    if env:
        versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "accelerate") if env.get(k))
        lines.append(f"- answers generated in **{env.get('precision')}** on {env.get('device')} "
                     f"({env.get('device_name')}); {versions}")
    decoding = evals["base"].get("decoding")
    if decoding:
        lines.append("- decoding: " + ", ".join(f"{k} {v}" for k, v in decoding.items()))
    for strategy in STRATEGIES:
        t = training.get(strategy)
        if t:
            valid = "" if t.get("valid_loss") is None else f", final validation loss {t['valid_loss']:.3f}"
            lines.append(f"- training {strategy}: {t['steps']} steps of {t['chats_per_step']} chats, final loss "
                         f"{t['train_loss']:.3f}{valid}, {t['tokens_per_s']:.0f} tokens/s in "
                         f"{t['environment']['precision']} on {t['environment']['device_name']}")
    return lines


def _interval(p: dict, sign: str = "+") -> str:
    return f"{100 * p['estimate']:{sign}.1f} [{100 * p['ci95_low']:{sign}.1f}, {100 * p['ci95_high']:{sign}.1f}]"


def analysis_lines(result: dict) -> list[str]:
    """The analysis section: Deep - Diverse at every step, peak minus final, what the intervals cover."""
    h = result["headline"]
    first, second = h["first"].capitalize(), h["second"].capitalize()
    lines = ["", "## Deep − Diverse, with intervals", "",
             ("Paired by problem; 95% intervals from clustered standard errors over problems and training "
              "seeds (`thinktune/analysis.py`), in points of Pass@1."), "",
             f"| step | {first} − {second} [95% interval] | p | smallest detectable (80% power) |",
             "|---:|---|---:|---:|"]
    for step, d in result["difference_by_step"].items():
        lines.append(f"| {step} | {_interval(d)} | {d['p_value']:.3g} | {100 * d['mde']:.1f} |")
    lines += ["", "| strategy | step chosen (rule) | its Pass@1 [95% interval] | peak − final [95% interval] |",
              "|---|---|---|---|"]
    for strategy, best in result["best"].items():
        drop = result["collapse"].get(strategy)
        fall = ("— (one step)" if not drop else "— (the peak is the final step)" if drop["peak_step"] == drop["final_step"]
                else f"{_interval(drop['peak_minus_final'])} (steps {drop['peak_step']} → {drop['final_step']})")
        lines.append(f"| {strategy} | {best['step']} ({best['rule']}) | {_interval(best['pass_at_1'], '')} | {fall} |")
    seed_note = h["difference"]["seed_variance"]
    if seed_note == "not estimated":
        lines += ["", ("One training seed per strategy: seed variance not estimated, so these intervals cover "
                       "problems and samples only. `python -m thinktune.power` plans a design that can tell "
                       "the strategies apart (seeds x samples x problems, with its cost).")]
    return lines


def render_markdown(study: dict, context: dict, evals: dict[str, dict], training: dict[str, dict],
                    plot_path: str, shape_path: str, data: dict | None = None) -> str:
    """report/README.md. ``context``: model, data, benchmark, platform, difficulties, n_samples;
    ``data``: the data report (training chats and what was left out, per strategy)."""
    s = study["summary"]
    lines = [
        "# Deep vs Diverse: results",
        "",
        "Generated by `dvc repro` (stage `report`) from `results/` and `dvclive/train_*/summary.json`; do not edit.",
        "",
        f"- base model: `{context['model']}`; training data: {context['data']}",
        (f"- benchmark: {_benchmark(context)}, {s['n_problems']} problems, "
         f"{context['n_samples']} sample(s) per problem"),
        *_data_line(data or {}),
        *_environment_lines(evals, training),
        "",
        "## Answer",
        "",
        *([answer_paragraph(study["analysis"]), ""] if "analysis" in study else []),
        answer_sentence(study["answer"]),
        ("That best checkpoint is picked on the same problems it is scored on, so its score is optimistic; "
         "the answer above picks each strategy's step without looking at the problems it is scored on."),
        "",
        f"![Pass@1 vs training step]({plot_path})",
        "",
        "## Every checkpoint",
        "",
        "| strategy | checkpoint | step | Pass@1 | solved | 95% interval | vs base: gained / lost (p) | note |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in study["rows"]:
        versus = "—" if r["vs_base"] is None else (
            f"+{r['vs_base']['only_first']} / −{r['vs_base']['only_second']} (p = {r['vs_base']['p_value']:.3g})")
        lines.append(f"| {r['strategy']} | {r['checkpoint']} | {r['step']} | {_pct(r['pass_at_1'])} | "
                     f"{r['solved']}/{r['total']} | {_pct(r['ci95_low'])}–{_pct(r['ci95_high'])} | {versus} | "
                     f"{r['note']} |")
    if "analysis" in study:
        lines += analysis_lines(study["analysis"])
    lines += [
        "",
        "## What the answers look like",
        "",
        ("Reasoning is what the model wrote inside `<think>` … `</think>` before its code; the fine-tuned "
         "models are trained to write it, the base model was not."),
        "",
        f"![Answer shape vs training step]({shape_path})",
        "",
        "| strategy | checkpoint | step | reasoning tokens (mean) | cut by the token limit | no code block |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in study["rows"]:
        lines.append(f"| {r['strategy']} | {r['checkpoint']} | {r['step']} | {r['mean_reasoning_tokens']:.0f} | "
                     f"{_pct(r['truncated_share'])} | {_pct(r['no_code_share'])} |")
    lines += [
        "",
        "## For orientation: the original study",
        "",
        ("Qwen2.5-Coder-1.5B-Instruct on CodeGen-Deep-5K / -Diverse-5K, 41 LiveCodeBench AtCoder easy+medium "
         f"problems: base {ORIGINAL_STUDY['base']}; Deep {ORIGINAL_STUDY['deep']}; "
         f"Diverse {ORIGINAL_STUDY['diverse']}. Numbers above come from this run's settings "
         "(params.yaml); on a GPU with the hub, `python -m thinktune.presets paper && dvc exp run` runs the "
         "full study."),
        "",
        "Per-problem records (raw answers, graded code, verdict per test): `results/<target>/<checkpoint>.jsonl`.",
        "",
    ]
    return "\n".join(lines)
