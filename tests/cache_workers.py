"""A small cache layout and the processes that build it at the same time or die while building it (spawned, so
they import only this module and textdistill.cache)."""

from __future__ import annotations

import os
import signal

import numpy as np
import torch

COUNT = 10
BATCHES = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def fields():
    from textdistill.cache import Field

    return {"logits": Field((3,)), "ids": Field((2,), "int64")}


def outputs(index: list[int]) -> dict[str, torch.Tensor]:
    """What a teacher would give: a pure function of the examples."""
    i = torch.tensor(index, dtype=torch.float32)
    return {"logits": i[:, None] * torch.tensor([1.0, -1.0, 0.5]) + 0.1,
            "ids": torch.tensor(index)[:, None].repeat(1, 2)}


def race(folder: str, key: str, count: int, barrier, results) -> None:
    """Wait for the other process at `barrier`, then build (or wait for, then read) the cache of `key`."""
    from textdistill.cache import cached_outputs

    batches = [list(range(i, min(i + 7, count))) for i in range(0, count, 7)]
    barrier.wait(60)
    arrays, info = cached_outputs(folder, key, count, fields(), outputs, batches)
    results.put((os.getpid(), {k: np.array(v).tobytes() for k, v in arrays.items()}, info))


def die_while_building(folder: str, call: int, where: str) -> None:
    """Build the small cache and SIGKILL this process at the `call`-th computed batch: before its rows are
    written ('compute'), or after they are written and before their journal line ('journal')."""
    from textdistill import cache

    calls = {"n": 0}

    def compute(index):
        calls["n"] += 1
        if where == "compute" and calls["n"] == call:
            os.kill(os.getpid(), signal.SIGKILL)
        return outputs(index)

    real = cache._rows_sha256
    journal_calls = {"n": 0}

    def rows_sha256(arrays, rows):
        if all(isinstance(a, np.ndarray) and not isinstance(a, np.memmap) for a in arrays.values()):
            journal_calls["n"] += 1  # the checksum of rows just written, computed for their journal line
            if where == "journal" and journal_calls["n"] == call:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(arrays, rows)

    cache._rows_sha256 = rows_sha256
    cache.cached_outputs(folder, "k", COUNT, fields(), compute, BATCHES)


def teacher_race(overrides: dict, cache: str, barrier, results) -> None:
    """Wait for the other process at `barrier`, then ask for the built-in teacher of `overrides`."""
    os.environ["TEXTDISTILL_CACHE"] = cache
    torch.set_num_threads(1)
    from textdistill.config import load_config
    from textdistill.data.labelled import load_classification_data
    from textdistill.pipeline.teacher import builtin_teacher
    from textdistill.hashing import file_digest

    cfg = load_config(None, overrides)
    data = load_classification_data(cfg.data)
    barrier.wait(120)
    folder, info = builtin_teacher(cfg, data)
    results.put((info["cached"], file_digest(folder / "model.safetensors"), info["weights_sha256"]))
