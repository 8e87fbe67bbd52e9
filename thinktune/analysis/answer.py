"""The study's answer with honest intervals, from the evaluation records and the training logs.

One row per (strategy, seed, step, problem) goes to ``thinktune.analysis.intervals``; what comes back:

- each checkpoint's Pass@1 (mean over seeds) with a 95% interval over problems and seeds, and its
  difference from the base model, paired by problem;
- every pair of strategies' difference at every step both evaluated, paired by problem, with
  interval and p-value (the first two strategies of params ``strategies`` are the headline);
- each strategy's step chosen *without peeking*: the lowest validation loss where training logged
  one (the chosen step is then scored on every problem), else split-half (chosen on one half of
  the problems, scored on the other);
- the headline: Deep − Diverse at those chosen steps, and the smallest difference this run's
  design could detect at 80% power;
- peak minus final ("collapse") per strategy.

With one training seed the seed-to-seed variance is not estimated and every interval covers
problems and samples only; the report says so. Everything returned is plain JSON.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path

from thinktune.analysis import intervals as analysis
from thinktune.evaluation.records import Run
from thinktune.layout import BASE


def analysis_rows(runs: Iterable[Run]) -> list[dict]:
    """One row per (strategy, seed, step, problem) of the evaluated runs; the base model is one run
    (seed 0) at step 0. A step is kept only where every seed of its strategy reached it (a mean over
    seeds, and the seed-paired peak minus final, need them all)."""
    runs = list(runs)
    steps: dict[str, set[int]] = {}
    for run in runs:
        mine = {run.step_of(name) for name in run.records}
        steps[run.strategy] = steps[run.strategy] & mine if run.strategy in steps else mine
    return [{"strategy": run.strategy, "seed": 0 if run.seed is None else run.seed, "step": run.step_of(name),
             "question_id": r["question_id"], "n_samples": r["n_samples"], "n_correct": r["n_correct"]}
            for run in runs for name, recs in run.records.items() if run.step_of(name) in steps[run.strategy]
            for r in recs]


def read_validation_loss(live_dir: Path) -> dict[int, float] | None:
    """step -> validation loss from one training run's DVCLive log (None when it logged none)."""
    path = Path(live_dir) / "plots" / "metrics" / "valid_loss.tsv"
    if not path.is_file():
        return None
    with path.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {int(row["step"]): float(row["valid_loss"]) for row in rows} or None


def validation_losses(live_dirs: Sequence[Path]) -> dict[int, float] | None:
    """step -> validation loss averaged over a strategy's runs (one DVCLive folder per seed), at the
    steps every run logged; None when a run logged none."""
    per_run = [read_validation_loss(d) for d in live_dirs]
    if not per_run or any(v is None for v in per_run):
        return None
    steps = set.intersection(*(set(v) for v in per_run))
    return {step: sum(v[step] for v in per_run) / len(per_run) for step in sorted(steps)} or None


def _points(est: analysis.Estimate) -> dict:
    return {"estimate": round(est.estimate, 6), "ci95_low": round(est.low, 6), "ci95_high": round(est.high, 6),
            "p_value": round(est.p_value, 6), "mde": round(est.mde, 6), "n_problems": est.n_problems,
            "seeds": list(est.n_seeds), "seed_variance": est.seed_variance, "method": est.method}


def _checkpoints(study: dict) -> dict[str, dict[str, dict]]:
    base = next(iter(study[BASE].values())) if BASE in study else None
    out: dict[str, dict[str, dict]] = {}
    for strategy, by_step in study.items():
        out[strategy] = {}
        for step, cp in by_step.items():
            point = _points(analysis.pass_at_1(cp))
            if strategy != BASE and base is not None:
                point["vs_base"] = _points(analysis.difference(cp, base))
            out[strategy][str(step)] = point
    return out


def checkpoint_points(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """``[strategy][step]``: each checkpoint's Pass@1 (mean over seeds) with its 95% interval over
    problems and seeds, and (``vs_base``) its difference from the base model, paired by problem."""
    return _checkpoints(analysis.build_study(rows))


def answer(rows: list[dict], validation: Mapping[str, Mapping[int, float] | None], strategies: Sequence[str]) -> dict:
    """The analysis of every strategy, ``strategies[0]`` against ``strategies[1]`` as the headline
    (the base model, strategy ``base``, for reference)."""
    study = analysis.build_study(rows)
    out: dict = {"strategies": list(strategies), "checkpoints": _checkpoints(study), "differences": {}, "best": {},
                 "collapse": {}}
    for first, second in combinations(strategies, 2):
        out["differences"][f"{first}-{second}"] = {
            str(step): _points(analysis.difference(study[first][step], study[second][step]))
            for step in sorted(set(study[first]) & set(study[second]))}
    chosen = {}
    for strategy in strategies:
        best = analysis.best_step(study[strategy], validation.get(strategy))
        chosen[strategy] = best
        out["best"][strategy] = {"step": best.step, "rule": best.rule, "pass_at_1": _points(best.pass_at_1)}
        if len(study[strategy]) > 1:
            drop = analysis.collapse(study[strategy], validation_loss=validation.get(strategy))
            out["collapse"][strategy] = {"peak_step": drop.peak_step, "final_step": drop.final_step, "rule": drop.rule,
                                         "peak_minus_final": _points(drop.peak_minus_final)}
    # The headline: first - second at the chosen steps, on the problems neither choice looked at.
    first, second = strategies[0], strategies[1]
    scored = sorted(set(chosen[first].scored_on) & set(chosen[second].scored_on))
    headline = analysis.difference(study[first][chosen[first].step].restrict(scored),
                                   study[second][chosen[second].step].restrict(scored))
    out["headline"] = {"first": first, "second": second, "first_step": chosen[first].step,
                       "second_step": chosen[second].step, "rules": sorted({chosen[s].rule for s in (first, second)}),
                       "difference": _points(headline)}
    out["difference_by_step"] = out["differences"][f"{first}-{second}"]
    return out


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def answer_paragraph(result: dict) -> str:
    """The report's first paragraph: the answer in one sentence, with its interval and the smallest
    difference this design could detect."""
    h = result["headline"]
    d = h["difference"]
    first, second = h["first"].capitalize(), h["second"].capitalize()
    rule = ("each chosen on validation loss" if h["rules"] == ["validation-loss"] else
            "each chosen on one half of the problems and scored on the other" if h["rules"] == ["split-half"] else
            "chosen by " + " / ".join(h["rules"]))
    if d["ci95_low"] > 0 or d["ci95_high"] < 0:
        verdict = f"{first if d['estimate'] > 0 else second} is better"
    else:
        verdict = f"this run cannot tell {first} from {second}"
    seeds = ("one training seed per strategy, so seed-to-seed variance is not estimated and the interval covers "
             "problems and samples only" if d["seed_variance"] == "not estimated" else
             f"{' and '.join(map(str, d['seeds']))} training seeds")
    degenerate = "" if d["method"].startswith("clustered") else f" ({d['method']}: the design's power is unknown)"
    return (f"**Answer: {verdict}.** {first} − {second} Pass@1 at their best steps ({h['first_step']} and "
            f"{h['second_step']}, {rule}) is {_pts(d['estimate'])} points, 95% interval "
            f"[{_pts(d['ci95_low'])}, {_pts(d['ci95_high'])}] (p = {d['p_value']:.3g}, {d['n_problems']} problems; "
            f"{seeds}). The smallest difference this design could detect at 80% power is "
            f"{100 * d['mde']:.1f} points{degenerate}.")
