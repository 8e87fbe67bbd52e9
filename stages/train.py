"""train_deep / train_diverse: LoRA fine-tune of the base model on one strategy's chats.

Reads ``data/formatted/<strategy>/{train,valid}.jsonl`` and ``models/base``; writes one PEFT
adapter per ``train.save_steps`` to ``models/<strategy>/checkpoint-<step>/`` and the loss
curve to ``dvclive/train_<strategy>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.logs import get_logger
from thinktune.params import STRATEGIES, load_params
from thinktune.training import train_lora

log = get_logger("train")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("strategy", choices=STRATEGIES)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/formatted"))
    parser.add_argument("--base-model", type=Path, default=Path("models/base"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--live", type=Path, default=Path("dvclive"))
    args = parser.parse_args(argv)
    params = load_params(args.params)

    checkpoints = train_lora(
        base_model_dir=args.base_model,
        train_file=args.data / args.strategy / "train.jsonl",
        valid_file=args.data / args.strategy / "valid.jsonl",
        out_dir=args.models / args.strategy,
        live_dir=args.live / f"train_{args.strategy}",
        lora=params.lora,
        train=params.train,
        max_length=params.format.max_length,
    )
    log.info("%s: adapters %s", args.strategy, ", ".join(c.name for c in checkpoints))


if __name__ == "__main__":
    main()
