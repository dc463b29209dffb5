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
from collections.abc import Sequence

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


def skew_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float = 0.1, temperature: float = 1.0
) -> torch.Tensor:
    """Skew forward KL: KL(p || alpha p + (1 - alpha) q), p = teacher, q = student.

    `[..., V], [..., V] -> [...]`. DistiLLM, https://arxiv.org/abs/2402.03898. alpha = 0 is `forward_kl`;
    alpha = 1 is identically 0. The mixture keeps the loss finite where q vanishes. No T^2 here.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"skew alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return forward_kl(student_logits, teacher_logits, temperature)
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    if alpha == 1.0:
        return torch.zeros_like(t[..., 0])
    m = torch.logsumexp(torch.stack([t + math.log(alpha), s + math.log(1 - alpha)]), dim=0)
    return (t.exp() * (t - m)).sum(-1)


def skew_reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float = 0.1, temperature: float = 1.0
) -> torch.Tensor:
    """Skew reverse KL: KL(q || alpha q + (1 - alpha) p), student q first: mode-seeking.

    `[..., V], [..., V] -> [...]`. DistiLLM, https://arxiv.org/abs/2402.03898. alpha = 0 is `reverse_kl`;
    alpha = 1 is identically 0. No T^2 here.
    """
    return skew_kl(teacher_logits, student_logits, alpha, temperature)


def total_variation(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """TV(p, q) = 0.5 * sum_v |p_v - q_v|, in [0, 1]; symmetric, so it has no direction. No T^2 here.

    `[..., V], [..., V] -> [...]`. As a distillation loss: DistiLLM-style f-divergence family,
    https://arxiv.org/abs/2307.15190.
    """
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    return 0.5 * (t.exp() - s.exp()).abs().sum(-1)


def chunked(loss_fn, student_logits: torch.Tensor, teacher_logits: torch.Tensor, chunk_size: int, **kwargs):
    """`loss_fn` applied to `chunk_size` positions at a time; equal to `loss_fn(student, teacher)`.

    `[..., V], [..., V] -> [...]`. The float32 softmax intermediates exist for one chunk at a time, so
    their peak memory is `chunk_size * V` instead of `positions * V`; gradients flow through every chunk.
    A tensor option with the positions' shape `[...]` (dkd's `labels`) is cut into the same chunks.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    lead = student_logits.shape[:-1]
    flat_s = student_logits.reshape(-1, student_logits.shape[-1])  # [N, V]
    flat_t = teacher_logits.reshape(-1, teacher_logits.shape[-1])  # [N, V]
    # no position at all (an all-masked micro-batch): one call on the empty tensors keeps the result on the
    # autograd graph, so a loss made of this term alone still backpropagates (zero gradients), as unchunked
    starts = range(0, flat_s.shape[0], chunk_size) or range(1)
    # per-position tensors among the options (dkd's labels) are cut like the logits
    per_position = {k: v.reshape(-1) for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.shape == lead}
    parts = [loss_fn(flat_s[i : i + chunk_size], flat_t[i : i + chunk_size],
                     **{**kwargs, **{k: v[i : i + chunk_size] for k, v in per_position.items()}})
             for i in starts]  # [chunk]
    return torch.cat(parts).reshape(lead)


def topk_with_leftover(
    teacher_logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse teacher: its k largest log-probs, their ids and the log of the mass left outside them.

    `[..., V] -> ([..., k] float32, [..., k] long, [...] float32)`. leftover = log(1 - sum top-k p);
    it is -inf when k = V. Storing these instead of the logits makes memory grow with k, not V.
    """
    if not 1 <= k <= teacher_logits.shape[-1]:
        raise ValueError(f"top-k must be in [1, {teacher_logits.shape[-1]}], got {k}")
    t = _log_probs(teacher_logits, temperature)
    top_logprobs, top_ids = t.topk(k, dim=-1)
    outside = t.scatter(-1, top_ids, float("-inf"))
    return top_logprobs, top_ids, torch.logsumexp(outside, dim=-1)


def forward_kl_topk(
    student_logits: torch.Tensor,
    teacher_top_logprobs: torch.Tensor,
    teacher_top_ids: torch.Tensor,
    teacher_leftover: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(p' || q') over the k teacher ids plus one bucket for everything else (teacher = p, first).

    `[..., V], [..., k], [..., k], [...] -> [...]`; the teacher side comes from `topk_with_leftover`
    at the same temperature (k distinct ids). q' lumps the student's mass outside the k ids into the bucket.
    Bound: 0 <= forward_kl - forward_kl_topk = r * KL(p_rest / r || q_rest / Q) where r and Q are the
    teacher's and the student's mass outside the k ids (log-sum inequality); it is 0 when k = V, and
    small when r is. Never larger than the full KL, so it under-penalises, never over-penalises. Teacher
    memory is k + 1 numbers per position; the only V-sized terms are the student's logits and one float32
    copy (the logits with the k ids masked, kept for the backward pass).
    """
    # gathered from the model's own logits (gather keeps its input for the backward pass, and those are held
    # anyway), so the float32 copy below is free to be masked in place: one V-sized copy, as for the KL
    top = student_logits.gather(-1, teacher_top_ids).float() / temperature  # [..., k]
    scaled = student_logits.float() / temperature  # [..., V], a new tensor
    with torch.no_grad():  # see _EXCLUDED
        scaled.scatter_(-1, teacher_top_ids, _EXCLUDED)
    # log Q from the logits outside the ids: 1 - sum(top-k q) cancels to 0 in float32 once Q < ~1e-7
    outside = torch.logsumexp(scaled, dim=-1)  # [...]
    return _topk_kl(top, outside, teacher_top_logprobs, teacher_leftover)


# An excluded logit is overwritten with this floor outside autograd. logsumexp gives it the weight
# e^(floor - lse) = 0, in value and in gradient, so no masking op is needed in the backward pass; being
# finite, a row whose logits are all excluded (k = V, or a vocabulary block inside the top-k) still has
# a finite logsumexp and gradient, where -inf would give e^(-inf + inf) = NaN.
_EXCLUDED = -1e30


def _topk_kl(student_top: torch.Tensor, student_outside: torch.Tensor, teacher_top: torch.Tensor,
             teacher_leftover: torch.Tensor) -> torch.Tensor:
    """KL(p' || q') over k ids + one leftover bucket. `[..., k], [...], [..., k], [...] -> [...]`.

    The student side is unnormalised, in log space: its (scaled) logits at the k ids and the logsumexp of
    its logits outside them; the log-normaliser is their logaddexp, so no mass is ever found by
    subtraction. With k = V the outside is about `_EXCLUDED` (weight 0) and the teacher's leftover -inf
    (term 0).
    """
    log_norm = torch.logaddexp(student_outside, torch.logsumexp(student_top, dim=-1))  # [...]
    s_top = student_top - log_norm.unsqueeze(-1)  # [..., k]
    s_left = student_outside - log_norm  # [...]
    t_top = teacher_top.float()
    t_left = teacher_leftover.float()
    top = (t_top.exp() * (t_top - s_top)).sum(-1)  # [...]
    left = torch.where(torch.isfinite(t_left), t_left.exp() * (t_left - s_left), torch.zeros_like(t_left))
    return top + left


def _block_logsumexp(hidden: torch.Tensor, weight_block: torch.Tensor, temperature: float,
                     exclude_ids: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """logsumexp of one vocabulary block's logits (rows `start`.. of the head), `exclude_ids` masked out."""
    logits = (hidden @ weight_block.T).float() / temperature  # [..., Vb], a new tensor
    if exclude_ids is not None:
        with torch.no_grad():  # in place, outside autograd: see _EXCLUDED
            logits.masked_fill_(_block_hits(exclude_ids, start, logits.shape[-1]), _EXCLUDED)
    return torch.logsumexp(logits, dim=-1)  # [...]


def _block_hits(ids: torch.Tensor, start: int, width: int) -> torch.Tensor:
    """`[..., k]` vocabulary ids -> `[..., width]` bool, true at the ids inside block `[start, start + width)`."""
    local = ids - start  # [..., k]
    inside = (local >= 0) & (local < width)
    slot = torch.where(inside, local, torch.full_like(local, width))  # ids of other blocks go to a spare slot
    hits = torch.zeros(*ids.shape[:-1], width + 1, dtype=torch.bool, device=ids.device)  # [..., width + 1]
    return hits.scatter_(-1, slot, True)[..., :width].contiguous()  # contiguous: masked_fill runs faster on it


def log_normaliser_from_hidden(
    hidden: torch.Tensor, lm_head_weight: torch.Tensor, temperature: float = 1.0, vocab_chunk: int = 4096,
    exclude_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """logsumexp_v (hidden . w_v / T) without holding the `[..., V]` logits. `[..., D], [V, D] -> [...]`.

    With `exclude_ids` `[..., k]`, the sum runs over the vocabulary outside those ids (masked inside each
    block): the log of the mass outside them, exact even where that mass is far below float32's epsilon.
    A logsumexp over vocabulary blocks of `vocab_chunk` rows, each block recomputed in the backward pass
    (activation checkpointing): peak activation memory is `positions x vocab_chunk`, independent of V.
    """
    if vocab_chunk < 1:
        raise ValueError(f"vocab_chunk must be >= 1, got {vocab_chunk}")
    from torch.utils.checkpoint import checkpoint

    # split, not slicing: its backward concatenates the block gradients once instead of one [V, D] per block
    blocks = [checkpoint(_block_logsumexp, hidden, block, temperature, exclude_ids, i * vocab_chunk,
                         use_reentrant=False)
              for i, block in enumerate(lm_head_weight.split(vocab_chunk))]  # each [...]
    return torch.logsumexp(torch.stack(blocks, dim=-1), dim=-1)  # [...]


def _logits_at(hidden: torch.Tensor, lm_head_weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """hidden . w_id for the given ids only. `[..., D], [V, D], [..., k] -> [..., k]` float32."""
    return (hidden.unsqueeze(-2) * lm_head_weight[ids]).sum(-1).float()


def cross_entropy_from_hidden(
    student_hidden: torch.Tensor, lm_head_weight: torch.Tensor, labels: torch.Tensor, vocab_chunk: int = 4096
) -> torch.Tensor:
    """`cross_entropy(student_hidden @ lm_head_weight.T, labels)` without the `[..., V]` logits.

    `[..., D], [V, D], [...] -> [...]`; IGNORE_INDEX labels give 0. Memory as `log_normaliser_from_hidden`.
    """
    valid = labels != IGNORE_INDEX
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    picked = _logits_at(student_hidden, lm_head_weight, safe.unsqueeze(-1)).squeeze(-1)  # [...]
    nll = log_normaliser_from_hidden(student_hidden, lm_head_weight, 1.0, vocab_chunk) - picked
    return torch.where(valid, nll, torch.zeros_like(nll))


def forward_kl_topk_from_hidden(
    student_hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    teacher_top_logprobs: torch.Tensor,
    teacher_top_ids: torch.Tensor,
    teacher_leftover: torch.Tensor,
    temperature: float = 1.0,
    vocab_chunk: int = 4096,
) -> torch.Tensor:
    """`forward_kl_topk` computed from the student's last hidden states and its (bias-free) LM head.

    `[..., D], [V, D], [..., k], [..., k], [...] -> [...]`; equal to
    `forward_kl_topk(student_hidden @ lm_head_weight.T, ...)`. The student's `[..., V]` logits are never
    held: the k logits are dot products with the k gathered rows, and the student's mass outside the k ids
    is a logsumexp over the other rows, masked inside each block (`log_normaliser_from_hidden` with
    `exclude_ids`), never 1 minus the mass at the ids. Peak activation memory is
    `positions x (vocab_chunk + k x D)`: independent of V (the weight's own gradient is parameter-sized,
    as for any trained layer).
    """
    outside = log_normaliser_from_hidden(student_hidden, lm_head_weight, temperature, vocab_chunk,
                                         exclude_ids=teacher_top_ids)  # [...]
    # after the blocks: autograd runs the later node first, so the k gathered rows ([..., k, D]) are freed
    # before the blocks are recomputed in the backward pass instead of being held through it
    picked = _logits_at(student_hidden, lm_head_weight, teacher_top_ids) / temperature  # [..., k]
    return _topk_kl(picked, outside, teacher_top_logprobs, teacher_leftover)


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


# ---- Losses of the newer methods: decoupled (DKD), adaptive (ADL), mutual (DML / ONE), variational (VID)
# and contrastive (CRD / CoDIR) distillation. Their trainable pieces live in `training/heads.py`.


def decoupled_forward_kl_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """DKD's two parts of KL(p || q) (teacher p first), per position: (TCKD, NCKD).

    TCKD = KL(b_p || b_q) over the binary [p_y, 1 - p_y]; NCKD = KL(p_rest || q_rest) over the non-target
    classes renormalised. `[..., C], [..., C], [...] -> ([...], [...])`, C >= 2; IGNORE_INDEX labels give 0.
    Classical KD decomposes as forward_kl = TCKD + (1 - p_y) NCKD. Zhao et al. 2022,
    https://arxiv.org/abs/2203.08679. No T^2 here. The non-target masses are logsumexps of the
    non-target logits, so a confident model keeps an exact NCKD.
    """
    if student_logits.shape[-1] < 2:
        raise ValueError(f"decoupled KL needs at least 2 classes, got {student_logits.shape[-1]}")
    valid = labels != IGNORE_INDEX  # [...]
    target = torch.where(valid, labels, torch.zeros_like(labels)).long().unsqueeze(-1)  # [..., 1]
    is_target = torch.zeros_like(student_logits, dtype=torch.bool).scatter(-1, target, True)  # [..., C]

    def parts(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = logits.float() / temperature  # [..., C]
        rest = scaled.masked_fill(is_target, float("-inf"))  # [..., C]
        rest_norm = torch.logsumexp(rest, dim=-1, keepdim=True)  # [..., 1]
        both = torch.cat([scaled.gather(-1, target), rest_norm], dim=-1)  # [..., 2]: target, all others
        return both - torch.logsumexp(both, dim=-1, keepdim=True), rest - rest_norm  # log b, log p_rest

    s_bin, s_rest = parts(student_logits)
    t_bin, t_rest = parts(teacher_logits)
    tckd = (t_bin.exp() * (t_bin - s_bin)).sum(-1)
    nckd = torch.where(is_target, torch.zeros_like(t_rest), t_rest.exp() * (t_rest - s_rest)).sum(-1)
    return torch.where(valid, tckd, torch.zeros_like(tckd)), torch.where(valid, nckd, torch.zeros_like(nckd))


def decoupled_forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DKD = alpha * TCKD + beta * NCKD (`decoupled_forward_kl_terms`), per position. `[..., C] x2, [...] -> [...]`.

    alpha = 1, beta = 1 - p_y would be classical KD; DKD frees beta (the paper's CIFAR-100 setting is
    alpha 1, beta 8). Zhao et al. 2022, https://arxiv.org/abs/2203.08679. No T^2 here.
    """
    tckd, nckd = decoupled_forward_kl_terms(student_logits, teacher_logits, labels, temperature)
    return alpha * tckd + beta * nckd


def dkd_target_classes(labels: torch.Tensor | None, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The class DKD splits off as 'target', per position: the label where there is one (and it indexes the
    logits), else the teacher's most likely class. `[...] or None, [..., C] -> [...]` long.

    Unlabelled text, teacher-labelled variants and the tokens of a larger vocabulary have no gold class; the
    decomposition holds for any chosen class, and the teacher's top class is DKD's own choice without labels.
    """
    top = teacher_logits.argmax(-1)  # [...]
    if labels is None:
        return top
    usable = (labels >= 0) & (labels < teacher_logits.shape[-1])  # IGNORE_INDEX, or outside the shared vocabulary
    return torch.where(usable, labels.long(), top)


def dkd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 1.0,
    beta: float = 8.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """`decoupled_forward_kl` in the registry's form: alpha * TCKD + beta * NCKD, KL(teacher || student) split at
    the target class of `dkd_target_classes` (the label, else the teacher's top class). `[..., V] x2 -> [...]`.

    With alpha = 1 and beta = 1 - p_y it is `forward_kl`. Zhao et al. 2022, https://arxiv.org/abs/2203.08679.
    No T^2 here.
    """
    targets = dkd_target_classes(labels, teacher_logits)
    return decoupled_forward_kl(student_logits, teacher_logits, targets, alpha, beta, temperature)


def adaptive_forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.5,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Adaptive distillation loss: w * KL(p || q), w = (1 - exp(-(KL(p || q) + beta * H(p))))^gamma.

    `[..., V], [..., V] -> [...]`, teacher p first. The per-example weight w in [0, 1) grows with the
    teacher-student gap (KL) and with the teacher's uncertainty (entropy H), so examples already mimicked
    with a confident teacher fade out, focal-loss style; gamma = 0 is `forward_kl`. The gradient flows
    through w, as in the paper's loss. ADL, Tang et al. 2019, https://arxiv.org/abs/1901.00366. No T^2 here.
    """
    if beta < 0 or gamma < 0:
        raise ValueError(f"adaptive KL needs beta >= 0 and gamma >= 0, got beta {beta}, gamma {gamma}")
    s = _log_probs(student_logits, temperature)
    t = _log_probs(teacher_logits, temperature)
    p = t.exp()
    kl = (p * (t - s)).sum(-1)  # [...]
    entropy = -(p * t).sum(-1)  # [...]
    # floored so that pow's gradient stays finite where the gap is exactly 0 (identical inputs, beta 0)
    weight = (-torch.expm1(-(kl + beta * entropy))).clamp_min(1e-12).pow(gamma)  # [...]
    return weight * kl


def mutual_forward_kl(peer_logits: Sequence[torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """Deep mutual learning's peer term for each of K >= 2 peers: 1/(K-1) sum_{j != i} KL(p_j || p_i).

    `K x [..., V] -> [K, ...]`; entry i is `forward_kl(peer_i, stop_grad(peer_j))` averaged over the other
    peers: each peer learns from the others and its entry sends gradient to itself only. Zhang et al. 2018,
    https://arxiv.org/abs/1706.00384. No T^2 here.
    """
    k = len(peer_logits)
    if k < 2:
        raise ValueError(f"mutual learning needs at least 2 peers, got {k}")
    return torch.stack([
        sum(forward_kl(peer_logits[i], peer_logits[j].detach(), temperature) for j in range(k) if j != i) / (k - 1)
        for i in range(k)
    ])


def peer_ensemble_logits(peer_logits: Sequence[torch.Tensor], weights: torch.Tensor | None = None) -> torch.Tensor:
    """Gated ensemble of K peers' logits: sum_k w_k z_k with w normalised over k (uniform when None).

    `K x [..., V], weights [K, ...] or [K] (non-negative) -> [..., V]` float32. ONE's on-the-fly teacher, Lan
    et al. 2018, https://arxiv.org/abs/1806.04606 (its gate gives per-example softmax weights; OKDDip's
    attention weights fit the same slot).
    """
    z = torch.stack([p.float() for p in peer_logits])  # [K, ..., V]
    w = torch.ones(z.shape[:-1], device=z.device) if weights is None else weights.float()  # [K, ...] or [K]
    if (w < 0).any():
        raise ValueError("peer ensemble weights must be non-negative")
    w = w / w.sum(0, keepdim=True)
    return (w.reshape(w.shape + (1,) * (z.dim() - w.dim())) * z).sum(0)


def peer_ensemble_forward_kl(
    peer_logits: Sequence[torch.Tensor], weights: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """Each peer against the peers' ensemble as teacher: KL(stop_grad(p_ens) || p_i). `K x [..., V] -> [K, ...]`.

    p_ens = softmax(`peer_ensemble_logits` / T), a constant target like a teacher's (the ensemble's own
    cross-entropy, if any, trains the gate). ONE, Lan et al. 2018, https://arxiv.org/abs/1806.04606;
    OKDDip, Chen et al. 2020, https://arxiv.org/abs/1912.00350. No T^2 here.
    """
    target = peer_ensemble_logits(peer_logits, weights).detach()  # [..., V]
    return torch.stack([forward_kl(peer, target, temperature) for peer in peer_logits])


def vid_nll(student_mean: torch.Tensor, teacher_hidden: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """VID's -log N(h_t | mu, sigma^2) up to a constant: mean_d [log s2_d + (h_t,d - mu_d)^2 / s2_d] / 2.

    `[..., D], [..., D], [D] -> [...]`. mu is the student's features through the learned regressor and
    s2 = sigma^2 the learned per-dimension variance: `vid_nll(head(h_s), h_t, head.variance())` with
    `training.heads.VIDHead`. Direction: the teacher's features are the data, the student's prediction
    the model. Mean over d, like `hidden_mse`, so the scale does not grow with the width; the constant
    log(2 pi) / 2 is dropped. Minimising it maximises the variational lower bound of I(teacher; student)
    of VID, Ahn et al. 2019, https://arxiv.org/abs/1904.05835. Not 0 on identical features: the
    log-variance term remains.
    """
    var = variance.float()  # [D]
    return 0.5 * (var.log() + (teacher_hidden.float() - student_mean.float()).pow(2) / var).mean(-1)


def info_nce_student_to_teacher(
    student_repr: torch.Tensor,
    teacher_repr: torch.Tensor,
    temperature: float = 0.07,
    negatives: torch.Tensor | None = None,
    teacher_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with the student as anchor: -log softmax_c (cos(s_i, c) / tau) at c = t_i, per example.

    `[B, D], [B, D] -> [B]`; candidates c: the teacher representations of the batch (t_i the positive,
    t_j the in-batch negatives) and the optional extra `negatives` `[M, D]` (a memory bank of teacher
    representations, `training.heads.MemoryBank`). `teacher_valid` `[B]` marks examples that have a
    teacher representation: the others are neither positives nor negatives and give 0. Inputs are L2-
    normalised here. Direction: one student anchor against teacher candidates (swapping the arguments
    gives the teacher-anchored loss). The softmax (InfoNCE) form of CoDIR, Sun et al. 2020,
    https://arxiv.org/abs/2009.14167, and of CRD's bound, Tian et al. 2020, https://arxiv.org/abs/1910.10699.
    """
    s = F.normalize(student_repr.float(), dim=-1)  # [B, D]
    t = F.normalize(teacher_repr.float(), dim=-1)  # [B, D]
    valid = (torch.ones(t.shape[0], dtype=torch.bool, device=t.device) if teacher_valid is None
             else teacher_valid.bool())  # [B]
    # an example without a teacher representation is no candidate for any anchor; the NaN an all -inf row
    # would give in logsumexp's backward lands on masked entries only, where masked_fill's backward puts 0
    scores = (s @ t.T / temperature).masked_fill(~valid[None, :], float("-inf"))  # [B, B]
    positive = scores.diagonal()  # [B]
    if negatives is not None:
        bank = F.normalize(negatives.float(), dim=-1)  # [M, D]
        scores = torch.cat([scores, s @ bank.T / temperature], dim=-1)  # [B, B + M]
    loss = torch.logsumexp(scores, dim=-1) - positive
    return torch.where(valid, loss, torch.zeros_like(loss))


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

# The soft term against the teacher, by name (`loss.soft`), for every task: per example for classification,
# per token for generation. Each takes (student_logits, teacher_logits, temperature=...); jsd also takes its
# beta, the skew losses their alpha, dkd its two weights and the labels, adaptive_kl its beta and gamma
# (`training.objectives.soft_options`). The config validator checks names against this dict.
LOSSES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": jsd,
    "skew_kl": skew_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "total_variation": total_variation,
    "mse": logit_mse,
    "dkd": dkd,
    "adaptive_kl": adaptive_forward_kl,
}
