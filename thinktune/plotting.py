"""Pass@1 against training step, from the eval metrics of the base model and both strategies.

The curve of a strategy starts at step 0 with the base model (no adapter) and goes
through every saved checkpoint. One long CSV holds every point (what the report and
people read); one CSV per strategy feeds ``dvc plots show``; the PNG is drawn with
seaborn, the base model as a dashed reference line and each point's 95% interval as a band.
"""

from __future__ import annotations

import csv
from pathlib import Path

from thinktune.atomic import atomic_file
from thinktune.params import STRATEGIES, PlotParams

CURVE_COLUMNS = ("strategy", "checkpoint", "step", "pass_at_1", "solved", "total", "ci95_low", "ci95_high")
TARGETS = ("base", *STRATEGIES)


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
    numeric = {"step": int, "solved": int, "total": int, "pass_at_1": float, "ci95_low": float, "ci95_high": float}
    return [{k: numeric[k](v) if k in numeric else v for k, v in row.items()} for row in rows]


def draw_curve(rows: list[dict], params: PlotParams, path: Path) -> None:
    """The PNG: Pass@1 (%) per step for each strategy, base dashed, 95% bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame(rows)
    for column in ("pass_at_1", "ci95_low", "ci95_high"):
        frame[column] = 100 * frame[column]
    sns.set_theme(style=params.style)
    colors = dict(zip(STRATEGIES, sns.color_palette(params.palette, len(STRATEGIES)), strict=True))
    fig, ax = plt.subplots(figsize=(params.width_in, params.height_in))
    for strategy in STRATEGIES:
        part = frame[frame["strategy"] == strategy].sort_values("step")
        ax.fill_between(part["step"], part["ci95_low"], part["ci95_high"], color=colors[strategy], alpha=0.12,
                        linewidth=0)
    sns.lineplot(data=frame, x="step", y="pass_at_1", hue="strategy", hue_order=list(STRATEGIES),
                 palette=colors, marker="o", errorbar=None, ax=ax)
    base = frame[frame["checkpoint"] == "base"].iloc[0]
    ax.axhline(base["pass_at_1"], color="0.4", linestyle="--", linewidth=1,
               label=f"base model ({int(base['solved'])}/{int(base['total'])})")
    for strategy in STRATEGIES:
        part = frame[(frame["strategy"] == strategy) & (frame["checkpoint"] != "base")]
        if len(part):
            best = part.loc[part["pass_at_1"].idxmax()]
            ax.annotate(f"{int(best['solved'])}/{int(best['total'])}", (best["step"], best["pass_at_1"]),
                        textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                        color=colors[strategy])
    ax.set_title(params.title)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("Pass@1 (%)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_file(path, mode="wb") as fh:
        fig.savefig(fh, format="png", dpi=params.dpi)
    plt.close(fig)
