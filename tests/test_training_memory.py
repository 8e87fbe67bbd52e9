"""thinktune.training.memory: freed heap pages handed back inside a CPU training step.

What it saves is measured on the real model by ``perf.stage_memory`` (README); here: it
trims where it says it does, only above its limit, gives memory back, and changes no number.
"""

from __future__ import annotations

import pytest
from test_training_run import write_chats

from thinktune.config.params import LoraParams, TrainParams
from thinktune.training import memory
from thinktune.training.data import load_tokenized

pytestmark = pytest.mark.usefixtures("one_thread")
needs_glibc = pytest.mark.skipif(not memory.HeapTrimmer().active, reason="no glibc malloc_trim here")


@needs_glibc
def test_trims_before_each_layer_and_mlp_only_above_the_limit(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.arange(12)[None]
    for limit, enabled, expected in ((0, True, 2 * 2), (1 << 50, True, 0), (0, False, 0)):  # 2 layers x (layer, MLP)
        trimmer = memory.HeapTrimmer(limit, enabled=enabled).attach(model)
        model(input_ids=ids)
        trimmer.detach()
        assert trimmer.trims == expected, (limit, enabled)
    model(input_ids=ids)
    assert trimmer.trims == 0  # detached: no hook left


@needs_glibc
def test_malloc_trim_gives_freed_heap_memory_back():
    import torch

    trimmer = memory.HeapTrimmer(0)
    # Freeing an 8 MiB (mmapped) block raises glibc's mmap threshold above 1 MiB, as torch's
    # activations do in a step: the 1 MiB blocks below then come from the heap.
    torch.ones(1 << 21).sum()
    keep, scratch = [], []
    for _ in range(200):  # every other block kept: freed holes between live ones (the kept ones as large,
        scratch.append(torch.ones(1 << 18))  # so that no older hole in the heap takes them)
        keep.append(torch.ones(1 << 18))
    before = memory.rss_bytes()
    scratch.clear()
    trimmer.maybe_trim()
    assert trimmer.trims == 1 and memory.rss_bytes() < before - (100 << 20)


def test_training_numbers_do_not_depend_on_trimming(tiny_model_dir, tmp_path, monkeypatch):
    """Two steps with a trim at every point (limit 0) and with none: the same losses and adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinktune.training.session import LoraTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train_file, _ = write_chats(tmp_path, n=4)
    chats = load_tokenized(train_file, tokenizer, 256)
    lora = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    train = TrainParams(epochs=1, learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0.0, weight_decay=0.0,
                        effective_batch_size=4, gradient_checkpointing=True, precision="fp32", save_steps=100,
                        logging_steps=1, seeds=[0], micro_batch_tokens=128)  # 2 chats a micro-batch
    runs = []
    for limit in (0, 1 << 50):
        monkeypatch.setattr(memory, "SOFT_LIMIT_BYTES", limit)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        trainer = LoraTrainer(model, lora, train, total_steps=2, pad_token_id=tokenizer.pad_token_id)
        losses = [trainer.train_step(chats).loss for _ in range(2)]
        assert (trainer.heap.trims > 0) == (limit == 0 and trainer.heap.active)
        runs.append((losses, {k: v.clone() for k, v in trainer.peft_model.state_dict().items() if "lora_" in k}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
