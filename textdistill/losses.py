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


def hidden_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """mean_d (h_s - h_t)^2 per position. `[..., L, D], [..., L, D] -> [..., L]`.

    TinyBERT's hidden-state loss (https://arxiv.org/abs/1909.10351); a width mismatch is bridged by a
    projection of the student's states before this call, never inside it.
    """
    return (student_hidden.float() - teacher_hidden.float()).pow(2).mean(-1)


def hidden_cosine(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """1 - cos(h_s, h_t) per position, in [0, 2]. `[..., L, D], [..., L, D] -> [..., L]`.

    DistilBERT's cosine embedding loss on hidden states (https://arxiv.org/abs/1910.01108).
    """
    return 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1, eps=1e-8)


def attention_forward_kl(student_attention: torch.Tensor, teacher_attention: torch.Tensor) -> torch.Tensor:
    """KL(A_t || A_s) per query row, averaged over heads: sum_k a_t (log a_t - log a_s).

    Inputs are attention **probabilities** (rows sum to 1), `[B, H, Lq, Lk] -> [B, Lq]`, teacher first
    in the formula as in MiniLM (https://arxiv.org/abs/2002.10957). Keys the teacher gives probability 0
    (padding) add 0; student probabilities are floored at 1e-12 so a 0 there stays finite.
    """
    s = student_attention.float()
    t = teacher_attention.float()
    per_row = (torch.xlogy(t, t) - t * s.clamp_min(1e-12).log()).sum(-1)  # [B, H, Lq]
    return per_row.mean(1)


def masked_mean_per_example(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-position `values` `[B, L]` over the positions where `mask` `[B, L]` is true -> `[B]`.

    Makes token-level matching a per-example value, so it is normalised like every other term (by the
    step's example count); a row with no true position gives 0, not NaN.
    """
    m = mask.bool()
    total = torch.where(m, values, torch.zeros_like(values)).sum(-1)
    return total / m.sum(-1).clamp(min=1)


# Intermediate-layer losses selectable by name (`loss.hidden_loss`).
HIDDEN_LOSSES = {
    "mse": hidden_mse,
    "cosine": hidden_cosine,
}

# Soft terms selectable by name in the config (`loss.soft`); the validator checks names against this.
SOFT_LOSSES = {
    "kl": forward_kl,
    "mse": logit_mse,
}
