from __future__ import annotations

import json

import pytest

from thinktune.chat import training_messages
from thinktune.generation import DecodingSettings, generate_chats
from thinktune.params import LoraParams, TrainParams
from thinktune.training import checkpoint_step, list_checkpoints, train_lora


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


def test_lora_training_saves_adapters_every_save_steps(tmp_path, tiny_model_dir):
    rows = [{"problem_id": f"p{i}", "messages": training_messages("SYS", f"problem {i}", "think " * 5, "print(1)")}
            for i in range(5)]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lora = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    train = TrainParams(epochs=1, learning_rate=1e-3, lr_scheduler="linear", warmup_ratio=0.0, weight_decay=0.0,
                        per_device_batch_size=1, gradient_accumulation_steps=2, gradient_checkpointing=False,
                        precision="fp32", save_steps=2, logging_steps=1, seed=0)
    saved = train_lora(tiny_model_dir, train_file, tmp_path / "missing_valid.jsonl", tmp_path / "adapters",
                       tmp_path / "live", lora, train, max_length=256)
    # 5 chats / accumulation 2 -> 3 optimizer steps; saved at 2 and at the final step 3.
    assert [checkpoint_step(p) for p in saved] == [2, 3] == [checkpoint_step(p) for p in list_checkpoints(tmp_path / "adapters")]
    config = json.loads((saved[-1] / "adapter_config.json").read_text())
    assert config["r"] == 4 and set(config["target_modules"]) == {"q_proj", "v_proj", "down_proj"}
    assert (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").is_file()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved[-1])
    assert merged.merge_and_unload() is not None
