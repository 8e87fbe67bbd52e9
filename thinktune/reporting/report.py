"""The study's report, from the analysis (``thinktune.analysis.answer``) and the evaluation runs.

``study_metrics`` is the headline that ``metrics/study.json`` holds for `dvc exp show` and `dvc
metrics diff` (few, short columns): the base model's Pass@1, each strategy's Pass@1 at the step
chosen without peeking (mean over seeds), the headline difference with its 95% interval and the
number of problems. ``study_summary`` is ``report/study.json``: the whole analysis, the design
(strategies and their data, seeds, problems, samples) and the environment. ``render_markdown``
writes report/README.md: the answer first, then every checkpoint, every difference, the answers'
shape and where the numbers were made. Its prose and layout are the Jinja2 template
``templates/report.md.j2``; this module hands it plain values (and the filters that format them).
Nothing here runs a model or computes an interval: every number is read from the analysis, the
runs' summaries, the training logs and the data report.
"""

from __future__ import annotations

import jinja2

from thinktune.analysis.answer import answer_paragraph, format_p
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
    the problems, comparable with the base model's."""
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


def _interval(p: dict, sign: str = "") -> str:
    """A Pass@1 point in points with its 95% interval: 12.5 [3.1, 30.0] (``sign`` "+": +12.5 [-3.1, +30.0])."""
    return f"{100 * p['estimate']:{sign}.1f} [{100 * p['ci95_low']:{sign}.1f}, {100 * p['ci95_high']:{sign}.1f}]"


def _template() -> jinja2.Template:
    """templates/report.md.j2; StrictUndefined so a renamed context key fails the render instead of
    leaving a blank, no autoescaping because the output is Markdown, not HTML."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("thinktune.reporting", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(interval=_interval, signed=lambda p: _interval(p, "+"), p=format_p,
                       points=lambda x: f"{100 * x:.1f}", pct=lambda x: f"{100 * x:.1f}%")
    return env.get_template("report.md.j2")


def _data_rows(sources: dict[str, str], data: dict) -> list[dict]:
    """Each strategy's data source, training chats and what was left out on the way (None: no data report)."""
    rows = []
    for strategy, source in sources.items():
        d = data.get(strategy, {})
        counts = {"train_rows": d.get("train_rows"), "valid_rows": d.get("valid_rows"),
                  "malformed": d.get("load", {}).get("malformed", 0), "overlength": sum(d.get("dropped", {}).values()),
                  "trimmed": d.get("trimmed_for_balance", 0)} if d else None
        rows.append({"strategy": strategy, "source": source, "counts": counts})
    return rows


def _made_with(runs: list[Run], training: dict[tuple[str, int], dict]) -> dict:
    """Where the numbers were made: precision, device, library versions, decoding, training speed."""
    base = next(r for r in runs if r.strategy == BASE).summary
    env = base.get("environment", {})
    environment = {"precision": env.get("precision"), "device": env.get("device"),
                   "device_name": env.get("device_name"),
                   "versions": [f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "accelerate") if env.get(k)]
                   } if env else None
    return {"environment": environment,
            "decoding": [f"{k} {v}" for k, v in base.get("decoding", {}).items()],
            "training": [{"strategy": strategy, "seed": seed, "steps": t["steps"], "chats_per_step": t["chats_per_step"],
                          "train_loss": t["train_loss"], "valid_loss": t.get("valid_loss"),
                          "tokens_per_s": t["tokens_per_s"], "precision": t["environment"]["precision"],
                          "device_name": t["environment"]["device_name"]} for (strategy, seed), t in training.items()]}


def _view(result: dict, curve: list[dict], answer: str) -> dict:
    """One benchmark's analysis as the template lays it out: the answer, every checkpoint, every pair
    of strategies at every step, each strategy's chosen step with peak minus final."""
    checkpoints = []
    for strategy in result["strategies"]:
        chosen = result["best"][strategy]
        steps = sorted(int(s) for s in result["checkpoints"][strategy])
        for step in steps:
            notes = [n for n, applies in ((f"chosen ({chosen['rule']})", step == chosen["step"]),
                                          ("final", step == steps[-1])) if applies]
            checkpoints.append({"strategy": strategy, "step": step, "point": result["checkpoints"][strategy][str(step)],
                                "seeds": next(r["seeds"] for r in curve if r["strategy"] == strategy
                                              and r["step"] == step), "notes": notes})
    differences = [{"first": pair.split("-", 1)[0].capitalize(), "second": pair.split("-", 1)[1].capitalize(),
                    "steps": list(by_step.items())} for pair, by_step in result["differences"].items()]
    best = [{"strategy": strategy, "step": b["step"], "rule": b["rule"], "pass_at_1": b["pass_at_1"],
             "drop": result["collapse"].get(strategy, False)} for strategy, b in result["best"].items()]
    difference = result["headline"]["difference"]
    return {"answer": answer, "base": result["checkpoints"][BASE]["0"], "checkpoints": checkpoints,
            "differences": differences, "best": best, "n_scored": difference["n_problems"],
            "one_seed": difference["seed_variance"] == "prior",
            "prior": f"seed_sd {result['priors']['seed_sd']:g} on the logit scale, {100 * difference['prior_se']:.1f} "
                     f"points SE on the headline difference"}


def render_markdown(result: dict, context: dict, curve: list[dict], runs: list[Run],
                    training: dict[tuple[str, int], dict], plot_path: str, shape_path: str, sources: dict[str, str],
                    data: dict | None = None, second_views: dict[str, tuple[dict, list[dict]]] | None = None) -> str:
    """report/README.md from templates/report.md.j2. ``context``: model, benchmark, platform,
    difficulties, n_samples, n_problems, seeds; ``sources``: each strategy's data source; ``data``:
    the data report; ``second_views``: benchmark -> (its analysis, its curve rows)."""
    seconds = [_view(r, c, answer_paragraph(r).replace("**Answer: ", f"**On {b}: ", 1)) | {"benchmark": b}
               for b, (r, c) in (second_views or {}).items()]
    return _template().render(
        title=" vs ".join(s.capitalize() for s in result["strategies"][:2]),
        headline=_view(result, curve, answer_paragraph(result)), second_views=seconds,
        model=context["model"], seeds=context["seeds"],
        benchmark={"name": context["benchmark"], "platform": context["platform"],
                   "difficulties": context["difficulties"], "n_problems": context["n_problems"],
                   "n_samples": context["n_samples"]},
        data=_data_rows(sources, data or {}), **_made_with(runs, training), plot_path=plot_path,
        shape_path=shape_path, shape=curve, original=ORIGINAL_STUDY)
