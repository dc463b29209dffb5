"""Building a student from the teacher: copied layers, a smaller config, or a pretrained folder.

Layer copying works on the state dict by name, so it serves every encoder whose layers live in a list
named `layer` (BERT, RoBERTa, MPNet, DistilBERT, ...): student key `....layer.{i}.x` is filled from
teacher key `....layer.{layers[i]}.x`, every other key (embeddings, pooler, head) is copied as is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from textdistill.config import StudentConfig
from textdistill.errors import TextDistillError
from textdistill.models.loading import load_classifier

_LAYER_KEY = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")


def _label_config(config, label_names: list[str]) -> None:
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {n: i for i, n in enumerate(label_names)}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def default_layers(n_teacher: int) -> list[int]:
    """Every third teacher layer, ending with the last: 6 -> [2, 5], 12 -> [2, 5, 8, 11], 4 -> [0, 3]."""
    return list(range((n_teacher - 1) % 3, n_teacher, 3))


def build_student(cfg: StudentConfig, teacher: torch.nn.Module, label_names: list[str], seed: int,
                  trust_remote_code: bool = False) -> torch.nn.Module:
    """The student described by `cfg`; the same `seed` gives the same initial weights."""
    torch.manual_seed(seed)
    if cfg.init == "pretrained":
        return load_classifier(Path(cfg.path), "student.path", label_names, trust_remote_code)
    t_config = teacher.config
    n_teacher = t_config.num_hidden_layers
    config = copy.deepcopy(t_config)
    _label_config(config, label_names)
    if cfg.init == "teacher_layers":
        layers = cfg.layers if cfg.layers is not None else default_layers(n_teacher)
        bad = [i for i in layers if not 0 <= i < n_teacher]
        if bad:
            raise TextDistillError(
                f"student.layers {bad} out of range: the teacher has {n_teacher} layers (0 to {n_teacher - 1})"
            )
        config.num_hidden_layers = len(layers)
        t_inter = getattr(t_config, "intermediate_size", None)
        inter = t_inter
        if cfg.ffn_keep < 1.0:
            if t_inter is None:
                raise TextDistillError("student.ffn_keep: this teacher architecture has no intermediate_size; set it to 1.0")
            inter = max(1, round(cfg.ffn_keep * t_inter))
            config.intermediate_size = inter
        student = AutoModelForSequenceClassification.from_config(config)
        student.load_state_dict(_copied_state(teacher.state_dict(), student.state_dict(), layers, t_inter, inter))
        return student
    # shrink: the teacher's architecture, smaller, randomly initialised
    config.num_hidden_layers = cfg.num_layers
    hidden = cfg.hidden_size or t_config.hidden_size
    heads = cfg.num_heads or t_config.num_attention_heads
    if hidden % heads:
        raise TextDistillError(
            f"student.hidden_size {hidden} is not divisible by student.num_heads {heads}; pick sizes where it is"
        )
    config.hidden_size = hidden
    config.num_attention_heads = heads
    if cfg.intermediate_size is not None or cfg.hidden_size is not None:
        config.intermediate_size = cfg.intermediate_size or 4 * hidden
    return AutoModelForSequenceClassification.from_config(config)


def _copied_state(teacher_state: dict, student_state: dict, layers: list[int],
                  t_inter: int | None, s_inter: int | None) -> dict:
    """Student state dict filled from the teacher's: chosen layers, narrowed feed-forward if asked."""
    keep: dict[int, torch.Tensor] = {}
    if s_inter is not None and s_inter != t_inter:
        keep = {i: _ffn_neurons_to_keep(teacher_state, i, t_inter, s_inter) for i in layers}
    out = {}
    for key, value in student_state.items():
        m = _LAYER_KEY.match(key)
        t_layer = layers[int(m.group(2))] if m else None
        t_key = f"{m.group(1)}{t_layer}{m.group(3)}" if m else key
        if t_key not in teacher_state:
            raise TextDistillError(f"cannot build the student: teacher has no weight {t_key!r}; use student.init 'shrink'")
        tensor = teacher_state[t_key]
        if t_layer in keep and tensor.shape != value.shape:
            # narrow every dimension that is the feed-forward width to the kept neurons
            for dim, size in enumerate(tensor.shape):
                if size == t_inter and value.shape[dim] == s_inter:
                    tensor = tensor.index_select(dim, keep[t_layer])
        if tensor.shape != value.shape:
            raise TextDistillError(f"cannot copy {t_key!r}: teacher shape {tuple(tensor.shape)} vs student {tuple(value.shape)}")
        out[key] = tensor.clone()
    return out


def _ffn_neurons_to_keep(state: dict, layer: int, t_inter: int, s_inter: int) -> torch.Tensor:
    """Indices of the `s_inter` feed-forward neurons of `layer` with the largest |W_in row| * |W_out column|.

    The input projection is the layer's weight of shape [I, H], the output projection the one of
    shape [H, I]; a neuron that neither reads nor writes strongly matters least (magnitude pruning).
    """
    prefix = re.compile(rf"^.*\.layer\.{layer}\.")
    w_in = w_out = None
    for key, tensor in state.items():
        if not prefix.match(key) or tensor.dim() != 2 or not key.endswith("weight"):
            continue
        if tensor.shape[0] == t_inter and tensor.shape[1] != t_inter:
            w_in = tensor  # [I, H]
        elif tensor.shape[1] == t_inter and tensor.shape[0] != t_inter:
            w_out = tensor  # [H, I]
    if w_in is None or w_out is None:
        raise TextDistillError(f"cannot find the feed-forward weights of teacher layer {layer}; leave student.intermediate_size empty")
    score = w_in.norm(dim=1) * w_out.norm(dim=0)  # [I]
    return score.topk(s_inter).indices.sort().values
