"""LoRA supervised fine-tuning with TRL: one adapter per strategy, saved every ``save_steps``.

The formatted chats are split into prompt (system + user) and completion (the assistant
turn), so TRL puts the loss on the answer only. Each saved checkpoint is a PEFT adapter
directory (``adapter_config.json`` + ``adapter_model.safetensors`` + ``trainer_state.json``)
that the eval stage loads on top of the base model.
"""

from __future__ import annotations

import re
from pathlib import Path

from thinktune.atomic import atomic_dir, read_jsonl
from thinktune.chat import prompt_completion
from thinktune.hardware import resolve_precision, torch_dtype
from thinktune.logs import get_logger
from thinktune.params import LoraParams, TrainParams

log = get_logger("training")

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_DIR.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(adapters_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a training run, in step order."""
    found = [p for p in adapters_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def lora_config(lora: LoraParams):
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_chats(path: Path):
    from datasets import Dataset

    rows = [prompt_completion(row["messages"]) for row in read_jsonl(path)]
    return Dataset.from_list(rows) if rows else None


def sft_config(train: TrainParams, max_length: int, output_dir: Path, has_valid: bool):
    from trl import SFTConfig

    import torch

    precision = resolve_precision(train.precision)
    return SFTConfig(
        use_cpu=not torch.cuda.is_available(),
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        weight_decay=train.weight_decay,
        per_device_train_batch_size=train.per_device_batch_size,
        per_device_eval_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        activation_checkpointing=train.gradient_checkpointing,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        save_strategy="steps",
        save_steps=train.save_steps,
        save_only_model=True,  # adapters only: no optimizer state in the outputs
        eval_strategy="steps" if has_valid else "no",
        eval_steps=train.save_steps if has_valid else None,
        logging_steps=train.logging_steps,
        seed=train.seed,
        data_seed=train.seed,
        max_length=max_length,
        completion_only_loss=True,
        packing=False,
        report_to="none",  # DVCLive is attached explicitly, one folder per strategy
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def train_lora(
    base_model_dir: Path,
    train_file: Path,
    valid_file: Path | None,
    out_dir: Path,
    live_dir: Path,
    lora: LoraParams,
    train: TrainParams,
    max_length: int,
) -> list[Path]:
    """Fine-tune one LoRA adapter; return the saved checkpoint folders in step order."""
    import torch
    from dvclive import Live
    from dvclive.huggingface import DVCLiveCallback
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    torch.manual_seed(train.seed)
    train_data = load_chats(train_file)
    if train_data is None:
        raise ValueError(f"{train_file} has no rows: nothing to train on")
    valid_data = load_chats(valid_file) if valid_file and valid_file.is_file() else None
    precision = resolve_precision(train.precision)
    log.info("training on %d chats (%s), precision %s, effective batch %d",
             len(train_data), train_file, precision, train.effective_batch_size)

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch_dtype(precision))

    with atomic_dir(out_dir) as tmp:
        live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        trainer = SFTTrainer(
            model=model,
            args=sft_config(train, max_length, tmp, has_valid=valid_data is not None),
            train_dataset=train_data,
            eval_dataset=valid_data,
            processing_class=tokenizer,
            peft_config=lora_config(lora),
            callbacks=[DVCLiveCallback(live=live)],
        )
        trainable, total = trainer.model.get_nb_trainable_parameters()
        log.info("LoRA r=%d alpha=%g on %s: %.1f M trainable of %.0f M",
                 lora.r, lora.alpha, ",".join(lora.target_modules), trainable / 1e6, total / 1e6)
        trainer.train()
        final = tmp / f"checkpoint-{trainer.state.global_step}"
        if not final.exists():  # the last step is not a multiple of save_steps
            trainer.save_model(str(final))
            trainer.state.save_to_json(str(final / "trainer_state.json"))
        checkpoints = [out_dir / p.name for p in list_checkpoints(tmp)]
    log.info("saved %d adapter checkpoint(s) to %s", len(checkpoints), out_dir)
    return checkpoints
