"""One LoRA fine-tuning run over accelerate: the optimizer step, validation loss, saved state.

:class:`LoraTrainer` is the real training code path, usable on its own (the GPU benchmark
drives it on a random-initialised model with synthetic chats)::

    trainer = LoraTrainer(model, lora_params, train_params, total_steps=10)
    stats = trainer.train_step(chats)   # the step's chats (every process passes the same list)
    stats.tokens, stats.seconds, stats.peak_memory_bytes, stats.loss

One optimizer step trains on exactly the chats it is given (the effective batch): they are
shared across processes by tokens and packed into padding-free micro-batches of at most
``train.micro_batch_tokens`` tokens (:mod:`thinktune.training.batching`), so the number of
micro-batches varies from step to step. Every micro-batch's loss is its sum over answer
tokens divided by the answer tokens of the whole step (all micro-batches, all processes):
the gradient is that of the token-mean loss of the step, as the TRL trainer computed it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from thinktune.config.params import LoraParams, TrainParams
from thinktune.models.hardware import resolve_precision
from thinktune.training import packed_attention
from thinktune.training.lora_dropout import prepare_lora_layers
from thinktune.training.batching import flatten, plan_step
from thinktune.training.data import TokenizedChat
from thinktune.training.loss import (
    CPU_MAX_LOGIT_ELEMENTS,
    CausalLMLoss,
    LossImpl,
    default_chunk_tokens,
    loss_fallback,
    resolve_loss_impl,
)
from thinktune.training.memory import HeapTrimmer


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step did and cost (totals over all processes)."""

    step: int
    loss: float               # token-mean loss over the step's answer tokens
    learning_rate: float      # the rate this step's update used
    grad_norm: float | None   # before clipping
    chats: int
    tokens: int               # tokens forwarded (no padding exists)
    target_tokens: int        # tokens carrying the loss
    micro_batches: int        # per process (the most any process ran)
    seconds: float
    peak_memory_bytes: int | None  # CUDA: peak allocated during the step; CPU: None
    skipped: bool = False     # fp16 overflow: the grad scaler skipped the update

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Progress:
    """Run state that accelerate saves beside the optimizer (``register_for_checkpointing``)."""

    step: int = 0
    extra: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"step": self.step, "extra": dict(self.extra)}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.extra = int(state["step"]), dict(state["extra"])


def flash_attention_problem(device) -> str | None:
    """None when FlashAttention 2 runs a tiny forward on ``device``; else why not.

    Its package metadata can be present while the build cannot run (compiled for another
    torch or GPU): that would crash the first training step instead of falling back.
    """
    try:
        import torch
        from flash_attn import flash_attn_func

        q = torch.randn(1, 8, 2, 64, device=device, dtype=torch.bfloat16)
        flash_attn_func(q, q, q, causal=True)
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not use it
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return None


def choose_attention(requested: str, device, probe=flash_attention_problem) -> tuple[str, str | None]:
    """(implementation, why it is not the first choice or None).

    ``auto``: FlashAttention 2 where installed *and* a test forward runs, else flex attention
    on CUDA; sdpa on CPU. An explicit ``flash_attention_2`` that cannot run is an error naming
    the fix. All of them keep packed chats apart (transformers reads the boundaries from
    position_ids).
    """
    on_cuda = getattr(device, "type", str(device).split(":")[0]) == "cuda"
    if requested == "flash_attention_2" or (requested == "auto" and on_cuda):
        from transformers.utils import is_flash_attn_2_available

        problem = probe(device) if is_flash_attn_2_available() else "flash-attn is not installed"
        if requested == "flash_attention_2" and problem:
            raise ValueError(f"train.attn_implementation=flash_attention_2 cannot run here ({problem}): install a "
                             "flash-attn built for this torch and GPU, or set train.attn_implementation=auto")
        if not problem:
            return "flash_attention_2", None
    if requested != "auto":
        return requested, None
    if not on_cuda:
        return "sdpa", None
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return "sdpa", f"{problem}; flex attention not available: sdpa with a dense mask per packed row"
    return "flex_attention", problem


def compile_flex_attention_once() -> bool:
    """One compiled flex attention for training and evaluation alike; whether it applies.

    transformers keeps its compiled ``flex_attention`` in a singleton that calls ``torch.compile``
    anew whenever ``module.training`` differs from the last call (for a workaround needed by torch
    2.6.0 alone), so every train -> validation -> train switch makes a new compiled wrapper and
    relies on dynamo's cache to find the kernels again. With torch 2.13 on a CPU it does (a tiny
    Qwen2 on flex attention, train/eval/train/eval without gradients: 2 graphs compiled with or
    without this, the switches about 0.1 s against 0.2-0.5 s), but each re-wrap is a cache lookup
    that a backend or version keying on the wrapper turns into a recompile, counted toward
    dynamo's limit, past which flex attention runs uncompiled. Past torch 2.6.0 both modes compile
    the same call, so the first compiled callable is kept; dynamo still compiles it once per new
    shape set.
    """
    import torch

    try:
        from transformers.integrations.flex_attention import WrappedFlexAttention as wrapper
    except ImportError:  # a transformers without this singleton: nothing to keep
        return False
    if torch.__version__.split("+")[0] == "2.6.0":
        return False
    if getattr(wrapper.__init__, "compiles_once", False):
        return True
    original = wrapper.__init__

    def init(self, training):
        if not self._is_flex_compiled:
            original(self, training)

    init.compiles_once = True
    wrapper.__init__ = init
    return True


def lora_config(lora: LoraParams):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")


def make_accelerator(precision: str):
    """accelerate's Accelerator with autocast (and a grad scaler for fp16) for ``precision``."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[precision]
    try:
        return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())
    except ValueError:  # a single process that trained in another precision before (its state is a singleton)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())


class LoraTrainer:
    """A PEFT LoRA adapter on ``model``, its AdamW optimizer and schedule, under accelerate.

    ``model`` is a loaded causal LM (its dtype the precision's, as ``from_pretrained`` gives it,
    with the attention implementation already chosen); the trainer adds the adapter, turns on
    activation checkpointing if asked and prepares everything for the launched processes.
    """

    def __init__(self, model, lora: LoraParams, train: TrainParams, total_steps: int, *,
                 loss_impl: LossImpl = "auto", pad_token_id: int = 0, accelerator=None):
        from peft import get_peft_model
        from transformers import get_scheduler

        self.train_params = train
        self.total_steps = total_steps
        self.precision = resolve_precision(train.precision)
        self.accelerator = accelerator or make_accelerator(self.precision)
        self.pad_token_id = pad_token_id
        on_cuda = self.accelerator.device.type == "cuda"
        self.loss_impl = resolve_loss_impl(loss_impl, on_cuda)
        self.loss_fallback = loss_fallback(loss_impl, on_cuda, self.loss_impl)

        if getattr(model.config, "_attn_implementation", None) == "flex_attention":
            compile_flex_attention_once()
        if packed_attention.applies(model, self.accelerator.device):  # the same SDPA, chat by chat
            model.set_attn_implementation(packed_attention.register())
        torch.manual_seed(train.seed)  # the adapter's initial weights: identical on every process
        peft_model = get_peft_model(model, lora_config(lora))
        prepare_lora_layers(peft_model, autocast=self.accelerator.mixed_precision in ("bf16", "fp16"))
        if train.gradient_checkpointing:
            peft_model.get_base_model().gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        self.peft_model = peft_model
        # On CPU: smaller loss chunks, and freed heap pages handed back inside the step (see
        # thinktune.training.memory), so fp32 training of the 0.5B stays under 4 GiB RSS.
        chunk_tokens = None if on_cuda else default_chunk_tokens(model.config.vocab_size, CPU_MAX_LOGIT_ELEMENTS)
        self.heap = HeapTrimmer(enabled=not on_cuda).attach(peft_model.get_base_model())
        module = CausalLMLoss(peft_model, self.loss_impl, chunk_tokens)
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]  # biases and norms, as transformers' Trainer does
        groups = [{"params": decay, "weight_decay": train.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=train.learning_rate,
                                      fused=self._fused_ok(params))
        self.scheduler = get_scheduler(train.lr_scheduler, optimizer,
                                       num_warmup_steps=math.ceil(train.warmup_ratio * total_steps),
                                       num_training_steps=total_steps)
        fsdp = getattr(self.accelerator.state, "fsdp_plugin", None)
        if fsdp is not None:  # LoRA layers in their own FSDP units (fp32 beside the bf16 base), as the Trainer does
            from peft.utils.other import fsdp_auto_wrap_policy

            fsdp.auto_wrap_policy = fsdp_auto_wrap_policy(peft_model)
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.progress = Progress()
        self.accelerator.register_for_checkpointing(self.scheduler, self.progress)
        self.accelerator.register_save_state_pre_hook(self._keep_trainable_weights)
        self.accelerator.register_load_state_pre_hook(self._load_trainable_weights)
        self.model.train()

    @staticmethod
    def _fused_ok(params) -> bool:
        return all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def trainable_parameters(self) -> tuple[int, int]:
        return self.peft_model.get_nb_trainable_parameters()

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def train_step(self, chats: Sequence[TokenizedChat]) -> StepStats:
        """One optimizer step on ``chats`` (the whole step's chats, the same list on every process)."""
        if not chats:
            raise ValueError("an optimizer step needs at least one chat")
        acc = self.accelerator
        on_cuda = acc.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(acc.device)
        start = time.perf_counter()
        plan = plan_step(chats, self.world, self.train_params.micro_batch_tokens)
        mine = plan.for_process(self.rank)
        scale = self.world / plan.n_targets  # DDP averages gradients over processes; undo that
        loss_sum = torch.zeros((), device=acc.device)
        learning_rate = self.scheduler.get_last_lr()[0]
        for i, micro in enumerate(mine):
            last = i == len(mine) - 1
            with acc.no_sync(self.model) if not last else nullcontext():
                loss, _ = self.model(**self._to_device(flatten(micro, self.pad_token_id)))
                self.heap.maybe_trim()
                acc.backward(loss * scale)
                self.heap.maybe_trim()
            loss_sum += loss.detach().float()
        grad_norm = None
        if self.train_params.max_grad_norm > 0:
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.train_params.max_grad_norm)
            grad_norm = float(grad_norm)
        self.optimizer.step()
        skipped = bool(self.optimizer.step_was_skipped)
        if not skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        total_loss = float(acc.reduce(loss_sum, reduction="sum")) / plan.n_targets
        seconds = time.perf_counter() - start
        self.progress.step += 1
        return StepStats(
            step=self.progress.step, loss=total_loss, learning_rate=learning_rate, grad_norm=grad_norm,
            chats=len(chats), tokens=plan.n_tokens, target_tokens=plan.n_targets, micro_batches=plan.rounds,
            seconds=seconds, peak_memory_bytes=torch.cuda.max_memory_allocated(acc.device) if on_cuda else None,
            skipped=skipped)

    @torch.no_grad()
    def evaluate(self, chats: Sequence[TokenizedChat]) -> float:
        """Token-mean loss over the answers of ``chats`` (shared across processes), no dropout."""
        acc = self.accelerator
        plan = plan_step(chats, self.world, self.train_params.micro_batch_tokens)
        self.model.eval()
        try:
            loss_sum = torch.zeros((), device=acc.device)
            for micro in plan.for_process(self.rank):  # equal forward counts: FSDP gathers weights in each
                loss, _ = self.model(**self._to_device(flatten(micro, self.pad_token_id)))
                loss_sum += loss.float()
        finally:
            self.model.train()
        return float(acc.reduce(loss_sum, reduction="sum")) / plan.n_targets

    # --- adapters and resume state -------------------------------------------------------

    def adapter_state_dict(self) -> dict:
        """The full state dict of the PEFT model (gathered under FSDP); call on every process."""
        state = self.accelerator.get_state_dict(self.model)  # keys of CausalLMLoss: "model.<peft key>"
        return {k.removeprefix("model."): v for k, v in state.items()}

    def save_adapter(self, out_dir: Path | None, base_model_name: str) -> None:
        """PEFT adapter files (config + safetensors) in ``out_dir``, the base model named by its
        hub name rather than a local path; call on every process (only the main one writes)."""
        state = self.adapter_state_dict()
        if self.accelerator.is_main_process and out_dir is not None:
            peft_model = self.peft_model
            config = peft_model.peft_config["default"]
            local_name, config.base_model_name_or_path = config.base_model_name_or_path, base_model_name
            try:
                # save_embedding_layers=False: embeddings are never trained here, and "auto" would look the
                # base model's name up on the hub to compare vocabulary sizes.
                peft_model.save_pretrained(str(out_dir), state_dict=state, save_embedding_layers=False)
            finally:
                config.base_model_name_or_path = local_name
        self.accelerator.wait_for_everyone()

    def _trainable_names(self, model) -> set[str]:
        return {name for name, p in model.named_parameters() if p.requires_grad}

    def _keep_trainable_weights(self, models, weights, output_dir) -> None:
        # The resume state holds the adapter only, never a copy of the frozen base model.
        for i, model in enumerate(models[:len(weights)]):
            keep = self._trainable_names(model)
            weights[i] = {k: v for k, v in weights[i].items() if k in keep}

    def _load_trainable_weights(self, models, input_dir) -> None:
        from safetensors.torch import load_file

        for i, model in enumerate(models):
            name = "model.safetensors" if i == 0 else f"model_{i}.safetensors"
            state = load_file(str(Path(input_dir) / name), device=str(self.accelerator.device))
            missing = self._trainable_names(model) - state.keys()
            if missing:
                raise ValueError(f"{input_dir}: resume state lacks {len(missing)} adapter weights, e.g. {min(missing)}")
            model.load_state_dict(state, strict=False)
        models.clear()  # loaded: accelerate must not load them again (strictly, expecting the base too)

    def save_state(self, state_dir: Path) -> None:
        """Optimizer, scheduler, grad scaler, RNG of every process, adapter and progress; every process."""
        self.accelerator.save_state(str(state_dir))
        self.accelerator.wait_for_everyone()

    def load_state(self, state_dir: Path) -> None:
        self.accelerator.load_state(str(state_dir))
        rng_file = Path(state_dir) / f"random_states_{self.rank}.pkl"
        saved = torch.load(rng_file, weights_only=False)["torch_manual_seed"]
        if not torch.equal(saved, torch.get_rng_state()):  # accelerate logs and goes on if it fails
            raise RuntimeError(f"{state_dir}: the random state of process {self.rank} was not restored")
