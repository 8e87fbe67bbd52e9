"""One run, forked from its program's zygote::

    zygote (keeper, and in the contained tier init: pid 1 of the program's PID namespace)
      ──fork──► program (runs main.py)

The zygote *keeps* every run of its program: before the run it mounts a fresh private
/tmp (tmpfs capped in size and inodes) holding main.py; it enforces the wall-clock
timeout; when the program exits (or at the timeout) it collects the program's status,
kills and reaps every process left (as pid 1 of the namespace, or as their subreaper in
the weaker tiers), unmounts /tmp and reports. The program is an ordinary process, not
pid 1: a signal it sends itself, ``os.abort()`` or a crash ends it with the host's
status. In its own process the program drops to its own uid, rlimits, no_new_privs and
the seccomp filter (or, without one, takes a new IPC namespace), then runs ``main.py`` as
``python main.py`` would (``run_main``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from types import CodeType, ModuleType

from thinktune.grading.sandbox import kernel, root
from thinktune.grading.sandbox.limits import Limits, set_rlimits
from thinktune.grading.sandbox.stderr import StderrTail

SCRIPT = "main.py"
# Written (only by sandbox code, on pipes the program never holds) when a run could not be set up.
SETUP_FAILED = b"setup-failed "
# CPython's default recursion limit: the compiler's guard on nesting depth follows it, so a
# program is compiled as `python main.py` compiles it, whatever its preamble set (the
# official prelude's setrecursionlimit(50000)): a deeply nested expression is then a
# RecursionError, not an overflow of the C stack.
DEFAULT_RECURSION_LIMIT = 1000


@dataclass(frozen=True)
class Plan:
    """A program's settings, sent by the evaluator to the fork server (no source in it).
    As JSON: unpickling would import modules, and the fork server's root has none to import."""

    limits: Limits
    contained: bool  # namespaces, allowlist root, seccomp, memory cgroup
    uid: int | None  # the program's own unprivileged uid (None: the evaluator's)
    env: dict[str, str]
    compile: bool = True  # compiled once by the zygote; False: each run compiles it (under its timeout)
    preamble: str = ""  # trusted code (a grader's), run once by the zygote in the runs' ``__main__``

    def to_json(self) -> bytes:
        return json.dumps({**dataclasses.asdict(self), "limits": dataclasses.asdict(self.limits)}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Plan:
        fields = json.loads(data)
        return cls(**{**fields, "limits": Limits(**fields["limits"])})


@dataclass(frozen=True)
class Start:
    """Returned in the program's process only: what to run."""

    source: bytes
    code: CodeType | None  # compiled by the zygote, or None: the program compiles (and reports) itself
    main: ModuleType  # ``__main__``, holding what the preamble defined (run once, by the zygote)


def main_module(preamble: str, compiled: CodeType | None = None) -> ModuleType:
    """In the zygote: the programs' ``__main__`` with the trusted ``preamble`` (the grader's
    imports, or a harness) already run in it. Every run gets this module as it is after a
    fork, so the preamble's names cost a run nothing (binding them anew would touch, and
    copy, every page they live on). ``compiled``: the preamble's code, where the fork
    server had compiled it already (``compile_preamble``)."""
    import builtins

    main = ModuleType("__main__")
    main.__file__ = SCRIPT
    main.__builtins__ = builtins  # the module, as in a script's __main__ (not the dict other modules see)
    if preamble:
        exec(compiled or compile_preamble(preamble), main.__dict__)  # noqa: S102 - trusted
    return main


def compile_preamble(preamble: str) -> CodeType:
    return compile(preamble, "<preamble>", "exec", dont_inherit=True)


class EvaluatorGone(Exception):
    """The evaluator closed the zygote's connection during a run: stop."""


def run(seccomp: kernel.SeccompFilter | None, plan: Plan, source: bytes, code: CodeType | None, main: ModuleType,
        stdio: list[int], conn: socket.socket, queued: deque[list[int]]) -> bytes | Start:
    """In the zygote: one run with ``stdio`` (stdin, stdout, stderr). Returns the report
    line for the evaluator, or a ``Start`` in the program's process. Requests that arrive
    meanwhile go to ``queued``."""
    setup_r, setup_w = os.pipe()
    try:
        if plan.contained:
            root.mount_scratch(plan.limits, plan.uid)
            cwd = root.SCRATCH
            _write_script(cwd, source)
        else:
            cwd = _host_workdir(source, plan.uid)
    except OSError as exc:
        for fd in (setup_r, setup_w):
            os.close(fd)
        with suppress(OSError):
            root.unmount_scratch()
        return SETUP_FAILED + _reason(exc)
    stderr = StderrTail()
    started = time.monotonic()
    zygote = os.getpid()
    pid = kernel.fork()
    if pid == 0:
        os.close(setup_r)
        os.close(stderr.read_fd)
        return _program(seccomp, plan, Start(source, code, main), [stdio[0], stdio[1], stderr.write_fd], setup_w,
                        cwd, zygote)
    os.close(setup_w)
    os.close(stderr.write_fd)
    try:
        timed_out, gone, status = _supervise(pid, plan.limits.timeout_s, conn, queued, stderr)
        wall_s = time.monotonic() - started
        setup = _read_all(setup_r)
        stderr.save(stdio[2])
    finally:
        os.close(setup_r)
        os.close(stderr.read_fd)
        if plan.contained:
            root.unmount_scratch()
        else:
            _remove_tree(cwd)
    if gone:
        raise EvaluatorGone
    if setup.startswith(SETUP_FAILED):
        return setup.split(b"\n", 1)[0]
    if timed_out:
        return f"ok 1 0 {wall_s:.6f}".encode()
    return f"ok 0 {os.waitstatus_to_exitcode(status)} {wall_s:.6f}".encode()


def _supervise(pid: int, timeout_s: float, conn: socket.socket, queued: deque[list[int]],
               stderr: StderrTail) -> tuple[bool, bool, int]:
    """Wait for the program (at most ``timeout_s``), reading ahead the evaluator's next
    requests into ``queued`` so that the end of its connection is seen at once, and draining
    its stderr; then kill and reap everything of the run. Returns (timed_out,
    evaluator_gone, wait status)."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(conn.fileno(), select.POLLIN)
    poller.register(stderr.read_fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    timed_out = gone = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            events = dict(poller.poll(int(remaining * 1000) + 1)) if remaining > 0 else {}
            if stderr.read_fd in events:
                if not stderr.drain():  # every writer closed it: stop watching
                    poller.unregister(stderr.read_fd)
                continue
            if pidfd in events:
                break
            if conn.fileno() in events:
                request = receive_request(conn, wait=False)
                if request:
                    queued.append(request)
                    continue
                gone = request is None  # end of file: the evaluator is done (or gone)
            if gone or remaining <= 0:
                timed_out = not gone
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                break
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    _kill_and_reap_the_rest()
    stderr.drain(chunks=None)  # what the run's processes wrote before they ended (a pipe's worth at most)
    return timed_out, gone, status


def receive_request(conn: socket.socket, wait: bool = True) -> list[int] | None:
    """One run request from the evaluator: its stdin, stdout and stderr. None at end of file
    (or anything but a request); [] when ``wait`` is False and none is there yet."""
    try:
        message, fds, _, _ = socket.recv_fds(conn, 1, 3, 0 if wait else socket.MSG_DONTWAIT)
    except BlockingIOError:
        return []
    except OSError:
        return None
    if message != b"R" or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    return fds


def _kill_and_reap_the_rest() -> None:
    """Every process the run left: in the contained tier the zygote is pid 1 of the
    program's namespace and kill(-1) reaches exactly them; elsewhere it is their subreaper
    and walks its children (kill(-1) would reach every process of the user)."""
    while True:
        if os.getpid() == 1:
            with suppress(OSError):
                os.kill(-1, signal.SIGKILL)
        else:
            for child in _children(os.getpid()):
                with suppress(OSError):
                    os.kill(child, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _program(seccomp: kernel.SeccompFilter | None, plan: Plan, start: Start, stdio: list[int], setup_w: int,
             cwd: str, zygote: int) -> Start:
    """In the program's process, still privileged: isolate, limit, drop privileges for good.
    (Few Python objects touched on the way: each page written costs a copy after a fork.)"""
    try:
        if not plan.contained:  # in the contained tier the program dies with its namespace's init
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != zygote:
                os._exit(1)
        os.setsid()
        for fd, target in zip(stdio, (0, 1, 2), strict=True):
            os.dup2(fd, target)
        # The OOM killer (of the run's memory cgroup, or of the host) picks the program and
        # its children first, never the zygote (raising one's own score needs no privilege).
        with suppress(OSError):
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        if plan.contained and seccomp is None:  # else the filter denies what an IPC namespace holds
            kernel.unshare(kernel.CLONE_NEWIPC)
        os.chdir(cwd)
        start.main.__file__ = os.path.join(cwd, SCRIPT)  # absolute, as python main.py sets it
        set_rlimits(plan.limits, own_uid=plan.uid is not None)
        if plan.uid is not None:
            os.setgroups([])
            os.setresgid(plan.uid, plan.uid, plan.uid)
            os.setresuid(plan.uid, plan.uid, plan.uid)
        kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
        # Not dumpable (as a change of uid leaves it where fs.suid_dumpable is 0, in every
        # tier here): no other process of the run's uid reads its memory or opens its
        # descriptors through /proc (HumanEval's check process, beside the candidate's).
        kernel.prctl(kernel.PR_SET_DUMPABLE, 0)
        if not plan.contained:
            kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)  # again: setresuid clears it
            os.environ["HOME"] = os.environ["TMPDIR"] = cwd  # the run's host temp dir
        if plan.contained and seccomp is not None:
            seccomp.install()
        # Every other descriptor: the setup pipe, the zygote's socket, and the fork server's
        # (its PID namespace, the memory cgroup directory: a way out of the root if kept).
        # close_range: the bound costs nothing, and the new RLIMIT_NOFILE is not the old one.
        os.closerange(3, 1 << 20)
        import random

        random.seed()  # a fresh interpreter's random state, not the zygote's
        return start
    except BaseException as exc:  # noqa: BLE001
        _fail(setup_w, exc)


def _fail(setup_w: int, exc: BaseException) -> None:
    with suppress(OSError):
        os.write(setup_w, SETUP_FAILED + _reason(exc) + b"\n")
    os._exit(126)


def _reason(exc: BaseException) -> bytes:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ").encode()


def _write_script(directory: str, source: bytes) -> None:
    fd = os.open(os.path.join(directory, SCRIPT), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        view = memoryview(source)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _host_workdir(source: bytes, uid: int | None) -> str:
    """The run's temp dir on the host (tiers without a private /tmp): main.py, owned by the run's uid."""
    import tempfile  # the weaker tiers only: the contained tier's fork server never loads it

    workdir = tempfile.mkdtemp(prefix="thinktune-run-")
    _write_script(workdir, source)
    if uid is not None:
        os.chown(workdir, uid, uid)
    return workdir


def _remove_tree(path: str) -> None:
    """Remove a temp dir the program may have made unwritable (chmod 000 subdirs)."""
    def make_writable_and_retry(func, p, _exc):  # type: ignore[no-untyped-def]  # shutil's callback
        with suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

    import shutil

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _read_all(fd: int) -> bytes:
    """What the program wrote to the setup pipe; every process of the run is gone, so it ends."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _children(pid: int) -> list[int]:
    """Pids of the children of the single-threaded process ``pid`` (host /proc: weak tiers only)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    found = []  # kernels without CONFIG_PROC_CHILDREN
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


# --------------------------------------------------------------------------------------
# The program's process: main.py as `python main.py` runs it


def run_main(start: Start) -> None:
    """Run the program as ``python main.py`` would, then end the process as it would: status
    from ``SystemExit`` (1 and a traceback on an uncaught exception), non-daemon threads
    joined, atexit handlers run, standard streams flushed (120 if stdout cannot be).
    Only the teardown of every module is skipped: it has no visible effect and would cost
    more than starting a new interpreter."""
    import atexit
    import threading
    import traceback

    main = start.main
    sys.modules["__main__"] = main
    sys.argv = [SCRIPT]
    interrupted = False
    try:
        # compiled from bytes: the source encoding as `python main.py` reads it; no
        # __future__ flags of this module leak in (dont_inherit)
        code = start.code
        if code is None:  # the zygote did not compile it: a syntax error to report, or too slow or deep for it
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)  # as `python main.py` compiles, whatever the preamble set
            try:
                code = compile(start.source, SCRIPT, "exec", dont_inherit=True)
            finally:
                sys.setrecursionlimit(limit)
        del start
        exec(code, main.__dict__)  # noqa: S102 - running the program is the point
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter would
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        status = 1
        interrupted = isinstance(exc, KeyboardInterrupt)
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what interpreter exit does first
        atexit._run_exitfuncs()
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exception(type(exc), exc)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:  # noqa: BLE001 - e.g. a full disk; the interpreter's status for it
            status = 120 if stream is sys.stdout else status
    if interrupted:  # an uncaught KeyboardInterrupt ends the interpreter by SIGINT, for its parent to see
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    os._exit(status & 0xFF)


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    with suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1
