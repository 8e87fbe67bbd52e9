"""A run's checkpoints decoded in one batch (thinktune.models.lora), and the LoRA state and the
token chooser in the decode engine's CUDA-graph key.

The reference for a batch of several adapters is the same engine decoding one adapter at a
time (greedy, same precision, same batch size): each row must apply its own checkpoint's
weights and nothing else. The reference for the graph key is eager decoding: a captured
graph replays the ops it recorded, so a stand-in for capture that replays the LoRA state and
the token chooser seen at capture time (``graph_stand_in``) shows what a key without them would
replay.
"""

from __future__ import annotations

import pytest
from graph_stand_in import stand_in_graphs
from test_generation import CHATS
from test_modelhost import random_adapter

from thinktune.generation.chats import chat_prompt_ids, generate_tokens
from thinktune.generation.engine import DecodeEngine
from thinktune.generation.settings import DecodingSettings
from thinktune.models.host import ModelHost

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("run-checkpoints")
    return [random_adapter(tiny_model_dir, root / f"checkpoint-{i}", seed=10 + i) for i in (1, 2)]


def tokens(run, adapter: int = 0) -> list[list[int]]:
    return [c[0].token_ids for c in (run.by_adapter[adapter] if run.by_adapter else run.completions)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_checkpoints_in_one_batch_answer_as_each_alone(tiny_model_dir, adapters, precision, cpu_kind):
    import torch

    host = ModelHost(tiny_model_dir, precision)
    if precision == "fp32":
        prompts = chat_prompt_ids(host.tokenizer, CHATS[:5])  # of different lengths
    else:
        # Of one length: a prefill of left-padded prompts of different lengths rounds differently
        # in bf16 from one group of prompts to another (a batch-shape effect model.generate has
        # too, adapters or not); measured with the chat prompts: 1 of 15 answers differed.
        generator = torch.Generator().manual_seed(0)
        prompts = [torch.randint(0, 300, (12,), generator=generator).tolist() for _ in range(5)]
    # Four slots for 15 answers: rows of different adapters enter, leave and move between slots.
    settings = DecodingSettings(max_new_tokens=14, batch_size=4)
    entries = [adapters[0], None, adapters[1]]  # None: the base model's rows, in the same batch

    def alone(entry, stops):
        with host.adapted(entry) as model:
            return tokens(generate_tokens(model, prompts, settings, stops, progress=False, mode="eager"))

    # End-of-answer tokens taken from the answers themselves, so rows end at different steps.
    first = [alone(entry, set()) for entry in entries]
    stops = {first[0][0][6], first[2][1][9]} - {t[0] for answers in first for t in answers}
    expected = [alone(entry, stops) for entry in entries]
    assert expected[0] != expected[1] != expected[2]  # each adapter answers differently
    assert len({len(t) for answers in expected for t in answers}) > 2  # rows of several lengths

    with host.adapted_set(entries) as model:
        run = generate_tokens(model, prompts, settings, stops, progress=False, mode="eager", adapters=3)
    assert [tokens(run, a) for a in range(3)] == expected, cpu_kind
    assert run.stats.max_active == 4


def test_base_after_an_adapter_replays_the_base_graph(tiny_model_dir, adapters, monkeypatch):
    host = ModelHost(tiny_model_dir, "fp32")
    prompts = chat_prompt_ids(host.tokenizer, CHATS[:3])
    settings = DecodingSettings(max_new_tokens=10, batch_size=4)

    def eager(entry):
        with host.adapted(entry) as model:
            return tokens(generate_tokens(model, prompts, settings, set(), progress=False, mode="eager"))

    base_eager, adapter_eager = eager(None), eager(adapters[0])
    assert base_eager != adapter_eager

    graphed = stand_in_graphs(DecodeEngine(host.model, slots=4, capacity=256, mode="buckets"), monkeypatch)

    def replayed(entry):
        with host.adapted(entry) as model:
            run = generate_tokens(model, prompts, settings, set(), engine=graphed, progress=False)
        assert run.engine is graphed and run.stats.cuda_graphs
        return tokens(run), run.stats.graphs_captured

    base_first, captured_first = replayed(None)
    with_adapter, captured_adapter = replayed(adapters[0])
    base_again, captured_again = replayed(None)
    assert base_first == base_eager
    assert with_adapter == adapter_eager  # not the base graph replayed
    assert captured_adapter > 0 and captured_again == 0  # the base graphs were kept and reused
    assert base_again == base_eager  # not the adapter's graph replayed


def test_sampling_after_greedy_replays_its_own_graph(tiny_model_dir, monkeypatch):
    """The token choice is inside the captured step: one engine decoding greedy, then sampled
    (two seeds), then greedy again through the capture path gives each run the answers of eager
    decoding. A graph key without the chooser's settings would replay greedy tokens for the
    sampled run; a run whose chooser kept its own buffers would replay against the previous
    run's tables (the stand-in reads the buffers of the chooser it captured, as a graph does)."""
    host = ModelHost(tiny_model_dir, "fp32")
    prompts = chat_prompt_ids(host.tokenizer, CHATS[:3])
    greedy = DecodingSettings(max_new_tokens=10, batch_size=4)
    sampled = [DecodingSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, n_samples=3, seed=seed, batch_size=4)
               for seed in (3, 4)]

    def answers(run) -> list[list[list[int]]]:
        return [[c.token_ids for c in samples] for samples in run.completions]

    def eager(settings):
        return answers(generate_tokens(host.model, prompts, settings, set(), progress=False, mode="eager"))

    expected = [eager(greedy), eager(sampled[0]), eager(sampled[1])]
    assert expected[0] != expected[1] != expected[2]  # the settings and seeds change the answers

    graphed = stand_in_graphs(DecodeEngine(host.model, slots=4, capacity=256, mode="buckets"), monkeypatch)

    def replayed(settings):
        run = generate_tokens(host.model, prompts, settings, set(), engine=graphed, progress=False)
        assert run.engine is graphed and run.stats.cuda_graphs
        return answers(run), run.stats.graphs_captured

    got = [replayed(s) for s in (greedy, sampled[0], sampled[1], greedy)]
    assert [tokens for tokens, _ in got] == [*expected, expected[0]]
    captured = [n for _, n in got]
    assert captured[0] > 0 and captured[1] > 0  # the sampled run captured its own graphs...
    assert captured[2] == captured[3] == 0  # ...which another seed reuses, as greedy its own


def test_a_chooser_a_graph_cannot_capture_chooses_after_the_replay(tiny_model_dir, monkeypatch):
    """A chooser without ``graph_key`` (the GPU check's logit recorder: Python lists, which a graph
    would fill once, at capture) gets the live rows' logits after the replay: through the capture
    path it records eager decoding's tokens and logits, and no padded row's."""
    import torch

    from perf._gpu_checks import RecordingChooser
    from thinktune.generation.engine import Request

    host = ModelHost(tiny_model_dir, "fp32")
    prompts = chat_prompt_ids(host.tokenizer, CHATS[:3])  # 3 rows in a bucket of 4: one padded row

    def decode(engine):
        chooser = RecordingChooser()
        done, stats = engine.run([Request(p, key=i) for i, p in enumerate(prompts)], chooser, set(), 8)
        return [c.token_ids for c in done], [torch.stack(chooser.seen[i]) for i in range(len(prompts))], stats

    graphed = decode(stand_in_graphs(DecodeEngine(host.model, slots=4, capacity=256, mode="buckets"), monkeypatch))
    eager = decode(DecodeEngine(host.model, slots=4, capacity=256, mode="eager"))
    assert graphed[2].graphs_captured > 0 and graphed[0] == eager[0]
    for got, want in zip(graphed[1], eager[1], strict=True):
        assert got.shape == want.shape == (8, host.model.config.vocab_size)  # one row of logits per token
        # Padded shapes sum in another order: fp32 rounding (measured 1.2e-7 on a 2-core AMD EPYC,
        # natively and with AVX-512 hidden; logits up to 0.4); another prompt's rows differ by 0.5.
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
