"""The base model loaded once per checkpoint set; each LoRA adapter merged in, then taken out.

Evaluating a strategy means the base model plus each of its checkpoints' adapters.
Reloading the base and merging for every checkpoint costs a full read of the weights each
time; here the base stays on its device, an adapter is merged into it in place (PEFT's
merge, so generation runs at base speed) and afterwards the layers it touched get their
saved base weights back, bit for bit. The weights never move, so the decode engine's CUDA
graphs stay valid from one checkpoint to the next. ``benchmarks.generation_speed`` times
the switch against a reload.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from thinktune.hardware import resolve_precision, torch_dtype
from thinktune.logs import get_logger

log = get_logger("modelhost")


def load_base(base_dir: Path, precision: str, device: str = "cpu"):
    """(model, tokenizer) in the resolved precision, on ``device``, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype(resolve_precision(precision)))
    return model.to(device).eval(), tokenizer


class ModelHost:
    """``with host.merged(adapter_dir) as model``: the base with that adapter merged in."""

    def __init__(self, base_dir: Path, precision: str, device: str = "cpu"):
        self.base_dir, self.device = base_dir, device
        self.model, self.tokenizer = load_base(base_dir, precision, device)
        self._saved: dict[str, tuple] = {}  # parameter name -> (parameter, its base value)

    @contextlib.contextmanager
    def merged(self, adapter_dir: Path | None) -> Iterator:
        if adapter_dir is None:
            yield self.model
            return
        import torch
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        if config.get("modules_to_save"):
            raise ValueError(f"{adapter_dir}: adapters with modules_to_save replace whole modules; "
                             "merging them in place is not supported")
        names = {id(p): n for n, p in self.model.named_parameters()}
        # PEFT freezes every base parameter; put the flags back after merging, since frozen
        # parameters make torch's CPU forward ~1.8x slower here (bf16, masked SDPA prefill:
        # 8.7 s -> 15 s for 12 prompts of the 0.5B), and restoring should leave no trace.
        requires_grad = {n: p.requires_grad for n, p in self.model.named_parameters()}
        peft_model = PeftModel.from_pretrained(self.model, adapter_dir)
        touched = []
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                base = module.get_base_layer()
                for param in (base.weight, getattr(base, "bias", None)):
                    if param is not None:
                        touched.append(names[id(param)])
                        if names[id(param)] not in self._saved:
                            self._saved[names[id(param)]] = (param, param.detach().clone())
        pointers = {name: self._saved[name][0].data_ptr() for name in touched}
        with torch.no_grad():
            model = peft_model.merge_and_unload(safe_merge=False)
        if model is not self.model or any(self._saved[n][0].data_ptr() != ptr for n, ptr in pointers.items()):
            raise RuntimeError("PEFT did not merge the adapter in place; reload the base model per checkpoint")
        for attribute in ("peft_config",):  # what PEFT leaves on the base: the next wrap starts clean
            self.model.__dict__.pop(attribute, None)
        for name, param in self.model.named_parameters():
            param.requires_grad_(requires_grad[name])
        try:
            yield self.model
        finally:
            self.restore()

    def restore(self) -> None:
        """Every merged layer back to its base weights."""
        import torch

        with torch.no_grad():
            for param, value in self._saved.values():
                param.copy_(value)
