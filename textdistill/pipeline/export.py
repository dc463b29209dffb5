"""`export`: the student of any task as a plain Hugging Face folder, checked to reload with identical outputs,
plus its ONNX graphs and their int8 dynamically quantised variants for ONNX Runtime (`models/onnx.py`); and the
check every distill run ends with, that the saved student reloads with the trained student's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForSequenceClassification, pipeline

from textdistill.errors import TextDistillError
from textdistill.models.inputs import logits_of
from textdistill.models.loading import cap_model_max_length, load_generation_model, load_tokenizer, refuse_custom_code
from textdistill.models.onnx import check_generation_onnx, export_classifier_onnx, write_generation_onnx
from textdistill.ownership import OwnedFolder
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


def _is_generation_folder(folder: Path) -> bool:
    """A causal-LM or encoder-decoder folder (written by a generation run), judged by its config."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    names = config.get("architectures") or []
    return bool(config.get("is_encoder_decoder")) or any(n.endswith(("ForCausalLM", "LMHeadModel", "MTModel",
                                                                     "ForConditionalGeneration")) for n in names)


def _quantisation_aware(source: Path) -> bool:
    """Whether `source` is the folder of a run whose student trained quantisation-aware (its config says so):
    the run folder of an exported `student/`."""
    try:
        config = yaml.safe_load((source / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    section = config.get("quantisation") if isinstance(config, dict) else None
    return isinstance(section, dict) and section.get("aware") is True


def run_export(source: str | Path, output: str | Path, overwrite: bool = False) -> dict:
    """Write the student of `source` (run folder or model folder) to `output` and verify the copy.

    An existing `output` is replaced only with `overwrite` and only if it is an export textdistill wrote;
    never the source, a folder holding it, home, root or the current folder. The old export is put back
    if the new one fails."""
    src = _source_folder(Path(source).expanduser())
    out = Path(output).expanduser()
    refuse_custom_code(src, "export", trust_remote_code=False)
    if out.resolve().is_relative_to(src.resolve()):
        raise TextDistillError(f"--output {str(output)!r} is inside the model folder it exports ({str(src)!r}); "
                               "choose a folder outside it")
    with OwnedFolder.open(out, "export", overwrite=overwrite, inputs=[source, src], option="--output",
                          command="export"):
        return _export(src, out, _quantisation_aware(src.parent))


def _export(src: Path, out: Path, quantisation_aware: bool = False) -> dict:
    if _is_generation_folder(src):
        return export_generator(src, out)
    model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    tokenizer = load_tokenizer(src, "export")
    cap_model_max_length(tokenizer, model)
    before = _logits(model, tokenizer, PROBES)
    save_model(model, tokenizer, out)

    clf = pipeline("text-classification", model=str(out), tokenizer=str(out), device=-1)
    after = _logits(clf.model.eval(), clf.tokenizer, PROBES)
    diff = float((before - after).abs().max())
    if diff > 1e-5:
        raise TextDistillError(f"exported model gives different logits (max difference {diff:.2e}); please report this")
    onnx = export_classifier_onnx(model, tokenizer, out, PROBES, require_int8_match=quantisation_aware)
    return {
        "output": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "labels": [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)],
        "max_logit_difference": diff,
        **onnx,
        "example": clf(PROBES[0])[0],
    }


GENERATION_PROBES = ["In the beginning God created the heaven and the earth.", "And God said, Let there be light."]


def export_generator(source: Path, out: Path) -> dict:
    """`export` of a generation student: a plain Hugging Face folder with its tokenizer, reloaded with
    `transformers` and checked to give the same logits on probe texts, plus ONNX graphs and their int8
    variants (`models/onnx.py`), checked against PyTorch's logits and greedy outputs."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    task = "seq2seq" if config.get("is_encoder_decoder") else "causal_lm"
    model = load_generation_model(source, task, "export")
    tokenizer = load_tokenizer(source, "export")
    cap_model_max_length(tokenizer, model)
    save_model(model, tokenizer, out)
    reloaded = load_generation_model(out, task, "export")
    enc = tokenizer(GENERATION_PROBES, return_tensors="pt", padding=True)

    @torch.no_grad()
    def logits(m):
        extra = {}
        if task == "seq2seq":
            start = m.config.decoder_start_token_id
            extra["decoder_input_ids"] = torch.full((len(GENERATION_PROBES), 1), start, dtype=torch.long)
        return m(**enc, **extra).logits

    diff = float((logits(model) - logits(reloaded)).abs().max())
    if diff > 1e-5:
        raise TextDistillError(f"exported model gives different logits (max difference {diff:.2e}); please report this")
    write_generation_onnx(model, task, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, out)
    onnx = check_generation_onnx(model, task, tokenizer, GENERATION_PROBES, out)
    return {"output": str(out), "task": task, "files": sorted(p.name for p in out.iterdir()),
            "max_logit_difference": diff, **onnx}


@torch.inference_mode()
def check_saved_student(folder: Path, model: torch.nn.Module, batch: dict, load) -> dict:
    """The end of every distill run: the saved student folder, reloaded (`load(folder)`) with plain
    `transformers`, must give the trained student's logits on a few test examples."""
    reloaded = load(folder)
    diff = float((logits_of(model.eval(), batch) - logits_of(reloaded.eval(), batch)).abs().max())
    if diff > 1e-4:
        raise TextDistillError(f"the saved student gives different logits after reloading (max difference {diff:.2e}); "
                               "please report this")
    return {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()), "max_logit_difference": diff}
