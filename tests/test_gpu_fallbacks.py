"""GPU degradations are recorded, never silent: FlashAttention 2 is used only after a test
forward runs, and decoding without CUDA graphs says why in summary.json.

No GPU here: the FlashAttention probe and the graph capture are made to fail on purpose."""

from __future__ import annotations

import sys

import pytest

from thinktune.training.session import choose_attention, flash_attention_problem

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def flash_installed(monkeypatch):
    import transformers.utils

    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)


@pytest.fixture
def flash_build_fails(monkeypatch):
    """A flash-attn whose kernel raises, as a build for older GPUs does: the real probe,
    :func:`flash_attention_problem`, turns that into the reason recorded."""
    import types

    def kernel(*args, **kwargs):
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.\n(raised from the CUDA kernel)")

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_func=kernel))


def probe_on_cpu(device):
    """The real probe, run on the CPU (there is no GPU here to put its test tensors on)."""
    return flash_attention_problem("cpu")


def test_the_probe_reports_the_exception_type_and_first_line(flash_build_fails):
    assert flash_attention_problem("cpu") == "RuntimeError: FlashAttention only supports Ampere GPUs or newer."


def test_the_probe_reason_is_bounded(monkeypatch):
    import types

    def kernel(*args, **kwargs):
        raise OSError("x" * 1000)

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_func=kernel))
    assert flash_attention_problem("cpu") == ("OSError: " + "x" * 1000)[:300]


def test_flash_attention_that_fails_its_test_forward_falls_back_and_says_why(flash_installed, flash_build_fails):
    name, why = choose_attention("auto", "cuda:0", probe=probe_on_cpu)
    assert (name, why) == ("flex_attention", "RuntimeError: FlashAttention only supports Ampere GPUs or newer.")


def test_flash_attention_not_installed_falls_back_without_probing(monkeypatch):
    import transformers.utils

    def must_not_run(device):
        raise AssertionError("probed without flash-attn installed")

    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    assert choose_attention("auto", "cuda:0", probe=must_not_run) == ("flex_attention", "flash-attn is not installed")


def test_flash_attention_that_runs_is_chosen(flash_installed):
    assert choose_attention("auto", "cuda:0", probe=lambda device: None) == ("flash_attention_2", None)


def test_flash_attention_asked_for_by_name_but_broken_is_an_error_naming_the_fix(flash_installed, flash_build_fails):
    with pytest.raises(ValueError) as err:
        choose_attention("flash_attention_2", "cuda:0", probe=probe_on_cpu)
    assert str(err.value) == ("train.attn_implementation=flash_attention_2 cannot run here (RuntimeError: "
                              "FlashAttention only supports Ampere GPUs or newer.): install a flash-attn built for "
                              "this torch and GPU, or set train.attn_implementation=auto")


def test_cpu_takes_sdpa_without_probing():
    def must_not_run(device):
        raise AssertionError("probed on a CPU")

    assert choose_attention("auto", "cpu", probe=must_not_run) == ("sdpa", None)


def test_a_failed_graph_capture_decodes_eagerly_and_records_the_reason(tiny_model_dir, monkeypatch):
    """The engine in ``buckets`` mode runs the shapes a graph would replay; with graphs forced
    on and a capture that fails, the answers still come (eagerly) and the stats say why."""
    import torch

    from thinktune.generation.engine import DecodeEngine, Request
    from thinktune.generation.sampling import TokenChooser
    from thinktune.generation.settings import DecodingSettings
    from thinktune.models.host import load_base

    model, _ = load_base(tiny_model_dir, "fp32")
    engine = DecodeEngine(model, slots=2, capacity=64, mode="buckets")
    assert engine.graphs_off_reason.startswith("not a CUDA device")
    engine.use_graphs = True

    captures = []

    def capture(rows, window):
        captures.append((rows, window))
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(engine, "_capture", capture)
    requests = [Request([5, 6, 7], key=0), Request([8, 9], key=1)]

    def decode(engine):
        chooser = TokenChooser(DecodingSettings(max_new_tokens=5), 2, model.config.vocab_size, torch.device("cpu"))
        return engine.run(requests, chooser, set(), max_new_tokens=5)

    done, stats = decode(engine)
    eager, _ = decode(DecodeEngine(model, slots=2, capacity=64, mode="eager"))
    assert [c.token_ids for c in done] == [c.token_ids for c in eager] and [len(c.token_ids) for c in done] == [5, 5]
    assert stats.cuda_graphs is False and stats.graphs_captured == 0
    assert stats.as_dict()["graphs_off_reason"] == "capture failed: RuntimeError: operation not permitted when " \
                                                   "stream is capturing"
    assert len(captures) == 1  # graphs are off from then on: no capture tried at every step
    again, stats = decode(engine)
    assert [c.token_ids for c in again] == [c.token_ids for c in eager]
    assert len(captures) == 1 and stats.cuda_graphs is False and stats.graphs_off_reason.startswith("capture failed")


def test_summary_records_how_each_checkpoint_was_decoded(tmp_path, params):
    import json

    from thinktune.evaluation.evaluate import write_results

    records = {"checkpoint-2": [{"question_id": "q", "difficulty": "easy", "n_samples": 1, "n_correct": 0,
                                 "pass_at_1": 0.0, "samples": [{"raw_output": "", "code": None, "verdicts": [],
                                                                "reasoning_chars": 0, "reasoning_tokens": 0,
                                                                "hit_token_limit": False, "passed": False}]}]}
    decode = {"checkpoint-2": {"cuda_graphs": False, "graphs_off_reason": "capture failed: X", "tokens_per_s": 3.0,
                               "new_tokens": 9, "cached": False, "decode_steps": 4,
                               "decode_forward": "the model's own: hooks on decoder layers"}}
    write_results(tmp_path / "deep", "deep", records, {"checkpoint-2": 2}, params.eval, ["<|im_end|>"], decode)
    summary = json.loads((tmp_path / "deep" / "summary.json").read_text())
    assert summary["decode_engine"] == {"checkpoint-2": {"cuda_graphs": False, "graphs_off_reason": "capture failed: X",
                                                         "decode_forward": "the model's own: hooks on decoder layers",
                                                         "tokens_per_s": 3.0, "new_tokens": 9, "cached": False}}


def test_the_loss_fallback_on_cuda_is_named_and_a_cpu_has_none(monkeypatch):
    from thinktune.training import loss

    monkeypatch.setattr(loss, "liger_available", lambda: False)
    impl = loss.resolve_loss_impl("auto", on_cuda=True)
    assert impl == "chunked" and "liger-kernel" in loss.loss_fallback("auto", True, impl)
    assert loss.loss_fallback("auto", False, "chunked") is None  # Liger never runs on a CPU
    assert loss.loss_fallback("chunked", True, "chunked") is None  # asked for by name


def test_a_run_with_fallbacks_records_them_in_summary_json_and_warns(tmp_path, tiny_model_dir, monkeypatch, caplog):
    """The attention and loss fallbacks a GPU run would take (no flash-attn, no flex, no Liger),
    forced on a CPU: summary.json names each, what was used and why, and the log warns."""
    import json
    import logging

    from test_training_run import run

    from thinktune.training import loss, run as run_module

    why_attention = "flash-attn is not installed; flex attention not available: sdpa with a dense mask per packed row"
    monkeypatch.setattr(run_module, "choose_attention", lambda requested, device: ("sdpa", why_attention))
    monkeypatch.setattr("thinktune.training.session.loss_fallback",
                        lambda requested, on_cuda, impl: loss.loss_fallback(requested, True, impl))
    with caplog.at_level(logging.WARNING, logger="thinktune.training"):
        run(tmp_path, tiny_model_dir, monkeypatch)
    summary = json.loads((tmp_path / "dvclive/train_deep/summary.json").read_text())
    assert summary["fallbacks"] == {
        "attention": {"used": "sdpa", "why": why_attention},
        "loss": {"used": "chunked", "why": loss.loss_fallback("auto", True, "chunked")}}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("attention fell back to sdpa" in m for m in warned), warned
    assert any("loss fell back to chunked" in m for m in warned), warned


def test_flex_attention_is_compiled_once_for_training_and_evaluation(monkeypatch):
    """transformers' singleton calls torch.compile again at every train <-> eval switch; with
    compile_flex_attention_once the first compiled callable serves both (torch.compile is lazy:
    counting its calls needs no compiler)."""
    import torch
    from transformers.integrations import flex_attention as hf_flex

    from thinktune.training.session import compile_flex_attention_once

    wrapper = hf_flex.WrappedFlexAttention
    for name in ("__init__", "_instance", "_is_flex_compiled", "_compiled_flex_attention"):
        monkeypatch.setattr(wrapper, name, getattr(wrapper, name))  # restored after the test
    wrapper._instance, wrapper._is_flex_compiled, wrapper._compiled_flex_attention = None, False, None
    compiles = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiles.append(kw) or (lambda *a, **k: fn(*a, **k)))
    assert compile_flex_attention_once() is True and compile_flex_attention_once() is True
    used = [wrapper(training)() for training in (True, False, True, False)]
    assert len(compiles) == 1 and all(u is used[0] for u in used), compiles
