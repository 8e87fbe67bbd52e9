"""Presets: named values for the keys that differ between the offline default and the study.

params.yaml is the one source of truth for every run: stages read it, `dvc exp run -S
key=value` edits it in place. A preset (``conf/presets/<name>.yaml``) only names values for
the scale-dependent keys (model, data source, context length, steps, eval source and size);
applying one rewrites exactly those keys in params.yaml, the way DVC's `-S` does (comments
and layout kept), checks the result first, and prints every change::

    python -m thinktune.config.presets                 # which preset params.yaml matches, and how it differs
    python -m thinktune.config.presets paper           # rewrite params.yaml's preset keys with paper's values
    dvc exp run $(python -m thinktune.config.presets paper --set-args)   # the same as one DVC experiment

Every preset sets the same keys, so applying ``cpu`` after ``paper`` restores the default.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from thinktune.config.params import ParamsError, load_yaml, parse_params

PRESETS_DIR = Path(__file__).resolve().parents[2] / "conf" / "presets"


def available(presets_dir: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in presets_dir.glob("*.yaml"))


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    """The preset's values, flattened to dotted keys (``train.epochs``)."""
    path = presets_dir / f"{name}.yaml"
    if not path.is_file():
        raise ParamsError(f"no preset {name!r}; choose one of {available(presets_dir)} (files in {presets_dir})")
    return flatten(load_yaml(path.read_text()) or {})


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _get(tree: dict, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def yaml_value(value: Any) -> Any:
    """``value`` as params.yaml should hold it: a float written so that every YAML reader
    reads it back as a float (``5.0e-05``; ruamel alone would write ``5e-05``, a string to
    YAML 1.1 readers such as PyYAML's ``safe_load``)."""
    if isinstance(value, list):
        return [yaml_value(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        from ruamel.yaml import YAML

        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return YAML().load(f"v: {text}")["v"]  # ruamel keeps this spelling when it writes the file
    return value


def _plain(value: Any) -> Any:
    """A YAML node as plain Python (ruamel's commented types compare by content too, but
    printing them shows their class)."""
    return json.loads(json.dumps(value, default=str))


def differences(params: dict, preset: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, value in params, value in preset) for every preset key whose value differs."""
    diffs = []
    for key, wanted in preset.items():
        try:
            current = _plain(_get(params, key))
        except KeyError:
            raise ParamsError(f"preset key {key} is not in params.yaml; fix the preset or params.yaml") from None
        if current != _plain(wanted):
            diffs.append((key, current, wanted))
    return diffs


def closest(params: dict, presets_dir: Path = PRESETS_DIR) -> tuple[str, list[tuple[str, Any, Any]]]:
    """The preset params.yaml differs least from, and those differences."""
    scored = [(name, differences(params, load_preset(name, presets_dir))) for name in available(presets_dir)]
    if not scored:
        raise ParamsError(f"no presets in {presets_dir}")
    return min(scored, key=lambda item: len(item[1]))


def apply(name: str, params_path: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR) -> list[tuple]:
    """Rewrite the preset's keys in ``params_path`` (validated first); return the changes."""
    from dvc.utils.serialize import modify_yaml

    preset = load_preset(name, presets_dir)
    current = load_yaml(params_path.read_text()) or {}
    changes = differences(current, preset)
    merged = json.loads(json.dumps(current))
    for key, _, wanted in changes:
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            node = node[part]
        node[leaf] = wanted
    parse_params(merged, origin=f"{params_path} with preset {name}")  # nothing is written if invalid
    if changes:
        with modify_yaml(params_path) as data:
            for key, _, wanted in changes:
                *parents, leaf = key.split(".")
                node = data
                for part in parents:
                    node = node[part]
                node[leaf] = yaml_value(wanted)
    return changes


def set_args(name: str, presets_dir: Path = PRESETS_DIR) -> list[str]:
    """The preset as `dvc exp run -S` arguments (for queues: `dvc exp run --queue $(...)`)."""
    args = []
    for key, value in load_preset(name, presets_dir).items():
        text = "null" if value is None else json.dumps(value, separators=(",", ":")) if not isinstance(
            value, str) else value
        if any(c.isspace() for c in text) or "'" in text:
            raise ParamsError(f"preset {name}: {key} = {value!r} cannot be passed as one shell word")
        args += ["-S", f"{key}={text}"]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help=f"preset to apply: {', '.join(available())}")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set-args", action="store_true", help="print the preset as `dvc exp run -S` arguments")
    args = parser.parse_args(argv)
    try:
        if args.name and args.set_args:
            print(" ".join(set_args(args.name)))
        elif args.name:
            changes = apply(args.name, args.params)
            for key, old, new in changes:
                print(f"  {key}: {old!r} -> {new!r}")
            print(f"{args.params}: preset {args.name} applied ({len(changes)} key(s) changed)")
        else:
            name, diffs = closest(load_yaml(args.params.read_text()) or {})
            print(f"{args.params} is preset {name}" + (f" with {len(diffs)} change(s):" if diffs else ""))
            for key, current, wanted in diffs:
                print(f"  {key}: {current!r} (preset: {wanted!r})")
    except ParamsError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
