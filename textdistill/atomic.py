"""Atomic file writes and checksums: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from textdistill.errors import TextDistillError


def write_failed(path: str | Path, error: BaseException) -> TextDistillError:
    """The one-line error for a write that failed (disk full, no permission, read-only folder)."""
    reason = getattr(error, "strerror", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    return TextDistillError(
        f"could not write {str(path)!r} ({reason}); free disk space or fix permissions "
        "(the previous file, if any, is unchanged)"
    )


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except (OSError, SafetensorError) as e:
        raise write_failed(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


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


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_problem(folder: Path, digests: dict[str, str]) -> str | None:
    """None when every file in `digests` (name -> sha256) is in `folder` with that checksum, else what is wrong."""
    for name, expected in digests.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if file_digest(path) != expected:
            return f"{name} does not match its checksum (truncated or corrupt)"
    return None


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    atomic_write(path, lambda tmp: save_file(state_on_cpu(model.state_dict()), str(tmp)))


def state_on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies; a tensor sharing storage with an earlier one (tied LM head and embedding) is
    cloned, since safetensors refuses shared memory. Loading fills both names, which stay tied."""
    out, seen = {}, set()
    for k, v in state.items():
        t = v.detach().contiguous().cpu()
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    model.load_state_dict(load_file(str(path)))
