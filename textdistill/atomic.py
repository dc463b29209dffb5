"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from textdistill.errors import TextDistillError


def write_failed(path: str | Path, error: BaseException) -> TextDistillError:
    """The one-line error for a write that failed (disk full, no permission, read-only folder)."""
    reason = getattr(error, "strerror", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    return TextDistillError(
        f"could not write {str(path)!r} ({reason}); free disk space or fix permissions "
        "(the previous file, if any, is unchanged)"
    )


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    The file gets the permissions of any new file (0666 less the umask), not a temporary file's 0600, so a
    cache or a model folder shared between users stays readable by them; also when `write` makes a file of
    its own in place of the temporary one (safetensors makes its files 0600)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_temporary(path)
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(tmp)
        os.chmod(tmp, mode)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, SafetensorError) as e:
        raise write_failed(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def new_temporary(path: Path) -> Path:
    """A new empty file beside `path`, named for this process, with the usual permissions."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def usual_permissions(folder: Path) -> None:
    """Give every file directly in `folder` the permissions of a new file (0666 less the umask): for folders
    a library wrote, whose safetensors weights it makes 0600, unreadable to a group sharing the folder."""
    probe = new_temporary(folder / "permissions")
    try:
        mode = stat.S_IMODE(os.stat(probe).st_mode)
    finally:
        probe.unlink()
    for f in folder.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, mode)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, value: dict) -> None:
    """`value` as indented JSON, written atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(value, indent=2), encoding="utf-8"))
