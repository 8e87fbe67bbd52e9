"""Which CPU kind the suite runs on, and that ``precision: auto`` follows it.

The project's machines come in two kinds: with AVX512-BF16 (bf16 is the fast path, ``auto``
picks it) and without AVX-512 (torch emulates bf16, ``auto`` picks fp32). CI runs on either, so
the tests whose numbers depend on the kind take the ``cpu_kind`` fixture and the run's summary
lists them under the branch this machine took.
"""

from __future__ import annotations

import re
from pathlib import Path

from thinktune.models.hardware import cpu_flags, cpu_has_native_bf16, resolve_precision

XEON_AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\nmodel name\t: Xeon\n"
EPYC_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma bmi2\nmodel name\t: AMD EPYC\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert "avx512_bf16" in cpu_flags(XEON_AVX512_BF16)
    assert not cpu_flags(EPYC_AVX2) & {"avx512_bf16", "amx_bf16"}
    assert cpu_flags("model name\t: no flags line\n") == frozenset()
    # a flag is a whole word: avx512_bf16_extra would not be avx512_bf16
    assert "avx512_bf16" not in cpu_flags("flags\t: avx512_bf16_extra\n")


def test_this_machine_takes_the_branch_its_flags_say(cpu_kind, capsys):
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu_has_native_bf16() is native, cpu_kind
    assert resolve_precision("auto") == ("bf16" if native else "fp32"), cpu_kind
    assert ("no native bf16" not in cpu_kind) is native
    with capsys.disabled():
        print(f"\n  CPU kind: {cpu_kind}")
