"""Building a student from the teacher: copied layers, a smaller config, or a pretrained folder.

Construction from the teacher ('teacher_layers') is a chain of steps on the state dict, each recorded with
its parameter count and size: layers kept, feed-forward narrowed, vocabulary pruned
(`textdistill.models.vocab`), width reduced (`textdistill.models.width`).

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
from textdistill.models.layers import default_layers, select_layers
from textdistill.models.loading import load_classifier
from textdistill.models.width import narrow_width, plan_width, residual_importance, student_heads

_LAYER_KEY = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")


def _label_config(config, label_names: list[str]) -> None:
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {n: i for i, n in enumerate(label_names)}


def build_student(cfg: StudentConfig, teacher: torch.nn.Module, label_names: list[str], seed: int,
                  trust_remote_code: bool = False, kept_ids: list[int] | None = None,
                  calibration: list[dict[str, torch.Tensor]] | None = None) -> torch.nn.Module:
    """The student described by `cfg`; the same `seed` (and inputs) give the same initial weights."""
    return construct_student(cfg, teacher, label_names, seed, trust_remote_code, kept_ids, calibration)[0]


def construct_student(cfg: StudentConfig, teacher: torch.nn.Module, label_names: list[str], seed: int,
                      trust_remote_code: bool = False, kept_ids: list[int] | None = None,
                      calibration: list[dict[str, torch.Tensor]] | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """The student and its construction table: [{step, parameters, disk_bytes}, ...] after each step.

    For 'teacher_layers' the steps are applied in order to the teacher's state dict: layers kept, FFN
    narrowed (`ffn_keep`), vocabulary pruned (`kept_ids`: sorted teacher token ids, for student.vocab
    'task'), width reduced (`hidden_size`; `calibration` batches, in the teacher's ids, rank the teacher's
    residual dimensions: `textdistill.models.width`). A step that changes nothing still has its row.
    """
    torch.manual_seed(seed)
    steps = [_step_row("teacher", teacher.state_dict())]
    if cfg.init == "pretrained":
        student = load_classifier(Path(cfg.path), "student.path", label_names, trust_remote_code, seed)
        return student, steps + [_step_row("pretrained student", student.state_dict())]
    t_config = teacher.config
    n_teacher = t_config.num_hidden_layers
    config = copy.deepcopy(t_config)
    _label_config(config, label_names)
    if cfg.init == "shrink":  # the teacher's architecture, smaller, randomly initialised
        if kept_ids is not None:
            _prune_config_vocab(config, kept_ids)
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
        student = AutoModelForSequenceClassification.from_config(config)
        return student, steps + [_step_row("smaller config, random init", student.state_dict())]

    layers = cfg.layers if cfg.layers is not None else default_layers(n_teacher)
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise TextDistillError(
            f"student.layers {bad} out of range: the teacher has {n_teacher} layers (0 to {n_teacher - 1})"
        )
    hidden = cfg.hidden_size or t_config.hidden_size
    heads = t_config.num_attention_heads
    if cfg.hidden_size is not None or cfg.num_heads is not None:
        heads = student_heads(hidden, cfg.num_heads, t_config.hidden_size, t_config.num_attention_heads)
    teacher_state = teacher.state_dict()
    config.num_hidden_layers = len(layers)
    state = select_layers(teacher_state, {prefix: layers for prefix in _layer_lists(teacher_state)})
    steps.append(_step_row("layers kept", state))

    t_inter = getattr(t_config, "intermediate_size", None)
    if cfg.ffn_keep < 1.0:
        if t_inter is None:
            raise TextDistillError("student.ffn_keep: this teacher architecture has no intermediate_size; set it to 1.0")
        config.intermediate_size = max(1, round(cfg.ffn_keep * t_inter))
        if config.intermediate_size != t_inter:
            keep = {i: _ffn_neurons_to_keep(teacher_state, t, t_inter, config.intermediate_size)
                    for i, t in enumerate(layers)}
            state = _narrow(state, _shapes(config), lambda key, dim: keep[_layer_of(key)])
    steps.append(_step_row("FFN narrowed", state))

    if kept_ids is not None:
        _prune_config_vocab(config, kept_ids)
        index = torch.tensor(kept_ids, dtype=torch.long)
        state = _narrow(state, _shapes(config), lambda key, dim: index)  # embedding rows (and any tied output)
    steps.append(_step_row("vocabulary pruned", state))

    if hidden != t_config.hidden_size or heads != t_config.num_attention_heads:
        importance = residual_importance(teacher, calibration or [], layers)
        plan = plan_width(state, importance, len(layers), hidden, heads, t_config.num_attention_heads)
        config.hidden_size, config.num_attention_heads = hidden, heads
        state = narrow_width(state, _shapes(config), plan)
    steps.append(_step_row("width reduced", state))

    state = _narrow(state, _shapes(config), _unexpected)  # every key and shape checked, with a clear error
    student = AutoModelForSequenceClassification.from_config(config)
    student.load_state_dict({k: v.clone() for k, v in state.items()})
    return student, steps


def _unexpected(key: str, dim: int):
    raise TextDistillError(f"cannot copy {key!r}: its dimension {dim} differs between teacher and student; "
                           "use student.init 'shrink'")


def _step_row(step: str, state: dict) -> dict:
    """Parameters and float32-safetensors-sized bytes of a state dict (the weights a saved folder holds)."""
    return {"step": step, "parameters": sum(v.numel() for v in state.values()),
            "disk_bytes": sum(v.numel() * v.element_size() for v in state.values())}


def _prune_config_vocab(config, kept_ids: list[int]) -> None:
    """Vocabulary size and special-token ids of `config` in the pruned vocabulary's numbering."""
    new_id = {t: i for i, t in enumerate(kept_ids)}
    if config.vocab_size != len(kept_ids):
        config.vocab_size = len(kept_ids)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value in new_id:
            setattr(config, name, new_id[value])


def _shapes(config) -> dict[str, torch.Size]:
    """Parameter shapes of the model `config` describes, without allocating it (meta device)."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def _layer_lists(state: dict) -> set[str]:
    """Prefixes of the layer lists in a state dict ('bert.encoder.layer', ...)."""
    return {m.group(1)[:-1] for key in state if (m := _LAYER_KEY.match(key))}


def _layer_of(key: str) -> int | None:
    m = _LAYER_KEY.match(key)
    return int(m.group(2)) if m else None


def _narrow(state: dict, shapes: dict[str, torch.Size], index_for) -> dict:
    """Every dimension whose size differs from the target shape sliced to `index_for(key, dim)`."""
    out = {}
    for key, tensor in state.items():
        if key not in shapes:
            raise TextDistillError(f"cannot build the student: no weight {key!r} in it; use student.init 'shrink'")
        target = shapes[key]
        for dim, size in enumerate(tensor.shape):
            if dim < len(target) and size != target[dim]:
                tensor = tensor.index_select(dim, index_for(key, dim))
        if tensor.shape != target:
            raise TextDistillError(f"cannot copy {key!r}: teacher shape {tuple(tensor.shape)} vs student {tuple(target)}")
        out[key] = tensor
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise TextDistillError(f"cannot build the student: teacher has no weight {missing[0]!r}; use student.init 'shrink'")
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
