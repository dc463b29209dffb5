"""`export`: the student as a plain Hugging Face folder, checked to reload with identical outputs, plus
an ONNX model (`model.onnx`) and its int8 dynamically quantised variant (`model.int8.onnx`) for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from textdistill.errors import TextDistillError
from textdistill.models.loading import cap_model_max_length, load_tokenizer, refuse_custom_code
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


ONNX_TOLERANCE = 1e-4


class _Positional(torch.nn.Module):
    """The classifier with positional inputs in a fixed order and only its logits out, as ONNX wants it."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits  # [B, C]


def export_onnx(model, tokenizer, out: Path) -> dict:
    """Write `model.onnx` (float32) and `model.int8.onnx` (dynamic int8 weights) and check them.

    Uses the TorchScript-based exporter (`dynamo=False`), which needs no extra package; batch and
    sequence length are dynamic axes. The float32 file must reproduce PyTorch's logits on the probes.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    enc = tokenizer(PROBES, padding=True, truncation=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with torch.no_grad():
        torch.onnx.export(_Positional(model, names).eval(), tuple(enc[n] for n in names), str(out / "model.onnx"),
                          input_names=names, output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    quantize_dynamic(str(out / "model.onnx"), str(out / "model.int8.onnx"), weight_type=QuantType.QInt8)
    feed = {n: enc[n].numpy() for n in names}
    reference = _logits(model, tokenizer, PROBES).numpy()
    diffs = {}
    for name in ("model.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        diffs[name] = float(np.abs(session.run(None, feed)[0] - reference).max())
    if diffs["model.onnx"] > ONNX_TOLERANCE:
        raise TextDistillError(f"the ONNX model gives different logits (max difference {diffs['model.onnx']:.2e}); "
                               "please report this")
    return {"onnx_max_logit_difference": diffs["model.onnx"], "int8_max_logit_difference": diffs["model.int8.onnx"]}


@torch.inference_mode()
def _logits(model, tokenizer, texts: list[str]) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    return model(**enc).logits  # [N, C]


def _is_generation_folder(folder: Path) -> bool:
    """A causal-LM or encoder-decoder folder (written by a generation run), judged by its config."""
    import json

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    names = config.get("architectures") or []
    return bool(config.get("is_encoder_decoder")) or any(n.endswith(("ForCausalLM", "LMHeadModel", "MTModel",
                                                                     "ForConditionalGeneration")) for n in names)


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
        return _export(src, out)


def _export(src: Path, out: Path) -> dict:
    if _is_generation_folder(src):
        from textdistill.pipeline.generation import export_generation

        return export_generation(src, out)
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
    onnx = export_onnx(model, tokenizer, out)
    return {
        "output": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "labels": [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)],
        "max_logit_difference": diff,
        **onnx,
        "example": clf(PROBES[0])[0],
    }
