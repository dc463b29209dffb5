"""Intermediate-layer matching: layer maps, start-up checks, width projections, the live teacher.

A layer map pairs student layers with teacher layers (0-based transformer layers; hidden state i + 1
in Hugging Face's `hidden_states`, whose entry 0 is the embedding output). It is resolved and checked
once, before training. Projections for a width mismatch are a separate module trained alongside the
student (the loop's `extra`): they are saved in checkpoints and never in the exported student.

The teacher's hidden states and attentions are not cached: `live_teacher_features` runs the frozen
teacher on each batch. It is the one place that produces them, so a cache can replace it later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from textdistill.config import LossConfig
from textdistill.errors import TextDistillError


@dataclass(frozen=True)
class LayerMatch:
    student_layer: int
    teacher_layer: int


def uses_intermediate(cfg: LossConfig) -> bool:
    return cfg.hidden_loss != "none" or cfg.attention_weight > 0 or cfg.embedding_weight > 0


def resolve_layer_map(cfg: LossConfig, n_student: int, n_teacher: int) -> list[LayerMatch]:
    """The layer pairs from `cfg.layer_pairs`, or by `cfg.layer_map` rule; checked against the layer counts."""
    if cfg.layer_pairs:
        pairs = [(s, t) for s, t in cfg.layer_pairs]
    elif cfg.layer_map == "uniform":
        pairs = [(i, round((i + 1) * n_teacher / n_student) - 1) for i in range(n_student)]
    elif cfg.layer_map == "skip":
        step = max(1, n_teacher // n_student)
        pairs = [(i, min((i + 1) * step, n_teacher) - 1) for i in range(n_student)]
    else:  # last_k
        k = cfg.last_k or n_student
        if k > min(n_student, n_teacher):
            raise TextDistillError(f"loss.last_k is {k} but the student has {n_student} and the teacher "
                                   f"{n_teacher} layers; set it to at most {min(n_student, n_teacher)}")
        pairs = [(n_student - k + j, n_teacher - k + j) for j in range(k)]
    for s, t in pairs:
        if not 0 <= s < n_student:
            raise TextDistillError(f"loss.layer_pairs: student layer {s} out of range: the student has "
                                   f"{n_student} layers (0 to {n_student - 1})")
        if not 0 <= t < n_teacher:
            raise TextDistillError(f"loss.layer_pairs: teacher layer {t} out of range: the teacher has "
                                   f"{n_teacher} layers (0 to {n_teacher - 1})")
    return [LayerMatch(s, t) for s, t in pairs]


def check_models(cfg: LossConfig, student: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """Start-up checks of what matching needs from the two architectures."""
    s_cfg, t_cfg = student.config, teacher.config
    if cfg.attention_weight > 0 and s_cfg.num_attention_heads != t_cfg.num_attention_heads:
        raise TextDistillError(
            f"loss.attention_weight needs the same number of attention heads, but the student has "
            f"{s_cfg.num_attention_heads} and the teacher {t_cfg.num_attention_heads}; set student.num_heads to "
            f"{t_cfg.num_attention_heads} or loss.attention_weight to 0")


class Projections(torch.nn.Module):
    """Linear maps from the student's width to the teacher's, one per matched layer (and the embeddings).

    Empty when the widths agree. Lives outside the student, so export never sees it.
    """

    def __init__(self, matches: list[LayerMatch], student_width: int, teacher_width: int, embeddings: bool):
        super().__init__()
        self.maps = torch.nn.ModuleDict()
        if student_width != teacher_width:
            names = [f"layer{m.student_layer}_to{m.teacher_layer}" for m in matches] + (["embeddings"] if embeddings else [])
            for name in names:
                self.maps[name] = torch.nn.Linear(student_width, teacher_width)

    def forward(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        return self.maps[name](hidden) if name in self.maps else hidden


def build_projections(cfg: LossConfig, matches: list[LayerMatch], student: torch.nn.Module,
                      teacher: torch.nn.Module) -> Projections:
    return Projections(matches, student.config.hidden_size, teacher.config.hidden_size, cfg.embedding_weight > 0)


def use_eager_attention(model: torch.nn.Module) -> None:
    """Attention probabilities are only returned by the eager implementation."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"


def teacher_inputs(batch: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's model inputs with the teacher's token ids, when the student reads a pruned vocabulary
    (`teacher_input_ids` in the batch: same positions, so hidden states and attentions still line up)."""
    if "teacher_input_ids" not in batch:
        return inputs
    return {**inputs, "input_ids": batch["teacher_input_ids"]}


def live_teacher_features(teacher: torch.nn.Module, inputs: dict[str, torch.Tensor], attentions: bool):
    """The frozen teacher's outputs with hidden states (and attentions): eval mode, no gradients."""
    device = inputs["input_ids"].device
    if next(teacher.parameters()).device != device:
        teacher.to(device)
    with torch.no_grad():
        return teacher(**inputs, output_hidden_states=True, output_attentions=attentions)
