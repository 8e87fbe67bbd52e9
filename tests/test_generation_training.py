from __future__ import annotations

import pytest

from thinktune.generation import DecodingSettings, generate_chats


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def chats(n):
    return [[{"role": "user", "content": "print " + "x" * (i * 7)}] for i in range(n)]


def test_generation_keeps_prompt_order_and_counts(tiny):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=5, batch_size=3)
    out = generate_chats(model, tokenizer, chats(5), settings)
    assert [len(o) for o in out] == [1] * 5
    alone = [generate_chats(model, tokenizer, [c], settings)[0][0].text for c in chats(5)]
    assert [o[0].text for o in out] == alone  # batching and sorting change nothing in greedy answers
    assert all(g.new_tokens <= 5 for o in out for g in o)
    assert all(g.hit_token_limit == (g.new_tokens == 5) for o in out for g in o)


def test_sampling_n_answers_per_prompt(tiny):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=4, temperature=1.0, top_p=0.9, n_samples=3, batch_size=6)
    assert [len(o) for o in generate_chats(model, tokenizer, chats(4), settings)] == [3, 3, 3, 3]
