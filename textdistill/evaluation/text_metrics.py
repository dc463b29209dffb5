"""Quality metrics for generated text and for a student's agreement with its teacher.

BLEU and chrF are corpus-level sacreBLEU scores (Post 2018, https://aclanthology.org/W18-6319/) with
their default settings, so they compare with published numbers; ROUGE-L is the mean sentence-level
LCS F-measure on whitespace tokens (Lin 2004, beta = 1), kept simple and tested on hand-computed cases.
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


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence; O(len(a) * len(b)) time, O(len(b)) memory."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over pairs of the LCS F1 on whitespace tokens, 0-1: 2·LCS / (len(hyp) + len(ref)).

    A pair where both sides are empty scores 1; an empty list scores 0.
    """
    _check(hyps, refs)
    scores = []
    for hyp, ref in zip(hyps, refs):
        h, r = hyp.split(), ref.split()
        scores.append(1.0 if not h and not r else 2 * lcs_length(h, r) / (len(h) + len(r)))
    return sum(scores) / len(scores) if scores else 0.0


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
