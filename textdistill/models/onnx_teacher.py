"""The teacher in ONNX Runtime for scoring: exported once per teacher, cached, checked against PyTorch.

Teacher scoring is the main cost of a run once the transfer set is many times the data. In float32 on a CPU
ONNX Runtime runs the same encoder faster than PyTorch (fused attention, LayerNorm and GELU kernels;
docs/measurements.md has the numbers), while giving the same logits to about 1e-6 of their scale. Where the
CPU has native bfloat16, PyTorch's bf16 autocast is faster still, so it keeps that path (`scoring_backend`).

The export is a plain ONNX file under `cache_root()/onnx/<key>`, keyed by the teacher folder's digest and
the export settings, written atomically under a file lock (two runs may share a teacher). Its outputs are
the logits and every hidden state (`hidden_state_name(layer)`, numbered as Hugging Face's `hidden_states`),
so one export serves logits and the hidden states of any matched layers; ONNX Runtime computes only what a
call asks for. Before a session is used its logits are compared with PyTorch's on a probe batch; a session
that disagrees, or an export that fails, is not used and scoring falls back to PyTorch, with a log line.

`teacher.scoring: int8` scores with the export's int8-weight copy (ONNX Runtime dynamic quantisation, made
once beside it): about twice as fast again on a CPU of either kind, at logits that move by about 1% of their
scale. That is a slightly different teacher, so the task checks it on validation before training on it
(`tasks/classification.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import transformers

from textdistill.cache import cache_key, cache_root
from textdistill.data.batching import INFERENCE_TOKENS, sequential_batches
from textdistill.data.labelled import Encoded
from textdistill.evaluation.predict import predict_logits
from textdistill.models.onnx import quiet_export
from textdistill.atomic import atomic_write

log = logging.getLogger("textdistill")

OPSET = 17
# max |ONNX Runtime - PyTorch| over the largest |PyTorch logit|: float32 sessions measure about 1e-6 (other
# kernels, other summation order); anything near this bound means a wrong graph, not rounding
TOLERANCE = 1e-4
# the same bound for int8 weights: it only catches a wrong graph (logits off by their whole scale or more).
# Rounding moves a 6-layer teacher's logits by about 1e-2 of their scale on random-token probes and a 12-layer
# mpnet's by 0.25 (docs/measurements.md), which says little about real text: whether the rounding costs
# accuracy is decided on validation (`int8_scoring` in tasks/classification.py)
INT8_WEIGHTS_TOLERANCE = 0.5
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def hidden_state_name(layer: int) -> str:
    """The output holding the hidden states after `layer` (0: the embeddings), as in `output_hidden_states`."""
    return f"hidden_states.{layer}"


def scoring_backend(precision: str, device: torch.device | str) -> str:
    """Which runtime scores the teacher: 'onnxruntime' for float32 on a CPU, 'pytorch' otherwise.

    bf16 (native on this CPU, `training.precision.resolve_precision`) stays in PyTorch's autocast, faster
    than float32 ONNX Runtime there; GPUs stay in PyTorch (the installed ONNX Runtime is the CPU build).
    """
    return "onnxruntime" if torch.device(device).type == "cpu" and precision == "no" else "pytorch"


def export_settings(model: torch.nn.Module) -> dict:
    """Everything besides the weights that shapes the exported graph (part of its cache key)."""
    return {"format": 1, "opset": OPSET, "exporter": "torchscript", "attention": "eager",
            "inputs": _input_names(model), "hidden_states": model.config.num_hidden_layers + 1,
            "torch": torch.__version__, "transformers": transformers.__version__}


def _input_names(model: torch.nn.Module) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    return [n for n in INPUTS if n in accepted]


class _Outputs(torch.nn.Module):
    """The classifier with positional inputs and a flat tuple out (logits, every hidden state), as ONNX wants it."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        out = self.model(**dict(zip(self.names, inputs)), output_hidden_states=True)
        return (out.logits, *out.hidden_states)  # [B, C], then L + 1 of [B, T, H]


def export_teacher(model: torch.nn.Module, path: Path) -> None:
    """Write `model` (a sequence classifier) to `path` as ONNX: dynamic batch and length, float32.

    Traced with eager attention (ONNX Runtime fuses that pattern into its Attention kernel) on a batch
    whose rows have padding, so the mask's path is in the graph; the model's attention and training mode
    are restored afterwards.
    """
    names = _input_names(model)
    dummy = probe_examples(model, lengths=(8, 5, 3)).collate([0, 1, 2])
    if "token_type_ids" in names and "token_type_ids" not in dummy:
        dummy["token_type_ids"] = torch.zeros_like(dummy["input_ids"])
    outputs = ["logits"] + [hidden_state_name(i) for i in range(model.config.num_hidden_layers + 1)]
    axes = {n: {0: "batch", 1: "sequence"} for n in names + outputs[1:]}
    attention, was_training = model.config._attn_implementation, model.training
    try:
        _set_attention(model, "eager")
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow: the check below decides
            torch.onnx.export(_Outputs(model, names), tuple(dummy[n] for n in names), str(path), input_names=names,
                              output_names=outputs, dynamic_axes={**axes, "logits": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    finally:
        _set_attention(model, attention)
        model.train(was_training)


def _set_attention(model: torch.nn.Module, implementation: str) -> None:
    if model.config._attn_implementation == implementation:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    else:
        model.config._attn_implementation = implementation


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (created if missing), released on exit: one exporter at a time."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def exported_teacher(model: torch.nn.Module, teacher_digest: str, rebuild: bool = False) -> tuple[Path, bool]:
    """The teacher's ONNX file from the cross-run cache, exported first if missing (or if `rebuild`).

    Returns the path and whether it was exported by this call. `model.onnx` is replaced atomically and
    `export.json` (the key) written after it, so a file named by a matching `export.json` is complete.
    """
    settings = export_settings(model)
    key = cache_key("onnx-teacher", teacher_digest, settings)
    folder = cache_root() / "onnx" / key[:32]
    folder.mkdir(parents=True, exist_ok=True)
    path, meta = folder / "model.onnx", folder / "export.json"
    with _locked(folder / "export.lock"):
        if not rebuild and path.is_file() and _read_key(meta) == key:
            return path, False
        log.info("teacher scoring: exporting the teacher to ONNX (once per teacher) at %s", folder)
        atomic_write(path, lambda tmp: export_teacher(model, tmp))
        atomic_write(meta, lambda tmp: tmp.write_text(json.dumps({"key": key, **settings}, indent=1), encoding="utf-8"))
    return path, True


def quantised_teacher(path: Path, rebuild: bool = False) -> Path:
    """The int8-weight copy of an exported teacher (`exported_teacher`), made once beside it and cached
    (made again if `rebuild`).

    Weights per output channel in 7 bits (`reduce_range`): CPUs without VNNI multiply unsigned 8-bit
    activations by signed 8-bit weights in pairs summed into 16 bits, which full-range weights can overflow.
    Activations are quantised at run time (dynamic quantisation), so no calibration data is needed.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out, meta = path.with_name("model.int8.onnx"), path.with_name("int8.json")
    settings = {"weights": "int8", "per_channel": True, "reduce_range": True}
    with _locked(path.parent / "export.lock"):
        key = cache_key("onnx-teacher-int8", _read_key(path.with_name("export.json")), settings)
        if not rebuild and out.is_file() and _read_key(meta) == key:
            return out
        log.info("teacher scoring: quantising the exported teacher's weights to int8 (once per teacher)")
        with quiet_export():  # ONNX Runtime's advice to pre-process; the check against PyTorch decides
            atomic_write(out, lambda tmp: quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8,
                                                           per_channel=True, reduce_range=True))
        atomic_write(meta, lambda tmp: tmp.write_text(json.dumps({"key": key, **settings}), encoding="utf-8"))
    return out


def _read_key(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def open_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session with torch's thread count whose workers sleep between calls.

    Spinning workers would take the cores from the student's training, which runs in the same process.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_outputs(session, data: Encoded, batch_size: int = 128, layers: Sequence[int] = (),
                 max_tokens: int | None = INFERENCE_TOKENS) -> dict[str, torch.Tensor]:
    """The teacher's float32 outputs for a split, in the split's order, batched as `predict_logits` does.

    'logits' [N, C]; for each of `layers`, `hidden_state_name(layer)` [N, T, H], T the split's longest
    example, zeros past each example's own length.
    """
    names = ["logits"] + [hidden_state_name(layer) for layer in layers]
    inputs = [i.name for i in session.get_inputs()]
    last = {o.name: o.shape[-1] for o in session.get_outputs()}  # C and H are fixed in the graph
    width = max(data.lengths, default=0)
    out = {name: torch.empty(len(data), last[name]) if name == "logits" else torch.zeros(len(data), width, last[name])
           for name in names}
    for index in sequential_batches(data.lengths, batch_size, max_tokens):
        batch = data.collate(index)
        # a model that takes segment ids reads zeros when the tokenizer gave none, as in PyTorch
        feed = {n: (batch[n] if n in batch else torch.zeros_like(batch["input_ids"])).numpy() for n in inputs}
        mask = batch["attention_mask"].unsqueeze(-1)  # [B, t, 1]
        for name, value in zip(names, session.run(names, feed)):
            value = torch.from_numpy(value)
            if name == "logits":  # [B, C]
                out[name][index] = value
            else:  # [B, t, H], t the batch's longest example
                out[name][index, : value.shape[1]] = value * mask
    return out


def onnx_logits(session, data: Encoded, batch_size: int = 128,
                max_tokens: int | None = INFERENCE_TOKENS) -> torch.Tensor:
    """[N, C] float32 logits in the split's order: `predict_logits`'s contract, through ONNX Runtime."""
    return onnx_outputs(session, data, batch_size, (), max_tokens)["logits"]


def probe_examples(model: torch.nn.Module, lengths: Sequence[int] = (24, 11, 5, 2), seed: int = 0) -> Encoded:
    """A few random examples of unequal lengths (so batches carry padding) for tracing and checking."""
    g = torch.Generator().manual_seed(seed)
    # two positions spare: RoBERTa-style models start their position ids after the padding index
    lengths = [min(n, (getattr(model.config, "max_position_embeddings", None) or 512) - 2) for n in lengths]
    segments = getattr(model.config, "type_vocab_size", 0) or 0
    ids = [torch.randint(0, model.config.vocab_size, (n,), generator=g).tolist() for n in lengths]
    types = [torch.randint(0, segments, (n,), generator=g).tolist() for n in lengths] if segments > 1 else None
    pad_id = getattr(model.config, "pad_token_id", None)
    return Encoded(input_ids=ids, token_type_ids=types, labels=torch.zeros(len(lengths), dtype=torch.long),
                   lengths=lengths, pad_id=0 if pad_id is None else pad_id)


def relative_difference(values: torch.Tensor, reference: torch.Tensor) -> float:
    """max |values - reference| over the largest |reference| (the scale of the values compared)."""
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    return float((values - reference).abs().max()) / max(scale, np.finfo(np.float32).tiny)


def onnx_teacher_session(teacher: torch.nn.Module, teacher_digest: str, tolerance: float | None = None,
                         int8: bool = False):
    """An ONNX Runtime session of `teacher` whose logits match PyTorch's, or None, logged, when there is none.

    The check runs PyTorch and the session on `probe_examples` in batches of two (padding, two lengths),
    within `tolerance` (TOLERANCE, or INT8_WEIGHTS_TOLERANCE for the `int8` weights). A cached export that
    fails it is exported once more (it may be stale or damaged); a fresh one that fails, or an export that
    raises (an architecture the exporter does not handle), leaves scoring to PyTorch.
    """
    tolerance = tolerance if tolerance is not None else INT8_WEIGHTS_TOLERANCE if int8 else TOLERANCE
    probe = probe_examples(teacher)
    reference = predict_logits(teacher, probe, batch_size=2)
    problem = ""
    for rebuild in (False, True):
        try:
            path, built = exported_teacher(teacher, teacher_digest, rebuild)
            if int8:
                path = quantised_teacher(path, rebuild or built)
        except Exception as e:  # noqa: BLE001 (the fast path is optional: any failure means PyTorch scores)
            problem = _describe(e)
            break
        try:
            session = open_session(path)
            difference = relative_difference(onnx_logits(session, probe, batch_size=2), reference)
        except Exception as e:  # noqa: BLE001 (a damaged file or an operator ONNX Runtime lacks)
            problem = _describe(e)
        else:
            if difference <= tolerance:
                log.info("teacher scoring: ONNX Runtime%s (logits within %.1e of PyTorch's scale)",
                         ", int8 weights" if int8 else "", difference)
                return session
            problem = f"its logits differ from PyTorch's by {difference:.1e} of their scale (tolerance {tolerance:.0e})"
        if built:
            break
    log.warning("teacher scoring: ONNX Runtime not used (%s); scoring with PyTorch", problem)
    return None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
