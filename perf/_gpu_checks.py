"""The numeric checks of ``perf.gpu_check``: each fills a record (dict) and returns a status.

All run on random-initialised Qwen2 models (``perf._gpu_study``) and synthetic token
ids, in bf16, so nothing but the repository has to travel to a GPU box. Every comparison is
against an independent reference (transformers' padded forward, eager decoding, PEFT's own
unmerged forward) and carries a negative control that shows the comparison can fail.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from perf._gpu_study import ARCHITECTURES, build_model, model_config, synthetic_chats, synthetic_prompts
from thinktune.training.data import IGNORE

# Tolerances (bf16: 8 significant bits, rel. step 7.8e-3; errors add up over layers and tokens).
LOSS_RTOL = 1e-2           # per-chat token-mean loss, packed vs padded
GRAD_TOL = 5e-2            # max |grad difference| over max |grad|, every LoRA weight at once
LOGITS_TOL = 5e-2          # max |logit difference| over max |logit|, graphs vs eager on one prefix
# The engine with ModelHost's adapter against PEFT's own unmerged model decoded by the same engine in
# the same shapes: the same arithmetic, so the logits agree (a GPU may pick another kernel for a
# shape: at most one logit in a thousand). A bf16 merge changes most of them: 0.72 for the tiny check on
# a 2-core AMD EPYC, with AVX512-BF16 and with the AVX-512 flags hidden and torch held to AVX2.
ENGINE_MAX_CHANGED = 0.001
MERGE_MIN_CHANGED = 0.3
PACKED_INIT_STD = 0.1     # at 0.02 a random model attends nearly uniformly: the control would not separate
ADAPTER_VOCAB = 64         # the adapter's chats use the first 64 ids: a pattern 16 steps can learn


@dataclass(frozen=True)
class Scale:
    """Sizes of one run: ``tiny`` (CPU, seconds) or ``full`` (a GPU, about a minute a phase)."""

    architecture: str
    chats: int
    chat_tokens: tuple[int, int]
    prompts: int
    prompt_tokens: tuple[int, int]
    new_tokens: int
    adapter_steps: int
    adapter_chats_per_step: int
    adapter_chat_tokens: tuple[int, int]
    eval_prompts: int  # the evaluation's decode (perf._gpu_eval): n = 1 greedy, all prompts in one batch
    eval_prompt_tokens: tuple[int, int]
    eval_new_tokens: int
    eval_sampled_prompts: int  # n = 16 sampled: these prompts x 16 answers in one batch
    eval_sampled_new_tokens: int
    seed: int = 0


TINY = Scale("tiny", chats=6, chat_tokens=(16, 96), prompts=4, prompt_tokens=(8, 24), new_tokens=16,
             adapter_steps=64, adapter_chats_per_step=2, adapter_chat_tokens=(32, 96), eval_prompts=6,
             eval_prompt_tokens=(8, 24), eval_new_tokens=16, eval_sampled_prompts=2, eval_sampled_new_tokens=8)
FULL = Scale("Qwen/Qwen2.5-Coder-0.5B", chats=8, chat_tokens=(256, 1536), prompts=16, prompt_tokens=(100, 500),
             new_tokens=128, adapter_steps=64, adapter_chats_per_step=4, adapter_chat_tokens=(256, 512),
             eval_prompts=41, eval_prompt_tokens=(400, 900), eval_new_tokens=1024, eval_sampled_prompts=10,
             eval_sampled_new_tokens=512)
# The evaluation's decode is measured on the study's model (the 1.5B), the numeric checks on the 0.5B.
FULL_EVAL = Scale("Qwen/Qwen2.5-Coder-1.5B", **{k: v for k, v in FULL.__dict__.items() if k != "architecture"})


def config_for(scale: Scale, init_std: float | None = None):
    """(config, description) of the check's random-initialised model; ``init_std`` replaces the
    initializer's 0.02 (a sharper model, whose chats' attention matters)."""
    if scale.architecture == "tiny":
        config, source = model_config("", tiny=True)
    else:
        from transformers import Qwen2Config

        config = Qwen2Config(**ARCHITECTURES[scale.architecture])
        source = f"the architecture of {scale.architecture} (table)"
    if init_std:
        config.initializer_range = init_std
        source += f", weights drawn with std {init_std}"
    return config, source


def _autocast(device: str):
    import torch

    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def changed_fraction(got, want) -> float:
    """The share of logits that differ at all."""
    return float((got != want).float().mean())


def same_prefix_changed(run, reference) -> float:
    """:func:`changed_fraction` of two decodes' logits (``(tokens, logits)`` per prompt) over the
    steps whose prefixes agree: up to and including each prompt's first differing token."""
    import torch

    rows, reference_rows = [], []
    for (tokens, logits), (ref_tokens, ref_logits) in zip(run, reference, strict=True):
        steps = next((t for t, (a, b) in enumerate(zip(tokens, ref_tokens, strict=True)) if a != b), len(tokens) - 1)
        rows.append(logits[:steps + 1].float())
        reference_rows.append(ref_logits[:steps + 1].float())
    return changed_fraction(torch.cat(rows), torch.cat(reference_rows))


def _rel(a, b) -> float:
    """max |a - b| / max |b|."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


# --- 1. packed vs padded -------------------------------------------------------------------

def packed_vs_padded(record: dict, scale: Scale, device: str, lora) -> str:
    """Loss and LoRA gradients of one step's chats: the project's padding-free row (flex
    attention on CUDA, the chunked/Liger loss of training) vs a right-padded sdpa batch with
    transformers' logits and an fp32 cross-entropy. Control: the same row with positions not
    restarting per chat (chats see each other) must differ by more than the tolerance."""
    import torch
    import torch.nn.functional as F
    from peft import get_peft_model

    from thinktune.training.batching import flatten
    from thinktune.training.loss import CausalLMLoss, resolve_loss_impl
    from thinktune.training.session import lora_config

    on_cuda = device == "cuda"
    attention = "flex_attention" if on_cuda else "sdpa"
    config, source = config_for(scale, PACKED_INIT_STD)
    chats = synthetic_chats(scale.chats, *scale.chat_tokens, 0.7, config.vocab_size, f"check-{scale.seed}")
    model = build_model(config, "bf16", attention, device, scale.seed)
    adapter = lora_config(lora)
    adapter.init_lora_weights, adapter.lora_dropout = False, 0.0  # B != 0: every LoRA weight gets a gradient
    peft_model = get_peft_model(model, adapter).eval()  # eval: no dropout anywhere, gradients still flow
    lora_params = [p for p in peft_model.parameters() if p.requires_grad]
    loss_module = CausalLMLoss(peft_model, resolve_loss_impl("auto", on_cuda))
    record.update({
        "model": source, "precision": "bf16 weights, bf16 autocast, LoRA weights fp32 (as training)",
        "packed_attention": attention, "padded_attention": "sdpa", "loss": loss_module.impl,
        "flex_attention": "used" if on_cuda else "not run: no CUDA here, the packed side ran sdpa",
        "chats": len(chats), "tokens": sum(c.n_tokens for c in chats), "lora": {"r": lora.r, "alpha": lora.alpha},
        "tolerances": {"loss_rtol": LOSS_RTOL, "grad_max_abs_over_max": GRAD_TOL}})
    n_targets = sum(c.n_targets for c in chats)

    def grads():
        flat = torch.cat([p.grad.float().flatten() for p in lora_params])
        peft_model.zero_grad(set_to_none=True)
        return flat

    def packed_losses(restart: bool) -> list[float]:
        row = flatten(chats)
        if not restart:
            row["position_ids"] = torch.arange(row["input_ids"].shape[1])[None]
        row = {k: v.to(device) for k, v in row.items()}
        out, offset = [], 0
        with torch.no_grad(), _autocast(device):
            for chat in chats:
                targets = torch.full_like(row["targets"], IGNORE)
                span = slice(offset, offset + chat.n_tokens)
                targets[0, span] = row["targets"][0, span]
                loss, count = loss_module(row["input_ids"], row["position_ids"], targets)
                out.append(float(loss) / int(count))
                offset += chat.n_tokens
        return out

    row = {k: v.to(device) for k, v in flatten(chats).items()}
    with _autocast(device):
        loss, count = loss_module(**row)
        (loss / n_targets).backward()
    assert int(count) == n_targets
    packed_total, packed_grads = float(loss.detach()) / n_targets, grads()
    packed = packed_losses(restart=True)
    mixed = packed_losses(restart=False)

    peft_model.base_model.model.set_attn_implementation("sdpa")
    width = max(c.n_tokens for c in chats)
    ids = torch.zeros((len(chats), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for i, c in enumerate(chats):
        ids[i, :c.n_tokens], mask[i, :c.n_tokens], labels[i, :c.n_tokens] = (
            torch.tensor(c.input_ids), 1, torch.tensor(c.labels))
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    with _autocast(device):
        logits = peft_model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        sums = [F.cross_entropy(logits[i, :-1].float(), labels[i, 1:], ignore_index=IGNORE, reduction="sum")
                for i in range(len(chats))]
        (torch.stack(sums).sum() / n_targets).backward()
    padded_sums = [float(s.detach()) for s in sums]
    padded = [s / c.n_targets for s, c in zip(padded_sums, chats, strict=True)]
    padded_total, padded_grads = sum(padded_sums) / n_targets, grads()

    def worst(a: list[float]) -> float:
        return max(abs(x - y) / abs(y) for x, y in zip(a, padded, strict=True))

    record.update({
        "packed_losses": packed, "padded_losses": padded,
        "loss_max_rel_diff": worst(packed), "total_loss_rel_diff": abs(packed_total - padded_total) / padded_total,
        "grad_max_abs_diff": float((packed_grads - padded_grads).abs().max()),
        "grad_max_abs": float(padded_grads.abs().max()),
        "grad_rel_diff": _rel(packed_grads, padded_grads),
        "grad_norm_rel_diff": float((packed_grads - padded_grads).norm() / padded_grads.norm()),
        "control_loss_max_rel_diff": worst(mixed),
        "control": "the packed row with positions running on across chats (chats attend to each other)"})
    record["control_separates"] = record["control_loss_max_rel_diff"] > LOSS_RTOL
    record["passed"] = (record["loss_max_rel_diff"] <= LOSS_RTOL and record["total_loss_rel_diff"] <= LOSS_RTOL
                        and record["grad_rel_diff"] <= GRAD_TOL)
    return "passed" if record["passed"] else "FAILED"


# --- 2. graphs vs eager --------------------------------------------------------------------

class RecordingChooser:
    """Greedy; keeps each request's logits (as produced) at every new token."""

    def __init__(self):
        self.slot_key, self.seen = {}, {}

    def start(self, slot, prompt_ids, key, sample):
        self.slot_key[slot] = key
        self.seen[key] = []

    def move(self, src, dst):
        self.slot_key[dst] = self.slot_key.pop(src)

    def choose(self, logits, slots):
        for row, slot in zip(logits, slots, strict=True):
            self.seen[self.slot_key[slot]].append(row.clone())
        return logits.argmax(dim=-1)


def decode(model, prompts, new_tokens: int, mode: str):
    """(tokens per prompt, logits per prompt [steps, vocab], EngineStats) from the decode engine."""
    import torch

    from thinktune.generation.engine import DecodeEngine, Request

    engine = DecodeEngine(model, slots=len(prompts), capacity=max(map(len, prompts)) + 2 * new_tokens, mode=mode)
    chooser = RecordingChooser()
    done, stats = engine.run([Request(p, key=i) for i, p in enumerate(prompts)], chooser, stop_ids=set(),
                             max_new_tokens=new_tokens)
    return [c.token_ids for c in done], [torch.stack(chooser.seen[i]) for i in range(len(prompts))], stats


def launches_per_step(model, prompts, device: str, steps: tuple[int, int] = (2, 6)) -> float:
    """What one decode step of every prompt launches: on a GPU the kernels and copies the profiler
    sees on the device; on a CPU the compute ops of ``perf.decode_ops`` (innermost, neither view,
    allocation nor wrapper: a real cast counts as its copy), with linear layers as ``F.linear`` as
    a GPU runs them. Two decode lengths, eager, the difference per extra step, so the prefill
    cancels."""
    from unittest import mock

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from perf.decode_ops import compute_ops
    from thinktune.models import packed_linear

    counts = []
    for new_tokens in steps:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof, mock.patch.object(packed_linear, "packable_layers",
                                                                         return_value=[]):
            decode(model, prompts, new_tokens, "eager")
        events = prof.events()
        if device == "cuda":
            counts.append(sum(e.device_type == DeviceType.CUDA for e in events))
        else:
            counts.append(len(compute_ops(events)))
    return (counts[1] - counts[0]) / (steps[1] - steps[0])


def compare_decodes(a, b) -> dict:
    """Identical-token share, first divergences, and the logits' difference on identical prefixes
    (up to and including each prompt's first divergent step, where both saw the same tokens)."""
    same = total = 0
    first, rel = [], 0.0
    for ta, tb, la, lb in zip(a[0], b[0], a[1], b[1], strict=True):
        n = min(len(ta), len(tb))
        total += max(len(ta), len(tb))
        diverge = next((t for t in range(n) if ta[t] != tb[t]), None)
        same += n if diverge is None else diverge
        first.append(diverge)
        upto = n if diverge is None else diverge + 1
        rel = max(rel, _rel(la[:upto], lb[:upto]))
    return {"identical_token_share": same / total, "first_divergence": first,
            "prompts_identical": sum(f is None for f in first), "logits_max_rel_diff_on_same_prefix": rel}


def chosen_in_step(model, prompts, slots: int, new_tokens: int, mode: str, settings) -> list[list[int]]:
    """The tokens of the project's own chooser, whose choice a graph captures with the forward."""
    from thinktune.generation.engine import DecodeEngine, Request
    from thinktune.generation.sampling import TokenChooser

    engine = DecodeEngine(model, slots=slots, capacity=max(map(len, prompts)) + new_tokens, mode=mode)
    chooser = TokenChooser(settings, slots, model.config.vocab_size, engine.device)
    done, _ = engine.run([Request(p, key=i) for i, p in enumerate(prompts)], chooser, stop_ids=set(),
                         max_new_tokens=new_tokens)
    return [c.token_ids for c in done]


def in_step_choice(model, prompts, scale: Scale, graph_mode: str, reference_mode: str) -> dict:
    """Greedy and sampled tokens of ``TokenChooser`` (chosen inside the graph's step, padded rows
    included: one prompt fewer than the slots) in ``graph_mode`` vs ``reference_mode``: each
    setting's share of identical tokens."""
    from thinktune.generation.settings import DecodingSettings

    new_tokens = max(scale.new_tokens // 2, 4)
    shares = {}
    for name, settings in (("greedy", DecodingSettings(max_new_tokens=new_tokens)),
                           ("sampled", DecodingSettings(max_new_tokens=new_tokens, temperature=1.0, top_p=0.9,
                                                        repetition_penalty=1.1, seed=scale.seed))):
        got, want = (chosen_in_step(model, prompts[:-1], len(prompts), new_tokens, mode, settings)
                     for mode in (graph_mode, reference_mode))
        same = sum(a == b for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True))
        shares[name] = same / sum(map(len, want))
    return {"against": reference_mode, "rows": len(prompts) - 1, "slots": len(prompts), "new_tokens": new_tokens,
            "identical_token_share": shares}


def graphs_vs_eager(record: dict, scale: Scale, device: str) -> str:
    """Greedy decoding with CUDA graphs vs eager (exact shapes) on the same prompts; on CUDA also
    graphs vs ``buckets`` (the padded shapes a graph replays, run eagerly): those must agree
    exactly, for the logit recorder (chosen after the step) and for the project's chooser, greedy
    and sampled, whose choice the graph captures. Without CUDA ``buckets`` stands in for
    ``graphs`` (and the chooser's tokens are compared with eager ones, for the record only: bf16
    rounds the padded shapes' logits differently, which may move a sampled draw)."""
    config, source = config_for(scale)
    model = build_model(config, "bf16", "sdpa", device, scale.seed).eval()
    prompts = synthetic_prompts(scale.prompts, *scale.prompt_tokens, config.vocab_size, scale.seed)
    on_cuda = device == "cuda"
    graph_mode = "graphs" if on_cuda else "buckets"
    record.update({"model": source, "precision": "bf16", "prompts": len(prompts), "new_tokens": scale.new_tokens,
                   "graph_mode": graph_mode, "tolerances": {"logits_max_abs_over_max": LOGITS_TOL},
                   "note": None if on_cuda else "no CUDA: the engine's `buckets` mode (the padded shapes a CUDA "
                                                "graph replays, run eagerly) stands in for graphs"})
    graphed = decode(model, prompts, scale.new_tokens, graph_mode)
    stats = graphed[2]
    record.update({"cuda_graphs": stats.cuda_graphs, "graphs_captured": stats.graphs_captured,
                   "graphs_off_reason": stats.graphs_off_reason})
    eager = decode(model, prompts, scale.new_tokens, "eager")
    record["vs_eager"] = compare_decodes(graphed, eager)
    passed = record["vs_eager"]["logits_max_rel_diff_on_same_prefix"] <= LOGITS_TOL
    record["in_step_choice"] = in_step_choice(model, prompts, scale, graph_mode, "buckets" if on_cuda else "eager")
    if on_cuda:
        record["vs_buckets"] = compare_decodes(graphed, decode(model, prompts, scale.new_tokens, "buckets"))
        passed = passed and record["vs_buckets"]["identical_token_share"] == 1.0 and stats.cuda_graphs
        # A graph replays the kernels `buckets` runs: equal logits, so equal tokens. A sampled draw
        # moves with a logit's last bit (a random model's flat distribution puts boundaries close
        # together), so sampled tokens are judged where the recorder saw bit-equal logits.
        shares, bitwise = record["in_step_choice"]["identical_token_share"], \
            record["vs_buckets"]["logits_max_rel_diff_on_same_prefix"] == 0.0
        record["in_step_choice"]["sampled_judged"] = bitwise
        passed = passed and shares["greedy"] == 1.0 and (shares["sampled"] == 1.0 or not bitwise)
    record["passed"] = passed
    return "passed" if passed else "FAILED"


# --- 3. engine vs PEFT ---------------------------------------------------------------------

def train_adapter(base, scale: Scale, lora, train, out_dir, vocab: int) -> list[float]:
    """An adapter trained by ``LoraTrainer`` on a copy of ``base``: ``scale.adapter_steps`` steps at
    lr 5e-5 in bf16 (the study's rate); returns the step losses."""
    from thinktune.training.session import LoraTrainer

    params = train.model_copy(update={"learning_rate": 5e-5, "precision": "bf16", "gradient_checkpointing": False,
                                      "warmup_ratio": 0.0, "effective_batch_size": scale.adapter_chats_per_step,
                                      "micro_batch_tokens": 16384, "seeds": [scale.seed]})
    trainer = LoraTrainer(copy.deepcopy(base), lora, params, total_steps=scale.adapter_steps)
    losses = [trainer.train_step(synthetic_chats(scale.adapter_chats_per_step, *scale.adapter_chat_tokens, 0.7, ADAPTER_VOCAB,
                                                 f"adapter-{step}")).loss for step in range(scale.adapter_steps)]
    trainer.save_adapter(out_dir, "random-init-qwen2")
    trainer.accelerator.free_memory()
    return losses


def host_for(model, device: str):
    """A :class:`thinktune.models.host.ModelHost` around an already built model (its ``__init__``
    loads from a folder with a tokenizer, which a random-initialised model has not)."""
    from thinktune.models.host import ModelHost

    host = ModelHost.__new__(ModelHost)
    host.base_dir, host.device, host.model, host.tokenizer = None, device, model, None
    host.lora = None  # no adapter applied yet
    return host


def engine_vs_peft(record: dict, scale: Scale, device: str, lora, train, work_dir) -> str:
    """Decode-engine logits with the adapter applied unmerged by ModelHost against PEFT's own
    unmerged model, loaded on its own and decoded by the same engine in the same shapes (the same
    rounding on any device: they must agree); negative control: PEFT's bf16 merge of the same
    adapter, decoded the same way. Both on the model's own forward (PEFT's layers rule out the
    fused step); the engine's fused decode step (``thinktune.generation.fused_step``) is judged
    against that: logits within ``LOGITS_TOL`` over the steps whose prefixes agree (a GPU's stacked
    q|k|v and gate|up products and its fused ``F.rms_norm`` may sum in another order, so a near-tie
    may pick another token; the share of identical answers is reported; on a CPU they are the same
    bits). Reported beside: the
    engine against PEFT's whole-sequence forward (teacher-forced on the engine's tokens), which
    differs by bf16 rounding in other shapes."""
    from unittest import mock

    import torch
    from peft import PeftModel

    from thinktune.generation import engine as engine_module

    config, source = config_for(scale)
    base = build_model(config, "bf16", "sdpa", device, scale.seed).eval()
    adapter_dir = work_dir / "adapter"
    losses = train_adapter(base, scale, lora, train, adapter_dir, config.vocab_size)
    record.update({"model": source, "precision": "bf16", "adapter": f"trained: {scale.adapter_steps} LoraTrainer "
                   f"steps of {scale.adapter_chats_per_step} synthetic chats at lr 5e-5, bf16, r {lora.r}, alpha "
                   f"{lora.alpha}, targets {list(lora.target_modules)}", "adapter_losses": losses,
                   "tolerances": {"engine_changed_max": ENGINE_MAX_CHANGED, "merge_changed_min": MERGE_MIN_CHANGED}})
    prompts = synthetic_prompts(scale.prompts, *scale.prompt_tokens, config.vocab_size, scale.seed + 1)
    host = host_for(copy.deepcopy(base), device)
    with host.adapted(adapter_dir) as model:
        fused_tokens, fused_logits, fused_stats = decode(model, prompts, scale.new_tokens, "eager")
        stacked_launches = launches_per_step(model, prompts, device)
        with mock.patch.object(engine_module, "fusable", return_value="the GPU check's reference"):
            tokens, produced, _ = decode(model, prompts, scale.new_tokens, "eager")
    del host, model
    agree = [next((t for t, (a, b) in enumerate(zip(fused, unfused, strict=True)) if a != b), len(fused) - 1) + 1
             for fused, unfused in zip(fused_tokens, tokens, strict=True)]  # steps up to the first other token
    record.update({"fused_step": fused_stats.decode_forward,
                   "fused_answers_as_unfused": sum(f == u for f, u in zip(fused_tokens, tokens, strict=True)) / len(tokens),
                   "fused_logits_max_rel_diff": max(_rel(f[:n], u[:n]) for f, u, n in zip(fused_logits, produced, agree,
                                                                                            strict=True))})
    reference = PeftModel.from_pretrained(copy.deepcopy(base), adapter_dir).eval()
    ref_tokens, ref_logits, _ = decode(reference, prompts, scale.new_tokens, "eager")
    peft_launches = launches_per_step(reference, prompts, device)
    record["launches_per_decode_step"] = {
        "peft_unmerged": peft_launches, "stacked_fused": stacked_launches, "ratio": stacked_launches / peft_launches,
        "unit": "device kernels and copies (torch.profiler, CUDA)" if device == "cuda"
                else "compute ops (torch.profiler, CPU; as perf.decode_ops counts them)",
        "target": "ratio <= 0.5; reported, not judged"}
    merged = PeftModel.from_pretrained(copy.deepcopy(base), adapter_dir).merge_and_unload().eval()
    merged_tokens, merged_logits, _ = decode(merged, prompts, scale.new_tokens, "eager")
    expected = list(zip(ref_tokens, ref_logits, strict=True))
    engine_changed = same_prefix_changed(list(zip(tokens, produced, strict=True)), expected)
    merge_changed = same_prefix_changed(list(zip(merged_tokens, merged_logits, strict=True)), expected)

    def logits(m, ids):
        with torch.inference_mode():
            return m(input_ids=ids).logits.float()

    engine_error = max_rel = 0.0
    for prompt, generated, got in zip(prompts, tokens, produced, strict=True):
        ids = torch.tensor([prompt + generated[:-1]], device=device)  # row t predicts generated token t
        start = len(prompt) - 1
        want = logits(reference, ids)[0, start:]
        effect = (want - logits(base, ids)[0, start:]).norm()
        engine_error = max(engine_error, float((got.float() - want).norm() / effect))
        max_rel = max(max_rel, _rel(got, want))
    record.update({"engine_changed": engine_changed, "merge_changed": merge_changed,
                   "tokens_as_reference": tokens == ref_tokens,
                   "changed_measure": "share of logits that differ from PEFT's unmerged model decoded by the same "
                                      "engine, over the steps whose prefixes agree",
                   "forward_error": engine_error, "forward_logits_max_rel_diff": max_rel,
                   "forward_measure": "max over prompts of |engine - PEFT whole-sequence forward| / |PEFT - base| "
                                      "(norms over the generated steps; reported, not judged: bf16 rounding in "
                                      "other shapes is of a small adapter effect's size)"})
    record["control_separates"] = merge_changed > MERGE_MIN_CHANGED
    record["passed"] = (record["tokens_as_reference"] and engine_changed <= ENGINE_MAX_CHANGED
                        and record["control_separates"] and record["fused_step"] == "fused"
                        and record["fused_logits_max_rel_diff"] <= LOGITS_TOL)
    return "passed" if record["passed"] else "FAILED"
