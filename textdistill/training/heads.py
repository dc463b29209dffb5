"""Trainable pieces of the distillation step that are not the student: VID's regressor and variance, the
contrastive projection heads, and a memory bank of teacher representations.

Like the width projections (`training.intermediate.Projections`) they live outside the student: trained
alongside it as the loop's `extra` module, saved in checkpoints, never in the exported model. The losses
they feed are the pure functions of `textdistill.losses` (`vid_nll`, `info_nce_student_to_teacher`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from textdistill.losses import info_nce_student_to_teacher, vid_nll


class VIDHead(torch.nn.Module):
    """VID's variational Gaussian q(h_t | h_s) = N(mu(h_s), diag sigma^2) (Ahn et al. 2019,
    https://arxiv.org/abs/1904.05835): a regressor from the student's width to the teacher's and a learned
    per-dimension variance.

    The regressor is two hidden layers with ReLU (the stack of three 1x1 convolutions of the common VID
    implementation, RepDistiller's, applied per token); the variance is softplus(a_d) + `min_variance`:
    positive by construction, and floored so that the likelihood cannot grow without bound by shrinking
    it onto a perfect fit. Defaults as there: `init_variance` 5, a broad start so that the early, poor
    regression is not punished hard, and a floor of 1e-5.
    """

    def __init__(self, student_width: int, teacher_width: int, hidden_width: int | None = None,
                 init_variance: float = 5.0, min_variance: float = 1e-5):
        super().__init__()
        if not 0 < min_variance < init_variance:
            raise ValueError(f"VID needs 0 < min_variance < init_variance, got {min_variance} and {init_variance}")
        hidden_width = hidden_width or teacher_width
        self.regressor = torch.nn.Sequential(
            torch.nn.Linear(student_width, hidden_width), torch.nn.ReLU(),
            torch.nn.Linear(hidden_width, hidden_width), torch.nn.ReLU(),
            torch.nn.Linear(hidden_width, teacher_width))
        # inverse of softplus, so that variance() starts at exactly init_variance
        start = math.log(math.expm1(init_variance - min_variance))
        self.raw_variance = torch.nn.Parameter(torch.full((teacher_width,), start))
        self.min_variance = min_variance

    def variance(self) -> torch.Tensor:
        """sigma^2 `[D_t]`, float32."""
        return F.softplus(self.raw_variance.float()) + self.min_variance

    def forward(self, student_hidden: torch.Tensor) -> torch.Tensor:
        """mu: `[..., D_s] -> [..., D_t]`. The loss is `vid_nll(head(h_s), h_t, head.variance())`."""
        return self.regressor(student_hidden)


class ContrastiveHeads(torch.nn.Module):
    """Linear embeddings of the student's and the teacher's pooled representations into one `dim`-wide space
    (CRD's embed_s and embed_t, Tian et al. 2020, https://arxiv.org/abs/1910.10699); the loss normalises them.

    Both are trained. The teacher's head is applied to the memory bank's raw teacher representations at
    each step, so bank negatives never go stale as the head learns.
    """

    def __init__(self, student_width: int, teacher_width: int, dim: int = 128):
        super().__init__()
        self.student = torch.nn.Linear(student_width, dim)
        self.teacher = torch.nn.Linear(teacher_width, dim)

    def forward(self, student_repr: torch.Tensor, teacher_repr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, D_s], [B, D_t] -> ([B, dim], [B, dim])`."""
        return self.student(student_repr), self.teacher(teacher_repr)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` `[B, L, D]` over the tokens where `attention_mask` `[B, L]` is set -> `[B, D]`.

    The pooled representation compared contrastively (CoDIR pools the same way); a row without any token
    gives 0, not NaN.
    """
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


class MemoryBank(torch.nn.Module):
    """The last `size` teacher representations (raw, before any head) with their example ids: extra negatives
    for `losses.info_nce_student_to_teacher`, first in, first out (MoCo's queue, He et al. 2020,
    https://arxiv.org/abs/1911.05722; CRD keeps a bank for the same reason).

    The teacher is frozen, so an example's representation does not change and the bank needs no momentum
    update; the teacher-output cache can fill it. Buffers, not parameters: saved in checkpoints (a resumed
    run sees the same negatives), never trained. Each process keeps its own under data parallelism.
    """

    def __init__(self, size: int, width: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"memory bank size must be >= 1, got {size}")
        self.register_buffer("representations", torch.zeros(size, width))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))  # -1: no id given
        self.register_buffer("occupied", torch.zeros(size, dtype=torch.bool))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, representations: torch.Tensor, ids: torch.Tensor | None = None,
             valid: torch.Tensor | None = None) -> None:
        """Add `[B, width]` teacher representations (with their example ids `[B]`), overwriting the oldest;
        rows where `valid` `[B]` is false (no teacher representation) are skipped."""
        reps = representations.detach().float()  # [B, width]
        ids = torch.full(reps.shape[:1], -1, dtype=torch.long, device=reps.device) if ids is None else ids.long()
        if valid is not None:
            reps, ids = reps[valid.bool()], ids[valid.bool()]
        size = self.representations.shape[0]
        reps, ids = reps[-size:], ids[-size:]  # more rows than slots: the newest win
        slots = (self.cursor + torch.arange(reps.shape[0], device=reps.device)) % size  # [n]
        self.representations[slots] = reps
        self.ids[slots] = ids
        self.occupied[slots] = True
        self.cursor.copy_((self.cursor + reps.shape[0]) % size)

    def negatives(self, exclude_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The stored representations `[M, width]`, without those of `exclude_ids` (the batch's examples, which
        are already its positives and in-batch negatives, and must not count twice)."""
        keep = self.occupied.clone()  # [size]
        if exclude_ids is not None:
            keep &= ~torch.isin(self.ids, exclude_ids.long()) | (self.ids < 0)
        return self.representations[keep]


class VIDHeads(torch.nn.Module):
    """One `VIDHead` per matched layer pair, by name (`layer{s}_to{t}`): `loss.hidden_loss: vid`.

    `forward(name, h_s, h_t)` is VID's per-position negative log-likelihood of the teacher's states given the
    student's, `[B, L, D_s], [B, L, D_t] -> [B, L]` (`losses.vid_nll`); the regressor also bridges a width
    mismatch, so VID needs no projection.
    """

    def __init__(self, names: list[str], student_width: int, teacher_width: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict({name: VIDHead(student_width, teacher_width) for name in names})

    def forward(self, name: str, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
        head = self.heads[name]
        return vid_nll(head(student_hidden), teacher_hidden, head.variance())


class ContrastiveTerm(torch.nn.Module):
    """Contrastive distillation's trainable part: the projection heads, the temperature and the optional memory
    bank of teacher representations (`loss.contrastive_*`).

    `forward(student_repr [B, D_s], teacher_repr [B, D_t], ids [B]) -> [B]` is
    `losses.info_nce_student_to_teacher` on the projected representations, with the bank's stored teacher
    representations (other examples only, through the current teacher head) as extra negatives; in training
    mode the batch's teacher representations then enter the bank.
    """

    def __init__(self, student_width: int, teacher_width: int, dim: int, temperature: float, bank_size: int = 0):
        super().__init__()
        self.heads = ContrastiveHeads(student_width, teacher_width, dim)
        self.bank = MemoryBank(bank_size, teacher_width) if bank_size else None
        self.temperature = temperature

    def forward(self, student_repr: torch.Tensor, teacher_repr: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        student, teacher = self.heads(student_repr, teacher_repr)  # [B, dim] each
        negatives = None
        if self.bank is not None:
            stored = self.bank.negatives(exclude_ids=ids)  # [M, D_t], a copy: pushing below leaves it intact
            negatives = self.heads.teacher(stored) if stored.shape[0] else None  # [M, dim]
        loss = info_nce_student_to_teacher(student, teacher, self.temperature, negatives)  # [B]
        if self.bank is not None and self.training:
            self.bank.push(teacher_repr, ids)
        return loss
