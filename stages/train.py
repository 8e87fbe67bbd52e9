"""train_deep / train_diverse: LoRA fine-tune of the base model on one strategy's chats.

Reads ``data/formatted/<strategy>/{train,valid}.jsonl`` and ``models/base``; writes one PEFT
adapter (with its model card) per ``train.save_steps`` to ``models/<strategy>/checkpoint-<step>/``,
the DVCLive log (loss, learning rate, tokens/s, validation loss) and ``summary.json`` (losses,
speed, chats, environment) to ``dvclive/train_<strategy>/`` and the headline (final validation
loss) to ``metrics/train_<strategy>.json``. Killed, it resumes from its last saved step
on the next run. With ``train.num_processes`` > 1 it re-launches itself in that many
data-parallel processes (torchrun, or ``accelerate launch`` with ``train.accelerate_config``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from thinktune.errors import run_stage
from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params
from thinktune.training.launch import launched, relaunch

log = get_logger("train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("strategy", choices=STRATEGIES)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/formatted"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--live", type=Path, default=Path("dvclive"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    params = load_params(args.params)

    if params.train.num_processes > 1 and not launched():
        log.info("%s: launching %d processes", args.strategy, params.train.num_processes)
        relaunch(params.train.num_processes, "stages.train", argv, params.train.accelerate_config)

    from thinktune.training import train_lora

    checkpoints = train_lora(
        base_model_dir=args.base_model,
        train_file=args.data / args.strategy / "train.jsonl",
        valid_file=args.data / args.strategy / "valid.jsonl",
        out_dir=args.models / args.strategy,
        live_dir=args.live / f"train_{args.strategy}",
        lora=params.lora,
        train=params.train,
        max_length=params.format.max_length,
        base_model_name=params.model.name,
        run_name=args.strategy,
        metrics_file=args.metrics / f"train_{args.strategy}.json",
        metrics_key=args.strategy,  # columns deep.valid_loss, diverse.valid_loss in `dvc exp show`
    )
    if os.environ.get("RANK", "0") == "0":
        log.info("%s: adapters %s", args.strategy, ", ".join(c.name for c in checkpoints))


if __name__ == "__main__":
    run_stage(main)
