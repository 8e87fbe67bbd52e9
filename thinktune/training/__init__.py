"""LoRA fine-tuning: padding-free, token-budgeted, resumable, data-parallel.

A compact training loop over accelerate, in small modules:

- ``data``: chats -> token ids + labels (loss on the assistant turn, as TRL's SFTTrainer put it)
- ``batching``: which chats each optimizer step trains on; sharing them across processes;
  packing them into padding-free micro-batches under a token budget
- ``loss``: the loss without full logits (Liger's fused kernel on CUDA, else exact chunks)
- ``session``: :class:`~thinktune.training.session.LoraTrainer`, the optimizer step itself
- ``checkpoints``: the run's work folder in the cache (resume state), adapters, model cards
- ``live``: DVCLive logs that never touch a repository
- ``run``: :func:`train_lora`, a whole run from formatted chats to published adapters
- ``launch``: re-running a command under torchrun / ``accelerate launch``

Why not TRL's SFTTrainer (or transformers' Trainer) any more: the study's optimizer step is
16 chats, and chats of 1.5k-8k tokens make any fixed number of chats per micro-batch either
waste most of the GPU (1 x 16, 8.6% MFU measured) or pad and run out of memory (4 x 4: 30%
padding). The Trainer's step is always ``gradient_accumulation_steps`` micro-batches of
``per_device_train_batch_size`` examples; TRL's ``padding_free`` removes the padding but keeps
the fixed example count, and its ``packing`` (bfd) packs to a fixed length so that the number
of chats per optimizer step varies with their lengths. "Exactly 16 chats per step, in as few
micro-batches as a token budget allows, loss normalised over the whole step's answer tokens"
needs its own loop. Its resume state must also live outside the published checkpoints (the
Trainer resumes only from a checkpoint folder holding the optimizer), and DVC deletes those.
"""

from thinktune.layout import checkpoint_step, list_checkpoints


def __getattr__(name: str):
    # train_lora and LoraTrainer pull in torch/transformers; the eval stage needs only the names above.
    if name == "train_lora":
        from thinktune.training.run import train_lora

        return train_lora
    if name == "LoraTrainer":
        from thinktune.training.session import LoraTrainer

        return LoraTrainer
    raise AttributeError(name)


__all__ = ["LoraTrainer", "checkpoint_step", "list_checkpoints", "train_lora"]
