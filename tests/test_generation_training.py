from __future__ import annotations

import json

from thinktune.chat import training_messages
from thinktune.params import LoraParams, TrainParams
from thinktune.training import checkpoint_step, list_checkpoints, train_lora


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
