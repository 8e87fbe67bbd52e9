"""Compose params.yaml from conf/ (the study's settings plus one scale preset).

`dvc exp run` does this itself (DVC's Hydra integration, enabled in .dvc/config); plain
`dvc repro` reads params.yaml as committed. Run this after editing conf/:

    python -m thinktune.compose              # default preset (cpu)
    python -m thinktune.compose scale=paper  # any Hydra overrides
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides or [])
    return OmegaConf.to_container(cfg, resolve=True)


def main(argv: list[str] | None = None) -> None:
    from thinktune.atomic import atomic_file
    from thinktune.params import parse_params

    overrides = sys.argv[1:] if argv is None else argv
    raw = compose(overrides)
    parse_params(raw, origin=f"conf/ composed with {overrides or 'defaults'}")
    with atomic_file("params.yaml") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False, width=120)
    print(f"wrote params.yaml (scale={raw['scale']}, overrides={overrides})")


if __name__ == "__main__":
    main()
