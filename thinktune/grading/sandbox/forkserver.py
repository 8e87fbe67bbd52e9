"""The fork server and the per-program zygotes (their side; the evaluator's is ``launcher`` and ``client``)::

    evaluator ──request──► fork server ──fork──► zygote (one per program) ──► runs (``keeper``)

The *fork server* is one fresh interpreter per evaluator process and tier, started on
first use. It imports the modules graded programs use (the LiveCodeBench prelude), sets
up what every run shares (in the ``contained`` tier: the seccomp filter, the memory cgroup
parent, the allowlist root it pivots into), then only forks. It never reads a program or
a test: a request carries the program's settings with its trusted preamble (a grader's
code, which the fork server compiles once, the first time a request names it, for every
zygote forked after), and the program's source and the zygote's connection as file
descriptors, which it hands on unread.

A *zygote* serves one program. The fork server keeps one forked ahead (a spare: in the
``contained`` tier pid 1 of a new PID namespace, in mount and network namespaces and a
memory cgroup of its own), so that a request only hands it a program. It reads the source
from its memfd, runs the trusted preamble once in the ``__main__`` its runs will start
from, compiles the program once, imports the allowed packages the program names
(``import numpy``: ~70 ms, most of a short test), then forks every test's run from itself on the
evaluator's request (stdin, stdout, stderr as memfds; the evaluator sends the next once it
has judged this one)
and reports each run's status. It holds its own program and nothing else; it ends when the
evaluator closes the connection (or dies: end of file), and the fork server reaps it and
removes its cgroup.

Neither relies on the parent-death signal (it follows the thread that started a
process, not the process): end of file on their sockets tells them the evaluator is gone.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import socket
import sys
import warnings
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from types import CodeType

from thinktune.grading.sandbox import cgroup, keeper, kernel, packages, root, seccomp
from thinktune.grading.sandbox.limits import Limits

# What graded programs import (the official LiveCodeBench prelude, thinktune.grading.verdicts),
# loaded once in the fork server instead of once per test.
PRELOAD = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
           "statistics", "itertools", "functools", "operator", "io", "json", "typing", "decimal", "fractions",
           "atexit", "threading", "traceback", "types",
           # and what the HumanEval harness (thinktune/grading/humaneval_harness.py) imports in each run
           "contextlib", "faulthandler", "shutil", "struct", "subprocess")
BOOT = ("from thinktune.grading.sandbox.forkserver import main\n"
        "from thinktune.grading.sandbox.keeper import run_main\n"
        "run_main(main())\n")
READY = b"ready "
# Sent by a zygote before and after it compiles its program: the evaluator gives the compile
# the test's timeout, and a zygote that ends or runs past it in between was ended by the
# program's own text (a compile that crashed or took too long), not by a sandbox failure.
COMPILING, COMPILED = b"compiling", b"compiled"
# Sources above this size are compiled by each run instead (the run's timeout then covers it).
_ZYGOTE_COMPILE_MAX = 1 << 20


def main() -> keeper.Start:
    """The fork server (``python -c BOOT <socket fd> <tier>``). Returns only in a program's process."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    contained = sys.argv[2] == "contained"
    _default_signal_dispositions()
    try:
        shared, features = _setup(contained)
    except BaseException as exc:  # noqa: BLE001 - reported to the evaluator, which picks a weaker tier
        sock.sendall(keeper.SETUP_FAILED + f"{type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")
        os._exit(1)
    sock.sendall(READY + json.dumps(features).encode() + b"\n")
    return _serve(sock, shared)


def _default_signal_dispositions() -> None:
    """Signals as a fresh `python main.py` from a shell has them, whatever the evaluator
    inherited: a background job (`cmd &`, nohup, some CI runners) starts with SIGINT,
    SIGQUIT or SIGHUP ignored, and programs would inherit that, so `raise_signal(SIGINT)`
    would exit 0 instead of -2."""
    import signal

    for number in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # what the interpreter installs at start


@dataclass(frozen=True)
class _Shared:
    """What the fork server set up once, for every zygote."""

    seccomp: kernel.SeccompFilter | None
    cgroup_parent: cgroup.Parent | None
    pidns_fd: int  # the fork server's PID namespace (-1: no namespaces), reset before each new one


def _setup(contained: bool) -> tuple[_Shared, dict]:
    for name in PRELOAD:
        __import__(name)
    installed = packages.locate(sys.path)  # host paths: before the root hides them
    features: dict = {"seccomp": False, "memory_cgroup": False, "notes": [],
                      "packages": installed.names, "package_notes": installed.notes}
    bpf, parent, pidns_fd, packages_dir = None, None, -1, None
    if contained:
        bpf, why = seccomp.build()  # before any namespace: libseccomp's lookup starts ldconfig
        if why:
            features["notes"].append(why)
        parent, why = cgroup.open_parent()
        if parent is not None:
            cgroup.sweep(parent)
        else:
            features["notes"].append(f"no memory cgroup per run: {why}")
        pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        if bpf is not None:  # the filter denies System V IPC and message queues: one empty namespace for all
            kernel.unshare(kernel.CLONE_NEWIPC)
        plan = root.plan(installed.entries)
        root.enter(plan)
        packages_dir = plan.packages_dir
        sys.executable = sys._base_executable = plan.interpreter  # type: ignore[attr-defined]
        features.update(seccomp=bpf is not None, memory_cgroup=parent is not None)
    # The path this package was imported from is no business of the programs, nor are its
    # modules (they stay loaded for the fork server's own use), nor site-packages: programs
    # import the allowed packages only (``packages``).
    extra = set(filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    packages.forget_site_modules(sys.path)
    kept = packages.program_path(sys.path, extra, packages_dir)
    for entry in set(sys.path) - set(kept):
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = kept
    if not contained and installed.locations:  # the host's file system: its site-packages, filtered
        sys.meta_path.append(packages.AllowlistFinder(installed.locations))
    os.environ.pop("PYTHONPATH", None)
    for name in [n for n in sys.modules if n.split(".")[0] in ("thinktune", "pyseccomp")]:
        del sys.modules[name]
    shared = _Shared(None if bpf is None else kernel.SeccompFilter(bpf), parent, pidns_fd)
    gc.freeze()  # what is loaded now stays shared with every fork: the collector never touches it
    return shared, features


def _serve(sock: socket.socket, shared: _Shared) -> keeper.Start:
    """Fork a zygote per request. One is always forked ahead (a *spare*: its namespaces and
    memory cgroup set up, waiting for a program), so a request only hands it the program,
    and the next spare is forked while the evaluator goes on."""
    parent = shared.cgroup_parent
    contained = shared.pidns_fd >= 0
    cgroups: dict[int, str] = {}  # zygote pid -> its memory cgroup
    numbers = itertools.count()

    def reap(_signum: int, _frame: object) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if parent is not None and pid in cgroups:
                cgroup.remove(parent, cgroups.pop(pid))

    def fork_zygote(network: bool) -> tuple[int, socket.socket] | keeper.Start:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if contained:  # the zygote is pid 1 of a new PID namespace: its program's
            kernel.setns(shared.pidns_fd, kernel.CLONE_NEWPID)
            kernel.unshare(kernel.CLONE_NEWPID)
        memory_cgroup = cgroup.name(os.getpid(), next(numbers))
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # reaped only once recorded
        pid = kernel.fork()
        if pid == 0:
            for other in (sock, ours, *(s for _, s in spares)):
                other.close()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            return _zygote(shared, memory_cgroup, network, theirs)
        cgroups[pid] = memory_cgroup
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        theirs.close()
        return pid, ours

    signal.signal(signal.SIGCHLD, reap)
    spares: list[tuple[int, socket.socket]] = []
    while True:
        if not spares:
            spare = fork_zygote(network=False)
            if isinstance(spare, keeper.Start):
                return spare
            spares.append(spare)
        try:
            header, fds, _, _ = socket.recv_fds(sock, 8, 2)
            if not header:
                break
            if len(header) < 8:
                header += _recv_exact(sock, 8 - len(header))
            payload = _recv_exact(sock, int.from_bytes(header, "big"))
            plan = keeper.Plan.from_json(payload)
        except (OSError, ValueError, TypeError, EOFError):
            break
        if len(fds) != 2:
            break
        network = contained and plan.limits.network  # the spare has a network namespace of its own
        zygote = spares.pop() if not network else fork_zygote(network=True)
        if isinstance(zygote, keeper.Start):
            return zygote
        pid, to_zygote = zygote
        try:
            socket.send_fds(to_zygote, [len(payload).to_bytes(8, "big")], fds)
            to_zygote.sendall(payload)
        except OSError:  # the spare died: the evaluator sees its connection close, and retries
            pass
        finally:
            to_zygote.close()
            for fd in fds:
                os.close(fd)
        sock.sendall(str(pid).encode().ljust(16))
        _remember_preamble(plan.preamble)
    # The evaluator is gone: so is the spare (end of file on its socket), then its cgroup.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid, to_zygote in spares:
        to_zygote.close()
        with suppress(ChildProcessError):
            os.waitpid(pid, 0)
        if parent is not None and pid in cgroups:
            cgroup.remove(parent, cgroups.pop(pid))
    if parent is not None:
        cgroup.sweep(parent)
    os._exit(0)


# Preambles (trusted code: a grader's imports, a harness; never a program) compiled by the
# fork server the first time a request names them, so that every zygote forked after that
# finds its preamble's code here instead of compiling it (HumanEval's harness: ~2 ms a program).
_preambles: dict[str, CodeType] = {}
_PREAMBLES_KEPT = 8


def _remember_preamble(preamble: str) -> None:
    if not preamble or preamble in _preambles or len(_preambles) >= _PREAMBLES_KEPT:
        return
    try:
        _preambles[preamble] = keeper.compile_preamble(preamble)
    except BaseException:  # noqa: BLE001 - the zygote that runs it reports the error
        return
    gc.freeze()  # as at setup: no run's collector touches (and copies) the code's pages


def _zygote(shared: _Shared, memory_cgroup: str, network: bool, server: socket.socket) -> keeper.Start:
    """Set up, wait for a program, then serve its runs until the evaluator closes the connection."""
    failure: BaseException | None = None
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)
        if shared.pidns_fd >= 0:
            # One mount and network namespace per program, shared by its runs one after the
            # other: a run leaves nothing in them (its /tmp is unmounted, its processes are
            # killed, no interface is up, and the filter denies Unix sockets but anonymous
            # pairs; a run that leaves a socket behind gets the next run a new network
            # namespace: ``_renew_network_if_used``).
            kernel.unshare(kernel.CLONE_NEWNS | (0 if network else kernel.CLONE_NEWNET))
            root.mount_proc()
            if shared.cgroup_parent is not None:
                cgroup.create_and_join(shared.cgroup_parent, memory_cgroup)
    except BaseException as exc:  # noqa: BLE001 - reported once there is an evaluator to tell
        failure = exc
    try:
        header, fds, _, _ = socket.recv_fds(server, 8, 2)
        plan = keeper.Plan.from_json(_recv_exact(server, int.from_bytes(header, "big")))
        source_fd, conn_fd = fds
    except (OSError, ValueError, TypeError, EOFError):
        os._exit(0)  # the fork server is gone
    server.close()
    conn = socket.socket(fileno=conn_fd)
    try:
        if failure is not None:
            raise failure
        source = _read_memfd(source_fd)
        os.close(source_fd)
        os.environ.clear()  # every run of the program inherits its environment from here
        os.environ.update(plan.env)
        main = keeper.main_module(plan.preamble, _preambles.get(plan.preamble))
        if shared.pidns_fd >= 0 and shared.cgroup_parent is not None:
            cgroup.set_limit(shared.cgroup_parent, memory_cgroup, (plan.limits.memory_mb << 20)  # + stdout, a memfd
                             + plan.limits.scratch_bytes + plan.limits.max_output_bytes + cgroup.OVERHEAD_BYTES)
        code = None
        if plan.compile:
            conn.sendall(COMPILING + b"\n")
            code = _compile(source, plan.limits)
            conn.sendall(COMPILED + b"\n")
        if code is not None:
            _load_imported_packages(code)
        # What the zygote made (its preamble's names, the code, the plan): no run's collector
        # touches, and so copies, their pages (a young generation's are written at each pass)
        gc.freeze()
    except BaseException as exc:  # noqa: BLE001 - reported to the evaluator
        conn.sendall(keeper.SETUP_FAILED + f"{type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")
        os._exit(1)
    conn.sendall(READY + b"\n")
    own_network = shared.pidns_fd >= 0 and not network
    queued: deque[list[int]] = deque()  # requests read ahead during a run
    while True:
        stdio = queued.popleft() if queued else keeper.receive_request(conn)
        if stdio is None:
            os._exit(0)  # end of file (the evaluator is done or gone), or not our protocol
        try:
            report = keeper.run(shared.seccomp, plan, source, code, main, stdio, conn, queued)
        except keeper.EvaluatorGone:
            os._exit(0)
        if isinstance(report, keeper.Start):
            return report  # in the program's process
        for fd in stdio:
            os.close(fd)
        if own_network:
            try:
                _renew_network_if_used()
            except OSError as exc:
                report = keeper.SETUP_FAILED + f"{type(exc).__name__}: {exc}".encode()
        try:
            conn.sendall(report + b"\n")
        except OSError:
            os._exit(0)


# The Unix sockets of the zygote's network namespace: where a socket a run leaves behind is
# listed (a datagram pair with its own descriptors in its queue, bound to an abstract name,
# lives until the kernel's socket collector runs). Any other socket outlives its run only as
# a descriptor in flight in such a Unix socket (no interface is up: no connection lingers
# in TCP's closing states). Not /proc/net/tcp: reading it walks the kernel's global hash
# table, ~10 ms (a read of this table: ~0.03 ms; 2-core AMD EPYC, in a new network namespace).
_UNIX_SOCKETS = "/proc/net/unix"


def _renew_network_if_used() -> None:
    """After a run (every process of it gone): if a socket it made still exists, the next run
    gets a new network namespace (no interface up), which that socket is not in, so a
    program's test leaves nothing for the next (a name in /proc/net/unix, a queue to read).
    The usual run leaves none (a process's sockets close with it) and costs one read of
    the table; renewing costs ~0.6 ms (measured: a fork with unshare(CLONE_NEWNET) against
    one without, on the 2-core AMD EPYC)."""
    with open(_UNIX_SOCKETS, "rb") as f:
        f.readline()  # the header
        left = f.readline()
    if left:
        kernel.unshare(kernel.CLONE_NEWNET)


def _compile(source: bytes, limits: Limits) -> CodeType | None:
    """The program compiled once for all its runs, or None where each run had better
    compile it itself: a syntax error or a warning (the run reports it as ``python
    main.py`` would), or a source too big to compile before its first run's timeout starts.

    Compiled as ``python main.py`` compiles it: at CPython's default recursion limit (its
    guard on the compiler's depth). The evaluator gives it the test's timeout (compiling
    takes superlinear time on some sources) and kills a zygote that runs past it; it
    takes that, or a crash, for "compile in each run" (whose limits then give the
    verdict), never for a failure of the sandbox. (No timer here: the zygote is init of
    its PID namespace, which ignores its own SIGALRM.)"""
    if len(source) > _ZYGOTE_COMPILE_MAX:
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    recursion_limit = sys.getrecursionlimit()
    try:
        resource.setrlimit(resource.RLIMIT_AS, (min(limits.memory_mb << 20, hard), hard))
        sys.setrecursionlimit(keeper.DEFAULT_RECURSION_LIMIT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = compile(source, keeper.SCRIPT, "exec", dont_inherit=True)
        return None if caught else code
    except BaseException:  # noqa: BLE001 - SyntaxError, MemoryError, RecursionError, ValueError...
        return None
    finally:
        sys.setrecursionlimit(recursion_limit)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _load_imported_packages(code: CodeType) -> None:
    """The allowed packages the program names (``import numpy``, ``from numpy import ...``),
    imported once by the zygote instead of by each run: numpy's import is most of a short
    test's time. A program that does not name one loads nothing; a failed import is undone,
    and left to the program, which then fails as under ``python main.py``."""
    names: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        names.update(current.co_names)
        pending.extend(c for c in current.co_consts if isinstance(c, CodeType))
    wanted = sorted(names & set(packages.ALLOWED))
    for name in wanted:
        before = set(sys.modules)
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - the program's own import reports it
            for loaded in set(sys.modules) - before:
                del sys.modules[loaded]


def _read_memfd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
