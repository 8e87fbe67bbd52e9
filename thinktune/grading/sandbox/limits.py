"""What a run may use (``Limits``), what it did (``RunResult``), and the rlimits that enforce
the per-process part in the program's own process."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass


class SandboxError(RuntimeError):
    """The sandbox itself failed (setup refused, keeper lost twice): an infrastructure
    error of the evaluator, never the program's verdict."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (LiveCodeBench's defaults: 6 s per test)."""

    timeout_s: float = 6.0  # wall clock for the whole run
    memory_mb: int = 1024  # RLIMIT_AS of each process; the run's memory cgroup adds scratch space to it
    # stdout kept at most; more -> output_limit_exceeded. Eight times the 8 MiB default output
    # limit of DOMjudge and Kattis: a correct answer of a million lines fits.
    max_output_bytes: int = 64 << 20
    max_processes: int = 64  # RLIMIT_NPROC (threads count too)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE of files the program writes (stdout may reach max_output_bytes)
    max_open_files: int = 64  # RLIMIT_NOFILE
    network: bool = False  # True keeps the host network (no new network namespace)

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        for name in ("memory_mb", "max_output_bytes", "max_processes", "max_file_bytes", "max_open_files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_open_files < 8:
            raise ValueError("max_open_files below 8 cannot start the interpreter")

    @property
    def scratch_bytes(self) -> int:
        """Size of the run's private /tmp (a tmpfs, counted in the memory cgroup)."""
        return 4 * self.max_file_bytes


# Files and directories the run's private /tmp may hold: a program needs a handful; a
# million empty files would cost the kernel hundreds of MiB outside any size cap.
SCRATCH_INODES = 4096


@dataclass(frozen=True)
class RunResult:
    """What one run did.

    ``stdout`` holds at most ``max_output_bytes``; more fails the run. ``stderr`` is
    diagnostics, as for a judge: only its last 64 KiB are kept (where the traceback is)
    and its size never fails a run (it is a pipe, drained by the zygote; the rest is dropped).
    """

    exit_code: int | None  # None when killed for timeout; -N when killed by signal N
    stdout: str
    stderr: str
    timed_out: bool
    output_limit_exceeded: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_limit_exceeded


def set_rlimits(limits: Limits, own_uid: bool) -> None:
    """In the program's process: address space, CPU seconds (the wall-clock timeout plus
    one), file size, open files, no core dumps; processes where the run has a uid of its own
    (RLIMIT_NPROC counts per uid)."""
    cpu = math.ceil(limits.timeout_s) + 1
    file_bytes = max(limits.max_file_bytes, limits.max_output_bytes + 1)  # stdout is a file: one byte more shows it over
    for which, soft, hard in (
        (resource.RLIMIT_AS, limits.memory_mb << 20, limits.memory_mb << 20),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(which, (soft, hard))
    if own_uid:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
