"""Per-program uids: every program (in any evaluator process) runs as an unprivileged uid no
other running program has, held by a file lock, so RLIMIT_NPROC is per program and one
program's fork bomb cannot starve another."""

from __future__ import annotations

import fcntl
import grp
import itertools
import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from thinktune.grading.sandbox.limits import SandboxError

# Programs that overlap (threads, or several evaluator processes) each get their own uid,
# so RLIMIT_NPROC is per program and one program's fork bomb cannot starve another.
UID_BASE = 60000
UID_SLOTS = 512
_slot_counter = itertools.count()
_free_uids: list[int] | None = None


def _uid_is_unused(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return False
        except KeyError:
            pass
    return True


def _candidate_uids() -> list[int]:
    global _free_uids
    if _free_uids is None:
        _free_uids = [u for u in range(UID_BASE, UID_BASE + UID_SLOTS) if _uid_is_unused(u)]
    return _free_uids


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"thinktune-sandbox-{os.geteuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(f"sandbox lock dir {path} is not a private directory of this user")
    return path


@contextmanager
def uid_slot(drop_uid: bool) -> Iterator[int | None]:
    """An unprivileged uid no other program (in any process) is using, held by a file lock."""
    if not drop_uid:
        yield None
        return
    uids = _candidate_uids()
    if not uids:
        raise SandboxError(f"no free uid in {UID_BASE}..{UID_BASE + UID_SLOTS - 1}")
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
