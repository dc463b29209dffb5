"""The teacher signal: what a frozen teacher outputs for the training data, made once and served through
the cross-run cache to every process of the run.

A frozen teacher in eval mode is a pure function of its input, so its outputs (classification logits,
the top-k triple of generation, sequence-KD targets; hidden states next) can be computed once and read by
every epoch, every run of a sweep and every later run. A task describes each output as a `Signal`: its
cache key (everything that determines it), the per-example fields, and the function that computes a
batch of examples. `SignalServer` is the one place that runs them: on the main process through
`textdistill.cache` (resumable, checksummed), with a progress bar on a terminal and one log line; the
other processes receive the main process's arrays, so every process trains on exactly the same values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from textdistill.cache import Field, cache_root, cached_outputs, is_cached
from textdistill.training.distributed import is_main, process_state, share_from_main

log = logging.getLogger("textdistill")


@dataclass(frozen=True)
class Signal:
    """One teacher output per example, for `count` examples."""

    kind: str  # the cache's sub-folder: 'scores', 'topk', 'sequence_kd', ...
    key: str  # `cache.cache_key(...)` of the teacher, the inputs and every setting that changes the outputs
    count: int
    fields: dict[str, Field]  # name -> per-example shape and dtype
    compute: Callable[[list[int]], dict[str, torch.Tensor]]  # the fields of examples `index`, [len(index), ...]
    batches: Sequence[list[int]]  # every example once; sorted by length so the teacher pads little
    label: str  # what the log line calls it: 'teacher scores of train', 'top-5 teacher', ...
    unit: str = "examples scored"


def signal_folder(kind: str, key: str) -> Path:
    """Where the cache keeps a signal of this kind and key."""
    return cache_root() / kind / key[:32]


def is_signal_cached(signal: Signal) -> bool:
    """Whether serving `signal` would read it from the cache, computing nothing."""
    return is_cached(signal_folder(signal.kind, signal.key), signal.key, signal.count, signal.fields)


class SignalServer:
    """Serves signals and counts the seconds spent making or reading them (a run's one-off teacher cost)."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, signal: Signal) -> dict[str, np.ndarray]:
        """The signal's fields, `[count, *shape]` each, the same on every process."""
        started = time.perf_counter()
        if is_main():
            arrays = _build(signal)
        else:
            arrays = {name: np.empty((signal.count, *f.shape), dtype=f.dtype) for name, f in signal.fields.items()}
        if process_state().num_processes > 1:
            arrays = {name: share_from_main(torch.from_numpy(np.array(a))).numpy()
                      for name, a in arrays.items()}
        self.seconds += time.perf_counter() - started
        return arrays


def _build(signal: Signal) -> dict[str, np.ndarray]:
    # a bar on terminals only (tqdm's disable=None); logs and CI keep the one-line summary below
    with tqdm(total=signal.count, desc=signal.label, unit="ex", disable=None, leave=False, mininterval=1.0) as bar:
        arrays, info = cached_outputs(signal_folder(signal.kind, signal.key), signal.key, signal.count,
                                      signal.fields, signal.compute, signal.batches, progress=bar.update)
    log.info("%s: %s (%d %s now)", signal.label, "from the cache" if info["cached"] else "computed",
             info["computed"], signal.unit)
    return dict(arrays)
