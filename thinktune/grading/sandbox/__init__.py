"""Run untrusted, model-written Python programs; report what they did.

Contract. ``run_python(source, stdin, limits) -> RunResult`` runs ``source`` as ``main.py``
with ``stdin`` on its standard input. ``Program(source, limits, preamble=...)`` does the same
for many inputs (``.run(stdin)``, or ``.runs(stdins)``, which sends a run only once the
previous one's result has been taken: no run observes another's verdict), compiling
once; the trusted ``preamble`` (a grader's imports or harness, never the program's code;
compiled once by the fork server) runs once per program, in the ``__main__`` every run
starts from. Whatever the program does, a run
returns a ``RunResult``: exit code as under ``python main.py`` (status, atexit handlers,
flushed output, traceback; -N when killed by signal N), stdout capped, the tail of stderr
(a pipe the zygote drains: ``stderr``; its size never fails a run), timeout. Only a
failure of the sandbox itself raises ``SandboxError`` (a keeper lost twice, a refused
setup), never a verdict. ``isolation_report()`` says which layers this machine gives.

Layout: evaluator ─► fork server (``forkserver``: one interpreter per evaluator and tier,
the prelude's modules loaded; never reads a program) ─fork─► zygote (one per program,
forked ahead as a spare: source by memfd, compiled once, the allowed packages it names
imported once; ``keeper``: pid 1 of the program's PID namespace, keeps the timeout, reaps,
reports) ─fork─► one process per run. The evaluator's side: ``launcher`` (the fork
server's process: started on first use, restarted if it died) and ``client`` (``Program``:
a program's requests to its zygote and the reports back).
Sources and stdins travel as memfds; expected outputs never leave the evaluator; no run
is forked from memory that held another program.

Tiers (the strongest whose probe passes; a weaker one logs what it cannot promise). In
every tier a program imports the standard library and the allowed packages, nothing else.

``contained`` (root with namespaces: the study's machines and CI)
    The file system is a root assembled from an allowlist (``root``: standard library,
    interpreter, C libraries, the allowed third-party packages (``packages``: numpy, with
    its bundled libraries, read-only at a neutral path on sys.path), a minimal /etc and
    /dev, a fresh /proc, a private /tmp tmpfs capped in size and inodes), entered with
    pivot_root: no repository, data, home, host socket, nor anything else of the virtualenv. New PID (the zygote is init, the program is not), mount
    and network (no interface up) namespaces per program; a per-program unprivileged uid
    with no_new_privs; rlimits (``limits``); a seccomp filter (``seccomp``: keyrings,
    namespaces and mounts, ptrace, io_uring, perf_event_open, bpf, System V IPC, socket()
    of a non-IP family; socketpair(AF_UNIX), connected to nothing outside the run, is
    allowed); a memory cgroup per program where the cgroup tree is writable (``cgroup``).
``uid``
    Root without namespaces: per-program uid and rlimits; host file system and network.
``plain``
    Not root: rlimits, timeout, new session, temp dir and cleanup; the evaluator's user.

Programs graded at once share no state one can set and another read: a lock or a watch
on the root's shared read-only files is denied (``seccomp``); a run's Unix sockets are in its program's network
namespace, and a run that leaves one behind gets the next run a new namespace
(``forkserver``); a program's next run is sent only once the previous one is judged
(``client``), so no run starts or ends because of a verdict.

Not covered: CPU is not reserved, and timing (CPU, caches, the page cache) and the
host-wide counters /proc shows (memory, load, open files) are shared: slow, noisy channels
between programs; the kernel is shared (an exploit through an allowed system call
escapes); runs of one program share its namespaces and cgroup one after the other (a run
leaves nothing in them); the mount table names the host directories bound
into the root (numpy's in the virtualenv among them); within its own process a program
can do anything the harness code there can (HumanEval's check therefore runs in another
process: ``thinktune.grading.humaneval_harness``).

Compiling is the program's business too: the zygote compiles at CPython's default
recursion limit and within the test's timeout; a compile that crashes or runs past it
ends that zygote, and the program's runs compile it themselves, under their limits.
"""

from thinktune.grading.sandbox.limits import Limits, RunResult, SandboxError

__all__ = ["Limits", "Program", "RunResult", "SandboxError", "isolation_report", "run_python"]


def __getattr__(name: str) -> object:
    """``client`` (and what it imports: subprocess, logging, ...) loads on first use, so the
    fork server, which imports this package too, forks a smaller interpreter."""
    if name in ("Program", "run_python"):
        from thinktune.grading.sandbox import client

        return getattr(client, name)
    if name == "isolation_report":
        from thinktune.grading.sandbox import client

        return client.isolation_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
