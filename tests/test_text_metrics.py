import math

import pytest
import torch

from textdistill.errors import TextDistillError
from textdistill.evaluation import text_metrics as tm


def test_bleu_and_chrf_are_100_on_identical_text_and_lower_otherwise():
    refs = ["the cat sat on the mat today", "a quick brown fox jumps over it"]
    assert tm.bleu(refs, refs) == pytest.approx(100.0)
    assert tm.chrf(refs, refs) == pytest.approx(100.0)
    hyps = ["the cat sat on a mat today", "a slow brown dog jumps over it"]
    assert 0 < tm.bleu(hyps, refs) < 100 and 0 < tm.chrf(hyps, refs) < 100
    assert tm.bleu(["zzz qqq"], ["the cat"]) == pytest.approx(0.0)
    with pytest.raises(TextDistillError):
        tm.bleu(["a"], ["a", "b"])


def test_bleu_matches_sacrebleu_directly():
    import sacrebleu
    hyps, refs = ["he read the book because he was interested"], ["he was interested in the book so he read it"]
    assert tm.bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_lcs_and_rouge_l_hand_computed():
    assert tm.lcs_length("a b c d e".split(), "a c e".split()) == 3
    assert tm.lcs_length("a b".split(), "c d".split()) == 0
    # hyp "the cat was found under the bed" (7), ref "the cat was under the bed" (6): LCS 6 -> F1 12/13
    assert tm.rouge_l(["the cat was found under the bed"], ["the cat was under the bed"]) == pytest.approx(12 / 13)
    # "a b c" vs "c b a": LCS 1 -> 2/6; mean with an exact pair -> (1/3 + 1) / 2
    assert tm.rouge_l(["a b c", "x y"], ["c b a", "x y"]) == pytest.approx((1 / 3 + 1) / 2)
    assert tm.rouge_l(["", ""], ["", "a"]) == pytest.approx(0.5)
    assert tm.rouge_l([], []) == 0.0


def test_perplexity():
    assert tm.perplexity(0.0, 5) == 1.0
    assert tm.perplexity(10 * math.log(7), 10) == pytest.approx(7.0)
    assert tm.perplexity(1e6, 1) == math.inf
    with pytest.raises(TextDistillError):
        tm.perplexity(1.0, 0)


def test_token_agreement_logits_ids_and_mask():
    teacher = torch.tensor([[[0.0, 5.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])  # argmax 1, 0, 2
    student_ids = torch.tensor([[1, 2, 2]])
    student_logits = torch.nn.functional.one_hot(student_ids, 3).float()
    assert tm.token_agreement(student_logits, teacher) == pytest.approx(2 / 3)
    assert tm.token_agreement(student_ids, teacher) == pytest.approx(2 / 3)
    assert tm.token_agreement(student_ids, teacher, torch.tensor([[1, 0, 0]])) == 1.0
    assert tm.token_agreement(student_ids, teacher, torch.tensor([[0, 1, 0]])) == 0.0
    assert math.isnan(tm.token_agreement(student_ids, teacher, torch.zeros(1, 3)))
    with pytest.raises(TextDistillError):
        tm.token_agreement(torch.tensor([[1, 2]]), teacher)


def test_distinct_share_flags_an_input_independent_model():
    from textdistill.evaluation.text_metrics import distinct_share

    assert distinct_share(["a b", "c d", "e"]) == 1.0
    assert distinct_share(["same"] * 4) == 0.25
    with pytest.raises(TextDistillError, match="at least one"):
        distinct_share([])
