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


def test_rouge_l_is_the_reference_implementation_with_hand_computed_cases():
    # hyp "the cat was found under the bed" (7 tokens), ref "the cat was under the bed" (6): LCS 6 -> F1 12/13
    assert tm.rouge_l(["the cat was found under the bed"], ["the cat was under the bed"]) == pytest.approx(12 / 13)
    # "a b c" vs "c b a": LCS 1 -> 2/6; mean with an exact pair -> (1/3 + 1) / 2
    assert tm.rouge_l(["a b c", "x y"], ["c b a", "x y"]) == pytest.approx((1 / 3 + 1) / 2)
    # ROUGE-1.5.5's -m: case, punctuation and inflection do not count ("Cats ran." matches "the cat runs")
    assert tm.rouge_l(["Cats ran."], ["the cat runs"]) == pytest.approx(2 * 1 / (2 + 3))
    assert tm.rouge_l(["The dogs barked!"], ["the dog barks"]) == pytest.approx(1.0)
    assert tm.rouge_l(["", "a"], ["", "a"]) == pytest.approx(0.5)  # an empty side scores 0
    assert tm.rouge_l([], []) == 0.0
    with pytest.raises(TextDistillError):
        tm.rouge_l(["a"], ["a", "b"])


def test_rouge_l_agrees_with_rouge_score_on_random_text():
    import random

    from rouge_score import rouge_scorer

    rng = random.Random(0)
    words = ["the", "cats", "ran", "running", "over", "a", "hill", "Hills", "quickly", "dog's", "2024"]
    hyps = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(50)]
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(50)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    want = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
    assert tm.rouge_l(hyps, refs) == pytest.approx(want, abs=1e-12)


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
