"""The teacher-output cache: built once, reused, resumed after an interruption, never read when corrupt."""

import json

import numpy as np
import pytest
import torch

from textdistill.cache import Field, cache_key, cached_outputs

FIELDS = {"logits": Field((3,)), "ids": Field((2,), "int64")}
COUNT = 10
BATCHES = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def outputs(index):
    i = torch.tensor(index, dtype=torch.float32)
    return {"logits": i[:, None] * torch.tensor([1.0, -1.0, 0.5]), "ids": torch.tensor(index)[:, None].repeat(1, 2)}


class Counter:
    def __init__(self, fail_after=None):
        self.seen, self.fail_after = [], fail_after

    def __call__(self, index):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt
        self.seen.append(list(index))
        return outputs(index)


def check(arrays):
    want = outputs(list(range(COUNT)))
    assert np.allclose(arrays["logits"], want["logits"].numpy())
    assert np.array_equal(arrays["ids"], want["ids"].numpy())


def test_built_once_then_read_memory_mapped(tmp_path):
    first = Counter()
    arrays, info = cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, first, BATCHES)
    check(arrays)
    assert info == {"cached": False, "computed": COUNT} and len(first.seen) == 3
    again = Counter()
    arrays, info = cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, again, BATCHES)
    check(arrays)
    assert info["cached"] and again.seen == []
    assert isinstance(arrays["logits"], np.memmap) and not arrays["logits"].flags.writeable


def test_interrupted_build_resumes_with_only_the_rest(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, Counter(fail_after=1), BATCHES)
    rest = Counter()
    arrays, info = cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, rest, BATCHES)
    check(arrays)
    assert rest.seen == BATCHES[1:] and info["computed"] == 6


def test_corrupt_cache_is_rebuilt_not_read(tmp_path):
    cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, Counter(), BATCHES)
    raw = tmp_path / "c" / "logits.bin"
    raw.write_bytes(b"\x00" * raw.stat().st_size)
    again = Counter()
    arrays, info = cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, again, BATCHES)
    check(arrays)
    assert not info["cached"] and len(again.seen) == 3


def test_other_key_or_layout_is_rebuilt(tmp_path):
    cached_outputs(tmp_path / "c", "k", COUNT, FIELDS, Counter(), BATCHES)
    again = Counter()
    cached_outputs(tmp_path / "c", "other", COUNT, FIELDS, again, BATCHES)
    assert len(again.seen) == 3
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["key"] == "other"


def test_key_changes_with_any_part():
    ids = np.arange(6)
    base = cache_key("weights", ids, {"max_length": 64})
    assert base == cache_key("weights", ids.copy(), {"max_length": 64})
    assert base != cache_key("weights2", ids, {"max_length": 64})
    assert base != cache_key("weights", ids[::-1].copy(), {"max_length": 64})
    assert base != cache_key("weights", ids, {"max_length": 32})
