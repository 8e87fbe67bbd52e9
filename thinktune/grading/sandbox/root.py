"""The program's file system in the ``contained`` tier: a root assembled from an allowlist.

The fork server builds it once, at start, in a mount namespace of its own, and moves
into it with pivot_root (the host's tree is then detached, not just hidden): a read-only
tmpfs holding only

- the interpreter's standard library and binary (its ``site-packages`` masked by an empty
  directory: no third-party package, no checkout installed into an environment), the
  directories of the shared libraries the interpreter has loaded (the C library and
  friends) and the dynamic loader, each bound read-only at its host path (symlinks on
  the way recreated as symlinks);
- the allowlisted third-party packages (``packages``: numpy) and their bundled shared
  libraries, bound read-only under ``PACKAGES_DIR``, a neutral path (not their host
  path, which may lie under /tmp or inside the checkout);
- a minimal /etc (ld.so.cache, localtime, a passwd and group naming root and nobody);
- /dev/null, /dev/zero, /dev/urandom, /dev/random and the /dev/fd, /dev/std* links;
- empty /proc and /tmp, where each zygote mounts a proc of its program's PID namespace
  (``mount_proc``) and each run a private tmpfs capped in size and inodes
  (``mount_scratch``); /var/tmp and /dev/shm are links to /tmp.

No repository, data, home directory, other checkout, virtualenv (nothing else of its
site-packages) or host socket is in it.
Zygotes and runs are forked from the fork server, so they start in this root.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from dataclasses import dataclass, field

from thinktune.grading.sandbox import kernel
from thinktune.grading.sandbox.limits import SCRATCH_INODES, Limits

# Where the root is put together, in the fork server's own mount namespace (the host's
# /tmp is hidden there from then on, which is why every host path is opened first).
_STAGING = "/tmp"
SCRATCH = "/tmp"  # each run's private tmpfs, also its working directory
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
_DEV_LINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
              "/dev/stderr": "/proc/self/fd/2", "/dev/shm": "/tmp", "/var/tmp": "/tmp"}
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
# Where the allowlisted packages are bound: the first of these that no host directory
# bound whole covers (a system keeping its C library directly in /usr/lib binds /usr/lib).
PACKAGES_DIRS = ("/usr/lib/thinktune-packages", "/opt/thinktune-packages")


@dataclass
class Plan:
    """What the root holds: host paths to bind, links, generated files, masked directories."""

    binds: list[str] = field(default_factory=list)  # host paths, bound at the same path
    links: dict[str, str] = field(default_factory=dict)  # path -> link target
    files: dict[str, str] = field(default_factory=lambda: {"/etc/passwd": _PASSWD, "/etc/group": _GROUP})
    masks: list[str] = field(default_factory=list)  # directories inside binds shown empty
    mounts: dict[str, str] = field(default_factory=dict)  # path in the root -> host directory bound there
    packages_dir: str | None = None  # holds the allowed packages (None: none installed)
    dirs: list[str] = field(default_factory=lambda: ["/proc", "/tmp", "/var", "/dev"])
    interpreter: str = ""

    def expose(self, path: str) -> None:
        """Make ``path`` reachable as on the host: directories and symlinks on the way are
        recreated (a link's target is exposed in turn), the last component is bound."""
        parts = [p for p in os.path.normpath(path).split("/") if p]
        current = "/"
        for index, part in enumerate(parts):
            host = os.path.join(current, part)
            if self._covered(host):
                return
            info = os.lstat(host)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(host)
                self.links[host] = target
                rest = parts[index + 1:]
                self.expose(os.path.normpath(os.path.join(current, target, *rest)))
                return
            if index == len(parts) - 1:
                self.binds.append(host)
            current = host

    def _covered(self, path: str) -> bool:
        return any(path == b or path.startswith(b.rstrip("/") + "/") for b in self.binds)

    def _free(self, path: str) -> bool:
        """Whether ``path`` can be made in the staging tmpfs: neither it nor a directory on
        its way is bound from the host or recreated as a link (which could lead out of it)."""
        parts = os.path.normpath(path).split("/")
        return not self._covered(path) and not any("/".join(parts[:i]) in self.links for i in range(2, len(parts) + 1))


def plan(packages: dict[str, str] | None = None) -> Plan:
    """The allowlist for this interpreter (in the fork server, before ``enter``), with
    ``packages`` (``packages.locate``'s entries: name -> host directory) under ``PACKAGES_DIR``."""
    root = Plan()
    bases = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}

    def under_base(path: str) -> bool:
        return any(path == b or path.startswith(b + "/") for b in bases)

    # The standard library: the module search path entries of the base installation (a
    # virtualenv's own site-packages is not one of them), with site-packages masked.
    stdlib = [p for p in map(os.path.realpath, sys.path)
              if under_base(p) and os.path.isdir(p) and "site-packages" not in p.split("/")]
    interpreter = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    for path in (*stdlib, interpreter):
        root.expose(path)
    if any(p == "/tmp" or p.startswith("/tmp/") for p in root.binds):
        raise OSError(f"the interpreter lies under /tmp ({interpreter}), which every run's private /tmp hides")
    root.interpreter = interpreter
    root.masks = [os.path.join(p, "site-packages") for p in stdlib if os.path.isdir(os.path.join(p, "site-packages"))]
    # Shared libraries: the interpreter's own (libpython) one by one, the system's by
    # directory (an extension module imported later needs its neighbours: libssl, ...).
    for library in sorted(_mapped_libraries()):
        if under_base(library):
            root.expose(library)
        elif not os.path.realpath(library).startswith(os.path.realpath(sys.prefix) + "/"):
            root.expose(os.path.dirname(library))
    loader = _elf_interpreter(interpreter)
    for path in (loader, "/etc/ld.so.cache", "/etc/localtime", *_DEVICES):
        if path and os.path.exists(path):
            root.expose(path)
    for link, target in _DEV_LINKS.items():
        root.links.setdefault(link, target)
    if packages:
        root.packages_dir = next((d for d in PACKAGES_DIRS if root._free(d)), None)
        if root.packages_dir is None:
            raise OSError(f"no place for the allowed packages: host directories are bound at {PACKAGES_DIRS}")
        root.mounts = {os.path.join(root.packages_dir, name): host for name, host in packages.items()}
    return root


def enter(root: Plan) -> None:
    """Build the root and pivot into it; the caller is root and alone in its process."""
    kernel.unshare(kernel.CLONE_NEWNS)
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    # Hold every host path before the staging tmpfs hides /tmp.
    sources = {**{path: path for path in root.binds}, **root.mounts}  # path in the root -> host path
    held: dict[str, int] = {}
    try:
        for path, host in sources.items():
            held[path] = os.open(host, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
        kernel.mount("tmpfs", _STAGING, "tmpfs", kernel.MS_NOSUID, "size=1m,nr_inodes=4096,mode=0755")
        for path in root.dirs:
            os.makedirs(_STAGING + path, mode=0o755, exist_ok=True)
        for path, text in root.files.items():
            os.makedirs(os.path.dirname(_STAGING + path), mode=0o755, exist_ok=True)
            with open(_STAGING + path, "w") as f:
                f.write(text)
        for path in sorted(root.links):
            os.makedirs(os.path.dirname(_STAGING + path), mode=0o755, exist_ok=True)
            os.symlink(root.links[path], _STAGING + path)
        for path in sorted(held):
            _bind(held[path], _STAGING + path)
        for path in root.masks:
            kernel.mount("tmpfs", _STAGING + path, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, "size=4k,nr_inodes=1,mode=0555")
            kernel.mount(None, _STAGING + path, None, kernel.MS_REMOUNT | kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV)
        kernel.mount(None, _STAGING, None, kernel.MS_REMOUNT | kernel.MS_RDONLY | kernel.MS_NOSUID)
    finally:
        for fd in held.values():
            os.close(fd)
    os.chdir(_STAGING)
    kernel.pivot_root(".", ".")
    kernel.umount(".", kernel.MNT_DETACH)
    os.chdir("/")


def _bind(source_fd: int, target: str) -> None:
    """Bind the held host path at ``target``, read-only (devices keep working: no nodev)."""
    mode = os.fstat(source_fd).st_mode
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if stat.S_ISDIR(mode):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    kernel.mount(f"/proc/self/fd/{source_fd}", target, None, kernel.MS_BIND)
    flags = kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID
    kernel.mount(None, target, None, flags | (0 if stat.S_ISCHR(mode) else kernel.MS_NODEV))


def mount_proc() -> None:
    """In a zygote, pid 1 of its program's PID namespace, in a mount namespace of its own:
    a /proc that shows the program's processes only."""
    kernel.mount("proc", "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)


def mount_scratch(limits: Limits, uid: int | None) -> None:
    """Before each run, in the zygote's mount namespace: a fresh private /tmp (tmpfs capped
    in size and inodes, owned by the program's uid)."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    kernel.mount("tmpfs", SCRATCH, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                 f"size={limits.scratch_bytes},nr_inodes={SCRATCH_INODES},mode=0700{owner}")


def unmount_scratch() -> None:
    """After each run (every process of it is gone): the run's /tmp and all it held."""
    kernel.umount(SCRATCH, kernel.MNT_DETACH)


def _mapped_libraries() -> set[str]:
    """Shared objects this process has mapped (the interpreter's libraries and the loader)."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and ".so" in os.path.basename(fields[5]):
                path = fields[5].rstrip("\n")
                if os.path.isfile(path):
                    found.add(path)
    return found


def _elf_interpreter(binary: str) -> str | None:
    """The dynamic loader a 64-bit ELF executable names (PT_INTERP), needed to run it again."""
    with open(binary, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return None
        order = "<" if header[5] == 1 else ">"
        phoff = struct.unpack_from(order + "Q", header, 32)[0]
        phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            p_type, _, p_offset, _, _, p_filesz = struct.unpack(order + "IIQQQQ", f.read(40))
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return None
