"""Labelled text for classification: reading and splitting it, label ids, tokenising every split once per run."""

from __future__ import annotations

import logging
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

    def label_ids(self, split: TextSplit) -> list[int]:
        index = {name: i for i, name in enumerate(self.label_names)}
        if split.labels is None:
            return [IGNORE_INDEX] * len(split)
        return [index[name] for name in split.labels]


def _label_name(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _frame_to_split(df: pd.DataFrame, cfg: DataConfig, role: str, labelled: bool) -> TextSplit:
    require_column(df, cfg.text_column, role, "data.text_column")
    if cfg.text_pair_column is not None:
        require_column(df, cfg.text_pair_column, role, "data.text_pair_column")
    if labelled:
        require_column(df, cfg.label_column, role, "data.label_column")
        missing = df[cfg.label_column].isna() | (df[cfg.label_column].astype(str).str.strip() == "")
        if missing.any():
            rows = np.flatnonzero(missing.to_numpy())[:5] + 1
            raise TextDistillError(
                f"{role}: {int(missing.sum())} examples have no label (NaN or empty) in column "
                f"{cfg.label_column!r}, e.g. rows {', '.join(map(str, rows))}; fill or remove them"
            )
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
        return batch


def encode(tokenizer, split: TextSplit, label_ids: list[int], max_length: int, role: str) -> Encoded:
    """Tokenise once, truncating to `max_length` and warning with the count of truncated examples."""
    kwargs = dict(truncation=True, max_length=max_length)
    out = tokenizer(split.texts, split.pairs, **kwargs) if split.pairs else tokenizer(split.texts, **kwargs)
    full = tokenizer(split.texts, split.pairs) if split.pairs else tokenizer(split.texts)
    truncated = sum(len(ids) > max_length for ids in full["input_ids"])
    if truncated:
        log.warning("%s: %d of %d examples are longer than data.max_length=%d tokens and were truncated",
                    role, truncated, len(split), max_length)
    ids = out["input_ids"]
    return Encoded(
        input_ids=ids,
        token_type_ids=out.get("token_type_ids"),
        labels=torch.tensor(label_ids, dtype=torch.long),
        lengths=[len(x) for x in ids],
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
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


def encode_splits(tokenizer, data: ClassificationData, max_length: int, model_max: int | None) -> EncodedSplits:
    """Tokenise every split once per run."""
    check_max_length(max_length, model_max)

    def enc(split, role):
        return encode(tokenizer, split, data.label_ids(split), max_length, role)

    return EncodedSplits(
        train=enc(data.train, "train"),
        validation=enc(data.validation, "validation"),
        test=enc(data.test, "test"),
        unlabeled=enc(data.unlabeled, "unlabeled") if data.unlabeled is not None else None,
    )
