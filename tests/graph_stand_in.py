"""A CPU stand-in for the decode engine's CUDA-graph capture: what a replay would compute.

A captured graph replays the kernels it recorded, reading tensors by address: the engine's
cache, inputs and masks, and the buffers of the token chooser it captured, all live. Python
state is frozen at capture: whether the LoRA hooks apply and which chooser (its settings, its
buffers) chooses. ``stand_in_graphs`` puts an engine in ``buckets`` mode on its CUDA capture
path with this stand-in, so a CPU test sees what a graph key that leaves something out replays.
"""

from __future__ import annotations

from thinktune.generation.engine import DecodeEngine
from thinktune.models.lora import lora_of


class ReplayStandIn:
    """What ``torch.cuda.graph`` gives on replay, on a CPU: the step (forward and token choice) as
    it ran when captured. Tensors are read live (a graph reads them by address: the cache, the
    inputs and the buffers of the chooser it captured), but Python state is the one at capture:
    whether the LoRA hooks apply (a graph ignores flags flipped later) and which chooser chooses,
    with its settings and its buffers."""

    def __init__(self, engine, rows, window):
        import torch

        self.engine, self.rows, self.window = engine, rows, window
        captured = lora_of(engine.model)
        self.lora_on = captured is not None and captured.enabled
        self.chooser = engine._run.chooser  # what the engine's capture records...
        self.chooses = engine._choice_in_step  # ...unless it chooses after the step
        engine._warm_up(rows, window)  # what the capture runs before recording
        # Recording runs nothing: an output buffer only (the tokens, or the logits).
        self.out = (torch.zeros(rows, dtype=torch.long) if self.chooses
                    else torch.zeros(rows, engine.model.config.vocab_size, dtype=engine.dtype))

    def replay(self):
        lora = lora_of(self.engine.model)
        if lora is None:
            assert not self.lora_on  # no hooks to replay
            logits = self.engine._forward_step(self.rows, self.window)
        else:
            now, lora.enabled = lora.enabled, self.lora_on
            try:
                logits = self.engine._forward_step(self.rows, self.window)
            finally:
                lora.enabled = now
        self.out.copy_(self.chooser.choose(logits, list(range(self.rows))) if self.chooses else logits)


def stand_in_graphs(engine, monkeypatch):
    """``engine`` takes the capture path of a CUDA device, with the stand-in above for capture."""
    def capture(self, rows, window):
        graph = ReplayStandIn(self, rows, window)
        return graph, graph.out

    monkeypatch.setattr(DecodeEngine, "_capture", capture)
    engine.use_graphs = True
    return engine
