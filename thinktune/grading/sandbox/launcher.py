"""The evaluator's handle on its fork server (the server's side is ``forkserver``): the
process's lifecycle, apart from the per-program protocol of ``client``.

One fork server per evaluator process and tier, started on first use as a fresh
interpreter (found on PATH, so that no command line a program can read names the
checkout), restarted if it died, and started anew in a forked evaluator. A request hands
it a program's plan and two file descriptors (the source's memfd, the zygote's end of
its connection) and gets the zygote's pid back; closing the socket ends it, and it cleans
up after itself (its spare zygote, their memory cgroups).
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from thinktune.grading.sandbox import forkserver, keeper
from thinktune.grading.sandbox.limits import SandboxError
from thinktune.grading.sandbox.tiers import Tier

log = logging.getLogger("thinktune.grading.sandbox")

BOOT_TIMEOUT_S = 60.0
# The fork server's interpreter flags, which its programs inherit: -s: no user site;
# -P: no script or current directory on sys.path. (-I would also ignore PYTHONHASHSEED.)
_PYTHON_ARGS = ("-s", "-P")
_REPO_ROOT = str(Path(__file__).resolve().parents[3])


def program_env() -> dict[str, str]:
    """A minimal environment. PYTHONHASHSEED=0 makes set/dict-of-str orders, and so the
    graded output of programs that print them, identical from run to run. (HOME and
    TMPDIR: the run's working directory, set in the program's process.)"""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class LostKeeper(Exception):
    """A zygote (or the fork server) went away without reporting: retried once."""


class ForkServer:
    """The evaluator's handle on its fork server of one tier: started on first use,
    restarted if it died; a forked evaluator starts its own."""

    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.features: dict = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._owner = os.getpid()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def spawn(self, plan: keeper.Plan, source_fd: int, conn_fd: int) -> int:
        """Fork a zygote for one program; returns its pid."""
        payload = plan.to_json()
        with self._lock:
            if self._owner != os.getpid():
                self._proc, self._sock, self._owner = None, None, os.getpid()
            for attempt in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    socket.send_fds(self._sock, [len(payload).to_bytes(8, "big")], [source_fd, conn_fd])
                    self._sock.sendall(payload)
                    return int(_recv_exact(self._sock, 16))
                except (OSError, ValueError) as exc:
                    log.warning("sandbox fork server (%s) failed: %s; %s", self.tier.name, exc,
                                "restarting it" if attempt == 0 else "giving up")
                    self.stop()
            raise LostKeeper("the sandbox fork server does not answer")

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The interpreter is found on PATH, so that no command line a program can read
        # (/proc/1/cmdline is its zygote's) names the checkout.
        interpreter = os.path.dirname(sys.executable)
        env = {**program_env(), "PATH": f"{interpreter}:{program_env()['PATH']}", "PYTHONPATH": _REPO_ROOT}
        try:
            self._proc = subprocess.Popen(
                [os.path.basename(sys.executable), *_PYTHON_ARGS, "-c", forkserver.BOOT, str(theirs.fileno()),
                 self.tier.name],
                executable=sys.executable,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                pass_fds=(theirs.fileno(),), env=env, cwd="/",
            )
        finally:
            theirs.close()
        self._sock = ours
        line = _read_line(ours, BOOT_TIMEOUT_S)
        if not line or not line.startswith(forkserver.READY):
            self.stop()
            reason = line[len(keeper.SETUP_FAILED):].decode(errors="replace") if line else "no answer"
            raise SandboxError(f"sandbox tier {self.tier.name!r} cannot be set up: {reason}")
        self.features = json.loads(line[len(forkserver.READY):])

    def stop(self) -> None:
        """End the fork server: it sees the end of its socket and cleans up (its spare zygote,
        their memory cgroups); killed if it does not within a few seconds."""
        if self._sock is not None:
            self._sock.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = self._sock = None


servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def server(tier: Tier) -> ForkServer:
    with _servers_lock:
        if tier.name not in servers:
            servers[tier.name] = ForkServer(tier)
        return servers[tier.name]


def fork_server_features(tier: Tier) -> dict:
    """What the tier's fork server could set up (seccomp, memory cgroup, notes on what not)."""
    return server(tier).features


def _read_line(sock: socket.socket, timeout_s: float) -> bytes | None:
    """One report line (without its newline): b"" at end of file, None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(max(1, math.ceil(remaining * 1000))):
            if deadline - time.monotonic() <= 0:
                return None
            continue
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            return b"".join(chunks).rstrip(b"\n") if chunks else b""
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)[:-1]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
