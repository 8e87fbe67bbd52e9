"""Pick the numeric precision from the hardware, as the study does (fp16 on T4, bf16 on A100).

On CPU, bf16 is the fast path where the processor has native bf16 instructions
(AVX512-BF16 or AMX); elsewhere fp32 is both faster and safer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

Precision = Literal["bf16", "fp16", "fp32"]


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of ``/proc/cpuinfo``'s first ``flags`` line."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def resolve_precision(requested: str) -> Precision:
    """``auto`` -> bf16 where supported, fp16 on CUDA GPUs without bf16, else fp32."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def torch_dtype(precision: Precision):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def processor_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's best guess."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(requested_precision: str) -> dict:
    """What a result depends on beyond params: the resolved precision, the device and its
    name, and the versions of the numeric libraries. Stages write it beside their results,
    since the same commit gives different numbers in bf16 and in fp32."""
    from importlib import metadata

    import torch

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    on_gpu = torch.cuda.is_available()
    return {
        "precision": resolve_precision(requested_precision),
        "precision_requested": requested_precision,
        "device": device(),
        "device_name": torch.cuda.get_device_name(0) if on_gpu else processor_name(),
        "device_count": torch.cuda.device_count() if on_gpu else 1,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        **{name: version(name) for name in ("transformers", "peft", "trl", "accelerate")},
    }


# --- the C heap -----------------------------------------------------------------------------

# This project's per-stage target is 4 GiB RSS (an 8 GB laptop); above this soft limit the CPU
# training step and the decode engine hand freed heap pages back (thinktune.training.memory).
HEAP_SOFT_LIMIT_BYTES = int(3.25 * 2**30)


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS) or no /proc."""
    import ctypes
    import ctypes.util

    if rss_bytes() is None:
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def rss_bytes() -> int | None:
    """This process's resident set size now (Linux ``/proc/self/statm``), None elsewhere."""
    import os

    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def can_release_heap() -> bool:
    return _malloc_trim() is not None


def release_freed_heap(above_bytes: int | None = None) -> bool:
    """Give glibc's free heap pages back to the OS (``malloc_trim(0)``) if RSS is above
    ``above_bytes`` (default HEAP_SOFT_LIMIT_BYTES); whether it did."""
    trim = _malloc_trim()
    limit = HEAP_SOFT_LIMIT_BYTES if above_bytes is None else above_bytes
    if trim is None or rss_bytes() <= limit:
        return False
    trim(0)
    return True
