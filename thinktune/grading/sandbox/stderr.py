"""A run's stderr, as the zygote keeps it (``keeper``)."""

from __future__ import annotations

import itertools
import os


class StderrTail:
    """The program's stderr: a pipe the zygote drains while the run lasts, keeping the last
    ``KEEP`` bytes (where a traceback is) for the evaluator's stderr memfd. A pipe has no
    file size, so no amount of stderr makes a write fail (a memfd past RLIMIT_FSIZE did:
    EFBIG, then exit 120); what is beyond the kept tail is dropped."""

    KEEP = 64 << 10

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._tail = bytearray()

    def drain(self, chunks: int | None = 16) -> bool:
        """Read what is there (at most ``chunks`` reads, so that a flood cannot keep the
        zygote from its timeout; None: all); False at end of file (every write end closed)."""
        for _ in itertools.repeat(None) if chunks is None else range(chunks):
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._tail += chunk
            if len(self._tail) > 2 * self.KEEP:
                del self._tail[:-self.KEEP]
        return True

    def save(self, memfd: int) -> None:
        """Write the kept tail to the evaluator's stderr memfd."""
        view = memoryview(bytes(self._tail[-self.KEEP:]))
        offset = 0
        while offset < len(view):
            offset += os.pwrite(memfd, view[offset:], offset)
