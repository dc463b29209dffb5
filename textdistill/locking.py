"""OS file locks that two processes (or two runs) take before sharing a folder.

A lock is `fcntl.flock` on a small file: the kernel releases it when the holder exits, however it exits
(SIGKILL and power loss included), so a lock never outlives its process and needs no expiry or clean-up.
The holder writes its pid into the file, so whoever finds the lock taken can say which process holds it.

Lock files are never deleted: a process that opened the file before its removal could lock the removed
copy while another locks a new one, and both would believe they hold it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("textdistill")


class FileLock:
    """An exclusive lock held on `path` until `release()` (or the process ends)."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _record_holder(fd: int) -> None:
    """Write this process's pid into the lock file, for the error message of whoever finds it taken."""
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)


def try_lock(path: str | Path) -> FileLock | None:
    """The lock on `path` if no other holder has it, else None (never waits)."""
    path = Path(path)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    _record_holder(fd)
    return FileLock(path, fd)


def wait_lock(path: str | Path, what: str) -> FileLock:
    """The lock on `path`, waiting for the holder to finish (and saying so) when another process has it."""
    path = Path(path)
    lock = try_lock(path)
    if lock is not None:
        return lock
    log.info("waiting for %s, which is building %s", holder(path), what)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    _record_holder(fd)
    return FileLock(path, fd)


@contextmanager
def locked(path: str | Path, what: str) -> Iterator[FileLock]:
    """`wait_lock` for the body of a `with` block."""
    lock = wait_lock(path, what)
    try:
        yield lock
    finally:
        lock.release()


def holder(path: str | Path) -> str:
    """Who holds the lock on `path`, as recorded by the holder: 'process 1234 on host' or 'another process'."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        where = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
        return f"process {int(info['pid'])}{where}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"  # the holder has opened the file but not yet written its pid
