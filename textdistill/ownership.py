"""Folders textdistill owns: it replaces or deletes only what it created, and one process writes each at a time.

Every folder a command creates (a run, a teacher, an export) carries a marker file, `.textdistill`, written
at creation: its kind, a random id, the time and the textdistill version. `--overwrite` and every other
replacement act only on a folder whose marker names the expected kind; a folder without one (someone's
project, or a run made before markers existed) is refused with its path and what to do. Whatever the
marker says, home, the file-system root, the current folder and its ancestors, and the ancestors of every
input (the config file, data, teacher, an export's source) are never replaced.

Replacing is done the way pip replaces a package: the new folder is made beside the old one under a
hidden name, with its marker and lock, the old folder is renamed aside, the new one renamed into place,
and the old one deleted only once the new work has started cleanly (`OwnedFolder.started`); if it fails
before that, the new folder is deleted and the old one renamed back. An exclusive lock
(`textdistill.locking`, in `.textdistill.lock`) is held by the process working in the folder for as long
as it works, so a second command on the same folder is refused with the holder's pid.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from textdistill.errors import TextDistillError
from textdistill.locking import FileLock, holder, try_lock

log = logging.getLogger("textdistill")
MARKER = ".textdistill"
LOCK = ".textdistill.lock"
KINDS = ("run", "teacher", "export")
MARKER_FORMAT = 1
_protected: set[Path] = set()


@contextmanager
def protecting(path: str | Path | None) -> Iterator[None]:
    """Within the block, never replace `path` or a folder holding it (the CLI protects the config file it read)."""
    if path is None:
        yield
        return
    real = Path(path).expanduser().resolve()
    added = real not in _protected
    _protected.add(real)
    try:
        yield
    finally:
        if added:
            _protected.discard(real)


def new_marker(kind: str, command: str | None = None) -> dict:
    from textdistill import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    return {"format": MARKER_FORMAT, "kind": kind, "id": uuid.uuid4().hex, "created": time.time(),
            "version": __version__, "command": command, "replacing": []}


def read_marker(folder: str | Path) -> dict | None:
    """The folder's marker, or None when it has none (or one textdistill did not write)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and marker.get("kind") in KINDS and isinstance(marker.get("id"), str)
    return marker if ok else None


def write_marker(folder: Path, marker: dict) -> None:
    from textdistill.atomic import atomic_write

    atomic_write(folder / MARKER, lambda tmp: tmp.write_text(json.dumps(marker, indent=1), encoding="utf-8"))


def protected_reason(folder: str | Path, inputs: Iterable[str | Path] = ()) -> str | None:
    """Why `folder` must never be replaced (home, root, the current folder or an ancestor of it or of an
    input), or None. Symlinks are resolved, so a link to home is home."""
    real = Path(folder).expanduser().resolve()
    if real == Path(real.anchor):
        return "it is the root of the file system"
    if real == Path.home().resolve():
        return "it is your home folder"
    if Path.cwd().resolve().is_relative_to(real):
        return "it is the current folder or holds it"
    for path in [*_protected, *inputs]:
        if path is not None and Path(path).expanduser().resolve().is_relative_to(real):
            return f"it holds {str(path)!r}, an input of this command"
    return None


def _describe(marker: dict | None) -> str:
    if marker is None:
        return f"it has no {MARKER} marker, which textdistill writes into every folder it creates; a run made " \
               "before markers existed has none either"
    return f"it holds a textdistill {marker['kind']}"


class OwnedFolder:
    """A folder this process works in, locked for as long as it works, replacing an older one of ours.

    Use `OwnedFolder.open(...)` as a context manager: leaving the block normally keeps the new folder and
    deletes the replaced one; an exception before `started()` deletes the new folder and puts the old one
    back. Processes other than the one that opened it get a passive copy (`OwnedFolder.passive`) with the
    same `path` and no lock.
    """

    def __init__(self, path: Path, marker: dict | None, lock: FileLock | None, old_lock: FileLock | None = None,
                 aside: Path | None = None, new: bool = False):
        self.path, self.marker, self.lock = path, marker, lock
        self._old_lock, self._aside, self._new, self._started = old_lock, aside, new, False

    @classmethod
    def passive(cls, path: str | Path) -> OwnedFolder:
        folder = cls(Path(path), None, None)
        folder._started = True
        return folder

    @classmethod
    def open(cls, path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
             inputs: Iterable[str | Path] = (), option: str = "--output_dir", command: str | None = None,
             may_replace=None) -> OwnedFolder:
        """Lock `path` for this process: continue it (`resume`), or create it, replacing an existing folder of
        ours of the same kind only with `overwrite`. `may_replace(marker)` can narrow what is replaced
        (returns why not, or None). Raises a one-line TextDistillError naming the path and the fix."""
        path = Path(path).expanduser()
        real = path.resolve()
        if real.exists() and not real.is_dir():
            raise TextDistillError(f"{option} {str(path)!r} is a file, not a folder; give a folder path")
        if resume:
            lock = _lock_or_refuse(real, path)
            return cls(path, read_marker(real), lock, new=False)
        occupied = real.is_dir() and any(real.iterdir())
        if real.is_dir():  # even an empty one: home, root or the current folder are never swapped out
            reason = protected_reason(real, inputs)
            if reason is not None:
                raise TextDistillError(f"refusing to use {str(path)!r} as {option}: {reason}; give a new folder "
                                       "of its own")
        marker, old_lock = None, None
        if occupied:
            marker = read_marker(real)
            if not overwrite:
                resume_hint = ", --resume to continue it," if kind == "run" else ""
                raise TextDistillError(f"{option} {str(path)!r} already exists; pass --overwrite to replace it (only "
                                       f"a textdistill {kind} folder is replaced){resume_hint} or choose another "
                                       f"{option}")
            if marker is None or marker["kind"] != kind:
                why = f"it is not a textdistill {kind} folder ({_describe(marker)})"
            else:
                why = may_replace(marker) if may_replace is not None else None
            if why is not None:
                raise TextDistillError(f"refusing to replace {str(path)!r}: {why}; move or delete it yourself, or "
                                       f"choose another {option}")
            old_lock = _lock_or_refuse(real, path)
        _remove_abandoned(real)
        if not occupied:
            for aside in real.parent.glob(f".{real.name}.replaced-*"):
                log.warning("an earlier replacement of %s was interrupted: the folder it replaced is in %s; move it "
                            "back or delete it", path, aside)
        mine = new_marker(kind, command)
        mine["replacing"] = [n for n in (marker or {}).get("replacing", []) if (real.parent / n).exists()]
        new = real.parent / f".{real.name}.new-{mine['id'][:12]}"
        aside = real.parent / f".{real.name}.replaced-{mine['id'][:12]}" if occupied else None
        if aside is not None:
            mine["replacing"].append(aside.name)
        lock = None
        try:
            new.mkdir(parents=True)
            write_marker(new, mine)
            lock = try_lock(new / LOCK)  # nobody else can see `new` yet
            if aside is not None:
                os.rename(real, aside)
            try:
                os.rename(new, real)  # also replaces an empty folder at `real`
            except OSError:
                if aside is not None:
                    os.rename(aside, real)
                raise
        except (OSError, TextDistillError) as e:  # TextDistillError: the marker could not be written
            _remove_if_ours(new, mine["id"])
            if lock is not None:
                lock.release()
            if old_lock is not None:
                old_lock.release()
            if real.is_dir() and any(real.iterdir()) and not occupied:
                raise TextDistillError(f"{option} {str(path)!r} was created by {holder(real / LOCK)} at the same "
                                       f"time; choose another {option}") from None
            from textdistill.atomic import write_failed

            raise (e if isinstance(e, TextDistillError) else write_failed(path, e)) from None
        if aside is not None:
            log.info("%s: the previous %s is kept aside in %s until the new one has started", path, kind, aside)
        return cls(path, mine, lock, old_lock, aside, new=True)

    def started(self) -> None:
        """The new work has started cleanly: delete the folder(s) it replaced. Idempotent."""
        if self._started:
            return
        self._started = True
        real = self.path.resolve()
        for name in (self.marker or {}).get("replacing", []):
            _remove_if_ours(real.parent / name)
        if self._old_lock is not None:
            self._old_lock.release()
        if self.marker is not None and self.marker.get("replacing"):
            self.marker = {**self.marker, "replacing": []}
            write_marker(real, self.marker)

    def close(self) -> None:
        """Done: keep the folder, delete what it replaced, release the lock."""
        self.started()
        if self.lock is not None:
            self.lock.release()

    def abandon(self) -> None:
        """Failed: before `started()`, delete the new folder and put the replaced one back; release the lock."""
        if not self._started and self._new:
            real = self.path.resolve()
            _remove_if_ours(real, self.marker["id"])
            if self._aside is not None and self._aside.exists():
                try:
                    os.rename(self._aside, real)
                except OSError as e:
                    log.warning("could not put the previous folder back (%s): it is in %s", e.strerror or e,
                                self._aside)
            self._started = True
        if self._old_lock is not None:
            self._old_lock.release()
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> OwnedFolder:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def _lock_or_refuse(real: Path, path: Path) -> FileLock:
    lock = try_lock(real / LOCK)
    if lock is None:
        raise TextDistillError(f"{str(path)!r} is in use by {holder(real / LOCK)}; wait for it to finish or stop "
                               "it, or choose another folder")
    return lock


def _remove_if_ours(folder: Path, marker_id: str | None = None) -> None:
    """Delete `folder` if its marker says textdistill made it (with id `marker_id`, when given); else keep it."""
    marker = read_marker(folder)
    if marker is None or (marker_id is not None and marker["id"] != marker_id):
        if folder.exists():
            log.warning("kept %s: it has no textdistill marker of this run", folder)
        return
    shutil.rmtree(folder, ignore_errors=True)


def _remove_abandoned(real: Path) -> None:
    """Delete hidden `.<name>.new-*` folders of ours that no process holds: left by a killed command."""
    for folder in real.parent.glob(f".{real.name}.new-*"):
        lock = try_lock(folder / LOCK) if read_marker(folder) is not None else None
        if lock is not None:
            _remove_if_ours(folder)
            lock.release()


def owned_work_folder(folder: Path, kind: str, keep: bool = False) -> Path:
    """A scratch folder beside an output (fine-tuning's `.work`): made fresh unless `keep`, and replaced or
    continued only if textdistill made it."""
    if folder.exists():
        if read_marker(folder) is None:
            raise TextDistillError(f"refusing to use {str(folder)!r} as a work folder: {_describe(None)}; move "
                                   "or delete it yourself")
        if not keep:
            shutil.rmtree(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        write_marker(folder, new_marker(kind))
    (folder / "checkpoints").mkdir(exist_ok=True)
    return folder


def remove_owned(folder: Path) -> None:
    """Delete a folder textdistill made (by its marker); a folder without one is kept, with a warning."""
    _remove_if_ours(folder)


def carry_ownership(old: Path, new: Path) -> None:
    """Move the marker and lock file of `old` into `new` (renames keep the lock held: it is on the file)."""
    for name in (MARKER, LOCK):
        if (old / name).exists() and not (new / name).exists():
            os.rename(old / name, new / name)
