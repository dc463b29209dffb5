"""Quality metrics for generated text and for a student's agreement with its teacher.

BLEU and chrF are corpus-level sacreBLEU scores (Post 2018, https://aclanthology.org/W18-6319/) with
their default settings, so they compare with published numbers; ROUGE-L is Google's `rouge-score` (the
implementation the summarisation papers report; Lin 2004), the sentence-level LCS F-measure with Porter
stemming, averaged over pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from textdistill.errors import TextDistillError


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise TextDistillError(f"got {len(hyps)} hypotheses but {len(refs)} references; they must pair up")


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU (0-100), sacreBLEU defaults (13a tokenisation, exponential smoothing), one reference each."""
    import sacrebleu

    _check(hyps, refs)
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF (0-100), sacreBLEU defaults (character 6-grams, beta 2), one reference each."""
    import sacrebleu

    _check(hyps, refs)
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


def distinct_share(outputs: Sequence[str]) -> float:
    """Share of distinct texts among `outputs` (1.0 all different). A model whose greedy outputs barely
    depend on the input (the same sentence for every source) has a share near 1 / len(outputs)."""
    if not outputs:
        raise TextDistillError("distinct_share needs at least one output")
    return len(set(outputs)) / len(outputs)


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over pairs of the ROUGE-L F-measure (0-1), `rouge_score.rouge_scorer.RougeScorer(["rougeL"],
    use_stemmer=True)`: ROUGE-1.5.5's `-m` setting, which the summarisation papers report.

    The package's tokenisation lowercases and keeps ASCII letters and digits only, so text in other
    scripts scores 0 (score such data by chrF). A pair with an empty side scores 0; no pairs score 0.
    """
    from rouge_score import rouge_scorer

    _check(hyps, refs)
    if not hyps:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    # score(target, prediction): the reference comes first
    return sum(scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hyps, refs)) / len(hyps)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(total negative log-likelihood in nats / number of tokens); inf when it overflows."""
    if n_tokens <= 0:
        raise TextDistillError(f"perplexity needs at least one token, got n_tokens={n_tokens}")
    mean = float(total_nll) / n_tokens
    return math.exp(mean) if mean < 709 else math.inf


def token_agreement(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Share of (unmasked) positions where the student's and the teacher's argmax tokens match.

    `student`, `teacher`: logits `[..., V]` or token ids `[...]` (either may be ids when the other is
    logits); `mask`: `[...]`, nonzero where a position counts. 0 positions gives nan.
    """
    student_ids = student.argmax(-1) if student.is_floating_point() else student
    teacher_ids = teacher.argmax(-1) if teacher.is_floating_point() else teacher
    if student_ids.shape != teacher_ids.shape:
        raise TextDistillError(f"student positions {tuple(student_ids.shape)} and teacher positions "
                               f"{tuple(teacher_ids.shape)} differ")
    same = student_ids == teacher_ids  # [...]
    keep = torch.ones_like(same) if mask is None else mask.to(torch.bool)
    count = int(keep.sum())
    return float((same & keep).sum()) / count if count else math.nan
