"""A cross-run cache of teacher outputs: named tensors per example, on disk, memory-mapped.

A frozen teacher in eval mode is a pure function of its input, so its outputs (classification logits;
for generation the top-k triple of `losses.topk_with_leftover`; hidden states of matched layers) can be
computed once and reused by every epoch and every run of a sweep. A cache folder is named by a key, a
sha256 of everything that determines the outputs (`cache_key`); a different teacher, tokenizer, data or
setting gives a different folder, so a cache that does not match is never opened.

Layout of a folder: one raw little-endian file per field (`<name>.bin`, shape `[N, ...]`), `meta.json`
(shapes, dtypes, key), `done.npy` (which examples are written, updated after every batch, so an
interrupted build continues where it stopped) and, written last, `complete.json` with the sha256 of
each field file. A complete cache whose files no longer match their checksums is rebuilt, never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textdistill.hashing import file_digest

log = logging.getLogger("textdistill")
FORMAT_VERSION = 1


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
    h = hashlib.sha256(f"textdistill-cache-v{FORMAT_VERSION}".encode())
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


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


def _open(folder: Path, count: int, fields: dict[str, Field], mode: str) -> dict[str, np.memmap]:
    return {name: np.memmap(folder / f"{name}.bin", dtype=np.dtype(f.dtype).newbyteorder("<"), mode=mode,
                            shape=(count, *f.shape)) for name, f in fields.items()}


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
    `{"cached": bool, "computed": examples computed now}`. An interrupted build keeps its finished
    batches and computes only the rest on the next call.
    """
    folder = Path(folder)
    problem = _problem(folder, key, count, fields) if (folder / "complete.json").is_file() else None
    if (folder / "complete.json").is_file() and problem is None:
        return _open(folder, count, fields, "r"), {"cached": True, "computed": 0}
    if problem is not None:
        log.warning("teacher cache %s is unusable (%s); building it again", folder, problem)
    try:
        resumable = json.loads((folder / "meta.json").read_text(encoding="utf-8")) == _meta(key, count, fields) \
            and problem is None and (folder / "done.npy").is_file()
        done = np.load(folder / "done.npy") if resumable else None
        resumable = done is not None and done.shape == (count,) and done.dtype == bool
    except (OSError, ValueError):
        resumable = False
    if not resumable:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        for name, f in fields.items():  # sized up front: a sparse file, filled batch by batch
            with open(folder / f"{name}.bin", "wb") as out:
                out.truncate(count * int(np.prod(f.shape, dtype=np.int64)) * np.dtype(f.dtype).itemsize)
        _write_json(folder / "meta.json", _meta(key, count, fields))
        done = np.zeros(count, dtype=bool)
    elif done.any():
        log.info("teacher cache %s: resuming, %d of %d examples already scored", folder, int(done.sum()), count)
    arrays = _open(folder, count, fields, "r+")
    computed = 0
    for index in batches:
        todo = [i for i in index if not done[i]]
        if not todo:
            continue
        values = compute(todo)
        for name, array in arrays.items():
            array[todo] = values[name].detach().cpu().numpy().astype(array.dtype, copy=False)
        for array in arrays.values():
            array.flush()  # the values are on disk before `done` says so
        done[todo] = True
        np.save(folder / "done.tmp.npy", done)
        os.replace(folder / "done.tmp.npy", folder / "done.npy")
        computed += len(todo)
        if progress is not None:
            progress(len(todo))
    if not done.all():
        raise ValueError(f"teacher cache batches left {int((~done).sum())} of {count} examples unscored")
    del arrays
    _write_json(folder / "complete.json", {name: file_digest(folder / f"{name}.bin") for name in fields})
    (folder / "done.npy").unlink()
    return _open(folder, count, fields, "r"), {"cached": False, "computed": computed}
