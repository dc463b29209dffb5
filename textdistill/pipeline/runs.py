"""Run folders and the steps every command shares: reading data, tokenising it once, saving models."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from textdistill.config import RunConfig, save_config
from textdistill.data.classification import ClassificationData, Encoded, encode
from textdistill.errors import TextDistillError
from textdistill.training.checkpoint import atomic_write

log = logging.getLogger("textdistill")
MARKER = "config.yaml"


def prepare_run_dir(cfg: RunConfig, overwrite: bool) -> Path:
    """Create the run folder; an existing run is only replaced with `overwrite`."""
    run_dir = Path(cfg.output_dir).expanduser()
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise TextDistillError(
                f"run folder {str(run_dir)!r} already exists; pass --overwrite to replace it or set another "
                "--output_dir"
            )
        if not (run_dir / MARKER).is_file():
            raise TextDistillError(
                f"refusing to overwrite {str(run_dir)!r}: it is not a textdistill run folder (no {MARKER}); "
                "choose an empty or new --output_dir"
            )
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / MARKER)
    return run_dir


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


@dataclass
class EncodedSplits:
    train: Encoded
    validation: Encoded
    test: Encoded
    unlabeled: Encoded | None


def encode_splits(tokenizer, data: ClassificationData, max_length: int, model_max: int | None) -> EncodedSplits:
    """Tokenise every split once per run."""
    if model_max is not None and max_length > model_max:
        raise TextDistillError(
            f"data.max_length {max_length} exceeds the model's {model_max} positions; set data.max_length <= {model_max}"
        )

    def enc(split, role):
        return encode(tokenizer, split, data.label_ids(split), max_length, role)

    return EncodedSplits(
        train=enc(data.train, "train"),
        validation=enc(data.validation, "validation"),
        test=enc(data.test, "test"),
        unlabeled=enc(data.unlabeled, "unlabeled") if data.unlabeled is not None else None,
    )


def concat(a: Encoded, b: Encoded | None) -> Encoded:
    """Training examples followed by extra (unlabelled) ones."""
    if b is None:
        return a
    if a.teacher_logits is None or b.teacher_logits is None:
        raise ValueError("both parts need teacher logits to be concatenated")
    types = a.token_type_ids + b.token_type_ids if a.token_type_ids and b.token_type_ids else None
    return Encoded(
        input_ids=a.input_ids + b.input_ids,
        token_type_ids=types,
        labels=torch.cat([a.labels, b.labels]),
        teacher_logits=torch.cat([a.teacher_logits, b.teacher_logits]),
        lengths=a.lengths + b.lengths,
    )


def save_model(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """A plain Hugging Face folder: safetensors weights, config with label names, tokenizer."""
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def write_json(path: Path, value: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2), encoding="utf-8"))


def folder_weights_bytes(folder: Path) -> int:
    """Size on disk of a model folder's weight files."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))
