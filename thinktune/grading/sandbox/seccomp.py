"""The system-call filter of every program in the ``contained`` tier.

A solution reads stdin, computes and writes stdout; it never needs the calls below, and
each is a way out of (or around) the other layers: keyrings outlive the run (they belong
to the uid, and uids are reused), user namespaces and mounts rebuild privileges, ptrace
and process_vm_* reach other processes, io_uring, perf_event_open, bpf and userfaultfd
are large kernel attack surfaces, Unix/packet/vsock/netlink sockets reach things the
network namespace does not cover. System V IPC and POSIX message queues outlive the
process that made them (in its IPC namespace): denying them lets every run share one
empty IPC namespace instead of paying for a new one (POSIX semaphores and shared memory,
files in the run's /tmp, still work: multiprocessing needs them). Denied calls fail with EPERM (clone3, whose flags the
filter cannot read, with ENOSYS: the C library then falls back to clone, whose
namespace flags are checked); everything else is allowed.

What programs graded at once share is the root's read-only files (the standard library,
/dev/null, ...): reading them carries nothing, but a lock on one is seen by every other
program (flock, and a POSIX or open-file-description lock read back with F_GETLK), and so
is an open or a read by inotify, fanotify and dnotify (fcntl F_NOTIFY) watches, and a
lease; posix_fadvise(DONTNEED) drops a shared file's pages from the page cache, which
another program can time. None is needed to solve a problem: locks fail with ENOLCK (as
on a file system without locking), the watches, leases and fadvise with EPERM.

libseccomp (through ``pyseccomp``, a ctypes binding) compiles the rules once, in the fork
server, into a classic-BPF program that checks the architecture (other ABIs, such as x32
or i386 calls from an x86_64 process, kill the process); each program installs those
bytes with one ``prctl`` (``kernel.install_seccomp``). Only x86_64 and aarch64 are
supported: elsewhere (or without libseccomp) ``build`` says why and runs go unfiltered.
"""

from __future__ import annotations

import errno
import os

from thinktune.grading.sandbox import kernel

DENIED = (
    "add_key", "request_key", "keyctl",  # kernel keyrings
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",  # namespaces, mounts
    "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "ptrace", "process_vm_readv", "process_vm_writev",  # other processes
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "perf_event_open", "bpf", "userfaultfd",
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",  # System V IPC
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",  # POSIX queues
    "name_to_handle_at", "open_by_handle_at", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "acct", "swapon", "swapoff", "reboot", "quotactl",
    "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark",  # watches on shared files
    "fadvise64",  # dropping a shared file's cached pages
)
# Lock calls, denied with ENOLCK: flock, and fcntl's lock commands (F_GETLK, F_SETLK, F_SETLKW
# and their open-file-description forms F_OFD_*), which on a 64-bit ABI are the only ones.
_LOCK_CALLS = ("flock",)
_F_GETLK, _F_SETLK, _F_SETLKW, _F_OFD_GETLK, _F_OFD_SETLK, _F_OFD_SETLKW = 5, 6, 7, 36, 37, 38
_FCNTL_LOCKS = (_F_GETLK, _F_SETLK, _F_SETLKW, _F_OFD_GETLK, _F_OFD_SETLK, _F_OFD_SETLKW)
_F_SETLEASE, _F_GETLEASE, _F_NOTIFY = 1024, 1025, 1026  # leases and dnotify: EPERM
_AF_INET, _AF_INET6 = 2, 10
_SOCK_RAW, _SOCK_PACKET = 3, 10
_NAMESPACE_FLAGS = (kernel.CLONE_NEWNS, kernel.CLONE_NEWCGROUP, kernel.CLONE_NEWUTS, kernel.CLONE_NEWIPC,
                    kernel.CLONE_NEWUSER, kernel.CLONE_NEWPID, kernel.CLONE_NEWNET)
_LOW32 = 0xFFFFFFFF


def build() -> tuple[bytes | None, str]:
    """The filter as BPF bytes, or (None, why it is unavailable here)."""
    if kernel.MACHINE not in kernel.SUPPORTED_MACHINES:
        return None, f"no seccomp filter on {kernel.MACHINE} (written for {', '.join(kernel.SUPPORTED_MACHINES)})"
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: libseccomp.so not found
        return None, f"no seccomp filter: libseccomp is unavailable ({exc})"
    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    rules.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENIED:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:  # negative: not a call on this architecture
            rules.add_rule(deny, name)
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    no_locks = sc.ERRNO(errno.ENOLCK)
    for name in _LOCK_CALLS:
        rules.add_rule(no_locks, name)
    # fcntl's command is an int: compared on the low 32 bits, as the kernel reads it
    for command in _FCNTL_LOCKS:
        rules.add_rule(no_locks, "fcntl", sc.Arg(1, sc.MASKED_EQ, _LOW32, command))
    for command in (_F_SETLEASE, _F_GETLEASE, _F_NOTIFY):
        rules.add_rule(deny, "fcntl", sc.Arg(1, sc.MASKED_EQ, _LOW32, command))
    for flag in _NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # socket(): only AF_INET and AF_INET6 (no interface is up in the run's network
    # namespace), never raw or packet sockets. The domain is compared on its low 32 bits
    # (what the kernel reads), so high bits set by a caller do not slip past the filter.
    for domain in (0, 1, *range(3, 10)):
        rules.add_rule(deny, "socket", sc.Arg(0, sc.MASKED_EQ, _LOW32, domain))
    rules.add_rule(deny, "socket", sc.Arg(0, sc.GE, _AF_INET6 + 1))
    for kind in (_SOCK_RAW, _SOCK_PACKET):
        rules.add_rule(deny, "socket", sc.Arg(1, sc.MASKED_EQ, 0xF, kind))
    out = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with open(out, "wb", closefd=False) as f:
            rules.export_bpf(f)
        return os.pread(out, 1 << 20, 0), ""
    finally:
        os.close(out)
