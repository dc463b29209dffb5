"""Generation models: loading a causal-LM or encoder-decoder teacher, building its student, pairing vocabularies.

A student made by `keep_layers` is the teacher's architecture with fewer layers; its weights are the
teacher's, layer for layer (DistilBERT's initialisation, for decoders: keep every third layer ending
with the last). For encoder-decoders the encoder is kept (whole or a subset) and the decoder thinned,
"shrink and fine-tune" (Shleifer & Rush 2020, https://arxiv.org/abs/2010.13002).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from textdistill.errors import TextDistillError
from textdistill.models.loading import check_same_vocabulary, model_load_errors, refuse_custom_code
from textdistill.models.students import default_layers

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


def load_generation_model(path: Path, task: str, role: str, trust_remote_code: bool = False) -> torch.nn.Module:
    """A local causal-LM (`task` 'causal_lm') or encoder-decoder ('seq2seq') folder, in float32 eval mode."""
    refuse_custom_code(path, role, trust_remote_code)
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSeq2SeqLM
    kind = "causal language model" if task == "causal_lm" else "encoder-decoder (seq2seq) model"
    with model_load_errors(path, role, kind):
        model = auto.from_pretrained(str(path), dtype=torch.float32, trust_remote_code=trust_remote_code)
    return model.eval()


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
            field_name = "student_encoder_layers" if stack == "encoder" else "student_layers"
            raise TextDistillError(f"student layers {bad} do not exist: the teacher's {stack} has layers 0..{n - 1}; "
                                   f"set generation.{field_name} within that range")
        setattr(config, field, len(layers))
        if stack == "decoder" and getattr(config, "layer_types", None) and teacher.config.model_type != "t5":
            config.layer_types = [teacher.config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    teacher_state = teacher.state_dict()
    state = {}
    for key, value in teacher_state.items():
        new_key = _renamed(key, stacks, keep)
        if new_key is not None:
            state[new_key] = value
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


def _renamed(key: str, stacks: dict, keep: dict[str, list[int]]) -> str | None:
    """The student's name for teacher parameter `key`, or None when its layer is dropped."""
    for stack, layers in keep.items():
        prefix = stacks[stack][0]
        m = re.match(re.escape(prefix) + r"\.(\d+)\.(.*)", key)
        if m:
            old = int(m.group(1))
            return f"{prefix}.{layers.index(old)}.{m.group(2)}" if old in layers else None
    return key


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


def default_student_layers(n: int) -> list[int]:
    """Every third layer ending with the last (a 30-layer decoder keeps 10: [2, 5, ..., 29])."""
    return default_layers(n)


def shared_vocabulary(teacher_tok, student_tok, teacher: torch.nn.Module, student: torch.nn.Module) -> int:
    """Number of token ids teacher and student share; their logits are compared on ids [0, shared).

    Differences only in padding rows (embedding rows beyond the tokenizer, or tokens appended after the
    other tokenizer's last id) are handled by slicing the logits to the shared ids; any id read differently
    is a start-up error (`check_same_vocabulary`).
    """
    shared = check_same_vocabulary(teacher_tok, student_tok, student.get_input_embeddings().num_embeddings)
    rows = {"teacher": teacher.get_output_embeddings().weight.shape[0],
            "student": student.get_output_embeddings().weight.shape[0]}
    for role, n in rows.items():
        if n < shared:
            raise TextDistillError(f"the {role}'s output layer has {n} rows for {shared} shared token ids; "
                                   f"use a {role} built for this tokenizer")
    if rows["teacher"] != rows["student"] or rows["teacher"] != shared:
        log.info("vocabularies: teacher %d and student %d logit rows; comparing the %d shared token ids",
                 rows["teacher"], rows["student"], shared)
    return shared
