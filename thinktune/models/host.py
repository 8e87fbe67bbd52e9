"""The base model loaded once per checkpoint set; each LoRA adapter applied *unmerged*.

Evaluating a strategy means the base model plus each of its checkpoints' adapters. The
adapter is not merged into the base weights: a merge adds ``B @ A * scale`` to each weight in
the weight's dtype, and in bf16 (8 significant bits) every delta entry below half a step of
its weight is dropped and the rest rounded. At the study's lr 5e-5 that erases most of what
an early checkpoint learned (measured in ``perf.lora_precision``). Instead the adapter's
layers add ``scale * B(A(x))`` to each target layer's output at run time
(``thinktune.models.lora``: stacked by shared input, several checkpoints in one batch): the
answers come from the model that was trained, in every precision, within the bf16 rounding of
the delta itself (tests bound it against PEFT's own unmerged forward).

The base weights never change. They move once: the decode engine's fused step stacks q|k|v and
gate|up into one tensor each and makes the layers' weights views of it
(``thinktune.generation.fused_step``). The adapters ride on forward hooks of the base layers; the next set of the same shape (count, rank, targets: the checkpoints of one run) is
copied into the same stacked tensors in place, so the decode engine's CUDA graphs, captured
against them, stay valid. A set of another shape gets new tensors, and ``StackedLoRA.key()``
changes with it, as it does between the base (adapters off) and an adapter: the engine keys
its graphs by it and captures again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from thinktune.logs import get_logger
from thinktune.models.hardware import resolve_precision, torch_dtype
from thinktune.models.lora import StackedLoRA, attach
from thinktune.models.source import load_causal_lm, load_tokenizer

log = get_logger("modelhost")


def load_base(base_dir: Path, precision: str, device: str = "cpu"):
    """(model, tokenizer) in the resolved precision, on ``device``, in eval mode."""
    tokenizer = load_tokenizer(base_dir)
    model = load_causal_lm(base_dir, torch_dtype(resolve_precision(precision)))
    return model.to(device).eval(), tokenizer


class ModelHost:
    """``with host.adapted(adapter_dir) as model``: the base with that adapter applied at run time;
    ``with host.adapted_set([dir, ...]) as model``: several at once, each decoded row using the
    one its request names (``Request.adapter``, an index into the list; ``None`` in the list: the
    base model's rows)."""

    def __init__(self, base_dir: Path, precision: str, device: str = "cpu"):
        self.base_dir, self.device = base_dir, device
        self.model, self.tokenizer = load_base(base_dir, precision, device)
        self.lora: StackedLoRA | None = None  # the hooks on self.model once an adapter was applied

    @contextlib.contextmanager
    def adapted(self, adapter_dir: Path | None) -> Iterator:
        """The model to generate with: ``self.model`` itself, its layers carrying the adapter's
        LoRA weights (or, for ``None``, with every adapter switched off)."""
        with self.adapted_set([adapter_dir]) as model:
            yield model

    @contextlib.contextmanager
    def adapted_set(self, adapter_dirs: list[Path | None]) -> Iterator:
        """``self.model`` with ``adapter_dirs`` applied side by side (see ``thinktune.models.lora``)."""
        if all(a is None for a in adapter_dirs):
            if self.lora is not None:
                self.lora.enabled = False
            attach(self.model, self.lora)
            yield self.model
            return
        if self.lora is None:
            self.lora = StackedLoRA(self.model, list(adapter_dirs))
        else:
            self.lora.load(list(adapter_dirs))  # in place when the shape is the same (CUDA graphs stay valid)
        self.lora.enabled = True
        attach(self.model, self.lora)
        yield self.model
