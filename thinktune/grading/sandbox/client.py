"""The evaluator's side of a program: ``Program`` and ``run_python`` (the request and
report protocol with a program's zygote; the fork server that forks it: ``launcher``).

The evaluator never waits on untrusted processes and never holds anything of theirs but
memfds: per program a zygote (through the fork server), per run three memfds (stdin,
stdout, stderr) sent to it and one report line back.
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, suppress
from typing import Self

from thinktune.grading.sandbox import forkserver, keeper
from thinktune.grading.sandbox.launcher import BOOT_TIMEOUT_S, LostKeeper, fork_server_features, program_env, server
from thinktune.grading.sandbox.limits import Limits, RunResult, SandboxError
from thinktune.grading.sandbox.tiers import CONTAINED, GAPS, PLAIN, UID_ONLY, Tier
from thinktune.grading.sandbox.uids import uid_slot

__all__ = ["Program", "fork_server_features", "run_python"]

log = logging.getLogger("thinktune.grading.sandbox")


# The evaluator waits this much longer than the timeout for a run's report: the zygote
# enforces the timeout itself, this only guards against a lost or stuck keeper.
_KEEPER_GRACE_S = 10.0
# A zygote's compile of its program may take the timeout and this much more (a busy
# machine); past that, the runs compile it themselves, under their timeout.
_COMPILE_GRACE_S = 0.5
_STDERR_KEEP = 64 << 10


class _CompileEnded(LostKeeper):
    """A zygote ended (or ran past the timeout) while compiling its program: the program's
    own text did it (a compile that crashes or takes too long), so its runs compile it
    themselves, under their limits, and get a verdict for it. Not counted as a lost keeper."""


_END = object()


class Program:
    """One program, ready to run on many inputs: compiled once by its zygote, every run
    forked from it and isolated from every other run. ``preamble``: trusted code (a
    grader's imports or harness, never the program's, and nothing secret: the fork server
    keeps it compiled for the programs after) that the zygote runs once, in the
    ``__main__`` every run of the program then starts from. Use as a context manager (or
    call ``close``), from one thread at a time."""

    def __init__(self, source: str, limits: Limits = Limits(), *, preamble: str = "",  # noqa: B008
                 _tier: Tier | None = None) -> None:
        if not isinstance(source, str) or not isinstance(preamble, str):
            raise TypeError("source and preamble must be str")
        self._source = _encode(source)
        self._preamble = preamble
        self._limits = limits
        self._tier = _tier or selected_tier()
        self._stack = ExitStack()
        self._uid = self._stack.enter_context(uid_slot(self._tier.drop_uid))
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._ready = False
        self._buffer = b""
        self._compile_in_zygote = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()

    def close(self) -> None:
        """End the zygote (it sees the connection close) and free the program's uid."""
        self._drop_zygote(kill=False)
        self._stack.close()

    def run(self, stdin: str = "") -> RunResult:
        """Run the program with ``stdin`` as its standard input. Raises ``SandboxError``
        only when the sandbox itself fails (a keeper lost twice, a refused setup)."""
        runs = self.runs([stdin])
        try:
            return next(runs)
        finally:
            runs.close()

    def runs(self, stdins: Iterable[str]) -> Iterator[RunResult]:
        """The program's result on each stdin in turn. A run is sent to the zygote only once
        the caller asks for its result, after it has judged the previous one: no run is
        under way while another's verdict is decided, so none starts or ends because of
        it (queued ahead, a failed test's next run was killed within milliseconds while a
        passed test's ran on, which a partner program could watch). Leaving the loop early
        (a failed test) ends the zygote between runs (the next run starts a new one)."""
        inputs = iter(stdins)
        pending: deque[tuple[bytes, list[int]]] = deque()  # sent, not yet reported
        exhausted, lost_once = False, False
        try:
            while True:
                try:
                    for data, fds in pending:  # after a lost keeper: send again to the new one
                        if not fds:
                            fds.extend(self._send(data))
                    while not exhausted and not pending:
                        stdin = next(inputs, _END)
                        if stdin is _END:
                            exhausted = True
                        elif not isinstance(stdin, str):
                            raise TypeError("stdin must be str")
                        else:
                            pending.append((_encode(stdin), []))
                            pending[-1][1].extend(self._send(pending[-1][0]))
                    if not pending:
                        return
                    result = self._receive(pending[0][1])
                except LostKeeper as exc:
                    self._drop_zygote(kill=True)
                    if isinstance(exc, _CompileEnded):
                        log.info("%s; its runs compile it themselves", exc)
                    elif lost_once:
                        raise SandboxError(f"sandbox keeper lost twice, last: {exc}") from None
                    else:
                        lost_once = True
                        log.warning("sandbox keeper lost (%s); running the test again with a new one", exc)
                    for _, fds in pending:  # sent to the lost zygote
                        _close_all(fds)
                        fds.clear()
                    continue
                _close_all(pending.popleft()[1])
                lost_once = False
                yield result
        finally:
            if pending:  # the zygote sees the end of the connection and drops the queued runs
                self._drop_zygote(kill=False)
                for _, fds in pending:
                    _close_all(fds)

    def _start_zygote(self) -> None:
        plan = keeper.Plan(limits=self._limits, contained=self._tier.contained, uid=self._uid, env=program_env(),
                           compile=self._compile_in_zygote, preamble=self._preamble)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        source = _memfd("source", self._source)
        try:
            self._pid = server(self._tier).spawn(plan, source, theirs.fileno())
        except LostKeeper:
            ours.close()
            raise
        finally:
            os.close(source)
            theirs.close()
        self._sock, self._ready, self._buffer = ours, False, b""

    def _send(self, stdin: bytes) -> list[int]:
        """Queue one run: its stdin, stdout and stderr memfds go to the zygote."""
        if self._sock is None:
            self._start_zygote()
        fds = [_memfd("stdin", stdin), _memfd("stdout"), _memfd("stderr")]
        try:
            socket.send_fds(self._sock, [b"R"], fds)
        except OSError as exc:
            _close_all(fds)
            self._raise_setup_failure()
            raise LostKeeper(f"zygote {self._pid}: {exc}") from None
        return fds

    def _raise_setup_failure(self) -> None:
        """A zygote that refused its setup said why, then left: a send to it can fail before its
        report is read. Read what it left; a setup failure is reported as one, not as a lost keeper."""
        if self._ready:
            return
        while (line := self._next_line(1.0)) and line.strip() in (forkserver.COMPILING.strip(),
                                                                   forkserver.COMPILED.strip()):
            pass
        if line and line.startswith(keeper.SETUP_FAILED):
            self._drop_zygote(kill=True)
            raise SandboxError(f"sandbox setup failed: {line[len(keeper.SETUP_FAILED):].decode(errors='replace')}")

    def _receive(self, fds: list[int]) -> RunResult:
        """The report of the oldest queued run, with its outputs."""
        limits = self._limits
        if not self._ready:
            line = self._next_line(BOOT_TIMEOUT_S)
            if line == forkserver.COMPILING:  # the compile gets the test's timeout
                line = self._next_line(limits.timeout_s + _COMPILE_GRACE_S)
                if line != forkserver.COMPILED:
                    self._compile_in_zygote = False
                    raise _CompileEnded(f"zygote {self._pid} ended or ran past the timeout while compiling the "
                                        f"program ({line!r})")
                line = self._next_line(BOOT_TIMEOUT_S)
            if line and line.startswith(keeper.SETUP_FAILED):
                self._drop_zygote(kill=True)
                raise SandboxError(f"sandbox setup failed: {line[len(keeper.SETUP_FAILED):].decode(errors='replace')}")
            if line is None or line.strip() != forkserver.READY.strip():
                raise LostKeeper(f"zygote {self._pid} did not start ({line!r})")
            self._ready = True
        line = self._next_line(limits.timeout_s + _KEEPER_GRACE_S)
        if line is None:
            raise LostKeeper(f"zygote {self._pid} is stuck")
        if line.startswith(keeper.SETUP_FAILED):
            self._drop_zygote(kill=True)
            raise SandboxError(f"sandbox setup failed: {line[len(keeper.SETUP_FAILED):].decode(errors='replace')}")
        try:
            tag, flag, code, wall = line.split()
            if tag != b"ok":
                raise ValueError
            timed_out, exit_code, wall_s = flag == b"1", int(code), float(wall)
        except ValueError:
            raise LostKeeper(f"zygote {self._pid} ended with report {line!r}") from None
        stdout, stdout_over = _read_head(fds[1], limits.max_output_bytes)
        return RunResult(
            exit_code=None if timed_out else exit_code,
            stdout=stdout, stderr=_read_tail(fds[2], _STDERR_KEEP), timed_out=timed_out,
            output_limit_exceeded=stdout_over, wall_s=wall_s,
        )

    def _next_line(self, timeout_s: float) -> bytes | None:
        """The zygote's next line: None after ``timeout_s``, b"" at end of file."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout_s
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not poller.poll(max(1, math.ceil(remaining * 1000))):
                continue
            try:
                chunk = self._sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return b""
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _drop_zygote(self, kill: bool) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if kill and self._pid is not None:
            with suppress(OSError):
                os.killpg(self._pid, signal.SIGKILL)
        self._pid, self._ready, self._buffer = None, False, b""


def run_python(source: str, stdin: str = "", limits: Limits = Limits()) -> RunResult:  # noqa: B008
    """Run ``source`` as ``main.py`` with ``stdin`` as its standard input, isolated."""
    if not isinstance(source, str) or not isinstance(stdin, str):
        raise TypeError("source and stdin must be str")
    with Program(source, limits) as program:
        return program.run(stdin)


# --------------------------------------------------------------------------------------
# Helpers


def _encode(text: str) -> bytes:
    """UTF-8, passing lone surrogates through: a program that is not valid UTF-8 fails to
    compile in the sandbox instead of raising here."""
    return text.encode("utf-8", errors="surrogatepass")


def _memfd(name: str, data: bytes = b"") -> int:
    """An anonymous file (no path anyone could find), holding ``data``, offset 0."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _read_head(fd: int, cap: int) -> tuple[str, bool]:
    """The first ``cap`` bytes of ``fd`` as text, and whether it held more."""
    size = os.fstat(fd).st_size
    return _pread_all(fd, min(size, cap), 0).decode("utf-8", errors="replace"), size > cap


def _read_tail(fd: int, cap: int) -> str:
    """The last ``cap`` bytes of ``fd`` as text."""
    size = os.fstat(fd).st_size
    start = max(0, size - cap)
    return _pread_all(fd, size - start, start).decode("utf-8", errors="replace")


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


# --- which tier this machine gives: probed once per process, by running a program ---------

_tier_lock = threading.Lock()
_tier: Tier | None = None


def selected_tier() -> Tier:
    """The strongest tier whose probe run behaves; probed once per process."""
    global _tier
    with _tier_lock:
        if _tier is None:
            candidates = [CONTAINED, UID_ONLY] if os.geteuid() == 0 else []
            _tier = next((t for t in candidates if _probe(t)), PLAIN)
            log_tier(_tier)
        return _tier


def isolation_report() -> dict[str, bool]:
    """Which isolation features runs get on this machine (probed once), for logs and the README."""
    tier = selected_tier()
    features = fork_server_features(tier) if tier.contained else {}
    contained = tier.contained
    return {
        "rlimits": True,
        "new_session": True,
        "subreaper_cleanup": True,
        "no_new_privs": True,
        "unprivileged_uid": tier.drop_uid,
        "pid_namespace": contained,
        "init_process": contained,
        "network_namespace": contained,
        "ipc_namespace": contained,
        "mount_namespace": contained,
        "allowlist_root": contained,
        "private_tmp": contained,
        "seccomp": bool(features.get("seccomp")),
        "memory_cgroup": bool(features.get("memory_cgroup")),
    }


def log_tier(tier: Tier) -> None:
    log.info("sandbox tier: %s", tier.name)
    if tier.name in GAPS:
        log.warning(GAPS[tier.name])
    features = fork_server_features(tier)
    if tier.contained:
        for note in features.get("notes", []):
            log.warning("sandbox tier 'contained' without one layer here: %s", note)
    for note in features.get("package_notes", []):
        log.warning("sandbox: %s", note)


_PROBE = """\
import os, sys
with open("probe", "w") as f:
    f.write(sys.stdin.read())
print(sys.version, sys.prefix, os.getuid() != 0, open("probe").read())
"""


def _probe(tier: Tier) -> bool:
    """True when a trivial program runs correctly (same interpreter, uid, stdin, cwd) in ``tier``."""
    expected = f"{sys.version} {sys.prefix} {tier.drop_uid or os.getuid() != 0} ok\n"
    try:
        with Program(_PROBE, Limits(timeout_s=20), _tier=tier) as program:
            result = program.run("ok")
    except (OSError, SandboxError) as exc:
        log.info("sandbox tier %s unavailable: %s", tier.name, exc)
        return False
    if result.ok and result.stdout == expected:
        return True
    log.info("sandbox tier %s unavailable: probe gave %r / %r", tier.name, result.stdout, result.stderr[-500:])
    return False
