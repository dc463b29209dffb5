"""Multi-teacher distillation: loading and checking the extra teachers, combining their scores, reporting each.

The primary teacher (`teacher.path`) tokenises the data, gives the student its layers and, with
intermediate matching, its hidden states; the extra teachers (`teacher.extra_paths`, and with
`teacher.ensemble_trials` the built-in teacher's other learning-rate trials) only add their logits to the
soft target, combined by `textdistill.training.ensemble.combine_teacher_logits`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from textdistill.config import RunConfig
from textdistill.errors import TextDistillError
from textdistill.evaluation.metrics import classification_metrics
from textdistill.models.loading import (check_same_vocabulary, load_classifier, load_tokenizer, resolve_model_dir,
                                        teacher_label_order)
from textdistill.training.ensemble import combine_teacher_logits

log = logging.getLogger("textdistill")


@dataclass
class ExtraTeacher:
    path: Path
    model: torch.nn.Module
    order: list[int]  # index of each data label among this teacher's outputs


def extra_teacher_paths(cfg: RunConfig, info: dict, primary: Path) -> dict[str, str]:
    """The extra teachers' folders by role: with `teacher.ensemble_trials`, the learning-rate search's other
    trials (cached folders, in the search's order), then `teacher.extra_paths`."""
    roles = {}
    if cfg.teacher.ensemble_trials:
        for trial in info.get("search", []):
            if Path(trial["path"]) != Path(primary):
                roles[f"the teacher's trial at learning rate {trial['learning_rate']:g}"] = trial["path"]
    roles.update({f"teacher.extra_paths[{i}]": path for i, path in enumerate(cfg.teacher.extra_paths)})
    return roles


def load_extra_teachers(cfg: RunConfig, label_names: list[str], tokenizer, paths: dict[str, str]) -> list[ExtraTeacher]:
    """The frozen extra teachers (`paths`: role -> folder, from `extra_teacher_paths`), checked at start-up:
    the data's label set, and the tokenizer that made the token ids every teacher scores (the primary
    teacher's, which the student shares)."""
    extras = []
    for role, name in paths.items():
        path = resolve_model_dir(name, role)
        model = load_classifier(path, role, trust_remote_code=cfg.trust_remote_code)
        model.eval().requires_grad_(False)
        try:
            order = teacher_label_order(model, label_names)
        except TextDistillError as e:
            raise TextDistillError(f"{role} {str(path)!r}: {e}") from None
        try:
            check_same_vocabulary(tokenizer, load_tokenizer(path, role, cfg.trust_remote_code),
                                  model.get_input_embeddings().num_embeddings)
        except TextDistillError as e:
            reason = str(e).split(";")[0]
            raise TextDistillError(
                f"{role} {str(path)!r} does not read the token ids of teacher.path, which tokenises the data for "
                f"every teacher and the student ({reason}); combine teachers fine-tuned from the same base model"
            ) from None
        extras.append(ExtraTeacher(path, model, order))
    if extras:
        log.info("teachers: %s and %d more, combined by %r", cfg.teacher.path, len(extras), cfg.teacher.combine)
    return extras


def combined_logits(logits: list[torch.Tensor], cfg: RunConfig) -> torch.Tensor:
    """One target from every teacher's logits of the same examples (data label order, primary first),
    combined at loss.temperature (logits averaged for loss.soft 'mse'); one teacher's logits as they are."""
    if len(logits) == 1:
        return logits[0]
    temperature = None if cfg.loss.soft == "mse" else cfg.loss.temperature
    return combine_teacher_logits(torch.stack(logits), cfg.teacher.combine, temperature, cfg.teacher.weights)


def combined_scores(scores: dict[str, torch.Tensor], n_teachers: int, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """Scores saved per teacher ('train', 'train@1', ...: data label order) to one target per part
    (`combined_logits`); the combination is recomputed from the saved per-teacher scores on resume."""
    parts = [k for k in scores if "@" not in k]
    return {k: combined_logits([scores[k]] + [scores[f"{k}@{i}"] for i in range(1, n_teachers)], cfg) for k in parts}


def teacher_results(cfg: RunConfig, paths: list[str], test_logits: list[torch.Tensor], labels: torch.Tensor,
                    label_names: list[str]) -> dict:
    """Each teacher's test accuracy and the combined target's, for the summary (`paths` and `test_logits`
    primary first, logits in data order)."""
    weights = cfg.teacher.weights or [None] * len(paths)

    def accuracy(logits: torch.Tensor) -> float:
        return classification_metrics(logits.argmax(-1), labels, label_names)["accuracy"]

    combined = combined_logits(test_logits, cfg)
    return {
        "combine": cfg.teacher.combine,
        "teachers": [{"path": p, "weight": w, "test_accuracy": accuracy(t)}
                     for p, w, t in zip(paths, weights, test_logits)],
        "combined_test_accuracy": accuracy(combined),
    }
