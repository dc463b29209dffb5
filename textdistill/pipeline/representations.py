"""The teacher's pooled representations as a teacher signal: contrastive distillation's positives, in-batch
negatives and memory bank (`loss.contrastive_weight`), classification.

The frozen teacher's mean-pooled last hidden state of an example is a pure function of its tokens, like its
logits, so it is computed once per example and served through the cross-run cache (`pipeline.signal`) to
every epoch, process and later run; the memory bank is filled from these cached rows before the first step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from textdistill.cache import Field, cache_key
from textdistill.data.batching import sequential_batches, subset
from textdistill.data.labelled import Encoded
from textdistill.hashing import folder_digest
from textdistill.models.inputs import model_inputs
from textdistill.pipeline.signal import Signal, SignalServer
from textdistill.training.heads import mean_pool


def pooled_signal(teacher: torch.nn.Module, part: Encoded, batch_size: int, teacher_digest: str,
                  max_length: int | None) -> Signal:
    """[N, D] float32: the teacher's last hidden state averaged over each example's tokens (float32 forward)."""
    width = teacher.config.hidden_size
    key = cache_key("classification-pooled", teacher_digest, {"max_length": max_length, "pooling": "mean_last"},
                    np.asarray(part.lengths, dtype=np.int64),
                    np.asarray([i for ids in part.input_ids for i in ids], dtype=np.int64),
                    np.asarray([i for ids in (part.token_type_ids or []) for i in ids], dtype=np.int64))

    @torch.inference_mode()
    def pool(index: list[int]) -> dict[str, torch.Tensor]:
        out = torch.empty(len(index), width)
        chunk = subset(part, index)  # row r is example index[r]
        for rows in sequential_batches(chunk.lengths, batch_size):
            batch = model_inputs(chunk.collate(rows))
            hidden = teacher(**batch, output_hidden_states=True).hidden_states[-1]  # [B, L, D]
            out[rows] = mean_pool(hidden, batch["attention_mask"]).float()
        return {"pooled": out}

    batches = sequential_batches(part.lengths, batch_size)
    chunks = [sum(batches[i : i + 4], []) for i in range(0, len(batches), 4)]
    return Signal("pooled", key, len(part), {"pooled": Field((width,))}, pool, chunks, "teacher representations")


def teacher_representations(serve: SignalServer, teacher: torch.nn.Module, folder: Path,
                            parts: list[Encoded | None], batch_size: int, max_length: int | None) -> torch.Tensor:
    """[N, D] pooled teacher representations of `parts` joined in order (None parts skipped), through the cache."""
    teacher.eval()
    digest = folder_digest(Path(folder))
    rows = [torch.from_numpy(np.array(serve(pooled_signal(teacher, p, batch_size, digest, max_length))["pooled"]))
            for p in parts if p is not None]
    return torch.cat(rows)
