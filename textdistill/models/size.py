"""How big a model is: its parameters, and the bytes of its weight files on disk (what the report compares)."""

from __future__ import annotations

from pathlib import Path

import torch


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def folder_weights_bytes(folder: Path) -> int:
    """Size on disk of a model folder's weight files."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))
