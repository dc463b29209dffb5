"""Teacher-labelled token variants: pure-function properties and the budget rule in a real run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from textdistill.config import load_config
from textdistill.data.augment import token_variants
from textdistill.data.classification import Encoded
from textdistill.losses import IGNORE_INDEX
from textdistill.pipeline.distill import run_distill

CLS, SEP, MASK = 2, 3, 4


def _part() -> Encoded:
    ids = [[CLS] + list(range(10, 10 + n)) + [SEP] for n in (3, 8, 20)]
    types = [[0] * (len(x) // 2) + [1] * (len(x) - len(x) // 2) for x in ids]
    return Encoded(input_ids=ids, token_type_ids=types, labels=torch.tensor([0, 1, 0]),
                   lengths=[len(x) for x in ids], pad_id=0)


def test_variants_keep_special_tokens_and_segments_and_have_no_label():
    part = _part()
    out = token_variants(part, copies=3, share=0.5, special_ids={0, CLS, SEP, MASK}, mask_id=MASK, seed=1)
    assert len(out) == 3 * len(part)
    assert (out.labels == IGNORE_INDEX).all() and out.teacher_logits is None
    for ids, types, n in zip(out.input_ids, out.token_type_ids, out.lengths):
        assert ids[0] == CLS and ids[-1] == SEP and ids.count(CLS) == 1 and ids.count(SEP) == 1
        assert len(ids) == len(types) == n
        assert types == sorted(types)  # deletions take their segment id along: segments stay contiguous
        assert all(t in (MASK, *range(10, 30)) for t in ids[1:-1])  # replacements come from the data


def test_variants_are_a_pure_function_of_the_seed_and_change_about_the_share():
    part = _part()
    kwargs = dict(copies=20, share=0.3, special_ids={0, CLS, SEP, MASK}, mask_id=MASK)
    a, b = token_variants(part, seed=7, **kwargs), token_variants(part, seed=7, **kwargs)
    assert a.input_ids == b.input_ids
    assert token_variants(part, seed=8, **kwargs).input_ids != a.input_ids
    original = sum(len(x) - 2 for x in part.input_ids) * 20
    masked = sum(ids.count(MASK) for ids in a.input_ids)
    deleted = original - sum(n - 2 for n in a.lengths)
    assert 0.05 < masked / original < 0.15 and 0.05 < deleted / original < 0.15  # a third of 0.3 each


def test_without_a_mask_token_nothing_is_masked():
    out = token_variants(_part(), copies=5, share=0.9, special_ids={0, CLS, SEP}, mask_id=None, seed=0)
    assert all(MASK not in ids for ids in out.input_ids)


def test_augmented_run_trains_the_baseline_budget_on_more_data(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "data.augment_copies": 2})
    summary = run_distill(cfg)
    assert summary["sizes"]["augmented"] == 2 * summary["sizes"]["train"]
    runs = summary["runs"]
    assert runs["student"]["steps"] == runs["baseline"]["steps"]
    history = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = {r: [h["step"] for h in history if h["run"] == r and h.get("split") == "validation"]
             for r in ("student", "baseline")}
    assert evals["student"] == evals["baseline"]  # same evaluation schedule
