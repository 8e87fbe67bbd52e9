"""``train_lora``: a whole resumable fine-tuning run, from formatted chats to published adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from thinktune.atomic import atomic_dir, write_json
from thinktune.config.params import LoraParams, TrainParams
from thinktune.logs import get_logger
from thinktune.models.hardware import describe_environment, resolve_precision, torch_dtype
from thinktune.models.source import cache_dir, load_causal_lm
from thinktune.training.batching import epoch_of_step, step_chat_ids, total_steps
from thinktune.training.checkpoints import RunStore, code_sha256, list_checkpoints, model_card, run_key
from thinktune.training.data import file_sha256, load_tokenized, token_counts
from thinktune.training.live import log_step, open_live
from thinktune.training.session import LoraTrainer, StepStats, choose_attention, make_accelerator

log = get_logger("training")
logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise


@dataclass
class _Window:
    """Steps since the last log line: the logged loss is their mean, tokens/s their total rate."""

    steps: int = 0
    loss: float = 0.0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, stats: StepStats) -> None:
        self.steps, self.loss = self.steps + 1, self.loss + stats.loss
        self.tokens, self.seconds = self.tokens + stats.tokens, self.seconds + stats.seconds


def _versions() -> dict:
    return {name: metadata.version(name) for name in ("torch", "transformers", "peft", "accelerate")}


def _fingerprint(run_name, base_model_dir, base_model_name, train_file, valid_file, lora, train,
                 max_length, precision, num_processes) -> dict:
    model_files = sorted(p for p in Path(base_model_dir).rglob("*") if p.is_file())
    return {
        "run": run_name, "base_model_name": base_model_name, "base_model_sha256": file_sha256(model_files),
        "train_sha256": file_sha256([train_file]), "valid_sha256": file_sha256([valid_file]) if valid_file else None,
        "lora": lora.model_dump(), "train": train.model_dump(), "max_length": max_length,
        "precision": precision, "processes": num_processes, "versions": _versions(),
        "code_sha256": code_sha256(Path(__file__).parent),
    }


def train_lora(
    base_model_dir: Path,
    train_file: Path,
    valid_file: Path | None,
    out_dir: Path,
    live_dir: Path,
    lora: LoraParams,
    train: TrainParams,
    max_length: int,
    *,
    base_model_name: str | None = None,
    run_name: str | None = None,
    metrics_file: Path | None = None,
    metrics_key: str | None = None,
) -> list[Path]:
    """Fine-tune one LoRA adapter; return the published checkpoint folders in step order.

    Saves ``out_dir/checkpoint-<step>/`` (adapter + model card) every ``train.save_steps`` and at
    the last step, the DVCLive log and ``summary.json`` (losses, speed, chats, environment) in
    ``live_dir`` and, if given, the headline (final validation loss) in ``metrics_file`` (under
    ``metrics_key`` if given, so that `dvc exp show` names its column ``<key>.valid_loss``).
    A run killed at any moment continues from its last saved step when called again with the
    same inputs (see :mod:`thinktune.training.checkpoints`). Call it in every launched process.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    run_name = run_name or Path(out_dir).name
    base_model_name = base_model_name or Path(base_model_dir).name
    precision = resolve_precision(train.precision)
    accelerator = make_accelerator(precision)
    main = accelerator.is_main_process
    if not main:
        log.setLevel(logging.WARNING)  # one story per run, told by the main process
    valid_file = valid_file if valid_file and Path(valid_file).is_file() else None

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    chats = load_tokenized(Path(train_file), tokenizer, max_length)
    if not chats:
        raise ValueError(f"{train_file} has no rows: nothing to train on")
    valid = load_tokenized(valid_file, tokenizer, max_length) if valid_file else []
    batch = train.effective_batch_size
    steps = total_steps(len(chats), batch, train.epochs, train.max_steps)

    fingerprint = _fingerprint(run_name, base_model_dir, base_model_name, train_file, valid_file, lora, train,
                               max_length, precision, accelerator.num_processes)
    store = RunStore(cache_dir() / "train" / f"{run_name}-{run_key(fingerprint)}")
    if main:
        store.lock()
        latest = store.latest_state()
        if latest:
            moved = store.set_aside_interrupted_log(latest[0])
            log.info("resuming from step %d of %d (state in %s)%s", latest[0], steps, latest[1],
                     f"; the interrupted attempt's log is kept in {moved}" if moved else "")
        else:
            store.start_fresh(fingerprint)
    accelerator.wait_for_everyone()
    latest = store.latest_state()

    attention, attention_fallback = choose_attention(train.attn_implementation, accelerator.device)
    if attention_fallback:
        log.warning("attention: %s, not flash_attention_2 (%s)", attention, attention_fallback)
    model = load_causal_lm(base_model_dir, torch_dtype(precision), attn_implementation=attention)
    trainer = LoraTrainer(model, lora, train, steps, pad_token_id=tokenizer.pad_token_id or 0,
                          accelerator=accelerator)
    if latest:
        trainer.load_state(latest[1])
    start = trainer.progress.step
    extra = trainer.progress.extra
    extra.setdefault("tokens", 0)
    extra.setdefault("seconds", 0.0)
    extra.setdefault("window", _Window().__dict__)
    window = _Window(**extra["window"])

    trainable, total = trainer.trainable_parameters()
    tokens, targets = token_counts(chats)
    log.info("%s: %d chats (%d tokens, %d in answers), %d valid chats; %d optimizer steps of %d chats, "
             "micro-batches of <= %d tokens on %d process(es); precision %s, attention %s, loss %s; "
             "LoRA r=%d on %s: %.1f M trainable of %.0f M; work folder %s",
             run_name, len(chats), tokens, targets, len(valid), steps, batch, train.micro_batch_tokens,
             accelerator.num_processes, precision, attention, trainer.loss_impl, lora.r,
             ",".join(lora.target_modules), trainable / 1e6, total / 1e6, store.root)

    live = open_live(store.live, resume=start > 0) if main else None
    data_hash = file_sha256([train_file] + ([valid_file] if valid_file else []))
    card_params = {"lora": lora.model_dump(), "train": train.model_dump(), "format": {"max_length": max_length}}
    bar = tqdm(total=steps, initial=start, desc=f"train {run_name}", unit="step", disable=not main)
    for step in range(start + 1, steps + 1):
        stats = trainer.train_step([chats[i] for i in step_chat_ids(step, len(chats), batch, train.seed)])
        window.add(stats)
        extra["tokens"] += stats.tokens
        extra["seconds"] += stats.seconds
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.4f}", tok_s=f"{stats.tokens_per_s:.0f}")
        saving = step % train.save_steps == 0 or step == steps
        logged = {}
        if step % train.logging_steps == 0 or saving:
            logged = {"loss": window.loss / window.steps, "learning_rate": stats.learning_rate,
                      "grad_norm": stats.grad_norm, "tokens_per_s": window.tokens / window.seconds}
            extra["last_loss"] = logged["loss"]
            window = _Window()
        if saving and valid:
            logged["valid_loss"] = extra["last_valid_loss"] = trainer.evaluate(valid)
        if logged and main:
            log_step(live, step, logged)
            log.info("step %d/%d: %s", step, steps, ", ".join(f"{k} {v:.4g}" for k, v in logged.items() if v is not None))
        extra["window"] = dict(window.__dict__)
        if saving:
            card = {"epoch": round(epoch_of_step(step, len(chats), batch), 4),
                    "train loss (mean since the last log)": round(extra["last_loss"], 6),
                    "valid loss": round(extra["last_valid_loss"], 6) if "last_valid_loss" in extra else "none",
                    "precision": precision}
            _save_checkpoint(trainer, store, step, main, model_card(
                strategy=run_name, step=step, total_steps=steps, base_model=base_model_name,
                data_sha256=data_hash, params=card_params, metrics=card), base_model_name)
            if main:
                store.state_dir_partial(step, clear=True)
            accelerator.wait_for_everyone()
            trainer.save_state(store.state_dir_partial(step))
            if main:
                store.commit_state(step)
            accelerator.wait_for_everyone()
    bar.close()

    if main:
        published = store.publish(Path(out_dir), Path(live_dir))
        summary = {  # tokens_per_s: over the optimizer steps, validation and saving excluded
            "chats": len(chats), "steps": steps, "chats_per_step": batch, "train_loss": extra.get("last_loss"),
            "valid_loss": extra.get("last_valid_loss"),
            "tokens_per_s": extra["tokens"] / extra["seconds"] if extra["seconds"] else None,
            "seconds_per_step": extra["seconds"] / steps, "resumed_from_step": start or None,
            "processes": accelerator.num_processes, "attention": attention,
            "attention_fallback": attention_fallback, "loss_impl": trainer.loss_impl,
            "environment": describe_environment(train.precision),
        }
        write_json(Path(live_dir) / "summary.json", summary)  # everything, environment included
        if metrics_file:  # the headline only, so that `dvc metrics show` stays narrow
            headline = {"valid_loss": summary["valid_loss"]}
            write_json(metrics_file, {metrics_key: headline} if metrics_key else headline)
        store.remove()
        log.info("saved %d adapter checkpoint(s) to %s, training log to %s", len(published), out_dir, live_dir)
    accelerator.wait_for_everyone()
    return list_checkpoints(Path(out_dir))


def _save_checkpoint(trainer: LoraTrainer, store: RunStore, step: int, main: bool, card: str,
                     base_model_name: str) -> None:
    """The adapter of ``step`` in the run folder (every process takes part in gathering it)."""
    if not main:
        trainer.save_adapter(None, base_model_name)  # takes part in gathering; only the main process writes
        return
    with atomic_dir(store.adapters / f"checkpoint-{step}") as tmp:
        trainer.save_adapter(tmp, base_model_name)
        (tmp / "README.md").write_text(card)


