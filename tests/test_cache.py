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


# --- a cache that cannot lie: shared by two runs, killed mid-build, damaged on disk ---------------------------

from cache_workers import BATCHES as SMALL_BATCHES  # noqa: E402
from cache_workers import COUNT as SMALL  # noqa: E402
from cache_workers import die_while_building, fields, outputs as teacher  # noqa: E402
from textdistill.cache import _problem  # noqa: E402


def quiet(folder) -> dict[str, bytes]:
    """The bytes of an uninterrupted build, the reference every other build must equal."""
    arrays, _ = cached_outputs(folder, "k", SMALL, fields(), teacher, SMALL_BATCHES)
    return {k: np.array(v).tobytes() for k, v in arrays.items()}


def built(folder, compute=teacher):
    arrays, info = cached_outputs(folder, "k", SMALL, fields(), compute, SMALL_BATCHES)
    assert _problem(folder, "k", SMALL, fields()) is None  # sealed, and its files match the seal
    return {k: np.array(v).tobytes() for k, v in arrays.items()}, info


def interrupted(folder, batches_done: int) -> None:
    """A build stopped (Ctrl-C) after `batches_done` batches."""
    calls = []

    def compute(index):
        if len(calls) == batches_done:
            raise KeyboardInterrupt
        calls.append(index)
        return teacher(index)

    with pytest.raises(KeyboardInterrupt):
        cached_outputs(folder, "k", SMALL, fields(), compute, SMALL_BATCHES)
    assert not (folder / "complete.json").exists()


class Seen:
    def __init__(self):
        self.index = []

    def __call__(self, index):
        self.index.append(list(index))
        return teacher(index)


def test_a_truncated_file_is_computed_again_not_trusted(tmp_path):
    reference = quiet(tmp_path / "quiet")
    interrupted(tmp_path / "c", 2)
    raw = tmp_path / "c" / "logits.bin"
    with open(raw, "r+b") as f:  # cut inside the rows of the second batch: its tail reads back as zeros
        f.truncate(5 * 3 * 4 + 6)
    seen = Seen()
    values, info = built(tmp_path / "c", seen)
    assert values == reference
    assert seen.index == SMALL_BATCHES[1:] and info["computed"] == 6  # the first batch's rows still verify


def test_garbage_rows_are_computed_again_never_sealed(tmp_path):
    reference = quiet(tmp_path / "quiet")
    interrupted(tmp_path / "c", 2)
    logits = np.memmap(tmp_path / "c" / "logits.bin", dtype="<f4", mode="r+", shape=(SMALL, 3))
    logits[0:2] = 1e30  # rows of the first batch overwritten after their journal line was written
    logits.flush()
    del logits
    seen = Seen()
    values, _ = built(tmp_path / "c", seen)
    assert values == reference and seen.index == [SMALL_BATCHES[0], SMALL_BATCHES[2]]


def test_rows_without_a_whole_journal_line_are_computed_again(tmp_path):
    reference = quiet(tmp_path / "quiet")
    interrupted(tmp_path / "c", 2)
    journal = tmp_path / "c" / "rows.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed in the middle of a line
    seen = Seen()
    values, _ = built(tmp_path / "c", seen)
    assert values == reference and seen.index == SMALL_BATCHES[1:]


def test_rows_that_do_not_read_back_as_written_are_computed_again_before_sealing(tmp_path):
    reference = quiet(tmp_path / "quiet")
    seen = []

    def compute(index):  # while the last batch is computed, the disk loses the first batch's rows
        seen.append(list(index))
        if index == SMALL_BATCHES[-1] and len(seen) == len(SMALL_BATCHES):
            logits = np.memmap(tmp_path / "c" / "logits.bin", dtype="<f4", mode="r+", shape=(SMALL, 3))
            logits[1] = 1e30
            logits.flush()
        return teacher(index)

    values, info = built(tmp_path / "c", compute)
    assert values == reference
    assert seen == [*SMALL_BATCHES, SMALL_BATCHES[0]] and info["computed"] == SMALL + 4


@pytest.mark.parametrize("call,where", [(1, "compute"), (2, "journal"), (3, "compute"), (3, "journal")])
def test_killed_at_any_point_of_a_build_resumes_to_identical_values(tmp_path, call, where):
    import multiprocessing

    reference = quiet(tmp_path / "quiet")
    process = multiprocessing.get_context("spawn").Process(target=die_while_building,
                                                           args=(str(tmp_path / "c"), call, where))
    process.start()
    process.join(120)
    assert process.exitcode == -9  # SIGKILL, at the chosen point
    assert not (tmp_path / "c" / "complete.json").exists()
    seen = Seen()
    values, _ = built(tmp_path / "c", seen)  # the dead builder's lock died with it
    assert values == reference
    assert seen.index == SMALL_BATCHES[call - 1:]  # only what was not written and journalled


def test_two_processes_racing_on_one_key_build_once_and_both_read_the_quiet_values(tmp_path):
    import multiprocessing

    from cache_workers import race

    count = 300
    reference, _ = cached_outputs(tmp_path / "quiet", "k", count, fields(), teacher,
                                  [list(range(i, min(i + 7, count))) for i in range(0, count, 7)])
    reference = {k: np.array(v).tobytes() for k, v in reference.items()}
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        folder = tmp_path / f"shared{round_}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=race, args=(str(folder), "k", count, barrier, results)) for _ in range(2)]
        for w in workers:
            w.start()
        got = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(60)
            assert w.exitcode == 0
        for _, values, _ in got:
            assert values == reference
        # one built it; the other waited for the lock and read the sealed cache
        assert sorted(info["computed"] for _, _, info in got) == [0, count]
        assert _problem(folder, "k", count, fields()) is None
