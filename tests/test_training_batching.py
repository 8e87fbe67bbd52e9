"""Step plan, sharing across processes, token-budget packing and the flattened tensors."""

from __future__ import annotations

import pytest

from thinktune.data.chat import training_messages
from thinktune.training.batching import (
    epoch_of_step,
    flatten,
    pack_by_tokens,
    plan_step,
    share_across_processes,
    step_chat_ids,
    total_steps,
)
from thinktune.training.data import IGNORE, TokenizedChat, tokenize_chat


def chat(n_prompt: int, n_answer: int, first: int = 10) -> TokenizedChat:
    ids = tuple(range(first, first + n_prompt + n_answer))
    return TokenizedChat(ids, (IGNORE,) * n_prompt + ids[n_prompt:])


def test_steps_cover_every_chat_once_per_epoch_with_a_short_last_step():
    # As the TRL trainer counted: ceil(chats / effective batch) steps per epoch, epochs rounded up.
    assert total_steps(12, 4, epochs=1) == 3 and total_steps(5, 2, epochs=1) == 3
    assert total_steps(12, 2, epochs=2) == 12 and total_steps(12, 2, epochs=0.5) == 3
    assert total_steps(12, 2, epochs=2, max_steps=5) == 5
    steps = [step_chat_ids(s, 5, 2, seed=0) for s in (1, 2, 3)]
    assert [len(s) for s in steps] == [2, 2, 1]
    assert sorted(i for s in steps for i in s) == [0, 1, 2, 3, 4]
    second_epoch = [step_chat_ids(s, 5, 2, seed=0) for s in (4, 5, 6)]
    assert sorted(i for s in second_epoch for i in s) == [0, 1, 2, 3, 4]
    assert second_epoch != steps  # a new shuffle each epoch
    assert epoch_of_step(3, 5, 2) == 1.0 and epoch_of_step(4, 5, 2) == pytest.approx(4 / 3)


def test_plan_depends_only_on_seed_and_step():
    assert step_chat_ids(7, 100, 16, seed=3) == step_chat_ids(7, 100, 16, seed=3)
    assert step_chat_ids(7, 100, 16, seed=3) != step_chat_ids(7, 100, 16, seed=4)


def test_processes_share_a_step_by_tokens():
    lengths = [800, 100, 700, 200, 300, 300]
    shares = share_across_processes(lengths, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    loads = [sum(lengths[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 100
    assert share_across_processes([5, 5], 3)[2] == []  # more processes than chats: one idles


def test_packing_respects_the_token_budget():
    lengths = [900, 600, 500, 400, 100, 50]
    bins = pack_by_tokens(lengths, budget=1000)
    assert sorted(i for b in bins for i in b) == list(range(6))
    assert all(sum(lengths[i] for i in b) <= 1000 for b in bins)
    assert len(bins) == 3  # 900+100, 600+400, 500+50 (first-fit decreasing)
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        pack_by_tokens([1001], budget=1000)


def test_every_process_runs_the_same_number_of_micro_batches():
    chats = [chat(5, 900), chat(5, 90), chat(5, 80)]
    plan = plan_step(chats, num_processes=2, micro_batch_tokens=1000)
    assert plan.rounds == 1
    assert plan.n_targets == sum(c.n_targets for c in chats) and plan.n_tokens == 905 + 95 + 85
    lopsided = plan_step([chat(5, 900), chat(5, 900), chat(5, 900)], num_processes=2, micro_batch_tokens=1000)
    assert [len(m) for m in lopsided.micro_batches] == [2, 1]
    assert [len(mb) for mb in lopsided.for_process(1)] == [1, 0]  # padded with an empty micro-batch


def test_flattened_row_restarts_positions_and_never_predicts_across_chats():
    a, b = chat(2, 3, first=10), chat(1, 2, first=50)
    row = flatten([a, b])
    assert row["input_ids"].tolist() == [[10, 11, 12, 13, 14, 50, 51, 52]]
    assert row["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    # next-token targets inside each chat; the last token of a chat predicts nothing
    assert row["targets"].tolist() == [[IGNORE, 12, 13, 14, IGNORE, 51, 52, IGNORE]]
    assert a.n_targets == 3 and b.n_targets == 2
    empty = flatten([])
    assert empty["targets"].tolist() == [[IGNORE]]


def test_loss_falls_on_the_assistant_turn_with_its_end_token(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = training_messages("SYS", "add two numbers", "read them", "print(1)")
    tokenized = tokenize_chat(tokenizer, messages, max_length=4096)
    answer = [t for t in tokenized.labels if t != IGNORE]
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=True, add_generation_prompt=True)["input_ids"]
    assert list(tokenized.input_ids[:len(prompt)]) == list(prompt)
    assert tokenized.labels[:len(prompt)] == (IGNORE,) * len(prompt)
    text = tokenizer.decode(answer)
    assert text.startswith("<think>") and text.endswith("```<|im_end|>\n")
    short = tokenize_chat(tokenizer, messages, max_length=len(prompt) + 3)
    assert short.n_tokens == len(prompt) + 3 and short.n_targets == 3
