"""Run one untrusted, model-written Python program and report what it did.

The study's numbers are pass rates of programs nobody has read, so every run is treated
as hostile: it may loop, fork-bomb, eat memory, flood stdout, delete files, open sockets,
or try to kill the evaluator. Whatever it does, ``run_python`` returns a ``RunResult``;
it raises only when the evaluator itself is misconfigured.

Process layout of one run::

    evaluator ──request──► fork server ──fork──► keeper ──fork──► program (``main.py``)

The *fork server* is one interpreter per evaluator process, started on first use with
the modules graded programs import (the LiveCodeBench prelude) already loaded; forking
it costs a millisecond where starting an interpreter and importing them costs tens, and
every test is still its own process. The evaluator sends it the run (source, limits) and
the run's stdin/stdout/stderr files and status pipe (file descriptors over a Unix socket).
The *keeper* it forks is a child subreaper in a new session: every process the program
starts stays below it, even after a double fork and ``setsid``. It enforces the
wall-clock timeout, SIGKILLs the program and then every remaining descendant, reaps them
all (so no zombie is left to count against a process limit), and writes one status line
to the evaluator through the pipe. The program isolates itself (below), drops its
privileges, then runs ``main.py`` as ``__main__`` in the interpreter it inherited, exiting
as ``python main.py`` would (traceback and status 1 on an uncaught exception, atexit
handlers, buffered output flushed). The evaluator itself never waits on untrusted processes.

Isolation, strongest first; the first tier that passes a probe run is used (see
``isolation_report``):

``contained`` (root with namespaces, the case on the study's machines)
    The program runs as pid 1 of a new PID namespace (when it exits or is killed the
    kernel kills and reaps everything else in it), in new network (no interfaces up)
    and IPC namespaces, and in a new mount namespace where the whole tree is read-only
    and ``/tmp`` (also seen at ``/var/tmp`` and ``/dev/shm``) is a private, size-capped
    tmpfs holding ``main.py``: the run's temp dir, gone with the namespace. It runs as a
    per-run unprivileged uid/gid (60000 + slot, ``no_new_privs``), so it cannot signal
    the evaluator, write outside its tmpfs, or exceed its own process limit. Directories
    that uid cannot enter but the interpreter lives under (``/root`` for a pyenv Python)
    are replaced by a tmpfs re-exposing only the interpreter, read-only. (Kernels before
    5.12 lack mount_setattr: the same tier without the read-only tree.)
``uid``
    Root without namespaces (e.g. a container without CAP_SYS_ADMIN): per-run uid,
    host temp dir, no network isolation.
``plain``
    Not root: rlimits, new session, temp dir and the keeper's cleanup only. The program
    runs as the evaluator's user and could signal it or write its files.

Every tier sets rlimits (address space, CPU seconds, file size, open files, no core
dumps; processes where the run has its own uid), feeds stdin from a file (reading past
EOF just gets EOF), sends stdout/stderr to unlinked temp files capped by RLIMIT_FSIZE and
reads them back with a cap, and gives the program a minimal environment.

Not covered: memory is capped per process (RLIMIT_AS), so a run may hold up to
``max_processes`` x ``memory_mb`` plus its scratch tmpfs; CPU is not reserved, so a
program hogging every core can slow (and time out) runs beside it; world-readable files
(the repository and its data included) stay readable; the kernel itself is shared.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import grp
import itertools
import logging
import math
import os
import pickle
import pwd
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

log = logging.getLogger("thinktune.sandbox")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (LiveCodeBench's defaults: 6 s per test)."""

    timeout_s: float = 6.0  # wall clock for the whole run, interpreter start included
    memory_mb: int = 1024  # RLIMIT_AS of the program
    max_output_bytes: int = 4 << 20  # stdout kept at most; more -> output_limit_exceeded
    max_processes: int = 64  # RLIMIT_NPROC (threads count too)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE: any one file, stdout and stderr included
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
        if self.max_output_bytes > self.max_file_bytes:
            raise ValueError("max_output_bytes above max_file_bytes could never be reached (stdout is a file)")


@dataclass(frozen=True)
class RunResult:
    """What one run did.

    ``stdout`` holds at most ``max_output_bytes``; more fails the run. ``stderr`` is
    diagnostics, as for a judge: only its last 64 KiB are kept (where the traceback is)
    and its size never fails a run by itself (past ``max_file_bytes`` the write fails).
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


def run_python(source: str, stdin: str = "", limits: Limits = Limits()) -> RunResult:
    """Run ``source`` as ``main.py`` with ``stdin`` as its standard input, isolated."""
    if not isinstance(source, str) or not isinstance(stdin, str):
        raise TypeError("source and stdin must be str")
    return _run(source, stdin, limits, _selected_mode())


def isolation_report() -> dict[str, bool]:
    """Which isolation features runs get on this machine (probed once), for logs and the README."""
    mode = _selected_mode()
    return {
        "rlimits": True,
        "new_session": True,
        "subreaper_cleanup": True,
        "no_new_privs": True,
        "unprivileged_uid": mode.drop_uid,
        "pid_namespace": mode.namespaces,
        "network_namespace": mode.namespaces,
        "ipc_namespace": mode.namespaces,
        "private_tmp": mode.namespaces,
        "read_only_root": mode.read_only_root,
    }


# --------------------------------------------------------------------------------------
# Modes and probing


@dataclass(frozen=True)
class _Mode:
    name: str
    drop_uid: bool
    namespaces: bool
    read_only_root: bool


_CONTAINED_RO = _Mode("contained", drop_uid=True, namespaces=True, read_only_root=True)
_CONTAINED = _Mode("contained-rw", drop_uid=True, namespaces=True, read_only_root=False)
_UID_ONLY = _Mode("uid", drop_uid=True, namespaces=False, read_only_root=False)
_PLAIN = _Mode("plain", drop_uid=False, namespaces=False, read_only_root=False)

_mode_lock = threading.Lock()
_mode: _Mode | None = None


def _selected_mode() -> _Mode:
    """The strongest mode whose probe run behaves; probed once per process."""
    global _mode
    with _mode_lock:
        if _mode is None:
            candidates = [_CONTAINED_RO, _CONTAINED, _UID_ONLY] if os.geteuid() == 0 else []
            _mode = next((m for m in candidates if _probe(m)), _PLAIN)
            if _mode is _PLAIN and os.geteuid() == 0:
                log.warning("sandbox: no isolation tier works as root; programs run as root (plain mode)")
            log.info("sandbox mode: %s", _mode.name)
        return _mode


_PROBE = """\
import os, sys
with open("probe", "w") as f:
    f.write(sys.stdin.read())
print(sys.version, sys.prefix, os.getuid() != 0, open("probe").read())
"""


def _probe(mode: _Mode) -> bool:
    """True when a trivial program runs correctly (same interpreter, uid, stdin, cwd) in ``mode``."""
    expected = f"{sys.version} {sys.prefix} {mode.drop_uid or os.getuid() != 0} ok\n"
    try:
        result = _run(_PROBE, "ok", Limits(timeout_s=20), mode)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        log.info("sandbox mode %s unavailable: %s", mode.name, exc)
        return False
    if result.ok and result.stdout == expected:
        return True
    log.info("sandbox mode %s unavailable: probe gave %r / %r", mode.name, result.stdout, result.stderr[-500:])
    return False


# --------------------------------------------------------------------------------------
# One run, evaluator side

# The evaluator waits this much longer than the timeout for the keeper's report: the
# keeper enforces the timeout itself, this only guards against a stuck kernel.
_KEEPER_GRACE_S = 10.0
_STDERR_KEEP = 64 << 10
_SCRIPT = "main.py"


def _program_env(home: str) -> dict[str, str]:
    """A minimal environment. PYTHONHASHSEED=0 makes set/dict-of-str orders, and so the
    graded output of programs that print them, identical from run to run."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# The fork server's interpreter flags, which its programs inherit: -s: no user site;
# -P: no script or current directory on sys.path. (-I would also ignore PYTHONHASHSEED;
# the environment is fully ours, so -E adds nothing here.)
_PYTHON_ARGS = ("-s", "-P")
# Written to the status pipe (which the program never holds) when the sandbox itself
# could not be set up, so a program cannot fake it.
_SETUP_FAILED = b"setup-failed "


def _run(source: str, stdin: str, limits: Limits, mode: _Mode) -> RunResult:
    with _uid_slot(mode.drop_uid) as uid, _io_files(stdin, uid) as (stdin_f, stdout_f, stderr_f):
        workdir = None if mode.namespaces else _host_workdir(source, uid)
        home = workdir or "/tmp"
        status_r, status_w = os.pipe()
        plan = _Plan(source=_encode(source), limits=limits, mode=mode, uid=uid, status_fd=-1, parent_pid=-1,
                     overlays=_interpreter_overlays(), scratch_keep=_interpreter_paths_in_scratch(),
                     cwd=workdir or "/", env=_program_env(home))
        try:
            try:
                keeper_pid = _fork_server.submit(plan, (stdin_f.fileno(), stdout_f.fileno(), stderr_f.fileno(),
                                                        status_w))
            finally:
                os.close(status_w)
            line = _read_until_eof(status_r, limits.timeout_s + _KEEPER_GRACE_S)
            if line is None:  # the kernel could not kill or reap the program in time
                log.error("sandbox keeper %d is stuck; killing its session", keeper_pid)
                _kill_group(keeper_pid)
        finally:
            os.close(status_r)
            if workdir is not None:
                _remove_tree(workdir)
        if line is None:
            return RunResult(None, "", "", True, False, limits.timeout_s + _KEEPER_GRACE_S)
        if line.startswith(_SETUP_FAILED):
            reason = line[len(_SETUP_FAILED):].split(b"\n", 1)[0].decode("utf-8", errors="replace")
            raise RuntimeError(f"sandbox setup failed: {reason}")
        stderr = _read_tail(stderr_f, _STDERR_KEEP)
        try:
            flag, code, wall = line.split()
            timed_out, exit_code, wall_s = flag == b"1", int(code), float(wall)
        except ValueError:
            raise RuntimeError(f"sandbox keeper {keeper_pid} ended with report {line!r}") from None
        stdout, stdout_over = _read_head(stdout_f, limits.max_output_bytes)
        return RunResult(
            exit_code=None if timed_out else exit_code,
            stdout=stdout, stderr=stderr, timed_out=timed_out,
            output_limit_exceeded=stdout_over, wall_s=wall_s,
        )


@contextmanager
def _io_files(stdin: str, uid: int | None) -> Iterator[tuple[IO[bytes], IO[bytes], IO[bytes]]]:
    """Unlinked temp files (no path the program could find): stdin, stdout, stderr.
    Owned by the run's uid, so that reopening them (``open('/dev/stdin')``) works too."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        if uid is not None:
            for f in (fin, fout, ferr):
                os.fchown(f.fileno(), uid, uid)
        fin.write(_encode(stdin))
        fin.flush()
        fin.seek(0)
        yield fin, fout, ferr


def _read_head(f: IO[bytes], cap: int) -> tuple[str, bool]:
    """The first ``cap`` bytes of ``f`` as text, and whether it held more."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    return f.read(cap).decode("utf-8", errors="replace"), size > cap


def _read_tail(f: IO[bytes], cap: int) -> str:
    """The last ``cap`` bytes of ``f`` as text."""
    size = os.fstat(f.fileno()).st_size
    f.seek(max(0, size - cap))
    return f.read(cap).decode("utf-8", errors="replace")


def _encode(text: str) -> bytes:
    """UTF-8, passing lone surrogates through: a program that is not valid UTF-8 fails to
    compile in the sandbox instead of raising here."""
    return text.encode("utf-8", errors="surrogatepass")


def _readable_within(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` becomes readable within ``timeout_s`` (poll: no FD_SETSIZE limit,
    which a big evaluator process with many open files could pass)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))


def _read_until_eof(fd: int, timeout_s: float) -> bytes | None:
    """Everything written to the pipe ``fd`` until its writer exits; None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    while (remaining := deadline - time.monotonic()) > 0:
        if _readable_within(fd, remaining):
            chunk = os.read(fd, 256)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    return None


def _host_workdir(source: str, uid: int | None) -> str:
    """The run's temp dir when there is no private tmpfs: main.py, owned by the run's uid."""
    workdir = tempfile.mkdtemp(prefix="thinktune-run-")
    script = os.path.join(workdir, _SCRIPT)
    with open(script, "wb") as f:
        f.write(_encode(source))
    if uid is not None:
        os.chown(workdir, uid, uid)
        os.chmod(script, 0o444)
    return workdir


def _remove_tree(path: str) -> None:
    """Remove a temp dir the program may have made unwritable (chmod 000 subdirs)."""
    def make_writable_and_retry(func, p, _exc):  # type: ignore[no-untyped-def]  # shutil's callback
        with suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _kill_group(pgid: int) -> None:
    with suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# The fork server

# What graded programs import (the official LiveCodeBench prelude, thinktune.grading),
# loaded once in the fork server instead of once per test.
_PRELOAD = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
            "statistics", "itertools", "functools", "operator", "io", "json", "typing", "decimal", "fractions")

_BOOT = """\
import sys
sys.path.insert(0, {root!r})
from thinktune.sandbox import _run_main, _serve
_source = _serve({fd})
del sys.path[0]
_run_main(_source)
"""


class _ForkServer:
    """The evaluator's handle on its fork server: started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._owner = os.getpid()

    def submit(self, plan: _Plan, fds: tuple[int, int, int, int]) -> int:
        """Start one run: (stdin, stdout, stderr, status pipe) go to its keeper. Returns the keeper's pid."""
        payload = pickle.dumps(plan)
        with self._lock:
            if self._owner != os.getpid():  # a fork of the evaluator: its parent's server is not ours
                self._proc, self._sock, self._owner = None, None, os.getpid()
            for attempt in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    socket.send_fds(self._sock, [len(payload).to_bytes(8, "big")], list(fds))
                    self._sock.sendall(payload)
                    reply = _recv_exact(self._sock, 16)
                    return int(reply)
                except (OSError, ValueError) as exc:
                    log.warning("sandbox fork server failed (%s); restarting it", exc)
                    self._stop()
            raise RuntimeError("the sandbox fork server does not answer")

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parent.parent)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, *_PYTHON_ARGS, "-c", _BOOT.format(root=root, fd=theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                pass_fds=(theirs.fileno(),), env=_program_env("/tmp"), cwd="/",
            )
        finally:
            theirs.close()
        self._sock = ours

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._proc is not None:
            with suppress(OSError):
                self._proc.kill()
            self._proc.wait()
        self._proc = self._sock = None


_fork_server = _ForkServer()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _serve(fd: int) -> bytes:
    """The fork server's loop (in its own interpreter). Returns only in a program process,
    with the source to run; the fork server itself exits when the evaluator goes away."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    for name in _PRELOAD:
        __import__(name)
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the kernel
    while True:
        try:
            header, fds, _, _ = socket.recv_fds(sock, 8, 4)
            if not header:
                os._exit(0)
            if len(header) < 8:
                header += _recv_exact(sock, 8 - len(header))
            plan: _Plan = pickle.loads(_recv_exact(sock, int.from_bytes(header, "big")))
        except (OSError, ValueError, EOFError):
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            sock.close()
            return _keeper_or_program(plan, fds)
        for received in fds:
            os.close(received)
        sock.sendall(str(pid).encode().ljust(16))


def _run_main(source: bytes) -> None:
    """Run ``source`` as ``python main.py`` would, then end the process as it would: status
    from ``SystemExit`` (1 and a traceback on an uncaught exception), non-daemon threads
    joined, atexit handlers run, standard streams flushed (120 if stdout cannot be).
    Only the teardown of every module is skipped: it has no visible effect and would cost
    more than starting a new interpreter."""
    import atexit
    import threading
    import traceback
    import types

    for name in [n for n in sys.modules if n == "thinktune" or n.startswith("thinktune.")]:
        del sys.modules[name]  # the program sees the modules a fresh interpreter would have, plus the prelude's
    main = types.ModuleType("__main__")
    main.__file__ = "main.py"
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["main.py"]
    try:
        exec(compile(source, "main.py", "exec"), main.__dict__)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter would
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        status = 1
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
    os._exit(status & 0xFF)


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    with suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1


def _keeper_or_program(plan: _Plan, fds: list[int]) -> bytes:
    """In a fork of the fork server: run the keeper; in the program, return its source."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        stdin_fd, stdout_fd, stderr_fd, status_fd = fds
        for fd, target in ((stdin_fd, 0), (stdout_fd, 1), (stderr_fd, 2)):
            os.dup2(fd, target)
        for fd in (stdin_fd, stdout_fd, stderr_fd):
            if fd > 2:
                os.close(fd)
        os.chdir(plan.cwd)
        plan = dataclasses.replace(plan, status_fd=status_fd, parent_pid=os.getppid())
        plan.keeper()  # returns only in the program, isolated and unprivileged
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(plan.env)
        import random

        random.seed()  # a fresh interpreter's random state, not the fork server's
        return plan.source  # compiled from bytes: source encoding as `python main.py` reads it
    except BaseException as exc:  # noqa: BLE001 - reported to the evaluator, then gone
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        with suppress(OSError):
            os.write(fds[3], _SETUP_FAILED + reason.encode() + b"\n")
        os._exit(126)


# --------------------------------------------------------------------------------------
# Per-run uids

# Runs that overlap (threads, or several evaluator processes) each get their own uid, so
# RLIMIT_NPROC is per run and one run's fork bomb cannot starve another.
_UID_BASE = 60000
_UID_SLOTS = 512
_slot_counter = itertools.count()


def _uid_is_unused(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return False
        except KeyError:
            pass
    return True


_free_uids: list[int] | None = None


def _candidate_uids() -> list[int]:
    global _free_uids
    if _free_uids is None:
        _free_uids = [u for u in range(_UID_BASE, _UID_BASE + _UID_SLOTS) if _uid_is_unused(u)]
    return _free_uids


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"thinktune-sandbox-{os.geteuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"sandbox lock dir {path} is not a private directory of this user")
    return path


@contextmanager
def _uid_slot(drop_uid: bool) -> Iterator[int | None]:
    """An unprivileged uid no other run (in any process) is using, held by a file lock."""
    if not drop_uid:
        yield None
        return
    uids = _candidate_uids()
    if not uids:
        raise RuntimeError(f"no free uid in {_UID_BASE}..{_UID_BASE + _UID_SLOTS - 1}")
    lock_dir = _lock_dir()
    start = next(_slot_counter)
    fd = -1
    for attempt in range(len(uids) + 1):
        uid = uids[(start + attempt) % len(uids)]
        fd = os.open(lock_dir / f"uid-{uid}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # After a full lap every slot is busy: wait for one.
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if attempt < len(uids) else 0))
            break
        except BlockingIOError:
            os.close(fd)
    try:
        yield uid
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# Making the interpreter reachable for an unprivileged uid


@dataclass(frozen=True)
class _Overlay:
    """``blocker`` (a directory the sandbox uid cannot enter) is covered by a tmpfs in the
    run's mount namespace, with only ``keep`` (absolute paths below it) bound back in."""

    blocker: str
    keep: tuple[str, ...]


_overlays: tuple[_Overlay, ...] | None = None


def _interpreter_overlays() -> tuple[_Overlay, ...]:
    """Where the interpreter's files sit below a directory closed to other users.

    A pyenv Python lives in /root/.pyenv, and /root is 0700: the sandbox uid could not
    even start it. Rather than widening permissions on the host, the run's private mount
    namespace replaces /root by an empty tmpfs with the interpreter bound back in, which
    also hides the rest of root's home from the program.
    """
    global _overlays
    if _overlays is None:
        needed = _interpreter_paths()
        by_blocker: dict[str, set[str]] = {}
        for path in needed:
            parts = Path(path).parts
            for depth in range(2, len(parts)):
                ancestor = os.path.join(*parts[:depth])
                if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                    by_blocker.setdefault(ancestor, set()).add(path)
                    break
        _overlays = tuple(_Overlay(blocker, _topmost(paths)) for blocker, paths in sorted(by_blocker.items()))
    return _overlays


def _interpreter_paths() -> set[str]:
    return {os.path.realpath(p) for p in (
        os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable)),
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}


def _topmost(paths: set[str]) -> tuple[str, ...]:
    """The paths not below another one (binding a directory brings its subdirectories)."""
    return tuple(sorted(p for p in paths if not any(p.startswith(q + os.sep) for q in paths)))


@lru_cache(maxsize=1)
def _interpreter_paths_in_scratch() -> tuple[str, ...]:
    """Interpreter directories under /tmp (a virtualenv in a checkout there), which the
    run's scratch tmpfs would hide; the run binds them back, read-only like the rest."""
    return _topmost({p for p in _interpreter_paths() if p.startswith("/tmp" + os.sep)})


# --------------------------------------------------------------------------------------
# Kernel interfaces without a Python wrapper (resolved once, in the evaluator)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
# mount_setattr's signature: the only system call made through syscall().
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_size_t]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_BIND, _MS_MOVE, _MS_REC, _MS_PRIVATE = 4096, 8192, 16384, 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SYS_MOUNT_SETATTR = 442  # same number on x86_64 and arm64
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


# --------------------------------------------------------------------------------------
# The keeper and the program's own setup (both run in forked children of the evaluator)


@dataclass(frozen=True)
class _Plan:
    """Everything the forked children need, computed in the evaluator beforehand."""

    source: bytes
    limits: Limits
    mode: _Mode
    uid: int | None
    status_fd: int  # the keeper's end of the status pipe (set in the fork server)
    parent_pid: int  # the fork server's pid (set there)
    overlays: tuple[_Overlay, ...]
    scratch_keep: tuple[str, ...]
    cwd: str
    env: dict[str, str]

    def keeper(self) -> None:
        """In a fresh fork of the fork server: become the keeper, fork the program, never
        return (except in the program, which returns here to run ``main.py``)."""
        # Die with the fork server (which dies with the evaluator), and adopt every
        # orphan the program leaves behind.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != self.parent_pid:
            os._exit(1)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        if self.mode.namespaces:
            _check(_libc.unshare(_CLONE_NEWPID), "unshare pid")
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._enter_sandbox()  # an exception here is reported by the fork server's child
            return
        try:
            # Only the status pipe stays open: the program's files are not ours.
            os.closerange(0, self.status_fd)
            os.closerange(self.status_fd + 1, os.sysconf("SC_OPEN_MAX"))
            timed_out, exit_code = _supervise(pid, self.limits.timeout_s - (time.monotonic() - started))
            wall_s = time.monotonic() - started
            os.write(self.status_fd, f"{int(timed_out)} {exit_code} {wall_s:.6f}\n".encode())
        finally:
            os._exit(0)

    def _enter_sandbox(self) -> None:
        """In the program's process, still with the evaluator's privileges: isolate, limit,
        then drop privileges for good."""
        os.setsid()
        if self.mode.namespaces:
            flags = _CLONE_NEWNS | _CLONE_NEWIPC | (0 if self.limits.network else _CLONE_NEWNET)
            _check(_libc.unshare(flags), "unshare")
            self._build_filesystem()
            os.chdir("/tmp")
        self._set_rlimits()
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setresuid, which clears it
        os.close(self.status_fd)

    def _build_filesystem(self) -> None:
        """Private mounts: read-only tree, scratch tmpfs at /tmp, fresh /proc, interpreter overlays."""
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        if self.mode.read_only_root:
            attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY)
            ret = _libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE,
                                ctypes.byref(attr), ctypes.sizeof(attr))
            _check(ret, "mount_setattr")
        owner = f",uid={self.uid},gid={self.uid}" if self.uid is not None else ""
        scratch = 4 * self.limits.max_file_bytes
        # An interpreter (a virtualenv) under /tmp would vanish under the scratch tmpfs:
        # hold it by a file descriptor, mount the tmpfs, bind it back at the same path.
        held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in self.scratch_keep]
        _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={scratch},mode=0700{owner}")
        for path, fd in held:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
            os.close(fd)
        for alias in ("/var/tmp", "/dev/shm"):
            if os.path.isdir(alias):
                _mount("/tmp", alias, None, _MS_BIND)
        for number, overlay in enumerate(self.overlays):
            self._overlay(number, overlay)
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        fd = os.open(f"/tmp/{_SCRIPT}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            view = memoryview(self.source)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    @staticmethod
    def _overlay(number: int, overlay: _Overlay) -> None:
        staged = []
        for index, path in enumerate(overlay.keep):
            stage = f"/tmp/.stage-{number}-{index}"
            os.mkdir(stage, 0o700)
            _mount(path, stage, None, _MS_BIND | _MS_REC)
            staged.append((stage, path))
        _mount("tmpfs", overlay.blocker, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for stage, path in staged:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(stage, path, None, _MS_MOVE)
            os.rmdir(stage)

    def _set_rlimits(self) -> None:
        limits = self.limits
        cpu = math.ceil(limits.timeout_s) + 1
        for which, value in (
            (resource.RLIMIT_AS, limits.memory_mb << 20),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, limits.max_file_bytes),
            (resource.RLIMIT_NOFILE, limits.max_open_files),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else value + 1))
        if self.uid is not None:  # per uid: only meaningful for a uid of its own
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))


def _supervise(pid: int, timeout_s: float) -> tuple[bool, int]:
    """In the keeper: wait for the program, kill it at the timeout, then kill and reap every
    other descendant. Returns (timed_out, exit code in Popen's convention)."""
    timed_out = not _wait_exit(pid, timeout_s)
    # The program is still unreaped here, so its pid and process group cannot be reused.
    for kill in (os.killpg, os.kill):
        with suppress(OSError):
            kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    _kill_and_reap_descendants()
    return timed_out, os.waitstatus_to_exitcode(status)


def _wait_exit(pid: int, timeout_s: float) -> bool:
    """True once ``pid`` has exited (left unreaped), False if ``timeout_s`` passed first."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            return _readable_within(pidfd, timeout_s)
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)
    return True


def _kill_and_reap_descendants() -> None:
    """As a subreaper, the keeper inherits every orphan below it: kill and reap until none is left."""
    me = os.getpid()
    while True:
        for child in _children(me):
            with suppress(OSError):
                os.kill(child, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _children(pid: int) -> list[int]:
    """Pids of the children of the single-threaded process ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
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


__all__ = ["Limits", "RunResult", "isolation_report", "run_python"]
