"""Classification metrics from predicted and gold label ids."""

from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, gold: torch.Tensor, num_labels: int) -> torch.Tensor:
    """[C, C] counts; row = gold label, column = predicted label."""
    index = gold.long() * num_labels + pred.long()
    return torch.bincount(index, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def classification_metrics(pred: torch.Tensor, gold: torch.Tensor, label_names: list[str],
                           teacher_pred: torch.Tensor | None = None) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, agreement with the teacher."""
    c = len(label_names)
    cm = confusion_matrix(pred, gold, c).double()
    tp = cm.diag()
    predicted = cm.sum(0)
    actual = cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    out = {
        "examples": int(gold.numel()),
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() > 0 else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": cm.long().tolist(),
    }
    if teacher_pred is not None:
        out["teacher_agreement"] = float((pred == teacher_pred).double().mean())
    return out
