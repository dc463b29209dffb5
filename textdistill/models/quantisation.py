"""Fake quantisation that mirrors the int8 export, for quantisation-aware distillation and the export check.

`export` writes `model.int8.onnx` with ONNX Runtime's `quantize_dynamic` (int8 weights, `models/onnx.py`).
On the classifiers built here it turns every MatMul with a constant weight (each `nn.Linear`; the pooler's and
classifier's Gemm too) into MatMulInteger with
- the weight in int8, symmetric, one scale per tensor, range [-127, 127]: scale = max|W| / 127;
- the input in uint8, asymmetric, one scale per tensor, ranged on the tensor itself at run time
  (DynamicQuantizeLinear; the range always contains 0);
and stores each gathered embedding table in uint8, asymmetric, one scale per tensor. The products of two
activations inside attention stay float.

`fake_quantise(model)` puts PyTorch's own fake quantisation (`torch.ao.quantization.FakeQuantize` with
`MinMaxObserver`s reset at every call, so ranges follow the current tensor as at run time) at exactly those
places, in place; the int8 graph's logits then equal the fake-quantised model's up to float rounding
(checked at export: `models/onnx.export_classifier_onnx`). Trained this way (straight-through gradients), a
student learns weights that survive the int8 export. `strip_fake_quant` restores the plain modules, so the
saved and exported student is an ordinary Hugging Face model.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.ao.quantization import FakeQuantize, MinMaxObserver


def _quantiser(signed: bool) -> FakeQuantize:
    if signed:  # weights: int8, symmetric, [-127, 127] (ONNX Runtime's symmetric int8 range)
        return FakeQuantize(observer=MinMaxObserver, quant_min=-127, quant_max=127, dtype=torch.qint8,
                            qscheme=torch.per_tensor_symmetric)
    # activations and embedding tables: uint8, asymmetric, the range stretched to contain 0
    return FakeQuantize(observer=MinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8,
                        qscheme=torch.per_tensor_affine)


def _fake_quant(quantiser: FakeQuantize, x: torch.Tensor) -> torch.Tensor:
    """`x` quantised and dequantised with a range measured on `x` alone (a fresh range per call, as the int8
    graph computes it at run time), float32."""
    quantiser.activation_post_process.reset_min_max_vals()
    return quantiser(x.float())


class FakeQuantLinear(torch.nn.Module):
    """`linear` with its input and weight fake-quantised as the int8 graph's MatMulInteger does; float32, outside
    any autocast (the int8 product it simulates is exact)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear
        self.input_quantiser = _quantiser(signed=False)
        self.weight_quantiser = _quantiser(signed=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            weight = _fake_quant(self.weight_quantiser, self.linear.weight)
            bias = None if self.linear.bias is None else self.linear.bias.float()
            return F.linear(_fake_quant(self.input_quantiser, x), weight, bias)


class FakeQuantEmbedding(torch.nn.Module):
    """`embedding` with its table fake-quantised as the int8 graph stores it (uint8 per tensor).

    The range is the whole table's, but only the looked-up rows are rounded: the same values as gathering from
    a rounded table (rounding is elementwise), without rounding, and back-propagating through, all of a large
    vocabulary at every step."""

    def __init__(self, embedding: torch.nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.weight_quantiser = _quantiser(signed=False)

    @property
    def weight(self) -> torch.nn.Parameter:  # what `get_input_embeddings().weight` callers reach for
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e, q = self.embedding, self.weight_quantiser
        rows = F.embedding(ids, e.weight, e.padding_idx, e.max_norm, e.norm_type, e.scale_grad_by_freq, e.sparse)
        if q.observer_enabled[0] == 1:  # FakeQuantize.forward's bookkeeping, with the table as what is observed
            q.activation_post_process.reset_min_max_vals()
            q.activation_post_process(e.weight.detach())
            scale, zero_point = q.calculate_qparams()
            q.scale.copy_(scale)
            q.zero_point.copy_(zero_point)
        if q.fake_quant_enabled[0] == 0:
            return rows
        return torch.fake_quantize_per_tensor_affine(rows.float(), q.scale, q.zero_point, q.quant_min, q.quant_max)


def fake_quantise(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap every `nn.Linear` and `nn.Embedding` of `model` in place (see the module docstring); returns `model`."""
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, FakeQuantLinear(child))
        elif isinstance(child, torch.nn.Embedding):
            setattr(model, name, FakeQuantEmbedding(child))
        elif not isinstance(child, (FakeQuantLinear, FakeQuantEmbedding)):
            fake_quantise(child)
    return model


def strip_fake_quant(model: torch.nn.Module) -> torch.nn.Module:
    """Undo `fake_quantise` in place: the plain modules (with their trained weights) back; returns `model`."""
    for name, child in list(model.named_children()):
        if isinstance(child, FakeQuantLinear):
            setattr(model, name, child.linear)
        elif isinstance(child, FakeQuantEmbedding):
            setattr(model, name, child.embedding)
        else:
            strip_fake_quant(child)
    return model


def set_fake_quant(model: torch.nn.Module, enabled: bool) -> None:
    """Turn the fake quantisation of a `fake_quantise`d model on or off (off, it computes in float)."""
    for m in model.modules():
        if isinstance(m, FakeQuantize):
            m.enable_fake_quant(enabled)


@contextlib.contextmanager
def fake_quantised(model: torch.nn.Module):
    """`model` fake-quantised in place inside the block, plain again after it (also on an error or Ctrl-C)."""
    fake_quantise(model)
    try:
        yield model
    finally:
        strip_fake_quant(model)
