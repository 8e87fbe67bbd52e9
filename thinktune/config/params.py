"""Typed, validated view of params.yaml.

The pipeline's first stage (``check_params``) validates the whole file before any stage
removes its outputs, and every stage calls :func:`load_params` again, so a wrong type, a
negative rank or an unknown LoRA target stops the run with one line per bad key naming
the key, the value and what is allowed.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from thinktune.errors import InputError

# Linear layers of the Qwen2 architecture that LoRA can wrap.
QWEN2_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# A strategy's or dataset's name is part of stage names (train_<name>@<seed>) and paths.
NAME = r"^[a-z][a-z0-9_]{0,31}$"
RESERVED_NAMES = ("base", "diff", "problems")  # results/<benchmark>/base, metrics/study.json's other keys

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


class ParamsError(InputError):
    """A params.yaml value is wrong; the message names the key, the value and what is allowed.

    ``keys`` holds the dotted keys found wrong (a section's name for a rule across keys)."""

    def __init__(self, message: str, keys: list[str] | None = None) -> None:
        super().__init__(message)
        self.keys = keys or []


def _now_a_list(data, section: str, old: str, new: str, hint: str):
    """A params file from before a key became a list: name the new key and how to write it."""
    if isinstance(data, dict) and old in data:
        raise ValueError(f"{section}.{old} ({data[old]!r}) is now {section}.{new}, a list: write "
                         f"`{new}: [{data[old]}]` ({hint})")
    return data


def _each_once(value: list, what: str) -> list:
    if len(set(value)) != len(value):
        raise ValueError(f"{value} repeats a {what}; list each {what} once")
    return value


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
    # Every local path is a DVC dependency of the stage reading it (dvc.yaml interpolates it), so
    # it must name a path even when unused: the defaults are the committed folders under inputs/.
    local_path: str = Field("inputs/model", min_length=1,
                            description="with source local: a folder holding a saved model")
    gguf: GgufSource


class Dataset(_Section):
    """Where one CodeGen-style dataset's rows come from, for each ``data.source``."""

    repo: str = Field(min_length=1, description="hub dataset id (data.source hub)")
    file: str = Field(min_length=1, description="the JSONL file in that repo, or in data.local_dir (source local)")
    sample_file: str = Field(min_length=1, description="in data.sample_dir (source sample): the offline stand-in")


class DataParams(_Section):
    source: Literal["sample", "hub", "local"]
    sample_dir: str
    local_dir: str = Field("inputs/codegen", min_length=1,
                           description="with source local: a folder holding every dataset's `file`")
    datasets: dict[Annotated[str, Field(pattern=NAME)], Dataset] = Field(min_length=1)
    splits: list[str] = Field(min_length=1, description="values of the rows' `split` field to keep")
    max_rows: PositiveInt | None = None
    malformed: Literal["error", "drop"] = Field(
        "error", description="a row without non-empty input/output/solution: stop naming it, or drop and count it")


class StrategyPart(_Section):
    """Rows of one dataset that a strategy trains on: the first ``problems`` problems (file
    order), at most ``solutions_per_problem`` rows of each (file order); empty: all."""

    dataset: str
    problems: PositiveInt | None = None
    solutions_per_problem: PositiveInt | None = None


class FormatParams(_Section):
    system_prompt: str = Field(min_length=1)
    max_length: PositiveInt = Field(description="tokens of the whole chat; longer rows are handled by `overlength`")
    overlength: Literal["drop", "truncate"]
    valid_fraction: Annotated[float, Field(ge=0, lt=1)]
    seed: int
    balance: Literal["error", "trim"] = Field(
        "error", description="unequal training chats per strategy: stop, or trim the larger set to the smaller")


class LoraParams(_Section):
    r: PositiveInt
    alpha: PositiveFloat
    dropout: Annotated[float, Field(ge=0, lt=1)]
    target_modules: list[str] = Field(min_length=1)

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(QWEN2_LINEAR_MODULES))
        if unknown:
            raise ValueError(f"{value!r} has unknown module(s) {unknown}; choose from {list(QWEN2_LINEAR_MODULES)}")
        return value


class TrainParams(_Section):
    epochs: PositiveFloat
    max_steps: int = Field(-1, ge=-1, description="-1: run `epochs` epochs")
    learning_rate: PositiveFloat
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"]
    warmup_ratio: Probability
    weight_decay: Annotated[float, Field(ge=0)]
    # One optimizer step trains on effective_batch_size chats (16 in the study, which reached it
    # by gradient accumulation), however many processes share them; the chats of a step are
    # packed into padding-free micro-batches of at most micro_batch_tokens tokens each, and the
    # gradients of a step's micro-batches are accumulated.
    effective_batch_size: PositiveInt = Field(description="chats per optimizer step")
    micro_batch_tokens: PositiveInt = Field(
        4096, description="token budget of one padding-free micro-batch per process; at least format.max_length")
    max_grad_norm: Annotated[float, Field(ge=0)] = Field(1.0, description="gradient clipping; 0 turns it off")
    gradient_checkpointing: bool
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "auto", description="auto: flash_attention_2 if installed on CUDA, else flex_attention on CUDA, sdpa on CPU")
    precision: Literal["auto", "bf16", "fp16", "fp32"]
    num_processes: PositiveInt = Field(1, description="data-parallel processes (GPUs, or CPU processes with gloo)")
    accelerate_config: str | None = Field(
        None, description="accelerate config file for multi-process runs (e.g. conf/accelerate/fsdp.yaml); null: DDP")
    save_steps: PositiveInt
    logging_steps: PositiveInt
    # Every strategy trains once per seed (LoRA initialisation, data order, dropout), each run a
    # DVC stage of its own (train_<strategy>@<seed>): adding a seed trains and evaluates only it.
    seeds: list[int] = Field(min_length=1, description="training seeds; one run per strategy and seed")

    @model_validator(mode="before")
    @classmethod
    def _seed_became_seeds(cls, data):
        return _now_a_list(data, "train", "seed", "seeds", "add seeds to train each strategy once per seed")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        _each_once(value, "seed")
        if any(s < 0 for s in value):
            raise ValueError(f"{value} has a negative seed; seeds name folders (seed-<n>): use 0 or more")
        return value

    @property
    def seed(self) -> int:
        """The run's seed: the train stage hands each run params holding its one seed."""
        return self.seeds[0]

    def for_seed(self, seed: int) -> TrainParams:
        if seed not in self.seeds:
            raise ValueError(f"seed {seed} is not in train.seeds {self.seeds}")
        return self.model_copy(update={"seeds": [seed]})



BENCHMARKS = ("livecodebench", "humaneval")
# The eval keys that only choose problems: they decide data/raw/eval/<benchmark>.jsonl (fetch_data),
# which the evaluation reads and hashes, so an evaluation depends on that file, not on them.
PROBLEM_SELECTION = ("source", "sample_file", "local_dir", "lcb_repo", "lcb_release", "platforms", "difficulties",
                     "date_from", "date_to", "max_problems")


class EvalParams(_Section):
    # Every checkpoint is scored on each benchmark listed (one DVC stage per run and benchmark);
    # the first is the report's headline, the others are second, independent views.
    benchmarks: list[Literal[BENCHMARKS]] = Field(  # type: ignore[valid-type]
        min_length=1, description="humaneval ignores the LiveCodeBench filters")
    source: Literal["sample", "hub", "local"]
    sample_file: str
    local_dir: str = Field("inputs/livecodebench", min_length=1,
                           description="with source local: a folder of code_generation_lite test*.jsonl")
    lcb_repo: str
    lcb_release: str
    platforms: list[Literal["atcoder", "codeforces", "leetcode"]] = Field(
        min_length=1, description="LiveCodeBench platforms whose problems are kept")
    difficulties: list[Literal["easy", "medium", "hard"]] = Field(min_length=1)
    date_from: date | None = None
    date_to: date | None = None
    max_problems: Annotated[int, Field(ge=2)] | None = Field(
        None, description="keep the first N problems; at least 2 (one problem has no spread to give an interval)")
    n_samples: PositiveInt
    temperature: Annotated[float, Field(ge=0)]  # 0: greedy
    top_p: Annotated[float, Field(gt=0, le=1)]  # 1: off
    top_k: int = Field(0, ge=0, description="0: off")
    repetition_penalty: PositiveFloat = Field(1.0, description="1: off (the hub's generation_config is never used)")
    seed: int = 0  # sampling seed (each answer draws from its own random stream keyed by seed, problem, sample)
    prompt_style: Literal["study", "livecodebench"] = "study"  # see thinktune/benchmarks/livecodebench.py
    max_new_tokens: PositiveInt
    batch_size: PositiveInt = Field(description="answers decoded at once per process, over all the checkpoints "
                                                "decoded together (one run's)")
    num_processes: PositiveInt = Field(1, description="generation processes, one device each (cuda:rank, or CPU)")
    cuda_graphs: bool = True  # replay decode steps as CUDA graphs on CUDA devices
    timeout_s: PositiveFloat
    memory_mb: PositiveInt
    workers: PositiveInt
    precision: Literal["auto", "bf16", "fp16", "fp32"]

    @model_validator(mode="before")
    @classmethod
    def _benchmark_became_benchmarks(cls, data):
        return _now_a_list(data, "eval", "benchmark", "benchmarks", "add humaneval to score every checkpoint on both")

    @field_validator("benchmarks")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return _each_once(value, "benchmark")

    @property
    def benchmark(self) -> str:
        """The benchmark of this view: the headline, or the one an eval stage was given (for_benchmark)."""
        return self.benchmarks[0]

    def answer_settings(self) -> dict:
        """What decides one benchmark's answers and verdicts, given its problems file: every key but
        the problem selection and the list of benchmarks, plus the benchmark itself."""
        return self.model_dump(mode="json", exclude={*PROBLEM_SELECTION, "benchmarks"}) | {"benchmark": self.benchmark}

    def for_benchmark(self, name: str) -> EvalParams:
        if name not in self.benchmarks:
            raise ValueError(f"benchmark {name!r} is not in eval.benchmarks {self.benchmarks}")
        return self.model_copy(update={"benchmarks": [name]})

    @model_validator(mode="after")
    def _consistent(self) -> EvalParams:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        if self.n_samples > 1 and self.temperature == 0:
            raise ValueError("n_samples > 1 with temperature 0 gives n identical samples; set temperature > 0")
        return self


SEABORN_STYLES = ("white", "dark", "whitegrid", "darkgrid", "ticks")


class PlotParams(_Section):
    title: str
    width_in: PositiveFloat
    height_in: PositiveFloat
    dpi: Annotated[int, Field(ge=20, le=1200)]
    style: Literal[SEABORN_STYLES]  # type: ignore[valid-type]
    palette: str

    @field_validator("palette")
    @classmethod
    def _known_palette(cls, value: str, info: ValidationInfo) -> str:
        if info.context and not info.context.get("check_palette", True):
            return value
        import seaborn as sns  # about a second to import, so stages that draw nothing skip it

        try:
            sns.color_palette(value, 2)
        except (ValueError, KeyError):
            raise ValueError(f"{value!r} is not a seaborn/matplotlib palette "
                             "(e.g. colorblind, deep, muted, tab10, viridis)") from None
        return value


class Params(_Section):
    model: ModelParams
    data: DataParams
    strategies: dict[Annotated[str, Field(pattern=NAME)], list[StrategyPart]] = Field(min_length=2)
    format: FormatParams
    lora: LoraParams
    train: TrainParams
    eval: EvalParams
    plot: PlotParams

    @model_validator(mode="after")
    def _strategies_read_known_datasets(self) -> Params:
        for name, parts in self.strategies.items():
            if name in RESERVED_NAMES:
                raise ValueError(f"strategies: `{name}` is reserved ({', '.join(RESERVED_NAMES)} name the base model's "
                                 "results and headline metrics); call the strategy otherwise")
            if not parts:
                raise ValueError(f"strategies.{name}: no dataset listed; give at least one `- dataset: <name>`")
            for part in parts:
                if part.dataset not in self.data.datasets:
                    raise ValueError(f"strategies.{name}: dataset {part.dataset!r} is not in data.datasets "
                                     f"{sorted(self.data.datasets)}; add it there or fix the name")
        return self

    @property
    def strategy_names(self) -> list[str]:
        """The strategies in params order; the first two are the study's headline comparison."""
        return list(self.strategies)

    @model_validator(mode="after")
    def _one_chat_fits_a_micro_batch(self) -> Params:
        if self.train.micro_batch_tokens < self.format.max_length:
            raise ValueError(
                f"train.micro_batch_tokens ({self.train.micro_batch_tokens}) is below format.max_length "
                f"({self.format.max_length}): the longest chat would not fit a micro-batch; raise it to at least "
                f"{self.format.max_length}")
        return self


def _error_key(error: dict) -> str:
    # List items report their index, validators their function: keep the key path only.
    loc = [str(part) for part in error["loc"] if not str(part).startswith("function-after") and part != "[key]"]
    return ".".join(part for part in loc if not part.isdigit()) or "(top level)"


def _describe(error: dict) -> str:
    """One line per bad key: the key, the value, what is allowed."""
    key = _error_key(error)
    message = error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key; remove it or fix its spelling (README, Settings, lists every key)"
    if error["type"] == "missing":
        return f"{key}: missing; add it (the committed params.yaml has every key)"
    if not error["loc"]:  # a check across sections names its keys itself
        return message
    if error["type"] == "value_error":  # our own validators: the message already says it all
        return f"{key}: {message}"
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NAME:
        return (f"{key}: {error.get('input')!r} is not allowed as a name; use lowercase letters, digits and _, "
                "starting with a letter (it names stages and folders), e.g. deep_2k")
    return f"{key}: {error.get('input')!r} is not allowed; must be {message}"


def parse_params(raw: dict, origin: str = "params.yaml", *, check_palette: bool = True) -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming every bad key.

    ``check_palette=False`` leaves out the one check that needs seaborn (``plot.palette`` names a
    palette it knows): about a second of import in a stage that draws nothing. ``check_params``
    and the plot stage check it."""
    try:
        return Params.model_validate(raw, context={"check_palette": check_palette})
    except ValidationError as exc:
        errors = exc.errors()
        raise ParamsError("\n".join(f"{origin}: {_describe(err)}" for err in errors),
                          keys=list(dict.fromkeys(_error_key(err) for err in errors))) from None


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading floats as YAML 1.2 does (as DVC's ruamel does): ``5e-05``
    and ``1e3`` are numbers, not strings (`dvc exp run -S train.learning_rate=5e-5` writes
    ``5e-05``)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."))


def load_yaml(text: str):
    """YAML text as plain Python, with YAML 1.2's floats (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def read_raw(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a plain mapping; a YAML syntax error is reported with its line."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the repository root")
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ParamsError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return raw


def load_params(path: str | Path = "params.yaml", *, check_palette: bool = True) -> Params:
    return parse_params(read_raw(path), origin=str(path), check_palette=check_palette)
