"""Running a classifier over an encoded split without gradients."""

from __future__ import annotations

import torch

from textdistill.data.batching import INFERENCE_TOKENS, sequential_batches
from textdistill.data.labelled import Encoded
from textdistill.models.inputs import model_inputs
from textdistill.precision import autocast


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, data: Encoded, batch_size: int = 128, progress=None,
                   precision: str = "no", max_tokens: int | None = INFERENCE_TOKENS) -> torch.Tensor:
    """[N, C] float32 logits in the split's order; batches are sorted by length to avoid padding.

    `precision` 'bf16' runs the forward under bfloat16 autocast (teacher scoring); evaluation keeps the
    default float32, the precision the exported model is served in.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: torch.Tensor | None = None
    for index in sequential_batches(data.lengths, batch_size, max_tokens):
        batch = data.collate(index)
        with autocast(precision, device):
            logits = model(**{k: v.to(device) for k, v in model_inputs(batch).items()}).logits.float().cpu()  # [B, C]
        if out is None:
            out = torch.empty(len(data), logits.shape[-1])
        out[index] = logits
        if progress is not None:
            progress.update(len(index))
    model.train(was_training)
    return out
