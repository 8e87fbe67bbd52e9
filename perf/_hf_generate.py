"""The generation code as it was before the decode engine: ``model.generate`` on fixed batches.

Kept, unchanged but for its name, as the baseline that ``tests/test_generation.py`` checks
greedy answers against and ``perf.generation_speed`` times the engine against. It
passes ``top_k=None`` and the sampling keys but not ``repetition_penalty``, so it inherits
that one from the model's ``generation_config``, which is why the decode engine takes every
decoding setting from params and none from ``generation_config``.
"""

from __future__ import annotations

from thinktune.generation.chats import Generation
from thinktune.generation.settings import DecodingSettings


def hf_generate_chats(model, tokenizer, chats: list[list[dict]], settings: DecodingSettings,
                      desc: str = "generating") -> list[list[Generation]]:
    """``settings.n_samples`` answers for each chat, in the order of ``chats``."""
    import torch
    from tqdm import tqdm

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    eos_ids = _stop_token_ids(model, tokenizer)
    greedy = settings.temperature == 0
    torch.manual_seed(settings.seed)

    results: list[list[Generation]] = [[] for _ in prompts]
    per_batch = max(1, settings.batch_size // settings.n_samples)
    with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
        for start in range(0, len(order), per_batch):
            batch = order[start:start + per_batch]
            enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=not greedy,
                    temperature=None if greedy else settings.temperature,
                    top_p=None if greedy else settings.top_p,
                    top_k=None,
                    num_return_sequences=settings.n_samples,
                    eos_token_id=eos_ids,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = out[:, enc.input_ids.shape[1]:]
            for row, tokens in enumerate(new):
                results[batch[row // settings.n_samples]].append(_decode(tokens, tokenizer, eos_ids))
            bar.update(len(batch))
    return results


def _stop_token_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids] if ids is not None else []
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id >= 0 and token_id not in ids:
            ids.append(token_id)
    return ids


def _decode(tokens, tokenizer, eos_ids: list[int]) -> Generation:
    ids = tokens.tolist()
    pad = tokenizer.pad_token_id
    # Drop padding after an early stop; the stop token itself ends the answer.
    while ids and ids[-1] == pad and pad not in eos_ids:
        ids.pop()
    stopped = any(i in eos_ids for i in ids)
    if stopped:
        ids = ids[: next(k for k, i in enumerate(ids) if i in eos_ids)]
    return Generation(
        text=tokenizer.decode(ids, skip_special_tokens=True),
        new_tokens=len(ids),
        hit_token_limit=not stopped,
    )
