"""Online distillation: the teacher, or several peers, trained in the same loop as the student.

Two training modes, each its own objective built from the terms every task shares (`objectives.py`), over
"positions": the rows each model predicts, `(model, batch) -> (logits [N, V], targets [N])`, which a task
supplies (every example for classification, the target tokens for generation). Soft terms compare the first
`shared` logits (the vocabulary teacher and student share); IGNORE_INDEX targets add no cross-entropy.

- `co_training_objective` (online KD, e.g. Anil et al. 2018's codistillation with a one-way arrow): the teacher
  learns from the labels alone (for the first `online.teacher_share` of the steps, frozen after), the student
  from the labels and the teacher's current outputs:
      teacher_ce = sum CE(teacher, y)
      ce   = alpha * sum CE(student, y)
      soft = beta * T^2 * sum w * D(student_T, stop_grad(teacher_T))        D = LOSSES[loss.soft]
- `mutual_objective` (deep mutual learning, Zhang et al. 2018, https://arxiv.org/abs/1706.00384): every peer
  k learns from the labels and from the others,
      {k}_ce   = alpha * sum CE(peer_k, y)
      {k}_soft = beta * T^2 * sum mean_{j != k} D(peer_k_T, stop_grad(peer_j_T))
  or, with peer_target 'ensemble', against the peers' averaged logits (ONE, Lan et al. 2018; OKDDip):
      {k}_soft = beta * T^2 * sum D(peer_k_T, stop_grad(mean_j z_j / T)).
  With forward KL these are `losses.mutual_forward_kl` and `losses.peer_ensemble_forward_kl`.

Every target is detached, so each term sends gradient to its own model only. The models trained beside the
student are the loop's `extra` module (`OnlineSetup.extra`, a ModuleDict: 'teacher', 'student1', ...), the
teacher at its own learning rate (`OnlineSetup.learning_rates`). A teacher that changes at every step cannot
be served by the teacher-output cache: it runs forward and backward at every step, which is the cost of
online distillation (the run's summary says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from textdistill.config import RunConfig
from textdistill.losses import IGNORE_INDEX, cross_entropy, masked_sum, peer_ensemble_logits
from textdistill.models.inputs import Batch
from textdistill.precision import set_dropout
from textdistill.training.objectives import loss_weights, soft_loss, soft_scale
from textdistill.training.schedules import teacher_weights

log = logging.getLogger("textdistill")
Positions = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]


def co_training_objective(cfg, teacher: torch.nn.Module, student_positions: Positions, teacher_positions: Positions,
                          shared: int | None = None, soft_weighting: str = "none", teacher_share: float = 1.0):
    """Online KD: the teacher's CE on the labels and the student's CE + soft term against the teacher's current
    (detached) outputs, in one forward of each. `cfg` is the LossConfig; `soft_weighting` weights each position
    by the current teacher ('none', 'confidence', 'entropy'). After `teacher_share` of training the teacher stops
    learning: eval mode, no gradients, no 'teacher_ce'. Returns per-term sums."""

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        learning = progress < teacher_share
        if not learning:  # frozen from here on: no dropout either (while it learns, the loop keeps it training)
            teacher.eval()
        student_logits, targets = student_positions(student, batch)  # [N, V_s], [N]
        with torch.set_grad_enabled(learning and torch.is_grad_enabled()):
            teacher_logits, _ = teacher_positions(teacher, batch)  # [N, V_t], with gradients while it learns
        alpha, beta, temperature = loss_weights(cfg, progress)
        labelled = targets != IGNORE_INDEX
        terms = {"teacher_ce": masked_sum(cross_entropy(teacher_logits, targets), labelled)} if learning else {}
        if alpha > 0:
            terms["ce"] = alpha * masked_sum(cross_entropy(student_logits, targets), labelled)
        if beta > 0:
            target = teacher_logits.detach()[:, :shared]  # [N, shared]
            soft = soft_loss(cfg, student_logits[:, :shared], target, temperature, labels=targets)  # [N]
            weights = teacher_weights(target, soft_weighting)  # [N]
            terms["soft"] = beta * soft_scale(cfg, temperature) * (weights * soft).sum()
        return terms

    return objective


def mutual_objective(cfg, peers: list[tuple[str, torch.nn.Module, Positions]], student_positions: Positions,
                     peer_target: str = "each", shared: int | None = None):
    """Deep mutual learning between the student (terms 'ce', 'soft') and `peers` ((name, model, positions);
    terms '{name}_ce', '{name}_soft'). `cfg` is the LossConfig. Returns per-term sums."""
    if peer_target not in ("each", "ensemble"):
        raise ValueError(f"peer_target must be 'each' or 'ensemble', not {peer_target!r}")

    def objective(student: torch.nn.Module, batch: Batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        outputs = [student_positions(student, batch)] + [positions(model, batch) for _, model, positions in peers]
        targets = outputs[0][1]  # [N], the same positions for every peer
        logits = [out[0] for out in outputs]  # K x [N, V_k]
        names = [""] + [f"{name}_" for name, _, _ in peers]
        alpha, beta, temperature = loss_weights(cfg, progress)
        soft = [z[:, :shared] for z in logits]  # K x [N, shared]
        if peer_target == "ensemble":
            target = peer_ensemble_logits([z.detach() for z in soft])  # [N, shared]
            divergences = [soft_loss(cfg, z, target, temperature, labels=targets) for z in soft]  # K x [N]
        else:
            divergences = [sum(soft_loss(cfg, z, other.detach(), temperature, labels=targets)
                               for j, other in enumerate(soft) if j != k) / (len(soft) - 1)
                           for k, z in enumerate(soft)]  # K x [N]
        labelled = targets != IGNORE_INDEX
        terms = {}
        for name, z, divergence in zip(names, logits, divergences):
            if alpha > 0:
                terms[f"{name}ce"] = alpha * masked_sum(cross_entropy(z, targets), labelled)
            if beta > 0:
                terms[f"{name}soft"] = beta * soft_scale(cfg, temperature) * divergence.sum()
        return terms

    return objective


@dataclass
class OnlineSetup:
    """An online mode's objective and what the loop trains beside the student."""

    objective: Callable
    extra: torch.nn.ModuleDict  # 'teacher' (when it learns), 'student1', ... (mutual peers)
    learning_rates: dict[str, float] = field(default_factory=dict)  # extra's children with their own rate
    trains_teacher: bool = False
    summary: dict = field(default_factory=dict)


def trains_teacher(cfg: RunConfig) -> bool:
    """Whether the run's online mode trains the teacher in the loop."""
    return cfg.online.mode == "co_training" or (cfg.online.mode == "mutual" and cfg.online.teacher_peer)


def online_training(cfg: RunConfig, teacher: torch.nn.Module, build_peer: Callable[[int], torch.nn.Module],
                    student_positions: Positions, teacher_positions: Positions,
                    shared: int | None = None) -> OnlineSetup:
    """The objective and trained modules of `cfg.online.mode` ('co_training' or 'mutual'). `build_peer(k)` makes
    the k-th extra student of mutual learning (k = 1, 2, ...), like the run's student with seed train.seed + k."""
    o = cfg.online
    extra, rates = torch.nn.ModuleDict(), {}
    learns = trains_teacher(cfg)
    if learns:
        teacher.requires_grad_(True)  # trained in the loop: leaves eval mode there, with its own dropout
        extra["teacher"], rates["teacher"] = teacher, o.teacher_learning_rate
    peers = []
    for k in range(1, o.students if o.mode == "mutual" else 1):
        peer = build_peer(k)
        if cfg.train.freeze_embeddings:  # as the loop does for the student
            peer.get_input_embeddings().weight.requires_grad_(False)
        set_dropout(peer, cfg.train.dropout)
        extra[f"student{k}"] = peer
        peers.append((f"student{k}", peer, student_positions))
    if o.mode == "co_training":
        objective = co_training_objective(cfg.loss, teacher, student_positions, teacher_positions, shared,
                                          cfg.loss.soft_weighting, o.teacher_share)
    else:
        teacher_peer = [("teacher", teacher, teacher_positions)] if o.teacher_peer else []
        objective = mutual_objective(cfg.loss, teacher_peer + peers, student_positions, o.peer_target, shared)
    trained = ["student"] + list(extra)
    parameters = sum(p.numel() for m in extra.values() for p in m.parameters() if p.requires_grad)
    log.info("online %s: training %s together; the teacher-output cache is not used", o.mode, ", ".join(trained))
    summary = {"mode": o.mode, "trained": trained, "extra_trained_parameters": parameters,
               "teacher_cache": "not used: a teacher trained in the loop changes at every step, so it runs forward "
                                "and backward at every step" if learns else "not used"}
    return OnlineSetup(objective, extra, rates, learns, summary)
