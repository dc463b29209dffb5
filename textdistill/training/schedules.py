"""Schedules over training progress and per-example weights from the teacher's confidence.

Pure functions: `progress` is the share of training done, in [0, 1], as the loop passes it to objectives.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "cosine")


def scheduled(start: float, end: float | None, kind: str, progress: float) -> float:
    """The value at `progress`: `start` at 0, `end` at 1 (constant, or `end` empty, stays at `start`).

    'linear' interpolates; 'cosine' follows start + (end - start) * (1 - cos(pi * progress)) / 2.
    """
    if kind == "constant" or end is None:
        return start
    p = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        share = p
    elif kind == "cosine":
        share = (1.0 - math.cos(math.pi * p)) / 2.0
    else:
        raise ValueError(f"unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
    return start + (end - start) * share


def teacher_weights(teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example soft-term weight from the teacher's distribution. `[B, C] -> [B]`, in [0, 1], no gradient.

    'none' gives 1; 'confidence' the top probability max_c p_c; 'entropy' 1 - H(p) / log C.
    """
    if kind == "none":
        return torch.ones(teacher_logits.shape[:-1], device=teacher_logits.device)
    log_p = torch.log_softmax(teacher_logits.detach().float(), dim=-1)
    if kind == "confidence":
        return log_p.exp().max(-1).values
    if kind == "entropy":
        n_classes = teacher_logits.shape[-1]
        if n_classes < 2:
            return torch.ones(teacher_logits.shape[:-1], device=teacher_logits.device)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return (1.0 - entropy / math.log(n_classes)).clamp(0.0, 1.0)
    raise ValueError(f"unknown soft weighting {kind!r}; use 'none', 'confidence' or 'entropy'")


def class_balance_weights(teacher_logits: torch.Tensor, gold_labels: torch.Tensor, n_classes: int,
                          uniform: bool = False) -> torch.Tensor:
    """Per-example weights `[N]` that give each class (the teacher's top class) the share of the weight the
    gold labels give it, or with `uniform` an equal share: w_i = pi_c / q_c for c = argmax teacher_i, with pi_c
    the share of class c among the gold labels (1 / C with `uniform`) and q_c its share among the teacher's top
    classes. `[N, C], [M] -> [N]`; mean weight 1 when the teacher's classes cover every class with a share.
    A class the teacher never puts first gets no weight to give.
    """
    top = teacher_logits.argmax(-1)  # [N]
    if uniform:
        prior = torch.full((n_classes,), 1.0 / n_classes)  # [C]
    else:
        prior = torch.bincount(gold_labels, minlength=n_classes).float() / max(len(gold_labels), 1)  # [C]
    share = torch.bincount(top, minlength=n_classes).float() / max(len(top), 1)  # [C]
    ratio = torch.where(share > 0, prior / share.clamp(min=1e-12), torch.zeros_like(prior))  # [C]
    return ratio[top]
