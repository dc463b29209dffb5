"""Tiny random models and synthetic data built in-process: no network, no packaged weights."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hypothesis import settings
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring", "weak"]
FILLER = ["the", "film", "movie", "was", "very", "plot", "actors", "a", "and", "it", "story", "really"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Property tests draw the same examples on every run (a seed derived from each test), with no example
# database and no time limit per example: a failure reproduces, a pass means the same each time, and a busy
# machine does not turn slowness into a failure.
settings.register_profile("textdistill", derandomize=True, database=None, deadline=None)
settings.load_profile("textdistill")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a busy machine slows two-thread runs a hundredfold; a module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(path: Path, overrides: dict) -> Path:
    """A YAML config file at `path` from dotted overrides ({"train.epochs": 1} -> train: {epochs: 1})."""
    nested: dict = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(nested))
    return path


def write_tokenizer(folder: Path, words: list[str]) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIAL + words)}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tok.save_pretrained(str(folder))
    return tok


def tiny_bert(vocab_size: int, layers: int = 4, labels=("neg", "pos"), seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    return BertForSequenceClassification(config)


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        if rng.random() < 0.2:  # some noise so the task is not trivial
            words.append(rng.choice(NEGATIVE if label == "pos" else POSITIVE))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder: nothing is written to the user's, nothing leaks between tests."""
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "textdistill-cache"))


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny 4-layer BERT classifier saved as a Hugging Face folder with its tokenizer."""
    folder = tmp_path_factory.mktemp("teacher")
    tok = write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)
    model = tiny_bert(len(tok.get_vocab()), labels=("neg", "pos"))
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for name, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 40, 2)):
        paths[name] = folder / f"{name}.csv"
        synthetic_frame(n, seed).to_csv(paths[name], index=False)
    return paths


@pytest.fixture()
def tiny_overrides(teacher_dir, data_files, tmp_path) -> dict:
    """Config overrides for a run that finishes in seconds."""
    return {
        "output_dir": str(tmp_path / "run"),
        "data.train": str(data_files["train"]),
        "data.validation": str(data_files["validation"]),
        "data.test": str(data_files["test"]),
        "data.max_length": 16,
        "teacher.path": str(teacher_dir),
        "student.layers": [0, 3],
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.progress": False,
        "report.latency_examples": 5,
        "report.throughput_batches": 2,
    }


@pytest.fixture()
def llama_teacher(tmp_path) -> Path:
    """A tiny 6-layer Llama causal LM saved as a Hugging Face folder with a word-level tokenizer."""
    from generation_fixtures import tiny_llama, word_tokenizer

    folder = tmp_path / "teacher"
    tok = word_tokenizer(folder)
    tiny_llama(len(tok), layers=6).save_pretrained(str(folder))
    return folder


@pytest.fixture(autouse=True)
def textdistill_logs_reach_caplog(monkeypatch):
    """The CLI stops its logger propagating (it prints one clean line); tests read warnings with caplog.

    Levels go through setLevel, which also clears logging's per-logger isEnabledFor cache: set as a plain
    attribute, a level left by a `-q` CLI call in an earlier test kept INFO records from caplog. The
    CLI's handler (bound to that test's captured stderr) goes with the test."""
    import logging

    logger = logging.getLogger("textdistill")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)
