"""The base model loaded once per checkpoint set; each LoRA adapter applied *unmerged*.

Evaluating a strategy means the base model plus each of its checkpoints' adapters. The
adapter is not merged into the base weights: a merge adds ``B @ A * scale`` to each weight in
the weight's dtype, and in bf16 (8 significant bits) every delta entry below half a step of
its weight is dropped and the rest rounded. At the study's lr 5e-5 that erases most of what
an early checkpoint learned (measured in ``perf.lora_precision``). Instead PEFT's LoRA
layers stay in the model and add ``scale * B(A(x))`` to each target layer's output at run
time, with the adapter weights in fp32 (PEFT's ``autocast_adapter_dtype``): the answers come
from exactly the model that was trained, in every precision.

The base weights never change and never move. The first adapter wraps the base in PEFT's
layers; the next one of the same shape (rank, targets: every checkpoint of one run) is copied
into those same adapter tensors in place, so the decode engine's CUDA graphs, captured
against them, stay valid from one checkpoint to the next. An adapter of another shape
unwraps the model and wraps it again (the engine then recaptures).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from thinktune.logs import get_logger
from thinktune.models.hardware import resolve_precision, torch_dtype
from thinktune.models.source import load_causal_lm

log = get_logger("modelhost")

# adapter_config.json keys that decide the shape of PEFT's layers; checkpoints agreeing on all
# of them share one set of adapter tensors.
_SHAPE_KEYS = ("r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern", "use_dora", "use_rslora",
               "lora_bias", "layers_to_transform", "layers_pattern", "fan_in_fan_out", "bias")


def load_base(base_dir: Path, precision: str, device: str = "cpu"):
    """(model, tokenizer) in the resolved precision, on ``device``, in eval mode."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = load_causal_lm(base_dir, torch_dtype(resolve_precision(precision)))
    return model.to(device).eval(), tokenizer


def _adapter_shape(config: dict) -> dict:
    shape = {key: config.get(key) for key in _SHAPE_KEYS}
    if isinstance(shape["target_modules"], list):
        shape["target_modules"] = sorted(shape["target_modules"])
    return shape


class ModelHost:
    """``with host.adapted(adapter_dir) as model``: the base with that adapter applied at run time."""

    def __init__(self, base_dir: Path, precision: str, device: str = "cpu"):
        self.base_dir, self.device = base_dir, device
        self.model, self.tokenizer = load_base(base_dir, precision, device)
        self._peft = None  # the PeftModel wrapping self.model once an adapter was applied
        self._shape: dict | None = None

    @contextlib.contextmanager
    def adapted(self, adapter_dir: Path | None) -> Iterator:
        """The model to generate with: ``self.model`` itself, its layers carrying the adapter's
        LoRA weights (or, for ``None``, with every adapter switched off)."""
        if adapter_dir is None:
            if self._peft is None:
                yield self.model
            else:
                with self._peft.disable_adapter():
                    yield self.model
            return
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        if config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{adapter_dir}: a {config['peft_type']} adapter; the evaluation applies LoRA adapters")
        if config.get("modules_to_save"):
            raise ValueError(f"{adapter_dir}: adapters with modules_to_save replace whole modules; "
                             "the evaluation applies LoRA layers only")
        if self._peft is not None and _adapter_shape(config) == self._shape:
            self._load_in_place(Path(adapter_dir))
        else:
            self._wrap(Path(adapter_dir), config)
        yield self.model

    def _wrap(self, adapter_dir: Path, config: dict) -> None:
        from peft import PeftModel

        if self._peft is not None:
            self._peft.unload()  # PEFT's layers out, the base layers back (nothing was merged)
            self._peft = None
        # PEFT freezes every base parameter; give the flags back, since frozen parameters make
        # torch's CPU forward ~1.8x slower here (bf16, masked SDPA prefill of the 0.5B).
        requires_grad = {id(p): p.requires_grad for p in self.model.parameters()}
        self._peft = PeftModel.from_pretrained(self.model, adapter_dir, is_trainable=False).eval()
        for param in self.model.parameters():
            param.requires_grad_(requires_grad.get(id(param), False))  # adapter weights: not in the dict
        self._shape = _adapter_shape(config)

    def _load_in_place(self, adapter_dir: Path) -> None:
        import torch
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        pointers = {n: p.data_ptr() for n, p in self.model.named_parameters() if "lora_" in n}
        weights = load_file(adapter_dir / "adapter_model.safetensors")
        with torch.no_grad():
            result = set_peft_model_state_dict(self._peft, weights)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing:
            raise ValueError(f"{adapter_dir}: adapter weights do not fit the loaded adapter layers "
                             f"(unexpected {result.unexpected_keys[:3]}, missing {missing[:3]})")
        if any(p.data_ptr() != pointers[n] for n, p in self.model.named_parameters() if "lora_" in n):
            raise RuntimeError("PEFT replaced the adapter tensors instead of loading into them")
