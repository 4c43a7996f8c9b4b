"""The data directory's lock: one refresh at a time."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import LockHeld


class Locked(LockHeld):
    """Another refresh holds the data directory's lock."""


class RefreshLock:
    """An exclusive lock on the data directory.

    A POSIX record lock (lockf): the kernel releases it when this process dies, and, unlike
    flock, parser processes forked from it do not hold it too.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "refresh.lock"
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to `wait` seconds; Locked (naming the holder's pid) if not."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (BlockingIOError, PermissionError):
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise Locked(f"a refresh is already running (pid {holder})", str(self.path)) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RefreshLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
