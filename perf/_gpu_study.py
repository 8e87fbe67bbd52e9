"""What ``perf.gpu_throughput`` measures with, and what it projects: the study's model
architectures, the preset's settings, synthetic chats and prompts, MFU and the full study's hours.

Nothing here imports torch at module level, so the test suite checks these pieces in-process.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from thinktune.config.params import Params, parse_params, read_raw
from thinktune.logs import get_logger

REPO = Path(__file__).resolve().parent.parent
log = get_logger("gpu_throughput")

# Architectures of the presets' models (the hub's config.json values). models/base/config.json is
# preferred when it has the same shape: it is what the pipeline really trains.
QWEN25 = {"vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768,
          "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}
ARCHITECTURES = {
    "Qwen/Qwen2.5-Coder-1.5B": QWEN25 | {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                                         "num_key_value_heads": 2, "intermediate_size": 8960},
    "Qwen/Qwen2.5-Coder-0.5B": QWEN25 | {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                                         "num_key_value_heads": 2, "intermediate_size": 4864},
}
TINY = QWEN25 | {"vocab_size": 1024, "max_position_embeddings": 4096, "hidden_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128}
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size")

# Dense bf16 (T4: fp16) tensor-core peaks in FLOP/s, matched in this order against the device name.
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("T4", 65e12))


def preset_params(name: str, params_path: Path = REPO / "params.yaml") -> Params:
    """params.yaml with the preset's keys applied, as ``python -m thinktune.config.presets NAME`` would
    (in memory: nothing is written)."""
    from thinktune.config.presets import differences, load_preset

    raw = read_raw(params_path)
    preset = load_preset(name)
    differences(raw, preset)  # names a preset key that params.yaml lacks
    for key, value in preset.items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_params(raw, origin=f"{params_path} with preset {name}")


def model_config(model_name: str, tiny: bool, base_dir: Path = REPO / "models/base"):
    """(transformers config, where it came from) for the preset's model."""
    from transformers import AutoConfig, Qwen2Config

    if tiny:
        return Qwen2Config(**TINY), "tiny Qwen2 (CI scale, same family)"
    known = ARCHITECTURES.get(model_name.removesuffix("-Instruct"))
    if known is None:
        raise ValueError(f"model.name {model_name}: no known architecture; add it to ARCHITECTURES in "
                         f"perf/{Path(__file__).name} (known: {', '.join(ARCHITECTURES)})")
    table = Qwen2Config(**known)
    saved_file = base_dir / "config.json"
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text())
        if saved.get("model_type") == "qwen2" and all(saved.get(k) == getattr(table, k) for k in SHAPE_KEYS):
            config = AutoConfig.from_pretrained(base_dir)
            if hasattr(config, "quantization_config"):
                del config.quantization_config  # random weights: nothing is quantized
            return config, f"{saved_file} (the shape of {model_name})"
        log.info("%s is another architecture than %s; using the table's", saved_file, model_name)
    return table, f"the architecture of {model_name} (table in perf/{Path(__file__).name})"


def build_model(config, precision: str, attention: str, device: str, seed: int):
    """A random-initialised causal LM of ``config`` built on ``device`` in the precision's dtype
    (what ``from_pretrained`` gives the stages, with other weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from thinktune.models.hardware import torch_dtype

    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=torch_dtype(precision), attn_implementation=attention)


def peak_flops_for(device_name: str | None, override: float | None) -> tuple[float | None, str]:
    """(dense peak FLOP/s, where it came from); None on a CPU or an unknown GPU without ``override``."""
    if override:
        return override, "--peak-flops"
    if device_name is None:
        return None, "not applicable on a CPU (pass --peak-flops to compute one)"
    for key, peak in PEAK_FLOPS:
        if key in device_name:
            return peak, f"{key} dense bf16/fp16 peak (table)"
    return None, f"unknown GPU {device_name!r}: pass --peak-flops"


def mfu(n_params: int, tokens_per_s: float, activation_checkpointing: bool, peak: float | None) -> float | None:
    """6 N tokens/s (x 4/3 when activation checkpointing recomputes the forward) over the peak:
    the convention of the MFU target and of the earlier H100 figure it is compared with (it ignores
    attention FLOPs and the frozen weights' skipped gradients)."""
    if not peak:
        return None
    return 6 * n_params * tokens_per_s * (4 / 3 if activation_checkpointing else 1) / peak


def chat_range(max_length: int, paper: tuple[int, int] = (1500, 8000), paper_context: int = 8192) -> tuple[int, int]:
    """The paper's chat lengths (1,500-8,000 tokens at context 8192) scaled to ``max_length``."""
    return tuple(max(2, round(t * max_length / paper_context)) for t in paper)  # type: ignore[return-value]


def synthetic_chats(n: int, low: int, high: int, answer_fraction: float, vocab: int, seed: str):
    """``n`` chats of uniform length in [low, high] tokens of random ids; the last
    ``answer_fraction`` of each (at least one token) is the answer and carries the loss."""
    from thinktune.training.data import IGNORE, TokenizedChat

    rng = random.Random(f"gpu-throughput-chats-{seed}")
    chats = []
    for _ in range(n):
        length = rng.randint(low, high)
        prompt = min(length - 1, max(1, round(length * (1 - answer_fraction))))
        ids = tuple(rng.randrange(vocab) for _ in range(length))
        chats.append(TokenizedChat(ids, (IGNORE,) * prompt + ids[prompt:]))
    return chats


def synthetic_prompts(n: int, low: int, high: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(f"gpu-throughput-prompts-{seed}")
    return [[rng.randrange(vocab) for _ in range(rng.randint(low, high))] for _ in range(n)]


def projection(study: Params, study_name: str, chats: int, mean_chat_tokens: int, problems: int,
               mean_answer_tokens: int, train_tokens_per_s: float | None, gen_tokens_per_s: float | None) -> dict:
    """Hours of the study's training and generation at the measured rates (grading excluded).

    Training: both datasets' tokens per epoch (``chats`` x ``mean_chat_tokens``) x epochs over the
    training tokens/s. Evaluation: models (the base + each strategy's checkpoints, saved every
    ``save_steps`` and at the last step) x problems x samples x ``mean_answer_tokens`` over the
    generation tokens/s."""
    from thinktune.training.batching import total_steps

    steps = total_steps(chats, study.train.effective_batch_size, study.train.epochs)
    checkpoints = math.ceil(steps / study.train.save_steps)
    runs = len(study.strategies) * len(study.train.seeds)  # one training run per strategy and seed
    models = 1 + runs * checkpoints
    train_tokens = runs * chats * mean_chat_tokens * study.train.epochs
    answer_tokens = models * problems * study.eval.n_samples * mean_answer_tokens
    training = train_tokens / train_tokens_per_s / 3600 if train_tokens_per_s else None
    evaluation = answer_tokens / gen_tokens_per_s / 3600 if gen_tokens_per_s else None
    return {
        "schedule": f"preset {study_name}: {len(study.strategies)} strategies x {len(study.train.seeds)} seed(s) x {chats:,} chats, {study.train.epochs:g} epochs, "
                    f"{study.train.effective_batch_size} chats per step, a checkpoint every {study.train.save_steps} "
                    f"steps; {problems} problems x {study.eval.n_samples} sample(s) per model",
        "assumptions": {"chats_per_dataset": chats, "mean_chat_tokens": mean_chat_tokens, "problems": problems,
                        "mean_answer_tokens": mean_answer_tokens},
        "optimizer_steps_per_strategy": steps, "checkpoints_per_strategy": checkpoints, "models_evaluated": models,
        "training_tokens": train_tokens, "generated_tokens": answer_tokens,
        "training_hours": training, "evaluation_hours": evaluation,
        "total_hours": training + evaluation if training is not None and evaluation is not None else None,
        "not_included": "grading, model loading, validation loss, checkpoint saving",
    }
