"""Teacher-labelled token variants: pure-function properties and the budget rule in a real run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from textdistill.config import load_config
from textdistill.data.augment import embedding_neighbours, neighbour_table, token_variants, word_start_flags
from textdistill.data.labelled import Encoded
from textdistill.losses import IGNORE_INDEX
from textdistill.pipeline.run import run_distill

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


def test_span_variants_delete_one_contiguous_run_of_the_share():
    part = _part()
    out = token_variants(part, copies=4, share=0.4, special_ids={0, CLS, SEP}, mask_id=MASK, seed=3, kinds=["span"])
    for k, (ids, types) in enumerate(zip(out.input_ids, out.token_type_ids)):
        original = part.input_ids[k % len(part)]
        body, kept = original[1:-1], ids[1:-1]
        width = min(round(0.4 * len(body)), len(body) - 1)
        assert ids[0] == CLS and ids[-1] == SEP and len(kept) == len(body) - width
        # what is left is a prefix and a suffix of the body: one contiguous run was cut
        assert any(body[:i] + body[i + width:] == kept for i in range(len(body) - width + 1))
        assert types == sorted(types) and len(types) == len(ids)


def test_mixed_variants_join_a_beginning_to_another_texts_end_within_the_longer_length():
    ids = [[CLS] + [100 + 10 * k + j for j in range(n)] + [SEP] for k, n in enumerate((4, 9, 6))]
    part = Encoded(input_ids=ids, token_type_ids=None, labels=torch.tensor([0, 1, 0]), lengths=[len(x) for x in ids],
                   pad_id=0)
    out = token_variants(part, copies=30, share=0.3, special_ids={0, CLS, SEP}, mask_id=MASK, seed=0, kinds=["mix"])
    sources = [set(x[1:-1]) for x in ids]
    crossed = 0
    for k, new in enumerate(out.input_ids):
        mine = sources[k % 3]
        assert new[0] == CLS and new[-1] == SEP and len(new) <= max(len(x) for x in ids)
        body = new[1:-1]
        assert body[0] in mine  # starts with this text's beginning
        head = 0
        while head < len(body) and body[head] in mine and body[:head + 1] == ids[k % 3][1:head + 2]:
            head += 1
        rest = body[head:]
        if rest:  # the rest is one contiguous piece of another text's body
            donor = next(x[1:-1] for x in ids if rest[0] in x)
            start = donor.index(rest[0])
            assert donor[start : start + len(rest)] == rest
            crossed += donor != ids[k % 3][1:-1]
    assert crossed > 10


def test_one_kind_gives_exactly_the_token_variants_and_bad_kinds_are_config_errors(tiny_overrides):
    part = _part()
    kwargs = dict(copies=3, share=0.3, special_ids={0, CLS, SEP, MASK}, mask_id=MASK, seed=5)
    assert token_variants(part, **kwargs).input_ids == token_variants(part, kinds=["tokens"], **kwargs).input_ids
    mixed = token_variants(part, kinds=["tokens", "span"], **kwargs)
    assert len(mixed) == 3 * len(part)
    import pytest

    from textdistill.errors import TextDistillError
    with pytest.raises(TextDistillError, match="augment_kinds"):
        load_config(None, {**tiny_overrides, "data.augment_kinds": ["shuffle"]})


def test_with_unlabelled_text_the_baseline_still_gets_the_students_steps_and_schedule(tiny_overrides, tmp_path):
    # the student's budget counts the unlabelled text (teacher targets only); the baseline, which has gold
    # labels only, makes up the same optimizer steps with more passes over them
    from conftest import synthetic_frame

    unlabeled = tmp_path / "unlabeled.csv"
    synthetic_frame(96, seed=7)[["text"]].to_csv(unlabeled, index=False)
    cfg = load_config(None, {**tiny_overrides, "data.unlabeled": str(unlabeled), "data.augment_copies": 0,
                             "train.epochs": 1})
    summary = run_distill(cfg)
    assert summary["sizes"]["unlabeled"] == 96
    runs = summary["runs"]
    assert runs["student"]["steps"] == runs["baseline"]["steps"] == -(-(160 + 96) // 16)
    history = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = {r: [h["step"] for h in history if h["run"] == r and h.get("split") == "validation"]
             for r in ("student", "baseline")}
    assert evals["student"] == evals["baseline"]


def test_embedding_neighbours_are_the_nearest_of_the_same_kind_never_itself_or_outside_the_candidates():
    # ids 0..5: 0 is special (not a candidate); 1, 2, 3 word starts; 4, 5 continuation pieces
    emb = torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.9, 0.1], [-1.0, 0.2], [1.0, 0.05], [0.0, 1.0]])
    starts = [True, True, True, True, False, False]
    table = embedding_neighbours(emb, [1, 2, 3, 4, 5], starts, k=1)
    # 4 is the closest row to 1 by cosine, but it is a continuation piece: 1's neighbour is 2
    assert table == {1: [2], 2: [1], 3: [2], 4: [5], 5: [4]}
    ranked = embedding_neighbours(emb, [1, 2, 3], starts, k=2)
    assert ranked[1] == [2, 3] and 0 not in sum(ranked.values(), [])


def test_word_start_flags_follow_the_tokenizer_family():
    assert word_start_flags(["[CLS]", "good", "##ly"]) == [True, True, False]
    assert word_start_flags(["<s>", "\u0120good", "ly"]) == [False, True, False]
    assert word_start_flags(["<s>", "\u2581good", "ly"]) == [False, True, False]


def test_neighbour_variants_replace_tokens_by_their_neighbours_only_and_keep_length_and_specials():
    part = _part()
    table = {t: [t + 100, t + 200] for t in range(10, 30)}
    out = token_variants(part, copies=10, share=0.5, special_ids={0, CLS, SEP, MASK}, mask_id=MASK, seed=2,
                         kinds=["neighbours"], neighbours=table)
    changed = 0
    for k, ids in enumerate(out.input_ids):
        original = part.input_ids[k % len(part)]
        assert len(ids) == len(original) and ids[0] == CLS and ids[-1] == SEP
        for new, old in zip(ids[1:-1], original[1:-1]):
            assert new == old or new in table[old]
            changed += new != old
    body = sum(len(x) - 2 for x in part.input_ids) * 10
    assert 0.35 < changed / body < 0.65
    again = token_variants(part, copies=10, share=0.5, special_ids={0, CLS, SEP, MASK}, mask_id=MASK, seed=2,
                           kinds=["neighbours"], neighbours=table)
    assert again.input_ids == out.input_ids


def test_neighbour_table_never_offers_special_tokens_even_when_they_are_the_nearest(tmp_path):
    from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_tokenizer

    from textdistill.data.labelled import TextSplit, encode

    tok = write_tokenizer(tmp_path / "tok", POSITIVE + NEGATIVE + FILLER)
    emb = tiny_bert(len(tok.get_vocab())).get_input_embeddings().weight.detach().clone()
    for special in tok.all_special_ids:  # every special token sits right on top of a content token
        emb[special] = emb[tok.convert_tokens_to_ids("good")] * 1.0001
    part = encode(tok, TextSplit(texts=["good film", "bad plot really", "the actors were dull"]), [0, 1, 0], 16,
                  "train")
    table = neighbour_table(tok, emb, part, k=50)
    offered = {t for near in table.values() for t in near}
    assert offered and not offered & set(tok.all_special_ids)
    assert offered <= {t for ids in part.input_ids for t in ids}  # only the data's own tokens


def test_neighbour_variants_run_end_to_end(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "data.augment_copies": 3, "data.augment_kinds": ["neighbours"],
                             "data.augment_share": 0.9})
    summary = run_distill(cfg)
    assert summary["sizes"]["augmented"] == 3 * summary["sizes"]["train"]
