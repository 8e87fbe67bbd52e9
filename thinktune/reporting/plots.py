"""Pass@1 and the answers' shape against training step, every strategy from the base model.

A strategy's curve starts at step 0 with the base model (no adapter) and goes through every
saved checkpoint; at each step the point is the mean over the strategy's training seeds with
the analysis's 95% interval (problems and seeds as clusters, ``thinktune.analysis.intervals``). One long
CSV holds every point (what people, the report and ``dvc plots show`` read, the interval drawn
as a band); the training logs of every run are gathered into one CSV per logged metric; two PNGs
are drawn with seaborn: Pass@1 (the base model as a dotted reference line, each strategy's
interval as a band) and the answers' shape (mean reasoning tokens, share cut by the token limit,
share without a code block). Strategies differ in colour, line style and marker, so a curve
stays visible where two are equal.
"""

from __future__ import annotations

import csv
from pathlib import Path

from thinktune.atomic import atomic_dir, atomic_file
from thinktune.config.params import PlotParams
from thinktune.evaluation.records import Run
from thinktune.layout import BASE

CURVE_COLUMNS = ("benchmark", "strategy", "checkpoint", "step", "seeds", "pass_at_1", "ci95_low", "ci95_high", "total",
                 "mean_reasoning_tokens", "truncated_share", "no_code_share")
_SHAPE = ("mean_reasoning_tokens", "truncated_share", "no_code_share")
# Drawn on top of each other where equal: dashed lines and small markers over a solid line and
# big circles leave every curve visible.
LINE_STYLES = ({"linestyle": "-", "marker": "o", "markersize": 8, "linewidth": 2.4},
               {"linestyle": "--", "marker": "s", "markersize": 5, "linewidth": 1.6},
               {"linestyle": ":", "marker": "^", "markersize": 5, "linewidth": 1.6},
               {"linestyle": "-.", "marker": "D", "markersize": 4, "linewidth": 1.4})
SHAPE_PANELS = (("mean_reasoning_tokens", "reasoning tokens per answer (mean)", 1),
                ("truncated_share", "answers cut by the token limit (%)", 100),
                ("no_code_share", "answers without a code block (%)", 100))
# The training logs gathered for `dvc plots show` (DVCLive's file names under plots/metrics/).
TRAINING_METRICS = ("loss", "valid_loss", "learning_rate", "tokens_per_s")


def curve_rows(benchmark: str, runs: list[Run], checkpoints: dict[str, dict[str, dict]],
               strategies: list[str]) -> list[dict]:
    """Every point of every strategy's curve on one benchmark, each starting from the base model at step 0.

    ``checkpoints[strategy][step]``: the analysis's Pass@1 point (estimate, ci95_low, ci95_high);
    the answer-shape columns are means over the strategy's seeds."""
    rows = []
    base_run = next(r for r in runs if r.strategy == BASE)
    for strategy in strategies:
        mine = [r for r in runs if r.strategy == strategy]
        steps = sorted(int(step) for step in checkpoints[strategy])  # those every seed reached
        rows.append(_row(benchmark, strategy, BASE, 0, [base_run.summary["checkpoints"][BASE]], checkpoints[BASE]["0"]))
        for step in steps:
            points = [p for run in mine for p in run.summary["checkpoints"].values() if p["step"] == step]
            rows.append(_row(benchmark, strategy, f"checkpoint-{step}", step, points, checkpoints[strategy][str(step)]))
    return rows


def _row(benchmark: str, strategy: str, checkpoint: str, step: int, points: list[dict], estimate: dict) -> dict:
    return {"benchmark": benchmark, "strategy": strategy, "checkpoint": checkpoint, "step": step, "seeds": len(points),
            "pass_at_1": estimate["estimate"], "ci95_low": estimate["ci95_low"], "ci95_high": estimate["ci95_high"],
            "total": points[0]["total"],
            **{c: round(sum(p[c] for p in points) / len(points), 6) for c in _SHAPE}}


def write_curve_csv(rows: list[dict], path: Path) -> None:
    with atomic_file(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_curve_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    numeric = {"step": int, "seeds": int, "total": int, "pass_at_1": float, "ci95_low": float, "ci95_high": float,
               "mean_reasoning_tokens": float, "truncated_share": float, "no_code_share": float}
    return [{k: numeric[k](v) if k in numeric else v for k, v in row.items()} for row in rows]


def gather_training_logs(live_dirs: dict[tuple[str, int], Path], out_dir: Path) -> list[Path]:
    """``out_dir/<metric>.csv`` for each of :data:`TRAINING_METRICS` some run logged: one row per
    (run, step) with columns run ("<strategy> seed <seed>"), strategy, seed, step, <metric>."""
    written = []
    with atomic_dir(out_dir) as tmp:  # whole, so a metric or run no longer logged leaves no stale file
        for metric in TRAINING_METRICS:
            if _gather(metric, live_dirs, tmp / f"{metric}.csv"):
                written.append(out_dir / f"{metric}.csv")
    return written


def _gather(metric: str, live_dirs: dict[tuple[str, int], Path], out: Path) -> bool:
    rows = []
    for (strategy, seed), live in live_dirs.items():
        path = Path(live) / "plots" / "metrics" / f"{metric}.tsv"
        if path.is_file():
            with path.open(newline="") as fh:
                rows += [{"run": f"{strategy} seed {seed}", "strategy": strategy, "seed": seed,
                          "step": int(row["step"]), metric: row[metric]} for row in csv.DictReader(fh, delimiter="\t")]
    if rows:
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["run", "strategy", "seed", "step", metric], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return bool(rows)


def _figure(params: PlotParams, rows_count: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=params.style)
    fig, axes = plt.subplots(rows_count, 1, figsize=(params.width_in, params.height_in * (1 + 0.45 * (rows_count - 1))),
                             sharex=True, squeeze=False)
    return plt, fig, [row[0] for row in axes]


def _save(plt, fig, params: PlotParams, path: Path) -> None:
    fig.tight_layout()
    with atomic_file(path, mode="wb") as fh:
        fig.savefig(fh, format="png", dpi=params.dpi)
    plt.close(fig)


def _styles(rows: list[dict], params: PlotParams) -> dict[str, tuple]:
    """strategy -> (colour, line style), in the order the rows list them."""
    import seaborn as sns

    names = list(dict.fromkeys(r["strategy"] for r in rows))
    colors = sns.color_palette(params.palette, len(names))
    return {n: (colors[i], LINE_STYLES[i % len(LINE_STYLES)]) for i, n in enumerate(names)}


def _strategy_lines(ax, rows: list[dict], column: str, scale: float, styles: dict) -> None:
    for strategy, (color, style) in styles.items():
        part = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["step"])
        seeds = max(r["seeds"] for r in part)
        ax.plot([r["step"] for r in part], [scale * r[column] for r in part], color=color,
                label=f"{strategy} ({seeds} seed{'s' if seeds > 1 else ''})", **style)


def draw_curve(rows: list[dict], params: PlotParams, path: Path) -> None:
    """The Pass@1 PNG: one panel per benchmark (the headline first), Pass@1 (%) per step for each
    strategy (mean over seeds), base dotted, 95% bands."""
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in rows))
    plt, fig, axes = _figure(params, len(benchmarks))
    styles = _styles(rows, params)
    for ax, benchmark in zip(axes, benchmarks, strict=True):
        mine = [r for r in rows if r["benchmark"] == benchmark]
        for strategy, (color, _) in styles.items():
            part = sorted((r for r in mine if r["strategy"] == strategy), key=lambda r: r["step"])
            ax.fill_between([r["step"] for r in part], [100 * r["ci95_low"] for r in part],
                            [100 * r["ci95_high"] for r in part], color=color, alpha=0.12, linewidth=0)
        _strategy_lines(ax, mine, "pass_at_1", 100, styles)
        base = next(r for r in mine if r["checkpoint"] == BASE)
        ax.axhline(100 * base["pass_at_1"], color="0.4", linestyle=":", linewidth=1,
                   label=f"base model ({100 * base['pass_at_1']:.1f}%)")
        ax.set_title(params.title if benchmark == benchmarks[0] else f"{benchmark} (second view)", fontsize=10)
        ax.set_ylabel(f"{benchmark} Pass@1 (%)\nmean over seeds, 95% band", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("training step (optimizer updates)")
    _save(plt, fig, params, path)


def draw_answer_shape(rows: list[dict], params: PlotParams, path: Path) -> None:
    """The answers' shape PNG, on the headline benchmark: one panel per SHAPE_PANELS column against step."""
    rows = [r for r in rows if r["benchmark"] == rows[0]["benchmark"]]
    plt, fig, axes = _figure(params, len(SHAPE_PANELS))
    styles = _styles(rows, params)
    for ax, (column, label, scale) in zip(axes, SHAPE_PANELS, strict=True):
        _strategy_lines(ax, rows, column, scale, styles)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=-3 if scale == 100 else 0, top=105 if scale == 100 else None)  # markers at 0 stay visible
    axes[0].set_title("What the answers look like (step 0 = base model)")
    axes[0].legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("training step (optimizer updates)")
    _save(plt, fig, params, path)
