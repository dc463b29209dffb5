"""What a folder holds, to prove a command changed nothing outside its own folder; and a second process
that holds a folder textdistill owns (spawned, so it imports only this light module)."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Every path under `folder` except `skip` and what is under it: a file's sha256, or 'dir'. A lock file
    counts by its presence: it records its latest holder, which any command that looks in may be."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if skip is not None and (path == skip or Path(skip) in path.parents):
            continue
        rel = str(path.relative_to(folder))
        if path.is_dir():
            out[rel] = "dir"
        elif path.name.endswith(".lock"):
            out[rel] = "lock"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _hold(path: str, kind: str, ready) -> None:
    import time

    from textdistill.ownership import OwnedFolder

    folder = OwnedFolder.open(path, kind, resume=Path(path).is_dir())
    ready.set()
    time.sleep(300)  # until killed
    folder.close()


def start_holder(path: Path, kind: str = "run") -> multiprocessing.Process:
    """A separate process that opens `path` (creates it, or continues it when it exists) and keeps it locked
    until it is killed (`process.kill()`: the kernel releases its lock)."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    process = ctx.Process(target=_hold, args=(str(path), kind, ready), daemon=True)
    process.start()
    assert ready.wait(120), "the holder process did not start"
    return process
