"""Distillation losses as small pure functions.

Conventions (every function here follows them):
- arguments are always `(student_logits, teacher_logits, ...)`, tensors of shape `[..., V]`;
- softmax over `dim=-1`, computed in float32 whatever the input dtype;
- the result has the leading shape `[...]`: one value per example (or per token), **no reduction and
  no mask**. `masked_sum` does masking; the training step divides by the count of the whole optimizer
  step, so gradient accumulation and data parallelism are exact by construction;
- temperature divides the logits; the T^2 factor (Hinton 2015) is **not** applied here: the objective
  multiplies by it, where the formula can be read.

Direction is in the name: `forward_kl` is KL(teacher || student), the mean-seeking loss of Hinton et al.;
`reverse_kl` is KL(student || teacher), mode-seeking (MiniLLM). Note `F.kl_div(input, target)` computes
KL(target || input); we avoid it so the direction is visible in the code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.log_softmax(logits.float() / temperature, dim=-1)


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE(student, y) = -log q_y per position. `[..., V], [...] -> [...]`; IGNORE_INDEX labels give 0."""
    flat = F.cross_entropy(
        student_logits.float().reshape(-1, student_logits.shape[-1]),  # [N, V]
        labels.reshape(-1),  # [N]
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return flat.reshape(labels.shape)


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v), p = softmax(teacher/T), q = softmax(student/T).

    `[..., V], [..., V] -> [...]`. Hinton et al. 2015, https://arxiv.org/abs/1503.02531 (no T^2 here).
    """
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    return (t.exp() * (t - s)).sum(-1)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(q || p) = sum_v q_v (log q_v - log p_v), student q first: mode-seeking.

    `[..., V], [..., V] -> [...]`. MiniLLM, https://arxiv.org/abs/2306.08543 (no T^2 here).
    """
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    return (s.exp() * (s - t)).sum(-1)


def jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5, temperature: float = 1.0
) -> torch.Tensor:
    """Generalised JSD: beta * KL(p || m) + (1 - beta) * KL(q || m), m = beta * p + (1 - beta) * q.

    p = teacher, q = student. `[..., V], [..., V] -> [...]`. beta = 0.5 is the symmetric JSD. The
    mixture form vanishes at both ends, so, as in GKD (https://arxiv.org/abs/2306.13649), the endpoints
    are defined as the limits of the gradient's direction: beta = 0 returns `forward_kl`, beta = 1
    returns `reverse_kl`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(student_logits, teacher_logits, temperature)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits, temperature)
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
    kl_tm = (t.exp() * (t - m)).sum(-1)
    kl_sm = (s.exp() * (s - m)).sum(-1)
    return beta * kl_tm + (1 - beta) * kl_sm


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """mean_v (z_s - z_t)^2 on raw logits (Ba & Caruana 2014). `[..., V] -> [...]`; temperature unused."""
    return (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is true; an all-false mask gives 0 (never NaN). Shapes must match."""
    if mask is None:
        return values.sum()
    return torch.where(mask.bool(), values, torch.zeros_like(values)).sum()


def topk_with_leftover(logits: torch.Tensor, k: int, temperature: float = 1.0):
    """The teacher's k most likely tokens and the probability mass of all the others.

    `[..., V] -> (logprobs [..., k] float32, ids [..., k] long, leftover_logmass [...] float32)`, with
    log softmax(logits / T) and leftover = log(1 - sum_k p). A cache stores these instead of `[..., V]`
    logits: k + 1 numbers per position instead of V.
    """
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"top-k needs 1 <= k <= vocabulary size {logits.shape[-1]}, got k={k}")
    logprobs, ids = _log_probs(logits, temperature).topk(k, dim=-1)  # [..., k], [..., k]
    kept = torch.logsumexp(logprobs, dim=-1)  # [...]
    # log(1 - exp(kept)) computed stably; clamp so a distribution fully inside the top-k gives -inf, not NaN
    leftover = torch.log(-torch.expm1(kept.clamp(max=0.0)))
    return logprobs, ids, leftover


def topk_forward_kl(student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_ids: torch.Tensor,
                    teacher_leftover: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(p~ || q~) over k + 1 outcomes: the teacher's top-k tokens and one bucket "every other token".

    `student [..., V], teacher logprobs/ids [..., k], leftover [...] -> [...]` (no T^2 here). Collapsing
    the tail into one bucket is a coarsening of both distributions, so by the data-processing inequality
    the result lies in [0, forward_kl(student, teacher)]; it equals it when the tail is empty. Teacher
    memory per position is k + 1 numbers; the only V-sized terms are the student's logits and one float32 copy.
    """
    # log q at the k ids as gathered logit minus logsumexp: no [..., V] log-softmax is kept for backward
    scaled = student_logits.float() / temperature  # [..., V]
    s_top = scaled.gather(-1, teacher_ids) - torch.logsumexp(scaled, dim=-1, keepdim=True)  # [..., k]
    s_left = torch.log((-torch.expm1(torch.logsumexp(s_top, dim=-1).clamp(max=0.0))).clamp(min=1e-30))  # [...]
    t_top = teacher_logprobs.float()
    t_left = teacher_leftover.float()
    top = (t_top.exp() * (t_top - s_top)).sum(-1)  # [...]
    left = torch.where(torch.isfinite(t_left), t_left.exp() * (t_left - s_left), torch.zeros_like(t_left))
    return top + left


# Soft terms selectable by name in the config (`loss.soft`); the validator checks names against this.
SOFT_LOSSES = {
    "kl": forward_kl,
    "mse": logit_mse,
}
