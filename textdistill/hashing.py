"""Content digests (sha256): of files, of model folders, and of what a training ran on.

Digests let a run recognise its own outputs on resume (phase markers, checkpoint identities), let
caches key and check what they hold, and let a cached teacher be refused when its weights changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

# Files of a model folder that determine its outputs: weights, config, tokenizer.
MODEL_FILES = (".json", ".txt", ".safetensors", ".bin", ".model")


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


def update_with_folder(h, folder: Path) -> None:
    """Feed `h` the names and contents of a model folder's weight, config and tokenizer files, in name order."""
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix in MODEL_FILES:
            h.update(f.name.encode())
            h.update(file_digest(f).encode())


def folder_digest(folder: Path) -> str:
    """sha256 of a model folder (`update_with_folder`): what names a teacher in cache keys."""
    h = hashlib.sha256()
    update_with_folder(h, folder)
    return h.hexdigest()


def content_digest(*parts) -> str | None:
    """sha256 of token-id rows (`list[list[int]]`), tensors, arrays and dicts of tensors, in order.

    None when every part is None (nothing to identify). Ragged rows are hashed with their lengths, so
    [[1, 2], [3]] and [[1], [2, 3]] differ.
    """
    if all(p is None for p in parts):
        return None
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"none")
        elif isinstance(part, dict):
            for k in sorted(part):
                h.update(k.encode())
                h.update(_array(part[k]).tobytes())
        elif isinstance(part, list):
            h.update(np.asarray([len(r) for r in part], dtype=np.int64).tobytes())
            h.update(np.asarray([i for r in part for i in r], dtype=np.int64).tobytes())
        else:
            h.update(_array(part).tobytes())
        h.update(b"\x00")
    return h.hexdigest()


def _array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(value)
