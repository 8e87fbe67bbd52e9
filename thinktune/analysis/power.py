"""Power planner: how wide the Deep−Diverse interval will be, the smallest difference the study can
detect, and what the study costs, for chosen seeds x samples x problems.

    python -m thinktune.analysis.power --seeds 1,3,5 --samples 1,4,10,16 --problems 41,120,300
    python -m thinktune.analysis.power --results results/livecodebench --compare deep,diverse --simulate --json

The variance model is :mod:`thinktune.analysis.variance`, the one the analysis uses: for a paired
A-B difference in Pass@1 with S seeds per strategy, n samples per problem and P problems

    V = tau2 / P + 2 (seed_problem + sampling / n) / (S P) + 2 [seed / S + (seed_problem + sampling / n) / (S P)]

(the bracket: each strategy's seed term as the analysis estimates it, MS_seed / (P S); with one seed
it is the prior's ``seed``, known) with probability-scale components: tau2 the spread over problems of
the true A-B difference, seed the variance of one training run's Pass@1 about its strategy's mean,
seed_problem how much a problem's rate moves between runs beyond that, sampling = E[p (1 - p)]. They
come from a finished run (:func:`thinktune.analysis.intervals.run_moments`; what its design cannot
identify is taken from the priors, and the output says which) or from priors on the logit scale
(:class:`Priors`), turned into these components by Gauss-Hermite integration. The half-width is the
analysis' t(0.975, df) x SE, df by Satterthwaite as the analysis computes it. The MDE is simulated
(:mod:`thinktune.analysis.simulation`): the true difference at which the report's own analysis declares
a difference in 80% of studies drawn from the priors (the noncentral t on the expected SE, printed
beside it, is optimistic for this analysis); the report prints the same figure for its design.
``--simulate`` checks, on other simulated studies, the mean half-width the analysis printed, its
coverage and its power at the MDE.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from thinktune.analysis.intervals import ROW_FIELDS, RunMoments, build_study, run_moments
from thinktune.analysis.simulation import (
    DEFAULT_STUDIES,
    noncentral_mde,
    simulate_analysis,
    simulated_mde,
)
from thinktune.analysis.variance import (
    Components,
    Priors,
    interval_half_width,
    logit_mean,
    prior_components,
)

__all__ = ["Components", "Priors", "logit_mean", "plan", "planned_mde", "prior_components", "run_components",
           "simulate_analysis", "simulated_mde"]


def run_components(moments: RunMoments, priors: Priors) -> Components:
    """A finished run's components, the ones its design cannot identify taken from ``priors`` (at the
    run's own mean rate): one sample per cell leaves the sampling share to the prior, one seed leaves the
    seed and seed x problem variances to it."""
    prior = prior_components(Priors(**{**asdict(priors), "base_rate": min(max(moments.mean_rate, 0.01), 0.99)}))
    src = {}
    sampling, src["sampling"] = ((moments.sampling, "estimated") if moments.sampling is not None
                                 else (prior.sampling, "prior"))
    if moments.residual is not None:
        seed_problem = max(0.0, moments.residual - sampling / moments.samples)
        src["seed_problem"] = "estimated" if moments.sampling is not None else "estimated, given the prior sampling"
    else:
        seed_problem, src["seed_problem"] = prior.seed_problem, "prior"
    seed, src["seed"] = (moments.seed, "estimated") if moments.seed is not None else (prior.seed, "prior")
    within = sum((seed_problem + sampling / moments.samples) / s for s in moments.seeds)
    src["strategy_problem"] = "estimated" if src["seed_problem"] == "estimated" else "estimated, given the priors above"
    return Components(moments.mean_rate, max(0.0, moments.spread - within), seed, seed_problem, sampling, src)


# ---- compute cost, from the project's own measured throughput

@dataclass(frozen=True)
class Throughput:
    label: str
    train_tokens_per_s: float  # trained tokens per second
    gen_tokens_per_s: float    # decoded tokens per second
    source: str


THROUGHPUT = {
    "cpu": Throughput("CPU figures; GPU not measured with this code: 2-core AMD EPYC, bf16, 0.5B-shaped model",
                      57.0, 44.8, "README.md, 'GPU throughput': python -m perf.gpu_throughput --preset cpu "
                      "--warmup-steps 1 --train-steps 2 --gen-prompts 12 --gen-prompt-tokens 200 400 "
                      "--gen-new-tokens 128"),
    # The baseline the GPU-throughput work started from: TRL's SFTTrainer (padded batches) and
    # model.generate, before the packed training loop and the continuous-batching decode engine.
    "h100-baseline": Throughput("1 x H100, paper preset, measured with the code before the packed training "
                                "loop and the decode engine", 6900.0, 456.0,
                                "README.md, 'GPU throughput' (the earlier code on one H100: 6.9k trained "
                                "tokens/s, 456 decoded tokens/s)"),
}


@dataclass(frozen=True)
class Schedule:
    """The paper preset's schedule (conf/presets/paper.yaml; token means as perf/_gpu_study.py)."""
    strategies: int = 2
    chats: int = 5000              # training chats per strategy (CodeGen-*-5K)
    epochs: float = 3.0
    batch: int = 16                # chats per optimizer step
    save_steps: int = 100
    mean_chat_tokens: int = 4000
    mean_answer_tokens: int = 2000

    @property
    def checkpoints(self) -> int:
        """Checkpoints per run: every save_steps optimizer steps and the last."""
        return math.ceil(math.ceil(self.epochs * math.ceil(self.chats / self.batch)) / self.save_steps)


def cost_hours(schedule: Schedule, speed: Throughput, seeds: int, samples: int, problems: int) -> dict[str, float]:
    """Training: every strategy once per seed. Evaluation: the base once, every checkpoint of every run,
    problems x samples answers of mean_answer_tokens each. Grading and model loading excluded."""
    train = schedule.strategies * seeds * schedule.chats * schedule.mean_chat_tokens * schedule.epochs
    models = 1 + schedule.strategies * seeds * schedule.checkpoints
    answers = models * problems * samples * schedule.mean_answer_tokens
    train_h, eval_h = train / speed.train_tokens_per_s / 3600, answers / speed.gen_tokens_per_s / 3600
    return {"train_hours": train_h, "eval_hours": eval_h, "total_hours": train_h + eval_h}


def planned_mde(components: Components, design: tuple[int, int, int], priors: Priors,
                studies: int = DEFAULT_STUDIES, seed: int = 0) -> float:
    """The MDE the planner prints: the difference the report's analysis declares in 80% of studies
    simulated from ``priors`` (:func:`thinktune.analysis.simulation.simulated_mde`). Components from a
    run: the noncentral t's MDE on the run's SE, scaled by the factor by which the simulation of the
    priors (at the run's mean Pass@1) moved the noncentral t's figure for this design."""
    if set(components.sources.values()) == {"prior"}:
        return simulated_mde(priors, *design, studies, seed)
    at_rate = replace(priors, base_rate=min(max(components.mean_rate, 0.01), 0.99))
    factor = simulated_mde(at_rate, *design, studies, seed) / noncentral_mde(prior_components(at_rate), design, at_rate)
    return noncentral_mde(components, design) * factor


def plan(components: Components, designs: list[tuple[int, int, int]], schedule: Schedule, speed: Throughput,
         priors: Priors, studies: int = DEFAULT_STUDIES, sim_seed: int = 0, check: bool = False) -> list[dict]:
    """One row per (seeds, samples, problems): expected 95% half-width (t(0.975, df) x SE, the interval the
    analysis prints), the MDE at 80% power, alpha 0.05 two-sided, by simulating ``studies`` studies of
    ``priors`` (:func:`planned_mde`; the noncentral t's optimistic figure beside it), both in Pass@1
    points, and the hours. ``check``: also the mean half-width and coverage the analysis prints on
    studies with no difference, and its power at the MDE on other studies than those that found it."""
    rows = []
    for seeds, samples, problems in tqdm(designs, desc="simulating designs", unit="design", leave=False,
                                         disable=len(designs) < 2):
        design = (seeds, samples, problems)
        se, df = math.sqrt(components.variance(*design)), components.df(*design)
        mde = planned_mde(components, design, priors, studies, sim_seed)
        row = {"seeds": seeds, "samples": samples, "problems": problems, "se": 100 * se, "df": df,
               "half_width": 100 * interval_half_width(se, df), "mde": 100 * mde,
               "mde_noncentral_t": 100 * noncentral_mde(components, design, priors),
               **cost_hours(schedule, speed, seeds, samples, problems)}
        if check:
            null = simulate_analysis(priors, *design, studies, sim_seed + 1)
            row["simulated_half_width"] = 100 * null["half_width"]
            row["simulated_coverage"] = null["coverage"]
            if set(components.sources.values()) == {"prior"}:  # a run's MDE is not the priors' to check
                row["power_at_mde"] = simulate_analysis(priors, *design, studies, sim_seed + 2, mde)["rejects"]
        rows.append(row)
    return rows


# ---- a finished run's records

def load_rows(results_dir: Path) -> list[dict]:
    """Rows (``ROW_FIELDS``) of every ``<results_dir>/<strategy>/<checkpoint>.jsonl`` (one benchmark's
    results, e.g. ``results/livecodebench``). Seeds: a strategy's
    ``seed-<s>/`` subfolders, each laid out as a target folder, or else each record's ``seed`` field
    (0 when absent). Step: the folder's summary.json (``checkpoints.<name>.step``), else the number that
    ends the checkpoint's name, else 0 for ``base``."""
    rows = []
    for target in sorted(p for p in Path(results_dir).iterdir() if p.is_dir()):
        seed_dirs = sorted(p for p in target.iterdir() if p.is_dir() and re.fullmatch(r"seed-\d+", p.name))
        for folder, seed in [(d, int(d.name[5:])) for d in seed_dirs] or [(target, None)]:
            summary = folder / "summary.json"
            steps = {name: c["step"] for name, c in json.loads(summary.read_text()).get("checkpoints", {}).items()} \
                if summary.is_file() else {}
            for path in sorted(folder.glob("*.jsonl")):
                found = re.search(r"(\d+)$", path.stem)
                step = steps.get(path.stem, int(found.group(1)) if found else 0 if path.stem == "base" else None)
                if step is None:
                    raise ValueError(f"{path}: no step in summary.json and none in the name")
                for line in path.read_text().splitlines():
                    if line.strip():
                        record = json.loads(line)
                        rows.append({"strategy": target.name, "step": step,
                                     "seed": seed if seed is not None else record.get("seed", 0),
                                     "question_id": record["question_id"], "n_samples": record["n_samples"],
                                     "n_correct": record["n_correct"]})
    if not rows:
        raise ValueError(f"{results_dir}: no results/<strategy>/<checkpoint>.jsonl records")
    return [{f: r[f] for f in ROW_FIELDS} for r in rows]


# ---- the command line

def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers separated by commas, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 100:
        raise argparse.ArgumentTypeError(f"--studies needs 100 or more simulated studies, got {value}")
    return value


def _designs(text: str) -> list[tuple[int, int, int]]:
    try:
        return [tuple(int(v) for v in d.split("x")) for d in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(f"designs are SEEDSxSAMPLESxPROBLEMS, comma separated: {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m thinktune.analysis.power", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, help="a finished run's results/<benchmark>/ (else the priors alone)")
    p.add_argument("--compare", default="deep,diverse", help="the two strategies compared (default deep,diverse)")
    d = Priors()
    g = p.add_argument_group("priors (logit scale; see thinktune.analysis.power.Priors for why these defaults)")
    g.add_argument("--base-rate", type=float, default=d.base_rate, help="mean Pass@1")
    g.add_argument("--problem-sd", type=float, default=d.problem_sd, help="problem difficulty spread")
    g.add_argument("--strategy-problem-sd", type=float, default=d.strategy_problem_sd,
                   help="how the Deep-Diverse difference varies from problem to problem")
    g.add_argument("--seed-problem-sd", type=float, default=d.seed_problem_sd,
                   help="how a problem's chance moves between training runs")
    g.add_argument("--seed-sd", type=float, default=d.seed_sd, help="a whole training run's shift")
    g = p.add_argument_group("designs: every combination of the three lists, or --designs")
    g.add_argument("--seeds", type=_ints, default=[1, 3, 5])
    g.add_argument("--samples", type=_ints, default=[1, 4, 10, 16])
    g.add_argument("--problems", type=_ints, default=[41, 120, 300])
    g.add_argument("--designs", type=_designs, help="e.g. 1x1x41,3x16x41 (seeds x samples x problems)")
    p.add_argument("--simulate", action="store_true", help="check each half-width, coverage and the power at the "
                   "MDE on other simulated studies of the priors")
    p.add_argument("--studies", type=_positive, default=DEFAULT_STUDIES,
                   help=f"simulated studies per design and try (default {DEFAULT_STUDIES})")
    p.add_argument("--sim-seed", type=int, default=0, help="the simulation's random seed (default 0)")
    g = p.add_argument_group("cost")
    g.add_argument("--throughput", choices=sorted(THROUGHPUT), default="cpu")
    g.add_argument("--throughput-json", type=Path, help="a `perf.gpu_throughput --json` file to take "
                   "the tokens/s from")
    g.add_argument("--train-tokens-per-s", type=float)
    g.add_argument("--gen-tokens-per-s", type=float)
    g.add_argument("--mean-answer-tokens", type=int, default=Schedule.mean_answer_tokens)
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p.parse_args(argv)


def _speed(args: argparse.Namespace) -> Throughput:
    speed = THROUGHPUT[args.throughput]
    if args.throughput_json:
        report = json.loads(args.throughput_json.read_text())
        speed = Throughput(f"measured by perf.gpu_throughput on {report['machine'].get('device_name')}",
                           report["train"]["tokens_per_s"], report["generate"]["tokens_per_s"],
                           str(args.throughput_json))
    if args.train_tokens_per_s or args.gen_tokens_per_s:
        speed = Throughput(speed.label + " (overridden on the command line)",
                           args.train_tokens_per_s or speed.train_tokens_per_s,
                           args.gen_tokens_per_s or speed.gen_tokens_per_s, "--train-tokens-per-s/--gen-tokens-per-s")
    return speed


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    priors = Priors(args.base_rate, args.problem_sd, args.strategy_problem_sd, args.seed_problem_sd, args.seed_sd)
    if args.results:
        a, b = args.compare.split(",")
        study = build_study(load_rows(args.results))
        missing = [s for s in (a, b) if s not in study]
        if missing:
            raise SystemExit(f"{args.results}: no results for {missing}; found {sorted(study)}")
        moments = run_moments(study[a], study[b])
        components, basis = run_components(moments, priors), (
            f"{args.results}: {a} vs {b}, {moments.seeds[0]}+{moments.seeds[1]} seeds x {moments.samples:g} samples x "
            f"{moments.problems} problems, mean Pass@1 {moments.mean_rate:.3f}")
    else:
        components, basis = prior_components(priors), "priors alone (no --results)"
    designs = args.designs or [(s, n, q) for s in args.seeds for n in args.samples for q in args.problems]
    speed, schedule = _speed(args), Schedule(mean_answer_tokens=args.mean_answer_tokens)
    rows = plan(components, designs, schedule, speed, priors, args.studies, args.sim_seed, args.simulate)
    out = {"basis": basis, "priors": asdict(priors), "components": asdict(components), "throughput": asdict(speed),
           "schedule": asdict(schedule) | {"checkpoints_per_run": schedule.checkpoints}, "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    c = components
    print(f"Deep-Diverse difference in Pass@1 (points), 95% interval and 80%-power MDE; basis: {basis}")
    print(f"priors (logit): {asdict(priors)}")
    print("components (probability scale): " + ", ".join(
        f"{k} {getattr(c, k):.5f} ({c.sources[k]})" for k in ("strategy_problem", "seed", "seed_problem", "sampling")))
    print(f"cost: {speed.label}: {speed.train_tokens_per_s:g} trained, {speed.gen_tokens_per_s:g} decoded tokens/s "
          f"[{speed.source}]; {schedule.strategies} strategies x {schedule.chats} chats x {schedule.mean_chat_tokens} "
          f"tokens x {schedule.epochs:g} epochs per seed, {schedule.checkpoints} checkpoints per run + base, "
          f"{schedule.mean_answer_tokens} tokens per answer; grading excluded")
    print(f"MDE: the difference the report's analysis declares (p < 0.05) in 80% of {args.studies} studies "
          f"simulated from the priors per design (--sim-seed {args.sim_seed}); nct: the noncentral t's figure, "
          "optimistic" + ("; a run's MDE is the noncentral t's on its SE scaled as the priors' simulation scales it"
                          if args.results else ""))
    if args.simulate:
        print(f"check on other simulated studies ({args.studies} per design): sim +- the mean half-width the "
              "analysis printed, cover how often its 95% interval held the truth (no difference), power how often "
              "it declared the MDE")
    sim = " sim +-  cover  power" if args.simulate else ""
    print(f"\n seeds samples problems   +-half   MDE   nct{sim}   train h    eval h   total h")
    for r in rows:
        extra = (f" {r['simulated_half_width']:7.1f} {r['simulated_coverage']:6.3f} "
                 + (f"{r['power_at_mde']:6.3f}" if "power_at_mde" in r else "     -")) if args.simulate else ""
        print(f" {r['seeds']:5d} {r['samples']:7d} {r['problems']:8d} {r['half_width']:8.1f} {r['mde']:5.1f} "
              f"{r['mde_noncentral_t']:5.1f}{extra} "
              f"{r['train_hours']:9,.1f} {r['eval_hours']:9,.1f} {r['total_hours']:9,.1f}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
