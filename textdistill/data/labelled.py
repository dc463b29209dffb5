"""Labelled text for classification: reading and splitting it, label ids, tokenising every split once per run."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from textdistill.config import DataConfig
from textdistill.data.batching import pad_rows
from textdistill.data.builtin import load_builtin
from textdistill.data.files import read_table, require_column
from textdistill.errors import TextDistillError
from textdistill.losses import IGNORE_INDEX

log = logging.getLogger("textdistill")


@dataclass
class TextSplit:
    """Raw examples of one split: texts, optional second texts, label names (None when unlabelled)."""

    texts: list[str]
    pairs: list[str] | None = None
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ClassificationData:
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    unlabeled: TextSplit | None
    label_names: list[str]
    written: dict | None = None  # how the written part of `unlabeled` was made (data.generated_texts)

    def label_ids(self, split: TextSplit) -> list[int]:
        index = {name: i for i, name in enumerate(self.label_names)}
        if split.labels is None:
            return [IGNORE_INDEX] * len(split)
        return [index[name] for name in split.labels]


def _label_name(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# Spellings of "no value" (pandas' own list, compared case-blind). Files are read as text, so such a label
# would otherwise become a class of its own: an empty CSV cell and 'NaN' from a spreadsheet export alike.
MISSING_LABELS = frozenset({"", "nan", "-nan", "na", "n/a", "#n/a", "#n/a n/a", "#na", "<na>", "null", "none", "nil",
                            "-1.#ind", "1.#ind", "-1.#qnan", "1.#qnan"})


def _check_labels_present(column: pd.Series, role: str, name: str) -> None:
    """Refuse examples whose label is missing or a spelling of 'missing' (NaN, NA, null, None, empty)."""
    labels = [None if na else _label_name(v) for v, na in zip(column, column.isna().to_numpy())]
    missing = np.array([v is None or v.casefold() in MISSING_LABELS for v in labels], dtype=bool)
    if missing.any():
        rows = np.flatnonzero(missing)[:5] + 1
        seen = sorted({"empty" if labels[i] in (None, "") else repr(labels[i]) for i in np.flatnonzero(missing)})
        raise TextDistillError(
            f"{role}: {int(missing.sum())} examples have no label in column {name!r} ({', '.join(seen[:5])}), e.g. "
            f"rows {', '.join(map(str, rows))} (counting examples from 1); fill or remove them (if such a value is "
            "a real class, rename it)"
        )


def _label_key(name: str) -> tuple:
    """What two spellings of one class share: the number for numbers ('1', '1.0'), else the case-folded text."""
    try:
        number = float(name)
    except ValueError:
        return ("text", name.casefold())
    return ("number", number) if math.isfinite(number) else ("text", name.casefold())


def _check_label_spellings(splits: dict[str, list[str]], column: str) -> None:
    """Refuse labels that differ only by case or number format ('POS' and 'pos', '1' and '1.0'): taken as
    they are they would be separate classes, and a teacher would be fine-tuned on classes that do not exist."""
    forms: dict[tuple, dict[str, str]] = {}
    for role, labels in splits.items():
        for name in dict.fromkeys(labels):
            forms.setdefault(_label_key(name), {}).setdefault(name, role)
    for spellings in forms.values():
        if len(spellings) > 1:
            shown = " and ".join(f"{name!r} ({role})" for name, role in list(spellings.items())[:3])
            raise TextDistillError(
                f"labels {shown} differ only by case or number format and would be separate classes; write each "
                f"class one way in column {column!r}"
            )


def _frame_to_split(df: pd.DataFrame, cfg: DataConfig, role: str, labelled: bool) -> TextSplit:
    require_column(df, cfg.text_column, role, "data.text_column")
    if cfg.text_pair_column is not None:
        require_column(df, cfg.text_pair_column, role, "data.text_pair_column")
    if labelled:
        require_column(df, cfg.label_column, role, "data.label_column")
        _check_labels_present(df[cfg.label_column], role, cfg.label_column)
    text_cols = [cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
    empty = np.zeros(len(df), dtype=bool)
    for col in text_cols:
        empty |= (df[col].isna() | (df[col].astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        log.warning("%s: dropping %d examples with empty text", role, int(empty.sum()))
        df = df[~empty]
    if len(df) == 0:
        raise TextDistillError(f"{role}: no examples with text in column {cfg.text_column!r}; check the file")
    return TextSplit(
        texts=df[cfg.text_column].astype(str).tolist(),
        pairs=df[cfg.text_pair_column].astype(str).tolist() if cfg.text_pair_column else None,
        labels=[_label_name(v) for v in df[cfg.label_column]] if labelled else None,
    )


def _take(split: TextSplit, index: np.ndarray) -> TextSplit:
    return TextSplit(
        texts=[split.texts[i] for i in index],
        pairs=[split.pairs[i] for i in index] if split.pairs is not None else None,
        labels=[split.labels[i] for i in index] if split.labels is not None else None,
    )


def _sort_labels(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=lambda n: float(n))
    except ValueError:
        return sorted(names)


def load_classification_data(cfg: DataConfig) -> ClassificationData:
    """Read the configured files (or built-in dataset), split deterministically, check the labels."""
    unlabeled: TextSplit | None = None
    if cfg.dataset is not None:
        builtin = load_builtin(cfg.dataset)
        full = TextSplit(texts=builtin.labelled["text"].tolist(), labels=builtin.labelled["label"].tolist())
        if cfg.use_builtin_unlabeled:
            if not builtin.unlabeled:
                raise TextDistillError(f"data.dataset {cfg.dataset!r} has no unlabelled text; set "
                                       "data.use_builtin_unlabeled to false or give a file in data.unlabeled")
            unlabeled = TextSplit(texts=list(builtin.unlabeled))
        role = f"data.dataset {cfg.dataset!r}"
    else:
        full = _frame_to_split(read_table(cfg.train, "data.train"), cfg, "data.train", labelled=True)
        role = "data.train"
    given = {
        "validation": _frame_to_split(read_table(cfg.validation, "data.validation"), cfg, "data.validation", True)
        if cfg.validation else None,
        "test": _frame_to_split(read_table(cfg.test, "data.test"), cfg, "data.test", True) if cfg.test else None,
    }
    order = np.random.default_rng(cfg.split_seed).permutation(len(full))
    held: dict[str, TextSplit] = {}
    start = 0
    for name, fraction in (("test", cfg.test_fraction), ("validation", cfg.validation_fraction)):
        if given[name] is not None:
            held[name] = given[name]
            continue
        n = max(1, int(round(fraction * len(full))))
        if fraction == 0 or n >= len(full) - start:
            raise TextDistillError(
                f"{role}: cannot hold out a {name} split from {len(full)} examples with "
                f"data.{name}_fraction={fraction}; give data.{name} as a file or a fraction in (0, 1)"
            )
        held[name] = _take(full, order[start : start + n])
        start += n
    train = _take(full, order[start:])
    if cfg.max_train_examples is not None:
        train = _take(train, np.arange(min(cfg.max_train_examples, len(train))))
    if cfg.unlabeled:
        df = read_table(cfg.unlabeled, "data.unlabeled")
        extra = _frame_to_split(df, cfg, "data.unlabeled", labelled=False)
        unlabeled = extra if unlabeled is None else TextSplit(texts=unlabeled.texts + extra.texts)

    _check_label_spellings({role: full.labels, **{f"data.{k}": v.labels for k, v in given.items() if v is not None}},
                           cfg.label_column)
    label_names = _sort_labels(set(train.labels))
    if len(label_names) < 2:
        raise TextDistillError(
            f"{role}: training data has a single class ({label_names[0]!r}); classification needs at "
            "least two label values in the label column"
        )
    for name, split in held.items():
        unseen = sorted(set(split.labels) - set(label_names))
        if unseen:
            raise TextDistillError(
                f"data.{name}: labels {', '.join(map(repr, unseen[:5]))} never occur in training "
                f"(training labels: {', '.join(map(repr, label_names))}); fix the labels or add such examples to train"
            )
    _warn_overlap(train, held["test"])
    return ClassificationData(train=train, validation=held["validation"], test=held["test"],
                              unlabeled=unlabeled, label_names=label_names)


def _warn_overlap(train: TextSplit, test: TextSplit) -> None:
    def keys(split: TextSplit) -> set:
        pairs = split.pairs or [None] * len(split)
        return {(t, p) for t, p in zip(split.texts, pairs)}

    shared = keys(train) & keys(test)
    if shared:
        log.warning("%d test examples also occur in train; test scores will be optimistic (deduplicate the files)",
                    len(shared))


@dataclass
class Encoded:
    """A tokenised split: token ids per example (unpadded), label ids, optional teacher logits."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: torch.Tensor  # [N] long, IGNORE_INDEX where unlabelled
    teacher_logits: torch.Tensor | None = None  # [N, C] float32
    lengths: list[int] = field(default_factory=list)
    pad_id: int = 0
    # with a pruned student vocabulary (student.vocab 'task'), input_ids are the student's ids and these the
    # teacher's for the same tokens (same length), for anything that runs the teacher live
    teacher_input_ids: list[list[int]] | None = None
    teacher_pad_id: int = 0
    truncated: int = field(default=0, metadata={"join": "sum"})  # examples longer than max_length, cut to it
    example_weights: torch.Tensor | None = None  # [N] float32, the soft term's weight per example (class balance)

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, index: list[int]) -> dict[str, torch.Tensor]:
        """Pad the examples `index` to their longest member (dynamic padding)."""
        input_ids, attention_mask = pad_rows([self.input_ids[i] for i in index], self.pad_id)  # [B, L] each
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "targets": self.labels[index]}
        if self.token_type_ids:
            batch["token_type_ids"] = pad_rows([self.token_type_ids[i] for i in index], 0)[0]  # [B, L]
        if self.teacher_logits is not None:
            batch["teacher_logits"] = self.teacher_logits[index]  # [B, C]
        if self.teacher_input_ids is not None:
            batch["teacher_input_ids"] = pad_rows([self.teacher_input_ids[i] for i in index], self.teacher_pad_id)[0]
        if self.example_weights is not None:
            batch["example_weights"] = self.example_weights[index]  # [B]
        return batch


def _word_prefix(text: str, chars: int) -> str | None:
    """`text` cut at its last whitespace before `chars` characters, trailing whitespace removed; None when that
    window holds no whitespace."""
    cut = max(text.rfind(c, 0, chars) for c in " \t\n\r")
    prefix = text[:cut].rstrip() if cut > 0 else ""
    return prefix or None


def bounded_texts(tokenizer, texts: list[str], max_length: int) -> list[str]:
    """Each text, or a prefix of it that already has more than `max_length` tokens.

    Tokenising a whole 10 MB text to keep its first 64 tokens cost seconds and gigabytes. A prefix cut at a
    whitespace tokenises like the start of the whole text (WordPiece, byte-level BPE and SentencePiece
    tokenizers split at whitespace before anything else), so when it already holds more than `max_length`
    tokens, truncating it gives the ids truncating the whole text gives, and the example is truncated either
    way: counts and ids stay exact. One exception: when both texts of a sentence pair are cut, which of them
    gets the odd token of an odd budget (transformers gives it to the longer) follows the prefixes' lengths.
    The window grows fourfold until the prefix is long enough; a text with no whitespace in it is tokenised
    whole.
    """
    out = list(texts)
    chars = 16 * max_length  # a few times the characters of max_length tokens in any language
    todo = [i for i, t in enumerate(texts) if len(t) > chars]
    while todo:
        prefixes = {i: _word_prefix(texts[i], chars) for i in todo}
        ready = [i for i in todo if prefixes[i] is not None]
        counts = tokenizer([prefixes[i] for i in ready], add_special_tokens=False)["input_ids"] if ready else []
        long_enough = {i for i, ids in zip(ready, counts) if len(ids) > max_length}
        for i in long_enough:
            out[i] = prefixes[i]
        chars *= 4
        todo = [i for i in todo if i not in long_enough and len(texts[i]) > chars]
    return out


def encode(tokenizer, split: TextSplit, label_ids: list[int], max_length: int, role: str,
           warn: bool = True) -> Encoded:
    """Tokenise once, truncating to `max_length`, counting the truncated examples (exact: examples with more
    than `max_length` tokens, special tokens included) and, with `warn`, saying how many; a long text is
    tokenised only as far as its first tokens need (`bounded_texts`)."""
    texts = bounded_texts(tokenizer, split.texts, max_length)
    pairs = bounded_texts(tokenizer, split.pairs, max_length) if split.pairs else None
    kwargs = dict(truncation=True, max_length=max_length)
    out = tokenizer(texts, pairs, **kwargs) if pairs else tokenizer(texts, **kwargs)
    full = tokenizer(texts, pairs) if pairs else tokenizer(texts)
    truncated = sum(len(ids) > max_length for ids in full["input_ids"])
    if truncated and warn:
        log.warning("%s: %d of %d examples are longer than data.max_length=%d tokens and were truncated",
                    role, truncated, len(split), max_length)
    ids = out["input_ids"]
    return Encoded(
        input_ids=ids,
        token_type_ids=out.get("token_type_ids"),
        labels=torch.tensor(label_ids, dtype=torch.long),
        lengths=[len(x) for x in ids],
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        truncated=truncated,
    )


@dataclass
class EncodedSplits:
    train: Encoded
    validation: Encoded
    test: Encoded
    unlabeled: Encoded | None


def check_max_length(max_length: int, model_max: int | None) -> None:
    if model_max is not None and max_length > model_max:
        raise TextDistillError(
            f"data.max_length {max_length} exceeds the model's {model_max} positions; set data.max_length <= {model_max}"
        )


def encode_splits(tokenizer, data: ClassificationData, max_length: int, model_max: int | None,
                  warn: bool = True) -> EncodedSplits:
    """Tokenise every split once per run; `warn` says how many examples of each were truncated (False where
    the same splits are, or were, reported through the same tokenizer: one line per fact)."""
    check_max_length(max_length, model_max)

    def enc(split, role):
        return encode(tokenizer, split, data.label_ids(split), max_length, role, warn)

    return EncodedSplits(
        train=enc(data.train, "train"),
        validation=enc(data.validation, "validation"),
        test=enc(data.test, "test"),
        unlabeled=enc(data.unlabeled, "unlabeled") if data.unlabeled is not None else None,
    )
