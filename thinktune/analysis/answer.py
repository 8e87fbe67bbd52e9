"""The study's answer with honest intervals, from the evaluation records and the training logs.

One row per (strategy, seed, step, problem) goes to ``thinktune.analysis.intervals``; what comes back:

- each checkpoint's Pass@1 (mean over seeds) with a 95% interval over problems and seeds, and its
  difference from the base model, paired by problem;
- every pair of strategies' difference at every step both evaluated, paired by problem, with
  interval and p-value (the first two strategies of params ``strategies`` are the headline);
- each strategy's step chosen *without looking at the benchmark*: the lowest validation loss where
  training logged one, else the final step (the rule to pre-register);
- the headline, the one pre-registered comparison: Deep − Diverse at those chosen steps, and the
  smallest difference this run's design detects at 80% power, as the power planner prints it for the
  design (simulated from the priors, :mod:`thinktune.analysis.simulation`);
- peak minus final ("collapse") per strategy where the peak is chosen beforehand (validation loss).

Every step's difference and every checkpoint's difference from the base are exploratory: each
family carries Holm-adjusted p-values (``p_holm``). With one training seed the run-to-run variance
is not measured: every trained arm's interval adds the priors' (``thinktune.analysis.variance``),
and the answer names no winner. Everything returned is plain JSON.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from itertools import combinations
from pathlib import Path

import numpy as np

from thinktune.analysis import intervals as analysis
from thinktune.analysis.intervals import DEFAULT_PRIORS
from thinktune.analysis.simulation import DEFAULT_STUDIES, simulated_mde
from thinktune.analysis.stats import holm
from thinktune.analysis.variance import Priors
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
    # No MDE from the estimate's own SE: it overstated power (module docstring of
    # thinktune.analysis.simulation); the headline carries the planner's (planned_mde).
    return {"estimate": round(est.estimate, 6), "ci95_low": round(est.low, 6), "ci95_high": round(est.high, 6),
            "p_value": round(est.p_value, 6), "n_problems": est.n_problems,
            "seeds": list(est.n_seeds), "seed_variance": est.seed_variance, "prior_se": round(est.prior_se, 6),
            "method": est.method}


def _with_holm(points: list[dict]) -> None:
    """Add ``p_holm`` to a family of exploratory comparisons (every step, or every checkpoint against the
    base): Holm's adjustment for looking at all of them."""
    for point, adjusted in zip(points, holm([p["p_value"] for p in points])):
        point["p_holm"] = round(adjusted, 6)


def _checkpoints(study: dict, priors: Priors) -> dict[str, dict[str, dict]]:
    base = next(iter(study[BASE].values())) if BASE in study else None
    out: dict[str, dict[str, dict]] = {}
    for strategy, by_step in study.items():
        out[strategy] = {}
        trained = strategy != BASE
        for step, cp in by_step.items():
            point = _points(analysis.pass_at_1(cp, priors, trained))
            if trained and base is not None:
                point["vs_base"] = _points(analysis.difference(cp, base, priors, (True, False)))
            out[strategy][str(step)] = point
    _with_holm([p["vs_base"] for by_step in out.values() for p in by_step.values() if "vs_base" in p])
    return out


def checkpoint_points(rows: list[dict], priors: Priors = DEFAULT_PRIORS) -> dict[str, dict[str, dict]]:
    """``[strategy][step]``: each checkpoint's Pass@1 (mean over seeds) with its 95% interval over
    problems and seeds, and (``vs_base``) its difference from the base model, paired by problem."""
    return _checkpoints(analysis.build_study(rows), priors)


def answer(rows: list[dict], validation: Mapping[str, Mapping[int, float] | None], strategies: Sequence[str],
           priors: Priors = DEFAULT_PRIORS) -> dict:
    """The analysis of every strategy, ``strategies[0]`` against ``strategies[1]`` as the headline
    (the base model, strategy ``base``, for reference)."""
    study = analysis.build_study(rows)
    out: dict = {"strategies": list(strategies), "checkpoints": _checkpoints(study, priors), "differences": {},
                 "best": {}, "collapse": {}, "priors": asdict(priors)}
    for first, second in combinations(strategies, 2):
        by_step = {str(step): _points(analysis.difference(study[first][step], study[second][step], priors))
                   for step in sorted(set(study[first]) & set(study[second]))}
        _with_holm(list(by_step.values()))
        out["differences"][f"{first}-{second}"] = by_step
    chosen = {}
    for strategy in strategies:
        best = analysis.best_step(study[strategy], validation.get(strategy), priors)
        chosen[strategy] = best
        out["best"][strategy] = {"step": best.step, "rule": best.rule, "pass_at_1": _points(best.pass_at_1)}
        if len(study[strategy]) > 1:
            drop = analysis.collapse(study[strategy], validation_loss=validation.get(strategy), priors=priors)
            out["collapse"][strategy] = None if drop is None else {
                "peak_step": drop.peak_step, "final_step": drop.final_step, "rule": drop.rule,
                "peak_minus_final": _points(drop.peak_minus_final)}
    # The headline, the one pre-registered comparison: first - second at the chosen steps.
    first, second = strategies[0], strategies[1]
    headline = analysis.difference(study[first][chosen[first].step], study[second][chosen[second].step], priors)
    out["headline"] = {"first": first, "second": second, "first_step": chosen[first].step,
                       "second_step": chosen[second].step, "rules": sorted({chosen[s].rule for s in (first, second)}),
                       "difference": _points(headline),
                       "planned_mde": planned_mde(study[first][chosen[first].step],
                                                  study[second][chosen[second].step], priors)}
    out["difference_by_step"] = out["differences"][f"{first}-{second}"]
    return out


def planned_mde(a: analysis.Checkpoint, b: analysis.Checkpoint, priors: Priors) -> dict:
    """The smallest difference this run's design detects with 80% power, as the planner prints it for
    the design (``python -m thinktune.analysis.power --designs SxNxP``): simulated from the priors, not
    from this run. The MDE on the run's own SE overstated power: a true difference of its median
    was declared in 0.73 (41 x 1 x 1), 0.69 (41 x 10 x 3) and 0.62 (120 x 10 x 3) of simulated studies.
    Design: the fewer seeds of the two arms, the samples per problem (their harmonic mean, rounded, where
    they differ), the problems. ``mde`` None: no difference the base rate allows reaches 80% power."""
    seeds = min(len(a.seeds), len(b.seeds))
    samples = max(1, round(1.0 / float(np.mean(1.0 / np.concatenate([a.n.ravel(), b.n.ravel()])))))
    problems = len(a.question_ids)
    mde = simulated_mde(priors, seeds, samples, problems, DEFAULT_STUDIES, 0)
    return {"mde": round(mde, 6) if math.isfinite(mde) else None, "design": [seeds, samples, problems], "basis": "priors",
            "command": f"python -m thinktune.analysis.power --designs {seeds}x{samples}x{problems}"}


def format_p(p: float) -> str:
    """A p-value to 3 significant digits; below the 6 decimals the analysis keeps, "< 1e-06" (never "0")."""
    return "< 1e-06" if p < 1e-6 else f"{p:.3g}"


def _p_clause(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _rule_name(rule: str) -> str:
    return {"validation-loss": "chosen on validation loss", "final": "the final step"}.get(rule, rule)


def answer_paragraph(result: dict) -> str:
    """The report's first paragraph: the answer in one sentence that claims no more than its interval,
    then the interval, what it rests on, and the smallest difference this design could detect.

    One training seed: the run-to-run variance is unmeasured, so no winner is named whatever the
    interval (which carries the priors' run variance, stated). Two or more seeds: a winner only when the
    95% interval excludes 0."""
    h = result["headline"]
    d = h["difference"]
    first, second = h["first"].capitalize(), h["second"].capitalize()
    rule = ("each chosen on validation loss" if h["rules"] == ["validation-loss"] else
            "the final steps, the pre-registered rule without a validation loss" if h["rules"] == ["final"] else
            # mixed rules: name each strategy's, in the order of the steps (a sorted list of rules read as
            # if the first step had the first rule)
            f"{first}'s {_rule_name(result['best'][h['first']]['rule'])}, "
            f"{second}'s {_rule_name(result['best'][h['second']]['rule'])}")
    one_seed = d["seed_variance"] == "prior"
    if one_seed:
        verdict = (f"one training seed per strategy: the run-to-run variance is unknown, so this design cannot "
                   f"declare a winner between {first} and {second}")
    elif d["ci95_low"] > 0 or d["ci95_high"] < 0:
        verdict = f"{first if d['estimate'] > 0 else second} is better (the 95% interval excludes 0)"
    else:
        verdict = f"this run cannot tell {first} from {second}"
    if one_seed:
        seeds = (f"one seed each, so the interval adds the planner's prior for run-to-run variance, "
                 f"{100 * d['prior_se']:.1f} points SE (seed_sd {result['priors']['seed_sd']:g} on the logit scale), "
                 f"to the problems and samples the data measure")
    else:
        seeds = f"{' and '.join(map(str, d['seeds']))} training seeds, run-to-run variance measured"
    degenerate = "" if d["method"].startswith("clustered") else f" ({d['method']})"
    # The planner's figure for this design, from its priors (the run's own SE overstated power). One seed
    # declares nothing, so "this design could detect" would contradict the verdict: the figure is what a
    # p < 0.05 test on this design would detect, were a winner allowed.
    plan = h["planned_mde"]
    n_seeds, n_samples, n_problems = plan["design"]
    design = (f"{n_seeds} seed{'s' if n_seeds > 1 else ''} × {n_samples} sample{'s' if n_samples > 1 else ''} × "
              f"{n_problems} problems")
    if plan["mde"] is None:
        detects = "no difference reaches 80% power on this design ({design}), however large"
        power = ("No difference is declared with one seed; by the planner's priors (not this run), " if one_seed
                 else "By the planner's priors (not this run), ") + detects.format(design=design) + "."
    elif one_seed:
        power = (f"No difference is declared with one seed; by the planner's priors (not this run), a p < 0.05 "
                 f"test on this design ({design}) would detect {100 * plan['mde']:.1f} points with 80% power.")
    else:
        power = (f"By the planner's priors (not this run), the smallest difference this design could detect at "
                 f"80% power is {100 * plan['mde']:.1f} points ({design}).")
    return (f"**Answer: {verdict}.** {first} − {second} Pass@1 at steps {h['first_step']} and "
            f"{h['second_step']} ({rule}) is {_pts(d['estimate'])} points, 95% interval "
            f"[{_pts(d['ci95_low'])}, {_pts(d['ci95_high'])}]{degenerate} (p {_p_clause(d['p_value'])}, "
            f"{d['n_problems']} problems; {seeds}). {power}")
