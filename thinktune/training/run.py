"""``train_lora``: a whole resumable fine-tuning run, from formatted chats to published adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

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
    from transformers import AutoTokenizer

    run_name = run_name or Path(out_dir).name
    base_model_name = base_model_name or Path(base_model_dir).name
    precision = resolve_precision(train.precision)
    accelerator = make_accelerator(precision)
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)  # one story per run, told by the main process
    valid_file = valid_file if valid_file and Path(valid_file).is_file() else None

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    chats = load_tokenized(Path(train_file), tokenizer, max_length)
    if not chats:
        raise ValueError(f"{train_file} has no rows: nothing to train on")
    valid = load_tokenized(valid_file, tokenizer, max_length) if valid_file else []
    steps = total_steps(len(chats), train.effective_batch_size, train.epochs, train.max_steps)

    fingerprint = _fingerprint(run_name, base_model_dir, base_model_name, train_file, valid_file, lora, train,
                               max_length, precision, accelerator.num_processes)
    store, latest = _open_store(run_name, fingerprint, steps, accelerator)
    trainer, attention, attention_fallback = _make_trainer(base_model_dir, lora, train, steps, precision,
                                                           tokenizer, accelerator, latest)
    run = _Run(run_name, base_model_name, precision, accelerator, store, trainer, train, chats, valid, steps,
               data_sha256=file_sha256([train_file] + ([valid_file] if valid_file else [])),
               card_params={"lora": lora.model_dump(), "train": train.model_dump(),
                            "format": {"max_length": max_length}})
    start = _resume_progress(trainer)
    _log_plan(run, lora, attention)

    _train_steps(run, start)
    if run.main:
        _publish(run, start, attention, attention_fallback, Path(out_dir), Path(live_dir), metrics_file, metrics_key)
    accelerator.wait_for_everyone()
    return list_checkpoints(Path(out_dir))


@dataclass
class _Run:
    """What the steps of one :func:`train_lora` call share."""

    name: str
    base_model_name: str
    precision: str
    accelerator: Any
    store: RunStore
    trainer: LoraTrainer
    train: TrainParams
    chats: list
    valid: list
    steps: int
    data_sha256: str
    card_params: dict

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def batch(self) -> int:
        return self.train.effective_batch_size


def _open_store(run_name: str, fingerprint: dict, steps: int, accelerator) -> tuple[RunStore, tuple | None]:
    """The run's work folder, locked, and its latest saved state (None: a fresh start)."""
    store = RunStore(cache_dir() / "train" / f"{run_name}-{run_key(fingerprint)}")
    if accelerator.is_main_process:
        store.lock()
        latest = store.latest_state()
        if latest:
            moved = store.set_aside_interrupted_log(latest[0])
            log.info("resuming from step %d of %d (state in %s)%s", latest[0], steps, latest[1],
                     f"; the interrupted attempt's log is kept in {moved}" if moved else "")
        else:
            store.start_fresh(fingerprint)
    accelerator.wait_for_everyone()
    return store, store.latest_state()


def _make_trainer(base_model_dir, lora: LoraParams, train: TrainParams, steps: int, precision: str, tokenizer,
                  accelerator, latest) -> tuple[LoraTrainer, str, str | None]:
    """The trainer on the base model, in the state ``latest`` if given; the attention used and why (if a fallback)."""
    attention, attention_fallback = choose_attention(train.attn_implementation, accelerator.device)
    if attention_fallback:
        log.warning("attention: %s, not flash_attention_2 (%s)", attention, attention_fallback)
    model = load_causal_lm(base_model_dir, torch_dtype(precision), attn_implementation=attention)
    trainer = LoraTrainer(model, lora, train, steps, pad_token_id=tokenizer.pad_token_id or 0,
                          accelerator=accelerator)
    if trainer.loss_fallback:
        log.warning("loss: chunked, not liger (%s)", trainer.loss_fallback)
    if latest:
        trainer.load_state(latest[1])
    return trainer, attention, attention_fallback


def _resume_progress(trainer: LoraTrainer) -> int:
    """The last step done (0: none); the running totals kept in ``trainer.progress.extra`` get their defaults."""
    extra = trainer.progress.extra
    extra.setdefault("tokens", 0)
    extra.setdefault("seconds", 0.0)
    extra.setdefault("window", _Window().__dict__)
    return trainer.progress.step


def _log_plan(run: _Run, lora: LoraParams, attention: str) -> None:
    trainable, total = run.trainer.trainable_parameters()
    tokens, targets = token_counts(run.chats)
    log.info("%s: %d chats (%d tokens, %d in answers), %d valid chats; %d optimizer steps of %d chats, "
             "micro-batches of <= %d tokens on %d process(es); precision %s, attention %s, loss %s; "
             "LoRA r=%d on %s: %.1f M trainable of %.0f M; work folder %s",
             run.name, len(run.chats), tokens, targets, len(run.valid), run.steps, run.batch,
             run.train.micro_batch_tokens, run.accelerator.num_processes, run.precision, attention,
             run.trainer.loss_impl, lora.r, ",".join(lora.target_modules), trainable / 1e6, total / 1e6,
             run.store.root)


def _train_steps(run: _Run, start: int) -> None:
    """The optimizer steps after ``start``: logged, validated and saved as ``run.train`` says."""
    from tqdm.auto import tqdm

    train, extra = run.train, run.trainer.progress.extra
    window = _Window(**extra["window"])
    live = open_live(run.store.live, resume=start > 0) if run.main else None
    bar = tqdm(total=run.steps, initial=start, desc=f"train {run.name}", unit="step", disable=not run.main)
    for step in range(start + 1, run.steps + 1):
        chat_ids = step_chat_ids(step, len(run.chats), run.batch, train.seed)
        stats = run.trainer.train_step([run.chats[i] for i in chat_ids])
        window.add(stats)
        extra["tokens"] += stats.tokens
        extra["seconds"] += stats.seconds
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.4f}", tok_s=f"{stats.tokens_per_s:.0f}")
        saving = step % train.save_steps == 0 or step == run.steps
        window = _log_step(run, live, step, stats, window, saving)
        extra["window"] = dict(window.__dict__)
        if saving:
            _save_step(run, step)
    bar.close()


def _log_step(run: _Run, live, step: int, stats: StepStats, window: _Window, saving: bool) -> _Window:
    """Log the loss (and the validation loss when ``saving``) if due; the window to go on with."""
    extra = run.trainer.progress.extra
    logged = {}
    if step % run.train.logging_steps == 0 or saving:
        logged = {"loss": window.loss / window.steps, "learning_rate": stats.learning_rate,
                  "grad_norm": stats.grad_norm, "tokens_per_s": window.tokens / window.seconds}
        extra["last_loss"] = logged["loss"]
        window = _Window()
    if saving and run.valid:
        logged["valid_loss"] = extra["last_valid_loss"] = run.trainer.evaluate(run.valid)
    if logged and run.main:
        log_step(live, step, logged)
        log.info("step %d/%d: %s", step, run.steps, ", ".join(f"{k} {v:.4g}" for k, v in logged.items() if v is not None))
    return window


def _save_step(run: _Run, step: int) -> None:
    """The adapter of ``step`` with its model card, then the state to resume from (every process takes part)."""
    extra, store, main = run.trainer.progress.extra, run.store, run.main
    card = {"epoch": round(epoch_of_step(step, len(run.chats), run.batch), 4),
            "train loss (mean since the last log)": round(extra["last_loss"], 6),
            "valid loss": round(extra["last_valid_loss"], 6) if "last_valid_loss" in extra else "none",
            "precision": run.precision}
    _save_checkpoint(run.trainer, store, step, main, model_card(
        strategy=run.name, step=step, total_steps=run.steps, base_model=run.base_model_name,
        data_sha256=run.data_sha256, params=run.card_params, metrics=card), run.base_model_name)
    if main:
        store.state_dir_partial(step, clear=True)
    run.accelerator.wait_for_everyone()
    run.trainer.save_state(store.state_dir_partial(step))
    if main:
        store.commit_state(step)
    run.accelerator.wait_for_everyone()


def _publish(run: _Run, start: int, attention: str, attention_fallback: str | None, out_dir: Path, live_dir: Path,
             metrics_file: Path | None, metrics_key: str | None) -> None:
    """Main process: the adapters to ``out_dir``, the log and ``summary.json`` to ``live_dir``, the headline."""
    extra, steps = run.trainer.progress.extra, run.steps
    published = run.store.publish(out_dir, live_dir)
    summary = {  # tokens_per_s: over the optimizer steps, validation and saving excluded
        "chats": len(run.chats), "steps": steps, "chats_per_step": run.batch, "train_loss": extra.get("last_loss"),
        "valid_loss": extra.get("last_valid_loss"),
        "tokens_per_s": extra["tokens"] / extra["seconds"] if extra["seconds"] else None,
        "seconds_per_step": extra["seconds"] / steps, "resumed_from_step": start or None,
        "processes": run.accelerator.num_processes, "attention": attention,
        "attention_fallback": attention_fallback, "loss_impl": run.trainer.loss_impl,
        "fallbacks": fallbacks(attention, attention_fallback, run.trainer),
        "environment": describe_environment(run.train.precision),
    }
    write_json(live_dir / "summary.json", summary)  # everything, environment included
    for what, fallback in summary["fallbacks"].items():
        log.warning("this run's %s fell back to %s: %s", what, fallback["used"], fallback["why"])
    if metrics_file:  # the headline only, so that `dvc metrics show` stays narrow
        headline = {"valid_loss": summary["valid_loss"]}
        write_json(metrics_file, {metrics_key: headline} if metrics_key else headline)
    run.store.remove()
    log.info("saved %d adapter checkpoint(s) to %s, training log to %s", len(published), out_dir, live_dir)


def fallbacks(attention: str, attention_fallback: str | None, trainer: LoraTrainer) -> dict:
    """What took a slower path than the first choice, and why: ``{what: {"used", "why"}}`` (empty: none).
    Attention goes FlashAttention 2 -> flex -> sdpa with a dense mask; the loss Liger -> chunked."""
    found = {}
    if attention_fallback:
        found["attention"] = {"used": attention, "why": attention_fallback}
    if trainer.loss_fallback:
        found["loss"] = {"used": trainer.loss_impl, "why": trainer.loss_fallback}
    return found


def _save_checkpoint(trainer: LoraTrainer, store: RunStore, step: int, main: bool, card: str,
                     base_model_name: str) -> None:
    """The adapter of ``step`` in the run folder (every process takes part in gathering it)."""
    if not main:
        trainer.save_adapter(None, base_model_name)  # takes part in gathering; only the main process writes
        return
    with atomic_dir(store.adapters / f"checkpoint-{step}") as tmp:
        trainer.save_adapter(tmp, base_model_name)
        (tmp / "README.md").write_text(card)


