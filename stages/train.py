"""train_<strategy>@<seed>: LoRA fine-tune of the base model on one strategy's chats, with one seed.

Reads ``data/formatted/<strategy>/{train,valid}.jsonl`` and ``models/base``; writes one PEFT
adapter (with its model card) per ``train.save_steps`` to
``models/<strategy>/seed-<seed>/checkpoint-<step>/``, and the DVCLive log (loss, learning rate,
tokens/s, validation loss per step; ``metrics.json``, the final values) and ``summary.json``
(losses, speed, chats, environment) to ``dvclive/train_<strategy>/seed-<seed>/``. The study's
headline metrics come from the report stage, so `dvc metrics show` stays one short row however
many runs there are. The seed sets the LoRA initialisation, the data order and dropout. Killed,
it resumes from its last saved step on the next run. With ``train.num_processes`` > 1 it
re-launches itself in that many data-parallel processes (torchrun, or ``accelerate launch`` with
``train.accelerate_config``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from thinktune.config.params import ParamsError, load_params
from thinktune.errors import run_stage
from thinktune.layout import adapters_dir, live_dir
from thinktune.logs import get_logger
from thinktune.training.launch import launched, relaunch

log = get_logger("train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("strategy", help="a name under `strategies` in params.yaml")
    parser.add_argument("--seed", type=int, required=True, help="one of train.seeds")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/formatted"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--live", type=Path, default=Path("dvclive"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot
    if args.strategy not in params.strategies:
        raise ParamsError(f"strategies: no strategy {args.strategy!r} in {args.params} "
                          f"({', '.join(params.strategies)}); add it there or fix the stage's command")
    if args.seed not in params.train.seeds:
        raise ParamsError(f"train.seeds: {args.seed} is not in {params.train.seeds}; add it or fix the stage's command")
    run = f"{args.strategy} seed {args.seed}"

    if params.train.num_processes > 1 and not launched():
        log.info("%s: launching %d processes", run, params.train.num_processes)
        relaunch(params.train.num_processes, "stages.train", argv, params.train.accelerate_config)

    from thinktune.training import train_lora

    checkpoints = train_lora(
        base_model_dir=args.base_model,
        train_file=args.data / args.strategy / "train.jsonl",
        valid_file=args.data / args.strategy / "valid.jsonl",
        out_dir=adapters_dir(args.models, args.strategy, args.seed),
        live_dir=live_dir(args.live, args.strategy, args.seed),
        lora=params.lora,
        train=params.train.for_seed(args.seed),
        max_length=params.format.max_length,
        base_model_name=params.model.name,
        run_name=f"{args.strategy}-seed-{args.seed}",
    )
    if os.environ.get("RANK", "0") == "0":
        log.info("%s: adapters %s in %s", run, ", ".join(c.name for c in checkpoints),
                 adapters_dir(args.models, args.strategy, args.seed))


if __name__ == "__main__":
    run_stage(main)
