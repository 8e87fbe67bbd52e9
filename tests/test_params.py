from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from thinktune.config import presets
from thinktune.config.params import ParamsError, load_params, load_yaml, parse_params


@pytest.fixture()
def raw(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


@pytest.fixture()
def params_copy(repo_root, tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", path)
    return path


def committed_params(repo_root) -> dict:
    """params.yaml as committed (the workspace copy may hold a user's experiment)."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=repo_root, capture_output=True, text=True,
                           check=False)
    if shown.returncode != 0:
        pytest.skip("not a git checkout with a commit")
    return yaml.safe_load(shown.stdout)


def _leaves(tree: dict, prefix: str = ""):
    """(dotted key, value) of every leaf of a YAML mapping."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _cpu_preset_keys(repo_root) -> dict:
    """conf/presets/cpu.yaml as dotted keys, read without the presets module (the thing under test)."""
    return dict(_leaves(yaml.safe_load((repo_root / "conf" / "presets" / "cpu.yaml").read_text())))


def _read(params, key: str):
    for part in key.split("."):
        params = getattr(params, part)
    return params


def test_committed_params_hold_the_cpu_preset_values(repo_root):
    """What the README and params.yaml promise: as committed, params.yaml is the offline `cpu`
    preset. Every key the preset sets, read back through validation, has the preset's value."""
    preset = _cpu_preset_keys(repo_root)
    default = parse_params(committed_params(repo_root))
    for key, wanted in preset.items():
        assert _read(default, key) == wanted, (key, _read(default, key), wanted)
    # the values that make it offline, on 2 CPU cores, in minutes
    assert (default.model.source, default.data.source, default.eval.source) == ("gguf_pypi", "sample", "sample")
    assert default.model.name == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and default.model.gguf.parts == 6
    assert (default.train.epochs, default.train.effective_batch_size, default.train.save_steps) == (2, 3, 3)
    assert (default.eval.n_samples, default.eval.temperature, default.eval.max_new_tokens) == (1, 0.0, 384)
    assert default.train.seeds == [42] and default.eval.benchmarks == ["livecodebench"]


# A bad value for every key the cpu preset sets that validation constrains; the keys that are
# free text (a name, a file name, a version) have none.
FREE_TEXT = {"model.name", "model.gguf.package", "model.gguf.version", "model.gguf.filename"}
BAD_VALUES = {
    "model.source": "ftp", "model.gguf.parts": 0, "model.gguf.sha256": "not-a-hash",
    "data.source": "web", "data.splits": [],
    "format.max_length": 0, "format.valid_fraction": 1.0, "format.seed": "thirty-six", "format.balance": "pad",
    "train.epochs": 0, "train.learning_rate": -1e-3, "train.effective_batch_size": 0,
    "train.micro_batch_tokens": 0, "train.gradient_checkpointing": "sometimes", "train.save_steps": 0,
    "train.logging_steps": 0, "train.seeds": [],
    "eval.benchmarks": ["mbpp"], "eval.source": "web", "eval.date_from": "yesterday", "eval.n_samples": 0,
    "eval.temperature": -0.5, "eval.top_p": 0.0, "eval.max_new_tokens": -1, "eval.batch_size": 0,
    "eval.memory_mb": 0, "eval.workers": 0,
}


def test_every_cpu_preset_key_has_a_bad_value_case(repo_root):
    assert set(_cpu_preset_keys(repo_root)) == set(BAD_VALUES) | FREE_TEXT


@pytest.mark.parametrize("key, value", sorted(BAD_VALUES.items()))
def test_bad_value_of_a_preset_key_is_rejected_naming_the_key(raw, key, value):
    bad = copy.deepcopy(raw)
    *sections, leaf = key.split(".")
    tree = bad
    for section in sections:
        tree = tree[section]
    tree[leaf] = value
    with pytest.raises(ParamsError) as info:
        parse_params(bad)
    assert info.value.keys == [key], str(info.value)
    assert str(info.value).startswith(f"params.yaml: {key}: "), str(info.value)


def test_params_file_is_stable_under_dvc_set_param(repo_root, tmp_path):
    # `dvc exp run -S` loads and dumps params.yaml with ruamel; the committed layout is that
    # dump's fixed point, so an experiment changes only the keys it sets, byte for byte.
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize._yaml import dumps_yaml, parse_yaml_for_update

    text = (repo_root / "params.yaml").read_text()
    assert dumps_yaml(parse_yaml_for_update(text, "params.yaml")) == text
    raw = yaml.safe_load(text)
    copy_path = tmp_path / "params.yaml"
    copy_path.write_text(text)
    apply_overrides(copy_path, [f"lora.r={raw['lora']['r']}", f"eval.difficulties=[{','.join(raw['eval']['difficulties'])}]"])
    assert copy_path.read_text() == text  # a no-op `-S` leaves every byte, blank lines included


def test_committed_params_are_the_offline_cpu_preset(repo_root):
    committed = committed_params(repo_root)
    assert presets.differences(committed, presets.load_preset("cpu")) == []
    default = parse_params(committed)
    assert default.model.source == "gguf_pypi" and default.data.source == "sample" and default.eval.source == "sample"


def test_presets_set_the_same_keys():
    keys = {name: set(presets.load_preset(name)) for name in presets.available()}
    assert {"cpu", "paper"} <= set(keys)
    assert len({frozenset(k) for k in keys.values()}) == 1, keys


def test_paper_preset_has_the_study_settings(params_copy):
    presets.apply("paper", params_copy)
    paper = load_params(params_copy)
    assert paper.model.name == "Qwen/Qwen2.5-Coder-1.5B-Instruct" and paper.model.source == "hub"
    assert (paper.lora.r, paper.lora.alpha, paper.lora.dropout) == (16, 32, 0.05)
    assert len(paper.lora.target_modules) == 7
    assert paper.train.epochs == 3 and paper.train.learning_rate == 5e-5
    assert paper.train.effective_batch_size == 16 and paper.format.max_length == 8192
    datasets = {name: paper.data.datasets[part.dataset].repo for name, [part] in paper.strategies.items()}
    assert datasets == {"deep": "Naholav/CodeGen-Deep-5K", "diverse": "Naholav/CodeGen-Diverse-5K"}
    # LiveCodeBench's runner samples 10 answers at temperature 0.2, top_p 0.95; three training seeds.
    assert (paper.eval.n_samples, paper.eval.temperature, paper.eval.top_p) == (10, 0.2, 0.95)
    assert paper.train.seeds == [42, 43, 44]  # the original's 42 first: its runs are reused from DVC's run cache
    assert paper.eval.platforms == ["atcoder"] and paper.eval.difficulties == ["easy", "medium"]
    assert str(paper.eval.date_from) == "2025-01-01"


def test_original_preset_is_the_original_design(params_copy):
    presets.apply("original", params_copy)
    original = load_params(params_copy)
    assert original.train.seeds == [42] and original.eval.n_samples == 1 and original.eval.temperature == 0
    presets.apply("paper", params_copy)
    assert load_params(params_copy).model_dump(exclude={"train", "eval"}) == original.model_dump(exclude={"train", "eval"})


@pytest.mark.parametrize("edit, message", [
    ({"train": {"seed": 42}}, "train.seed (42) is now train.seeds, a list: write `seeds: [42]`"),
    ({"train": {"seeds": [1, 1]}}, "train.seeds: [1, 1] repeats a seed"),
    ({"train": {"seeds": []}}, "train.seeds: [] is not allowed"),
    ({"strategies": {"deep": [{"dataset": "codegen_dep"}]}},
     "strategies.deep: dataset 'codegen_dep' is not in data.datasets ['codegen_deep', 'codegen_diverse']"),
    ({"strategies": {"base": [{"dataset": "codegen_deep"}]}}, "strategies: `base` is reserved"),
    ({"strategies": {"diff": [{"dataset": "codegen_deep"}]}}, "strategies: `diff` is reserved"),
    ({"strategies": {"Deep-2K": [{"dataset": "codegen_deep"}]}}, "strategies.Deep-2K: 'Deep-2K' is not allowed as a name; use lowercase letters"),
    ({"strategies": {"deep": [{"dataset": "codegen_deep", "problems": 0}]}}, "strategies.deep.problems: 0"),
])
def test_seed_and_strategy_mistakes_are_named(raw, edit, message):
    for section, values in edit.items():
        if section == "train" and "seed" in values:
            raw["train"].pop("seeds")
        raw[section] = raw[section] | values if section == "train" else values | (
            {} if "deep" in values else {"deep": [{"dataset": "codegen_deep"}]})
        if section == "strategies":
            raw[section].setdefault("diverse", [{"dataset": "codegen_diverse"}])
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert message in str(err.value), str(err.value)


def test_preset_round_trip_restores_the_file_byte_for_byte(params_copy):
    before = params_copy.read_bytes()
    changed = presets.apply("paper", params_copy)
    assert changed and params_copy.read_bytes() != before
    assert presets.closest(yaml.safe_load(params_copy.read_text()))[0] == "paper"
    presets.apply("cpu", params_copy)
    assert params_copy.read_bytes() == before


def test_preset_keeps_edits_to_other_keys(params_copy):
    text = params_copy.read_text().replace("  r: 16\n", "  r: 32\n")
    params_copy.write_text(text)
    presets.apply("paper", params_copy)
    assert load_params(params_copy).lora.r == 32
    assert "An empty value means none" in params_copy.read_text()  # comments kept


def test_preset_as_dvc_set_args_gives_the_same_file(params_copy, tmp_path):
    from dvc.utils.hydra import apply_overrides

    via_dvc = tmp_path / "dvc" / "params.yaml"
    via_dvc.parent.mkdir()
    shutil.copy(params_copy, via_dvc)
    args = presets.set_args("paper")
    apply_overrides(via_dvc, args[1::2])  # what `dvc exp run -S k=v -S ...` does
    presets.apply("paper", params_copy)
    # The same values; the text differs only where DVC writes a float as `5e-05` (a YAML 1.2
    # float, a string to PyYAML's YAML 1.1 safe_load) and the preset writer as `5.0e-05`.
    assert load_yaml(via_dvc.read_text()) == load_yaml(params_copy.read_text())
    assert via_dvc.read_text().replace("5e-05", "5.0e-05") == params_copy.read_text()


def test_invalid_preset_result_writes_nothing(params_copy, tmp_path):
    bad = tmp_path / "presets"
    bad.mkdir()
    (bad / "broken.yaml").write_text("lora:\n  r: -1\n")
    before = params_copy.read_bytes()
    with pytest.raises(ParamsError, match=r"lora\.r: -1 is not allowed"):
        presets.apply("broken", params_copy, presets_dir=bad)
    assert params_copy.read_bytes() == before
    with pytest.raises(ParamsError, match="no preset 'nope'"):
        presets.load_preset("nope")


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("lora", "r", -1, r"lora\.r: -1 is not allowed; must be greater than 0"),
        ("lora", "r", "sixteen", r"lora\.r: 'sixteen' is not allowed"),
        ("lora", "target_modules", ["q_proj", "qkv_proj"], r"lora\.target_modules: .*qkv_proj"),
        ("train", "learning_rate", 0, r"train\.learning_rate: 0 is not allowed"),
        ("train", "precision", "fp8", r"train\.precision: 'fp8' is not allowed; must be 'auto'"),
        ("eval", "difficulties", ["easy", "impossible"], r"eval\.difficulties: 'impossible'"),
        ("eval", "date_from", "not a date", r"eval\.date_from"),
        ("eval", "max_new_tokens", 0, r"eval\.max_new_tokens: 0 is not allowed"),
        ("format", "overlength", "wrap", r"format\.overlength"),
        ("plot", "style", "fancy", r"plot\.style: 'fancy' is not allowed; must be 'white'"),
        ("plot", "palette", "no-such-palette", r"plot\.palette: 'no-such-palette' is not a seaborn"),
        ("plot", "dpi", 0, r"plot\.dpi"),
    ],
)
def test_bad_values_name_the_key_value_and_range(raw, section, key, value, expected):
    bad = copy.deepcopy(raw)
    bad[section][key] = value
    with pytest.raises(ParamsError, match=expected) as info:
        parse_params(bad)
    assert len(str(info.value).splitlines()) == 1
    assert info.value.keys == [f"{section}.{key}"]


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


def test_load_params_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("lora:\n  r: [1,\n")
    with pytest.raises(ParamsError, match=r"params\.yaml line \d+: not valid YAML"):
        load_params(tmp_path / "params.yaml")


def run_check(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    if not (cwd / "data" / "sample").exists():  # the sample files params.yaml names, checked too
        (cwd / "data").mkdir(exist_ok=True)
        (cwd / "data" / "sample").symlink_to(Path(__file__).resolve().parent.parent / "data" / "sample")
    return subprocess.run([sys.executable, "-m", "stages.check_params"], cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                               **(env or {})})


def test_check_params_stage_one_line_no_traceback(params_copy):
    work = params_copy.parent
    assert run_check(work).returncode == 0 and (work / "params.ok").is_file()
    params_copy.write_text(params_copy.read_text().replace("  r: 16\n", "  r: -4\n"))
    (work / "params.ok").unlink()
    result = run_check(work)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: params.yaml: lora.r: -4 is not allowed; must be greater than 0" in result.stderr
    assert not (work / "params.ok").exists()


def test_check_params_under_exp_run_restores_the_bad_key(params_copy):
    work = params_copy.parent
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "params.yaml"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=work, check=True)
    baseline = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                              check=True).stdout.strip()
    before = params_copy.read_text()
    edited = before.replace("  r: 16\n", "  r: -4\n").replace("  alpha: 32\n", "  alpha: 64\n")
    params_copy.write_text(edited)
    result = run_check(work, {"DVC_EXP_BASELINE_REV": baseline})
    assert result.returncode == 2 and "lora.r: -4 is not allowed" in result.stderr
    assert "set back to the baseline's lora.r = 16" in result.stderr
    # only the bad key is restored: the valid edit stays
    assert params_copy.read_text() == before.replace("  alpha: 32\n", "  alpha: 64\n")


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_preset_writer_values_read_back_as_the_presets_types(params_copy, name, monkeypatch):
    """Every key of both presets, after `python -m thinktune.config.presets <name>`: PyYAML's YAML 1.1
    safe_load, ruamel (DVC's reader) and ours all read the preset's value with its type, and the
    checker finds no change (it reported `5e-05` as a change from the preset)."""
    from ruamel.yaml import YAML

    other = "paper" if name == "cpu" else "cpu"
    presets.apply(other, params_copy)
    presets.apply(name, params_copy)
    text = params_copy.read_text()
    readers = {"pyyaml": yaml.safe_load(text), "ruamel": YAML(typ="safe", pure=True).load(text),
               "thinktune": load_yaml(text)}
    preset = presets.load_preset(name)
    for key, wanted in preset.items():
        for reader, tree in readers.items():
            value = presets._get(tree, key)
            assert value == wanted and type(value) is type(wanted), (reader, key, value, wanted)
    for reader, tree in readers.items():
        assert presets.differences(tree, preset) == [], reader
    monkeypatch.chdir(params_copy.parent)
    shown = subprocess.run([sys.executable, "-m", "thinktune.config.presets"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert shown.stdout.strip() == f"params.yaml is preset {name}"


def test_yaml_reader_reads_dvc_written_floats_as_numbers(params_copy):
    from dvc.utils.hydra import apply_overrides

    apply_overrides(params_copy, ["train.learning_rate=5e-5"])  # what `dvc exp run -S` writes: 5e-05
    assert "learning_rate: 5e-05" in params_copy.read_text()
    assert load_params(params_copy).train.learning_rate == 5e-5


def init_baseline(work: Path) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "params.yaml"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=work, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_rejected_added_keys_are_removed_byte_for_byte(params_copy):
    """`dvc exp run -S +lora.rr=3` (DVC's own suggestion for a misspelt key) and `-S +extra.x=1`:
    rejected, and params.yaml is left byte for byte as it was, so later runs work."""
    from dvc.utils.hydra import apply_overrides

    work = params_copy.parent
    baseline = init_baseline(work)
    before = params_copy.read_bytes()
    apply_overrides(params_copy, ["+lora.rr=3", "+extra.x=1", "train.learning_rate=5e-5"])
    result = run_check(work, {"DVC_EXP_BASELINE_REV": baseline})
    assert result.returncode == 2 and "lora.rr: unknown key" in result.stderr and "extra: unknown key" in result.stderr
    assert "lora.rr removed" in result.stderr and "extra removed" in result.stderr
    assert "Traceback" not in result.stderr
    after = params_copy.read_text()
    assert "learning_rate: 5e-05" in after  # the valid override stays, as DVC wrote it
    assert after.replace("learning_rate: 5e-05", "learning_rate: 0.001").encode() == before
    assert run_check(work).returncode == 0


def test_missing_local_inputs_are_named_before_any_stage_runs(params_copy):
    work = params_copy.parent
    baseline = init_baseline(work)
    before = params_copy.read_bytes()
    from dvc.utils.hydra import apply_overrides

    apply_overrides(params_copy, ["data.source=local"])  # `dvc exp run -S data.source=local`
    result = run_check(work, {"DVC_EXP_BASELINE_REV": baseline})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("error: params.yaml: data.local_dir: inputs/codegen/CodeGen-Deep-5K.jsonl (data.datasets.codegen_deep.file) "
            "not found; copy the file there or set data.local_dir to the folder holding it") in result.stderr
    assert "data.source = 'sample'" in result.stderr  # set back: the workspace is as it was
    assert params_copy.read_bytes() == before


def test_old_single_benchmark_key_names_the_new_list(raw):
    raw["eval"].pop("benchmarks")
    raw["eval"]["benchmark"] = "humaneval"
    with pytest.raises(ParamsError, match=r"eval.benchmark \('humaneval'\) is now eval.benchmarks, a list: write "
                                          r"`benchmarks: \[humaneval\]`"):
        parse_params(raw)
    raw["eval"].pop("benchmark")
    raw["eval"]["benchmarks"] = ["humaneval", "humaneval"]
    with pytest.raises(ParamsError, match="repeats a benchmark; list each benchmark once"):
        parse_params(raw)


def test_one_problem_is_refused_before_anything_runs(raw):
    raw["eval"]["max_problems"] = 1
    with pytest.raises(ParamsError, match="eval.max_problems: 1 is not allowed; must be greater than or equal to 2"):
        parse_params(raw)


def test_stages_that_draw_nothing_skip_the_palette_check_and_seaborn(raw, repo_root):
    bad = copy.deepcopy(raw)
    bad["plot"]["palette"] = "no-such-palette"
    assert parse_params(bad, check_palette=False).plot.palette == "no-such-palette"
    with pytest.raises(ParamsError, match=r"plot\.palette"):
        parse_params(bad)
    # seaborn's import (about a second) is what the flag saves, in every stage but plot and check_params
    probe = ("import sys; from thinktune.config.params import load_params; load_params(check_palette=False); "
             "print('seaborn' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_only_check_params_and_plot_check_the_palette(repo_root):
    """Every other stage loads params without seaborn's palette check (about a second each)."""
    import ast

    for stage in sorted((repo_root / "stages").glob("*.py")):
        calls = [node for node in ast.walk(ast.parse(stage.read_text())) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_params"]
        skips = [any(k.arg == "check_palette" and getattr(k.value, "value", True) is False for k in call.keywords)
                 for call in calls]
        if stage.stem in ("plot", "check_params"):
            assert not any(skips), stage.name
        else:
            assert all(skips), f"{stage.name}: load_params(..., check_palette=False)"
