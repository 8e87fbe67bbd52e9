"""Keep CPU training's resident memory near what it uses: hand freed heap pages back to the OS.

glibc's malloc keeps memory that torch frees. In a training step the activations of each layer
(freed, recomputed under activation checkpointing, freed again) leave holes between longer-lived
tensors that the heap cannot give back, so the process's RSS climbs far above what is live: an
fp32 step of the 0.5B with about 3.0 GiB live reached 5.5 GiB RSS. ``malloc_trim(0)`` returns the
free pages inside the heap (``MADV_DONTNEED``), at the cost of page faults when they are reused.

:class:`HeapTrimmer` calls it at a few points of every step — before each decoder layer and its
MLP run (in the forward and again in the backward's recompute) and around each backward — but
only while the process's RSS is above ``soft_limit_bytes``. The default, 3.25 GiB, is this
project's 4 GiB per-stage target less room for one layer's work: fp32 training of the 0.5B
(about 3 GiB at rest) trims at each point; bf16 training rarely reaches it, and costs nothing.
Measured in ``perf.stage_memory`` (README, "Memory per stage"). A no-op off glibc and on
CUDA (the CUDA caching allocator is another matter).
"""

from __future__ import annotations

from thinktune.models import hardware
from thinktune.models.hardware import rss_bytes  # noqa: F401 - tests read RSS through this module

SOFT_LIMIT_BYTES = hardware.HEAP_SOFT_LIMIT_BYTES


class HeapTrimmer:
    """``trimmer.attach(causal_lm)``; ``trimmer.maybe_trim()`` anywhere else worth it."""

    def __init__(self, soft_limit_bytes: int | None = None, enabled: bool = True):
        self.soft_limit_bytes = SOFT_LIMIT_BYTES if soft_limit_bytes is None else soft_limit_bytes
        self._active = enabled and hardware.can_release_heap()
        self.trims = 0  # how many times it gave memory back (tests, logs)
        self._hooks = []

    @property
    def active(self) -> bool:
        return self._active

    def maybe_trim(self, *_args) -> None:
        """Give freed heap pages back if RSS is above the soft limit; returns None (usable as a hook)."""
        if self._active and hardware.release_freed_heap(self.soft_limit_bytes):
            self.trims += 1

    def attach(self, causal_lm) -> HeapTrimmer:
        """Trim before each decoder layer and each layer's MLP runs, forward and recompute alike."""
        if not self._active:
            return self
        layers = getattr(causal_lm.get_decoder(), "layers", None) or []
        for layer in layers:
            self._hooks.append(layer.register_forward_pre_hook(self.maybe_trim))
            if hasattr(layer, "mlp"):
                self._hooks.append(layer.mlp.register_forward_pre_hook(self.maybe_trim))
        return self

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
