"""A memory cgroup per program, where the cgroup tree is writable.

RLIMIT_AS caps each process; a run of many processes (or one filling its tmpfs, or the
kernel memory its files cost) needs a cap on the whole run. The fork server opens its own
memory cgroup once (cgroup v1's memory controller, or cgroup v2 where the memory
controller is delegated to it); each zygote makes a child cgroup and joins it, ahead of
its program, then caps it for the program, and every run of the program inherits it. The fork server names the cgroup
(``thinktune-<fork server pid>-<n>``: the zygote is pid 1 of its own namespace) and
removes it when it reaps the zygote. Where no writable memory cgroup exists (a container without
delegation), ``open_parent`` says why and the runs keep the per-process caps only.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass

PREFIX = "thinktune-"
# The zygote (which joins the cgroup and forks every run) and the run's init are charged
# too: a few MiB of pages they touch after the fork, plus the kernel's objects of the run.
OVERHEAD_BYTES = 64 << 20


@dataclass(frozen=True)
class Parent:
    fd: int  # directory of the fork server's own memory cgroup
    version: int  # 1 or 2
    path: str  # for messages


def open_parent() -> tuple[Parent | None, str]:
    """The fork server's memory cgroup, if children can be made in it; else (None, why)."""
    try:
        found = _own_memory_cgroup()
    except OSError as exc:
        return None, f"cannot read the process's cgroups: {exc}"
    if found is None:
        return None, "no memory cgroup controller is mounted"
    path, version = found
    if version == 2:
        try:
            with open(os.path.join(path, "cgroup.subtree_control")) as f:
                delegated = "memory" in f.read().split()
        except OSError as exc:
            return None, f"cannot read {path}/cgroup.subtree_control: {exc}"
        if not delegated:
            return None, f"cgroup v2 {path} does not delegate the memory controller to its children"
    probe = os.path.join(path, f"{PREFIX}probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"the memory cgroup {path} is not writable here: {exc}"
    return Parent(fd, version, path), ""


def _own_memory_cgroup() -> tuple[str, int] | None:
    own: dict[str, str] = {}  # controller ("" for v2) -> path of this process's cgroup
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                own[controller] = path
    candidates = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            tail = fields[fields.index("-") + 1:]
            fstype, options = tail[0], tail[2].split(",")
            mount_root, mount_point = fields[3], fields[4]
            if fstype == "cgroup" and "memory" in options and "memory" in own:
                candidates.append((1, mount_root, mount_point, own["memory"]))
            elif fstype == "cgroup2" and "" in own:
                candidates.append((2, mount_root, mount_point, own[""]))
    for version, mount_root, mount_point, path in sorted(candidates):
        relative = os.path.relpath(path, mount_root)
        if relative.startswith(".."):
            continue  # this process's cgroup lies outside what the mount shows
        return os.path.normpath(os.path.join(mount_point, relative)), version
    return None


def name(server_pid: int, number: int) -> str:
    return f"{PREFIX}{server_pid}-{number}"


def create_and_join(parent: Parent, name: str) -> None:
    """In a zygote, ahead of its program: a child cgroup, joined (its cap comes with the program)."""
    os.mkdir(name, dir_fd=parent.fd)
    _write(parent, f"{name}/cgroup.procs", "0")


def set_limit(parent: Parent, name: str, limit_bytes: int) -> None:
    """The program's cap on the cgroup: ``limit_bytes`` of memory, swap included."""
    files = (("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") if parent.version == 1
             else ("memory.max", "memory.swap.max"))
    _write(parent, f"{name}/{files[0]}", str(limit_bytes))
    try:
        _write(parent, f"{name}/{files[1]}", str(limit_bytes) if parent.version == 1 else "0")
    except FileNotFoundError:  # no swap accounting: nothing to cap
        pass


def remove(parent: Parent, name: str) -> None:
    """In the fork server, once the zygote is reaped (best effort: a cgroup still in use
    cannot be removed and is swept later)."""
    with suppress(OSError):
        os.rmdir(name, dir_fd=parent.fd)


def sweep(parent: Parent) -> None:
    """Remove the empty cgroups of zygotes that ended without their fork server reaping
    them (one in use cannot be removed: the kernel refuses)."""
    with suppress(OSError):
        for entry in os.listdir(parent.fd):
            if entry.startswith(PREFIX):
                with suppress(OSError):
                    os.rmdir(entry, dir_fd=parent.fd)


def _write(parent: Parent, relative: str, value: str) -> None:
    fd = os.open(relative, os.O_WRONLY | os.O_CLOEXEC, dir_fd=parent.fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
