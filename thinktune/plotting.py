"""Pass@1 and the answers' shape against training step, from the eval summaries of the
base model and both strategies.

The curve of a strategy starts at step 0 with the base model (no adapter) and goes
through every saved checkpoint. One long CSV holds every point (what the report and
people read); one CSV per strategy feeds ``dvc plots show``; two PNGs are drawn with
seaborn: Pass@1 (the base model as a dashed reference line, each point's 95% interval as a
band) and the answers' shape (mean reasoning tokens, share cut by the token limit, share
without a code block). Deep and Diverse differ in colour, line style and marker, so a
curve stays visible where the two are equal.
"""

from __future__ import annotations

import csv
from pathlib import Path

from thinktune.atomic import atomic_file
from thinktune.params import STRATEGIES, PlotParams

CURVE_COLUMNS = ("strategy", "checkpoint", "step", "pass_at_1", "solved", "total", "ci95_low", "ci95_high",
                 "mean_reasoning_tokens", "truncated_share", "no_code_share")
TARGETS = ("base", *STRATEGIES)
# Drawn on top of each other where equal: a dashed line and small squares over a solid line
# and big circles leave both visible.
LINE_STYLES = {"deep": {"linestyle": "-", "marker": "o", "markersize": 8, "linewidth": 2.4},
               "diverse": {"linestyle": "--", "marker": "s", "markersize": 5, "linewidth": 1.6}}
SHAPE_PANELS = (("mean_reasoning_tokens", "reasoning tokens per answer (mean)", 1),
                ("truncated_share", "answers cut by the token limit (%)", 100),
                ("no_code_share", "answers without a code block (%)", 100))


def check_comparable(evals: dict[str, dict]) -> None:
    """All targets must be measured on the same benchmark, problems and sample count."""
    missing = [t for t in TARGETS if t not in evals]
    if missing:
        raise ValueError(f"no eval metrics for {missing}: run `dvc repro eval_checkpoints`")
    for key in ("benchmark", "n_problems", "n_samples"):
        values = {t: evals[t][key] for t in TARGETS}
        if len(set(values.values())) > 1:
            raise ValueError(f"eval metrics disagree on `{key}` ({values}): the targets were evaluated with "
                             "different eval settings; re-run `dvc repro eval_checkpoints` so all use params.yaml")


def base_point(evals: dict[str, dict]) -> dict:
    return evals["base"]["checkpoints"]["base"]


def curve_rows(evals: dict[str, dict]) -> list[dict]:
    """Every point of both curves, each strategy starting from the base model at step 0."""
    check_comparable(evals)
    base = base_point(evals)
    rows = []
    for strategy in STRATEGIES:
        points = [("base", base)] + sorted(evals[strategy]["checkpoints"].items(), key=lambda kv: kv[1]["step"])
        for name, point in points:
            rows.append({"strategy": strategy, "checkpoint": name, **{c: point[c] for c in CURVE_COLUMNS[2:]}})
    return rows


def write_curve_csv(rows: list[dict], path: Path) -> None:
    with atomic_file(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_curve_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    numeric = {"step": int, "solved": int, "total": int, "pass_at_1": float, "ci95_low": float, "ci95_high": float,
               "mean_reasoning_tokens": float, "truncated_share": float, "no_code_share": float}
    return [{k: numeric[k](v) if k in numeric else v for k, v in row.items()} for row in rows]


def _figure(params: PlotParams, rows_count: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=params.style)
    colors = dict(zip(STRATEGIES, sns.color_palette(params.palette, len(STRATEGIES)), strict=True))
    fig, axes = plt.subplots(rows_count, 1, figsize=(params.width_in, params.height_in * (1 + 0.45 * (rows_count - 1))),
                             sharex=True, squeeze=False)
    return plt, fig, [row[0] for row in axes], colors


def _save(plt, fig, params: PlotParams, path: Path) -> None:
    fig.tight_layout()
    with atomic_file(path, mode="wb") as fh:
        fig.savefig(fh, format="png", dpi=params.dpi)
    plt.close(fig)


def _strategy_lines(ax, rows: list[dict], column: str, scale: float, colors: dict) -> None:
    for strategy in STRATEGIES:
        part = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["step"])
        ax.plot([r["step"] for r in part], [scale * r[column] for r in part], color=colors[strategy],
                label=strategy, **LINE_STYLES[strategy])


def draw_curve(rows: list[dict], params: PlotParams, path: Path) -> None:
    """The Pass@1 PNG: Pass@1 (%) per step for each strategy, base dashed, 95% bands."""
    plt, fig, (ax,), colors = _figure(params)
    for strategy in STRATEGIES:
        part = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["step"])
        ax.fill_between([r["step"] for r in part], [100 * r["ci95_low"] for r in part],
                        [100 * r["ci95_high"] for r in part], color=colors[strategy], alpha=0.12, linewidth=0)
    _strategy_lines(ax, rows, "pass_at_1", 100, colors)
    base = next(r for r in rows if r["checkpoint"] == "base")
    ax.axhline(100 * base["pass_at_1"], color="0.4", linestyle=":", linewidth=1,
               label=f"base model ({base['solved']}/{base['total']})")
    for strategy in STRATEGIES:
        part = [r for r in rows if r["strategy"] == strategy and r["checkpoint"] != "base"]
        if part:
            top = max(part, key=lambda r: (r["pass_at_1"], -r["step"]))
            ax.annotate(f"{top['solved']}/{top['total']}", (top["step"], 100 * top["pass_at_1"]),
                        textcoords="offset points", xytext=(0, 8 if strategy == "deep" else -14), ha="center",
                        fontsize=8, color=colors[strategy])
    ax.set_title(params.title)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("Pass@1 (%)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    _save(plt, fig, params, path)


def draw_answer_shape(rows: list[dict], params: PlotParams, path: Path) -> None:
    """The answers' shape PNG: one panel per SHAPE_PANELS column against step."""
    plt, fig, axes, colors = _figure(params, len(SHAPE_PANELS))
    for ax, (column, label, scale) in zip(axes, SHAPE_PANELS, strict=True):
        _strategy_lines(ax, rows, column, scale, colors)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=-3 if scale == 100 else 0, top=105 if scale == 100 else None)  # markers at 0 stay visible
    axes[0].set_title("What the answers look like (step 0 = base model)")
    axes[0].legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("training step (optimizer updates)")
    _save(plt, fig, params, path)
