"""`export`: the student as a plain Hugging Face folder, checked to reload with identical outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, pipeline

from textdistill.errors import TextDistillError
from textdistill.models.loading import load_tokenizer, refuse_custom_code
from textdistill.pipeline.runs import save_model

PROBES = [
    "A gripping, funny and moving film.",
    "Dull, predictable and far too long.",
    "It is neither good nor bad, just there.",
]


def _source_folder(run_or_model: Path) -> Path:
    if (run_or_model / "student" / "config.json").is_file():
        return run_or_model / "student"
    if (run_or_model / "config.json").is_file():
        return run_or_model
    raise TextDistillError(
        f"{str(run_or_model)!r} is neither a run folder (with student/) nor a model folder; give the "
        "output_dir of a finished distill run"
    )


@torch.inference_mode()
def _logits(model, tokenizer, texts: list[str]) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    return model(**enc).logits  # [N, C]


def run_export(source: str | Path, output: str | Path, overwrite: bool = False) -> dict:
    """Write the student of `source` (run folder or model folder) to `output` and verify the copy."""
    src = _source_folder(Path(source))
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise TextDistillError(f"export folder {str(out)!r} already exists; pass --overwrite or choose another --output")
        shutil.rmtree(out)
    refuse_custom_code(src, "export", trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    tokenizer = load_tokenizer(src, "export")
    before = _logits(model, tokenizer, PROBES)
    save_model(model, tokenizer, out)

    clf = pipeline("text-classification", model=str(out), tokenizer=str(out), device=-1)
    after = _logits(clf.model.eval(), clf.tokenizer, PROBES)
    diff = float((before - after).abs().max())
    if diff > 1e-5:
        raise TextDistillError(f"exported model gives different logits (max difference {diff:.2e}); please report this")
    return {
        "output": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "labels": [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)],
        "max_logit_difference": diff,
        "example": clf(PROBES[0])[0],
    }
