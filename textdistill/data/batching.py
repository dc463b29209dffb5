"""Which examples go together: length-bucketed training batches, length-sorted inference batches, padding,
and joining or subsetting tokenised example sets.

Every task's examples are token-id rows of different lengths; batches of similar lengths waste little
compute on padding. Training batches are a pure function of (seed, epoch), so a resumed run finds its place.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, bucket: int = 50) -> list[list[int]]:
    """Shuffle, sort by length within chunks of `bucket` batches, then shuffle the batches.

    Batches hold examples of similar length, so dynamic padding wastes little compute; the order is a
    pure function of (seed, epoch) so an interrupted run can find its place again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    chunk = batch_size * bucket
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk].tolist(), key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


# Padded tokens per inference batch at most. On a CPU, batches past a few thousand tokens run slower per
# token (their activations leave the caches; benchmarks/scoring_speed.py, numbers in docs/measurements.md);
# short texts still fill `batch_size`.
INFERENCE_TOKENS = 4096


def sequential_batches(lengths: list[int], batch_size: int, max_tokens: int | None = INFERENCE_TOKENS) -> list[list[int]]:
    """Batches for inference: sorted by length (little padding), each of at most `batch_size` examples and
    `max_tokens` padded tokens (never fewer than one example); callers restore the original order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:  # ascending lengths: the newest example sets the batch's padded length
        if batches and len(batches[-1]) < batch_size and (
                max_tokens is None or (len(batches[-1]) + 1) * max(lengths[i], 1) <= max_tokens):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad_rows(rows: list[list[int]], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`[B, longest]` ids padded with `value` and the `[B, longest]` mask of real tokens; left padding
    (what decoder-only models need to generate a batch) puts the padding before each row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        cols = slice(width - len(r), width) if left else slice(0, len(r))
        ids[b, cols] = torch.tensor(list(r), dtype=torch.long)
        mask[b, cols] = 1
    return ids, mask


def concat(a, b):
    """The examples of `a` followed by those of `b`, two tokenised sets of one class (`Encoded`, `TokenData`).

    Every per-example field is joined: lists and arrays along the examples, dicts of arrays key by key.
    Counts marked `metadata={"join": "sum"}` add up; other fields (padding id, task) must agree. A
    per-example field that only one side has is an error: the joined set would hold it for some examples only.
    """
    if type(a) is not type(b):
        raise ValueError(f"cannot join {type(a).__name__} and {type(b).__name__} examples")
    joined = {}
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if (x is None) != (y is None):
            raise ValueError(f"both parts need {f.name}, or neither")
        joined[f.name] = x + y if f.metadata.get("join") == "sum" else _join(x, y, f.name)
    return type(a)(**joined)


def _join(x, y, name: str):
    if x is None or isinstance(x, list):
        return None if x is None else x + y
    if isinstance(x, torch.Tensor):
        return torch.cat([x, y])
    if isinstance(x, np.ndarray):
        return np.concatenate([x, y])
    if isinstance(x, dict):
        return {k: _join(x[k], y[k], f"{name}.{k}") for k in x}
    if x != y:
        raise ValueError(f"cannot join examples whose {name} differs ({x!r} vs {y!r})")
    return x


def subset(examples, index: list[int]):
    """The examples `index` of a tokenised set, every per-example field taken at those positions."""
    def pick(value):
        if isinstance(value, list):
            return [value[i] for i in index]
        if isinstance(value, (torch.Tensor, np.ndarray)):
            return value[index]
        if isinstance(value, dict):
            return {k: pick(v) for k, v in value.items()}
        return value

    return type(examples)(**{f.name: pick(getattr(examples, f.name)) for f in dataclasses.fields(examples)})


class WithFields:
    """A tokenised set whose batches carry more per-example tensors than the set's own fields (the contrastive
    term's cached teacher representations and example ids): `collate` adds `fields[name][index]` to each batch."""

    def __init__(self, examples, **fields: torch.Tensor):
        for name, value in fields.items():
            if len(value) != len(examples):
                raise ValueError(f"field {name} has {len(value)} rows for {len(examples)} examples")
        self.examples, self.fields = examples, fields

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> list[int]:
        return self.examples.lengths

    def collate(self, index: list[int]) -> dict[str, torch.Tensor]:
        return {**self.examples.collate(index), **{name: value[index] for name, value in self.fields.items()}}
