"""A cross-run cache of teacher outputs: named tensors per example, on disk, memory-mapped.

A frozen teacher in eval mode is a pure function of its input, so its outputs (classification logits;
for generation the top-k triple of `losses.topk_with_leftover`; hidden states of matched layers) can be
computed once and reused by every epoch and every run of a sweep. A cache folder is named by a key, a
sha256 of everything that determines the outputs (`cache_key`); a different teacher, tokenizer, data or
setting gives a different folder, so a cache that does not match is never opened.

Layout of a folder: one raw little-endian file per field (`<name>.bin`, shape `[N, ...]`), `meta.json`
(shapes, dtypes, key), `rows.jsonl` (a journal: one line per written chunk, its example indices and the
sha256 of their bytes in every field) and, written last, `complete.json` with the sha256 of each field file.

What makes it trustworthy when runs share it or die mid-build:
- one builder per key: the build runs under an OS lock (`<folder>/.lock`, `textdistill.locking`); a second
  run wanting the same key waits for it, then reads the sealed cache (or continues a build whose builder
  died, since the lock dies with it);
- a resumed build trusts only rows whose journal checksum matches what the files hold now: a truncated
  file, rows overwritten with garbage or rows written without their journal line are computed again;
- the cache is sealed (`complete.json`) only after every row has been read back and verified against
  its journal line; a sealed cache whose files no longer match their checksums is rebuilt, never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textdistill.atomic import atomic_write
from textdistill.errors import TextDistillError
from textdistill.hashing import file_digest
from textdistill.locking import locked

log = logging.getLogger("textdistill")
KEY_VERSION = 1  # in every key: a change re-keys (and orphans) every cache folder
# 2: rows journalled with checksums and verified before sealing; caches sealed by format 1 (whose builds
# could race and seal unverified rows) are built again, in place
FORMAT_VERSION = 2
JOURNAL = "rows.jsonl"
LOCK = ".lock"  # inside the folder, which is never deleted (only the files a build writes are)


@dataclass(frozen=True)
class Field:
    """One cached tensor per example: its shape after the example dimension and its numpy dtype name."""

    shape: tuple[int, ...]
    dtype: str = "float32"


def cache_root() -> Path:
    """$TEXTDISTILL_CACHE, else $XDG_CACHE_HOME/textdistill, else ~/.cache/textdistill."""
    if os.environ.get("TEXTDISTILL_CACHE"):
        return Path(os.environ["TEXTDISTILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "textdistill"


def cache_key(*parts) -> str:
    """sha256 over strings, bytes, numpy arrays, tensors and JSON-able values, in order."""
    h = hashlib.sha256(f"textdistill-cache-v{KEY_VERSION}".encode())
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _write_json(path: Path, value: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8"))


def is_cached(folder: Path, key: str, count: int, fields: dict[str, Field]) -> bool:
    """Whether `folder` holds a complete, intact cache of this key and layout (what `cached_outputs` would read)."""
    return (Path(folder) / "complete.json").is_file() and _problem(Path(folder), key, count, fields) is None


def _problem(folder: Path, key: str, count: int, fields: dict[str, Field]) -> str | None:
    """None when `folder` is a complete cache of this key and layout with intact files, else what is wrong."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        sums = json.loads((folder / "complete.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"unreadable metadata ({type(e).__name__})"
    if meta != _meta(key, count, fields):
        return "its key or layout differs"
    for name in fields:
        path = folder / f"{name}.bin"
        if not path.is_file() or file_digest(path) != sums.get(name):
            return f"{name}.bin does not match its checksum"
    return None


def _meta(key: str, count: int, fields: dict[str, Field]) -> dict:
    return {"version": FORMAT_VERSION, "key": key, "count": count,
            "fields": {k: {"shape": list(f.shape), "dtype": f.dtype} for k, f in sorted(fields.items())}}


def _dtype(f: Field) -> np.dtype:
    return np.dtype(f.dtype).newbyteorder("<")


def _nbytes(count: int, f: Field) -> int:
    return count * int(np.prod(f.shape, dtype=np.int64)) * _dtype(f).itemsize


def _open(folder: Path, count: int, fields: dict[str, Field], mode: str) -> dict[str, np.memmap]:
    return {name: np.memmap(folder / f"{name}.bin", dtype=_dtype(f), mode=mode, shape=(count, *f.shape))
            for name, f in fields.items()}


def _rows_sha256(arrays: dict[str, np.ndarray], rows: list[int]) -> str:
    """sha256 of the bytes of examples `rows` (in that order) in every field, fields in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(np.ascontiguousarray(arrays[name][rows]).tobytes())
    return h.hexdigest()


def cached_outputs(
    folder: Path,
    key: str,
    count: int,
    fields: dict[str, Field],
    compute: Callable[[list[int]], dict[str, torch.Tensor]],
    batches: Sequence[list[int]],
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.memmap], dict]:
    """The cached fields for `count` examples, read-only and memory-mapped; built first if needed.

    `compute(index)` returns each field for the examples `index` (`[len(index), *shape]`); `batches`
    cover every example once (sort them by length so the teacher pads little). Returns the arrays and
    `{"cached": bool, "computed": examples computed now}`. An interrupted build keeps its verified
    batches and computes only the rest on the next call; a build in progress in another process is
    waited for.
    """
    folder = Path(folder)
    if is_cached(folder, key, count, fields):
        return _open(folder, count, fields, "r"), {"cached": True, "computed": 0}
    with locked(folder / LOCK, f"the teacher cache {folder}"):
        if (folder / "complete.json").is_file():  # sealed while this process waited, or sealed but broken
            problem = _problem(folder, key, count, fields)
            if problem is None:
                return _open(folder, count, fields, "r"), {"cached": True, "computed": 0}
            log.warning("teacher cache %s is unusable (%s); building it again", folder, problem)
            _clear(folder, fields)
        computed = _build(folder, key, count, fields, compute, batches, progress)
    return _open(folder, count, fields, "r"), {"cached": False, "computed": computed}


def _build(folder: Path, key: str, count: int, fields: dict[str, Field], compute, batches, progress) -> int:
    """Compute every example not yet verified, verify them all, then seal; under the key's lock."""
    done = _start_or_resume(folder, key, count, fields)
    if done.any():
        log.info("teacher cache %s: resuming, %d of %d examples already scored and verified", folder,
                 int(done.sum()), count)
    computed = 0
    for attempt in range(2):
        arrays = _open(folder, count, fields, "r+")
        with open(folder / JOURNAL, "a", encoding="utf-8") as journal:
            for index in batches:
                todo = [i for i in index if not done[i]]
                if not todo:
                    continue
                values = compute(todo)
                rows = {name: values[name].detach().cpu().numpy().astype(array.dtype, copy=False)
                        for name, array in arrays.items()}
                for name, array in arrays.items():
                    array[todo] = rows[name]
                    array.flush()  # the rows are in the file before the journal says so
                journal.write(json.dumps({"rows": todo, "sha256": _rows_sha256(rows, list(range(len(todo))))})
                              + "\n")
                journal.flush()
                done[todo] = True
                computed += len(todo)
                if progress is not None:
                    progress(len(todo))
        del arrays
        if not done.all():
            raise ValueError(f"teacher cache batches left {int((~done).sum())} of {count} examples unscored")
        done = _verified_rows(folder, count, fields)  # read back from the files, every row
        if done.all():
            _write_json(folder / "complete.json", {name: file_digest(folder / f"{name}.bin") for name in fields})
            (folder / JOURNAL).unlink()
            return computed
        log.warning("teacher cache %s: %d examples did not read back as written; computing them again", folder,
                    int((~done).sum()))
    raise TextDistillError(f"the teacher cache {str(folder)!r} does not keep what is written to it (the disk may be "
                           "failing); set TEXTDISTILL_CACHE to a folder on another disk")


def _start_or_resume(folder: Path, key: str, count: int, fields: dict[str, Field]) -> np.ndarray:
    """Which examples already hold verified values: a matching unfinished build continues, anything else
    starts over with empty (sparse) files."""
    try:
        resumable = json.loads((folder / "meta.json").read_text(encoding="utf-8")) == _meta(key, count, fields)
    except (OSError, ValueError):
        resumable = False
    if resumable:
        for name, f in fields.items():  # a truncated file is filled with zeros, which fail their checksums
            path = folder / f"{name}.bin"
            if not path.is_file() or path.stat().st_size != _nbytes(count, f):
                with open(path, "ab") as out:
                    out.truncate(_nbytes(count, f))
        _end_journal_line(folder / JOURNAL)
        return _verified_rows(folder, count, fields)
    _clear(folder, fields)
    folder.mkdir(parents=True, exist_ok=True)
    for name, f in fields.items():  # sized up front: a sparse file, filled batch by batch
        with open(folder / f"{name}.bin", "wb") as out:
            out.truncate(_nbytes(count, f))
    _write_json(folder / "meta.json", _meta(key, count, fields))
    return np.zeros(count, dtype=bool)


def _verified_rows(folder: Path, count: int, fields: dict[str, Field]) -> np.ndarray:
    """Examples whose bytes in every field match a journal line's checksum."""
    done = np.zeros(count, dtype=bool)
    try:
        lines = (folder / JOURNAL).read_text(encoding="utf-8").splitlines()
    except OSError:
        return done
    arrays = _open(folder, count, fields, "r")
    for line in lines:
        try:
            entry = json.loads(line)
            rows = [int(i) for i in entry["rows"]]
            expected = entry["sha256"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill: its rows are computed again
        if rows and all(0 <= i < count for i in rows) and _rows_sha256(arrays, rows) == expected:
            done[rows] = True
    return done


def _end_journal_line(path: Path) -> None:
    """A journal cut mid-line by a kill gets its newline, so the next line is not glued to the broken one."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _clear(folder: Path, fields: dict[str, Field]) -> None:
    """Delete the files a cache build writes (the seal first), nothing else in the folder."""
    names = ["complete.json", "meta.json", JOURNAL, "done.npy", "done.tmp.npy", *(f"{n}.bin" for n in fields)]
    for name in names:
        (folder / name).unlink(missing_ok=True)
