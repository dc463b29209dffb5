"""Students made of a subset of the teacher's layers, and smaller configs of the teacher's architecture.

`select_layers` renames a teacher state dict's layer keys for every student made of teacher layers
(classifiers and generation models). A generation student made by `keep_layers` is the teacher's
architecture with fewer layers; its weights are the teacher's, layer for layer (DistilBERT's initialisation, for decoders: keep every third layer ending
with the last). For encoder-decoders the encoder is kept (whole or a subset) and the decoder thinned,
"shrink and fine-tune" (Shleifer & Rush 2020, https://arxiv.org/abs/2010.13002).
"""

from __future__ import annotations

import copy
import logging
import re

import torch

from textdistill.errors import TextDistillError

log = logging.getLogger("textdistill")

# model_type -> {stack: (state-dict prefix of its layer list, config field holding its length)}; the
# decoder stack of a causal LM is its only one.
LAYER_STACKS = {
    "gpt2": {"decoder": ("transformer.h", "n_layer")},
    "llama": {"decoder": ("model.layers", "num_hidden_layers")},
    "mistral": {"decoder": ("model.layers", "num_hidden_layers")},
    "qwen2": {"decoder": ("model.layers", "num_hidden_layers")},
    "bart": {"encoder": ("model.encoder.layers", "encoder_layers"),
             "decoder": ("model.decoder.layers", "decoder_layers")},
    "mbart": {"encoder": ("model.encoder.layers", "encoder_layers"),
              "decoder": ("model.decoder.layers", "decoder_layers")},
    "marian": {"encoder": ("model.encoder.layers", "encoder_layers"),
               "decoder": ("model.decoder.layers", "decoder_layers")},
    "t5": {"encoder": ("encoder.block", "num_layers"), "decoder": ("decoder.block", "num_decoder_layers")},
}


def layer_count(model: torch.nn.Module, stack: str) -> int:
    return int(getattr(model.config, _stacks(model)[stack][1]))


def _stacks(model: torch.nn.Module) -> dict[str, tuple[str, str]]:
    kind = model.config.model_type
    if kind not in LAYER_STACKS:
        raise TextDistillError(
            f"student.init 'teacher_layers' does not know the layer layout of model type {kind!r}; supported: "
            f"{', '.join(LAYER_STACKS)}. Use student.init 'shrink' (a smaller config, randomly initialised)")
    return LAYER_STACKS[kind]


def keep_layers(teacher: torch.nn.Module, keep: dict[str, list[int]]) -> torch.nn.Module:
    """The teacher with only the layers `keep[stack]` of each named stack ('decoder', 'encoder'), weights copied.

    Stacks not in `keep` stay whole. Parameters that only exist in the new first layer of a stack (T5's
    relative position bias lives in block 0) are taken from the teacher's layer 0.
    """
    stacks = _stacks(teacher)
    config = copy.deepcopy(teacher.config)
    for stack, layers in keep.items():
        if stack not in stacks:
            raise TextDistillError(f"model type {teacher.config.model_type!r} has no {stack} stack")
        prefix, field = stacks[stack]
        n = int(getattr(teacher.config, field))
        bad = [i for i in layers if not 0 <= i < n]
        if bad:
            field_name = "student.encoder_layers" if stack == "encoder" else "student.layers"
            raise TextDistillError(f"student layers {bad} do not exist: the teacher's {stack} has layers 0..{n - 1}; "
                                   f"set {field_name} within that range")
        setattr(config, field, len(layers))
        if stack == "decoder" and getattr(config, "layer_types", None) and teacher.config.model_type != "t5":
            config.layer_types = [teacher.config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    teacher_state = teacher.state_dict()
    state = select_layers(teacher_state, {stacks[stack][0]: layers for stack, layers in keep.items()})
    missing, unexpected = student.load_state_dict(state, strict=False)
    for key in missing:  # parameters of a new first layer that the copied layer did not have
        source = _first_layer_source(key, stacks)
        if source in teacher_state:
            student.state_dict()[key].copy_(teacher_state[source])
        elif not key.endswith("lm_head.weight"):  # tied to the embedding
            log.warning("student parameter %s has no teacher counterpart; it keeps its random initialisation", key)
    if unexpected:
        raise RuntimeError(f"student state has unexpected keys {unexpected[:3]}")
    student.tie_weights()
    return student.eval()


def default_layers(n_teacher: int) -> list[int]:
    """Every third teacher layer, ending with the last: 6 -> [2, 5], 12 -> [2, 5, 8, 11], 4 -> [0, 3], 30 -> 10."""
    return list(range((n_teacher - 1) % 3, n_teacher, 3))


def select_layers(state: dict, keep: dict[str, list[int]]) -> dict:
    """A student's state dict from the teacher's: key `{prefix}.{keep[prefix][i]}.x` becomes `{prefix}.{i}.x`
    for each layer list `prefix` (e.g. 'bert.encoder.layer', 'model.layers'), keys of dropped layers go, every
    other key (embeddings, norms, heads) is kept as it is."""
    patterns = {prefix: re.compile(re.escape(prefix) + r"\.(\d+)\.(.*)") for prefix in keep}
    out = {}
    for key, value in state.items():
        for prefix, pattern in patterns.items():
            m = pattern.fullmatch(key)
            if m:
                old = int(m.group(1))
                if old in keep[prefix]:
                    out[f"{prefix}.{keep[prefix].index(old)}.{m.group(2)}"] = value
                break
        else:
            out[key] = value
    return out


def _first_layer_source(key: str, stacks: dict) -> str:
    for prefix, _ in stacks.values():
        m = re.match(re.escape(prefix) + r"\.0\.(.*)", key)
        if m:
            return f"{prefix}.0.{m.group(1)}"
    return key


def shrunk(teacher: torch.nn.Module, num_layers: int, hidden_size: int | None, num_heads: int | None,
           intermediate_size: int | None, seed: int) -> torch.nn.Module:
    """The teacher's architecture with a smaller config, randomly initialised (student.init 'shrink').

    For encoder-decoders only the decoder is made smaller (`num_layers` decoder layers)."""
    config = copy.deepcopy(teacher.config)
    stacks = _stacks(teacher)
    setattr(config, stacks["decoder"][1], num_layers)
    if getattr(config, "layer_types", None) and teacher.config.model_type != "t5":
        config.layer_types = config.layer_types[:num_layers]
    names = {"hidden_size": ("hidden_size", "n_embd", "d_model"), "num_heads": ("num_attention_heads", "n_head"),
             "intermediate_size": ("intermediate_size", "n_inner")}
    for value, fields in ((hidden_size, names["hidden_size"]), (num_heads, names["num_heads"]),
                          (intermediate_size, names["intermediate_size"])):
        if value is not None and "encoder" not in stacks:
            for f in fields:
                if hasattr(config, f):
                    setattr(config, f, value)
    if hidden_size is not None and hasattr(config, "head_dim") and "encoder" not in stacks:
        config.head_dim = hidden_size // config.num_attention_heads
    torch.manual_seed(seed)
    return type(teacher)(config).eval()
