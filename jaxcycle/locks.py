"""One writer at a time: an advisory lock on a training workdir or a dataset being written.

`ExclusiveLock(path, what)` holds an exclusive `flock` on the file `path` (created if need
be) while held, and records the holder (pid, host, start time) in it. A
second process asking for the same lock gets `LockedError` at once, naming the holder. The
operating system drops the lock when its process ends, however it ends, so a run killed with
SIGKILL leaves no stale lock behind: the next start simply takes it (its lock file stays, and
is reused). A holder that ends normally removes the lock file; a process that locked the file
just as it was removed sees that it no longer has that name and starts again, so two
processes never hold two files of one name.

Locks are local to a machine: on a network filesystem without flock support, two machines can
still write one workdir together.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class LockedError(RuntimeError):
    """Another process holds the lock."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')} (since {since})"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class ExclusiveLock:
    """The lock file `path` held for `what` (e.g. "training workdir runs/x"): `acquire` (or
    `with`) takes it or raises LockedError naming the process that holds it; `release`
    lets it go (and is harmless when not held)."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def acquire(self) -> ExclusiveLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockedError(
                    f"{self.what} is in use by {_holder(self.path)}; wait for it to finish or "
                    f"stop it (lock file {self.path})"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its last holder removed the file after we opened it: again
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Removes the lock file, then lets the lock go."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
