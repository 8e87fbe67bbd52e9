from __future__ import annotations

import copy

import pytest
import yaml

from thinktune.compose import compose
from thinktune.params import ParamsError, load_params, parse_params


@pytest.fixture()
def raw(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_committed_params_are_the_default_composition(repo_root, raw):
    # params.yaml is what `dvc repro` reads; conf/ is what `dvc exp run` composes. They must agree.
    assert compose([]) == raw, "params.yaml is stale: run `python -m thinktune.compose`"


def test_default_is_offline_cpu_scale(params):
    assert params.scale == "cpu"
    assert params.model.source == "gguf_pypi" and params.data.source == "sample" and params.eval.source == "sample"


def test_paper_preset_has_the_study_settings():
    paper = parse_params(compose(["scale=paper"]))
    assert paper.model.name == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and paper.model.source == "hub"
    assert (paper.lora.r, paper.lora.alpha, paper.lora.dropout) == (16, 32, 0.05)
    assert len(paper.lora.target_modules) == 7
    assert paper.train.epochs == 3 and paper.train.learning_rate == 5e-5
    assert paper.train.effective_batch_size == 16 and paper.format.max_length == 8192
    assert paper.data.deep_repo == "Naholav/CodeGen-Deep-5K" and paper.data.diverse_repo == "Naholav/CodeGen-Diverse-5K"
    assert paper.eval.platform == "atcoder" and paper.eval.difficulties == ["easy", "medium"]


def test_override_composes_like_dvc_exp_run():
    assert parse_params(compose(["lora.r=32"])).lora.r == 32


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("lora", "r", -1, "lora.r"),
        ("lora", "r", "sixteen", "lora.r"),
        ("lora", "target_modules", ["q_proj", "qkv_proj"], "qkv_proj"),
        ("train", "learning_rate", 0, "train.learning_rate"),
        ("train", "precision", "fp8", "train.precision"),
        ("eval", "difficulties", ["easy", "impossible"], "eval.difficulties"),
        ("eval", "date_from", "not a date", "eval.date_from"),
        ("format", "overlength", "wrap", "format.overlength"),
    ],
)
def test_bad_values_name_the_key(raw, section, key, value, expected):
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ParamsError, match=expected.replace(".", r"\.")):
        parse_params(bad)


def test_unknown_key_is_reported_as_a_typo(raw):
    bad = copy.deepcopy(raw)
    bad["lora"]["rank"] = 8
    with pytest.raises(ParamsError, match=r"lora\.rank: unknown key"):
        parse_params(bad)


def test_missing_key_and_inconsistent_values(raw):
    bad = copy.deepcopy(raw)
    del bad["train"]["save_steps"]
    with pytest.raises(ParamsError, match=r"train\.save_steps: missing"):
        parse_params(bad)
    bad = copy.deepcopy(raw)
    bad["eval"].update(n_samples=4, temperature=0.0)
    with pytest.raises(ParamsError, match="temperature"):
        parse_params(bad)
    bad = copy.deepcopy(raw)
    bad["eval"].update(date_from="2025-02-01", date_to="2025-01-01")
    with pytest.raises(ParamsError, match="after date_to"):
        parse_params(bad)


def test_load_params_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
