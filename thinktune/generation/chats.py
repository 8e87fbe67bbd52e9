"""Answers to chats, and the token-level entry point under them.

``generate_chats`` renders each chat with the model's chat template and decodes answers
with the continuous-batching engine (``thinktune.generation.engine``): finished answers leave the
batch and waiting prompts take their slots, longest prompt first. Every decoding setting
comes from :class:`~thinktune.generation.settings.DecodingSettings` (built from the eval params); nothing is inherited
from the model's ``generation_config`` except which tokens end an answer.

``generate_tokens`` is the same path on token ids, for benchmarks that decode synthetic
prompts with a random-initialised model (``stop_ids=set()`` makes every answer run to
``max_new_tokens``) and read the throughput in ``GenerationRun.stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thinktune.generation.engine import Completion, DecodeEngine, EngineStats, Request
from thinktune.generation.sampling import TokenChooser
from thinktune.models.source import load_tokenizer

if TYPE_CHECKING:
    from thinktune.generation.settings import DecodingSettings

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    hit_token_limit: bool  # stopped by max_new_tokens, not by end-of-turn


@dataclass
class GenerationRun:
    completions: list[list[Completion]]  # [prompt][sample] (of adapter 0 when several decoded together)
    stats: EngineStats  # of the whole run, every adapter's rows together
    engine: DecodeEngine | None  # reusable for the next call (its cache and CUDA graphs)
    by_adapter: list[list[list[Completion]]] = field(default_factory=list)  # [adapter][prompt][sample]


def stop_token_ids(model, tokenizer) -> set[int]:
    """End-of-answer tokens: the model's eos ids plus ChatML's end-of-turn tokens."""
    return _stop_ids(model.generation_config, tokenizer)


def stop_tokens_of(model_dir: Path) -> list[str]:
    """The end-of-answer tokens of a saved model, as text (what results record)."""
    from transformers import AutoConfig, GenerationConfig

    tokenizer = load_tokenizer(model_dir)
    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # no generation_config.json: the model config's eos, as from_pretrained does
        config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    return sorted(tokenizer.convert_ids_to_tokens(sorted(_stop_ids(config, tokenizer))))


def _stop_ids(generation_config, tokenizer) -> set[int]:
    ids = generation_config.eos_token_id
    found = set(ids) if isinstance(ids, (list, tuple)) else {ids} if ids is not None else set()
    for token in STOP_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id >= 0:
            found.add(token_id)
    return found


def make_engine(model, settings: DecodingSettings, n_requests: int, longest_prompt: int,
                mode: str = "auto") -> DecodeEngine:
    slots = max(1, min(settings.batch_size, n_requests))
    return DecodeEngine(model, slots, longest_prompt + settings.max_new_tokens, mode=mode)


def generate_tokens(model, prompts: list[list[int]], settings: DecodingSettings, stop_ids: set[int],
                    keys: list[int] | None = None, engine: DecodeEngine | None = None,
                    desc: str = "generating", progress: bool = True, mode: str = "auto",
                    adapters: int = 1) -> GenerationRun:
    """``settings.n_samples`` completions per prompt of token ids, in the order of ``prompts``.

    ``keys`` (default: the prompts' indices) seed each answer's sampling, so a prompt gets
    the same samples whatever else is decoded beside it. ``engine`` reuses a decode engine
    (its slot cache and CUDA graphs) when it is large enough for these prompts; otherwise
    one is made in ``mode`` (see ``DecodeEngine``). ``adapters`` > 1: the model carries that
    many LoRA adapters side by side (``ModelHost.adapted_set``) and every prompt is answered
    through each of them, all rows in one batch of ``settings.batch_size`` slots; the answers
    are in ``by_adapter``, each as that adapter would answer alone (same keys, same seeds).
    """
    from tqdm.auto import tqdm

    if not prompts:
        return GenerationRun([], EngineStats(), engine)
    keys = list(range(len(prompts))) if keys is None else keys
    requests = [Request(p, key, s, adapter) for adapter in range(adapters)
                for p, key in zip(prompts, keys, strict=True) for s in range(settings.n_samples)]
    longest = max(len(p) for p in prompts)
    if engine is None or engine.capacity < longest + settings.max_new_tokens or \
            engine.slots < min(settings.batch_size, len(requests)):
        engine = make_engine(model, settings, len(requests), longest, mode)
    chooser = TokenChooser(settings, engine.slots, model.get_output_embeddings().weight.shape[0], engine.device)
    with tqdm(total=len(requests), desc=desc, unit="answer", disable=not progress) as bar:
        done, stats = engine.run(requests, chooser, stop_ids, settings.max_new_tokens, progress=bar)
        bar.set_postfix_str(f"{stats.as_dict()['tokens_per_s']} tok/s")
    n, per_adapter = settings.n_samples, len(prompts) * settings.n_samples
    by_adapter = [[done[a * per_adapter + i * n:a * per_adapter + (i + 1) * n] for i in range(len(prompts))]
                  for a in range(adapters)]
    return GenerationRun(by_adapter[0], stats, engine, by_adapter)


def chat_prompt_ids(tokenizer, chats: list[list[dict]]) -> list[list[int]]:
    """Each chat rendered by the chat template (with the assistant's opening) as token ids."""
    texts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    return [tokenizer(text, add_special_tokens=False).input_ids for text in texts]


def decode_answers(tokenizer, run: GenerationRun, adapter: int = 0) -> list[list[Generation]]:
    """The answers (as text) of one of the run's adapters, [prompt][sample]."""
    completions = run.by_adapter[adapter] if run.by_adapter else run.completions
    return [[Generation(text=tokenizer.decode(c.token_ids, skip_special_tokens=True), new_tokens=len(c.token_ids),
                        hit_token_limit=c.hit_token_limit) for c in samples] for samples in completions]


def generate_chats(model, tokenizer, chats: list[list[dict]], settings: DecodingSettings,
                   desc: str = "generating", keys: list[int] | None = None,
                   engine: DecodeEngine | None = None) -> list[list[Generation]]:
    """``settings.n_samples`` answers for each chat, in the order of ``chats``."""
    run = generate_tokens(model, chat_prompt_ids(tokenizer, chats), settings, stop_token_ids(model, tokenizer),
                          keys=keys, engine=engine, desc=desc)
    return decode_answers(tokenizer, run)
