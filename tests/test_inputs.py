"""Bad input through the CLI: one line naming the problem and the fix, and nothing outside the run folder changed.

Each case builds its input inside the test's folder, runs the command, and compares a digest of everything
in that folder (names and contents) except the run folder before and after: a refused run may have made
its own folder, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_config, write_tokenizer
from textdistill.cli import main, run

ALIAS_BOMB = "".join(
    f"    {name}: &{name} [{','.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefghi", ['"lol"'] + [f"*{c}" for c in "abcdefgh"]))


def listing_digest(root: Path, run_dir: Path) -> str:
    """sha256 over the relative path, kind and content of everything under `root` except `run_dir`."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path == run_dir or run_dir in path.parents:
            continue
        h.update(str(path.relative_to(root)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"/")
    return h.hexdigest()


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("textdistill: error: ")
    return err[0]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _teacher_copy(tmp_path: Path, teacher_dir: Path) -> Path:
    folder = tmp_path / "teacher"
    shutil.copytree(teacher_dir, folder)
    return folder


def no_tokenizer(tmp_path, teacher_dir):
    folder = _teacher_copy(tmp_path, teacher_dir)
    for f in folder.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            f.unlink()
    return {"teacher.path": str(folder)}


def foreign_tokenizer(tmp_path, teacher_dir):
    # a tokenizer of 7 tokens beside a model of 29 embedding rows: not the model's own
    folder = _teacher_copy(tmp_path, teacher_dir)
    (folder / "tokenizer.json").unlink()
    write_tokenizer(folder, ["good", "bad"])
    return {"teacher.path": str(folder)}


def larger_tokenizer(tmp_path, teacher_dir):
    # ids past the model's last embedding row
    folder = _teacher_copy(tmp_path, teacher_dir)
    write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER + [f"extra{i}" for i in range(8)])
    return {"teacher.path": str(folder)}


def truncated_weights(tmp_path, teacher_dir):
    folder = _teacher_copy(tmp_path, teacher_dir)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-300])
    return {"teacher.path": str(folder)}


def garbage_weights(tmp_path, teacher_dir):
    folder = _teacher_copy(tmp_path, teacher_dir)
    (folder / "model.safetensors").write_bytes(b"\x00 not a safetensors file " * 40)
    return {"teacher.path": str(folder)}


def pickled_weights(tmp_path, teacher_dir):
    folder = _teacher_copy(tmp_path, teacher_dir)
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.pooler.dense.weight": _RunsCode(tmp_path / "PWNED")}, f, protocol=2)
    return {"teacher.path": str(folder)}


def _train_file(tmp_path, frame: pd.DataFrame, name="train.csv") -> dict:
    path = tmp_path / name
    frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return {"data.train": str(path)}


def nan_labels(tmp_path, teacher_dir):
    frame = synthetic_frame(60)
    frame.loc[[3, 7], "label"] = ["NaN", "null"]
    return _train_file(tmp_path, frame)


def case_labels(tmp_path, teacher_dir):
    frame = synthetic_frame(60)
    frame.loc[5, "label"] = "POS"
    return _train_file(tmp_path, frame)


def number_labels(tmp_path, teacher_dir):
    frame = synthetic_frame(60).assign(label=lambda f: (f["label"] == "pos").astype(int).astype(str))
    frame.loc[5, "label"] = "1.0"
    data = _train_file(tmp_path, frame)
    return {**data, "data.validation": None, "data.test": None}


def unclosed_quote_tsv(tmp_path, teacher_dir):
    lines = ["text\tlabel"] + [f"{row['text']}\t{row['label']}" for row in synthetic_frame(40).to_dict("records")]
    lines[3] = '"an unclosed quote' + lines[3]
    lines[12] = 'a quoted word"\tneg'  # the runaway field ends here: pandas reads lines 4 to 13 as one example
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    return {"data.train": str(tmp_path / "train.tsv")}


@pytest.mark.parametrize("make,needles", [
    (no_tokenizer, ["has no tokenizer files", "save the model's tokenizer into the folder"]),
    (foreign_tokenizer, ["7 tokens", "29 embedding rows", "not this model's tokenizer", "save the tokenizer"]),
    (larger_tokenizer, ["37 tokens", "29 embedding rows", "not this model's tokenizer"]),
    (truncated_weights, ["truncated or not a safetensors file", "re-save the model"]),
    (garbage_weights, ["truncated or not a safetensors file", "copy the folder again"]),
    (pickled_weights, ["could run code", "are refused", "model.safetensors"]),
    (nan_labels, ["2 examples have no label", "'NaN'", "'null'", "rows 4, 8", "fill or remove them"]),
    (case_labels, ["'POS'", "'pos'", "differ only by case or number format", "write each class one way"]),
    (number_labels, ["'1.0'", "'1'", "differ only by case or number format"]),
    (unclosed_quote_tsv, ["line 4", "lines 4 to 13", "tabs or line breaks", "close or remove the quote"]),
])
def test_bad_input_is_one_line_and_changes_nothing_outside_the_run(tmp_path, tiny_overrides, teacher_dir, capsys,
                                                                   make, needles):
    overrides = {**tiny_overrides, **make(tmp_path, teacher_dir)}
    config = write_config(tmp_path / "config.yaml", overrides)
    run_dir = Path(overrides["output_dir"])
    before = listing_digest(tmp_path, run_dir)
    msg = one_line_error(["distill", "--config", str(config)], capsys)
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert listing_digest(tmp_path, run_dir) == before
    assert not (tmp_path / "PWNED").exists()


def test_alias_bomb_under_a_typed_key_is_a_short_line(tmp_path, capsys):
    config = tmp_path / "bomb.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\ntrain:\n  epochs:\n{ALIAS_BOMB}")
    assert len(ALIAS_BOMB) < 400  # 9^9 strings once expanded
    before = listing_digest(tmp_path, tmp_path / "run")
    msg = one_line_error(["distill", "--config", str(config)], capsys)
    assert "train.epochs: expected float, got {'a': ['lol'" in msg and len(msg) < 200
    assert listing_digest(tmp_path, tmp_path / "run") == before


@pytest.mark.parametrize("command", ["distill", "teacher", "demo", "export"])
def test_output_path_that_is_a_file_is_one_line(tmp_path, tiny_overrides, teacher_dir, capsys, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = write_config(tmp_path / "config.yaml", {**tiny_overrides, "output_dir": str(blocker)})
    argv = {"distill": ["distill", "--config", str(config)],
            "teacher": ["teacher", "--config", str(tmp_path / "config.yaml"), "--output", str(blocker)],
            "demo": ["demo", "--output_dir", str(blocker)],
            "export": ["export", str(teacher_dir), "--output", str(blocker)]}[command]
    before = listing_digest(tmp_path, tmp_path / "nothing")
    msg = one_line_error(argv, capsys)
    assert "a_file" in msg and "is an existing file, not a folder" in msg and "give the path of a folder" in msg
    assert listing_digest(tmp_path, tmp_path / "nothing") == before


@pytest.mark.parametrize("content,needle", [
    ("{not json", "is not readable JSON"),
    ("[1, 2]", "is not a textdistill run summary"),
    ('{"results": {"teacher": {}, "student": {}}}', "is damaged or incomplete (KeyError"),
])
def test_report_on_a_malformed_summary_is_one_line(tmp_path, capsys, content, needle):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(content)
    before = listing_digest(tmp_path, tmp_path / "nothing")
    msg = one_line_error(["report", str(run_dir)], capsys)
    assert needle in msg and "summary.json" in msg and "restore the file or run distill again" in msg
    assert listing_digest(tmp_path, tmp_path / "nothing") == before  # no report written from it


def test_teacher_at_zero_accuracy_reports_instead_of_crashing(tmp_path, tiny_overrides, teacher_dir, capsys):
    # a teacher that always answers 'neg', tested on 'pos' examples only: 0% accuracy, a 0 denominator
    folder = tmp_path / "teacher"
    shutil.copytree(teacher_dir, folder)
    model = tiny_bert(29)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0, -10.0]))
    model.save_pretrained(str(folder))
    test = synthetic_frame(80, seed=7).query("label == 'pos'")
    test.to_csv(tmp_path / "test.csv", index=False)
    overrides = {**tiny_overrides, "teacher.path": str(folder), "data.test": str(tmp_path / "test.csv"),
                 "train.max_steps": 2, "train.threads": 1}
    config = write_config(tmp_path / "config.yaml", overrides)
    assert run(["-q", "distill", "--config", str(config)]) == 0
    run_dir = Path(overrides["output_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["results"]["teacher"]["accuracy"] == 0.0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("% of teacher accuracy"))
    assert row.split()[-3:] == ["-", "-", "-"]
    assert run(["report", str(run_dir)]) == 0
    assert "% of teacher accuracy" in capsys.readouterr().out
    assert run(["-q", "distill", "--resume", "--output_dir", str(run_dir)]) == 0
    (run_dir / "phases" / "report.json").unlink()  # the report phase runs again on resume
    assert run(["-q", "distill", "--resume", "--output_dir", str(run_dir)]) == 0


def test_exported_tokenizer_truncates_at_the_model_positions(tmp_path, teacher_dir, capsys):
    from transformers import AutoTokenizer, pipeline

    assert AutoTokenizer.from_pretrained(str(teacher_dir)).model_max_length > 64  # unset: 10^30
    assert run(["export", str(teacher_dir), "--output", str(tmp_path / "exported")]) == 0
    assert AutoTokenizer.from_pretrained(str(tmp_path / "exported")).model_max_length == 64
    clf = pipeline("text-classification", model=str(tmp_path / "exported"))
    long_text = " ".join(["the film was very good and the actors were fun"] * 30)  # 300 words, 64 positions
    assert clf(long_text, truncation=True)[0]["label"] in ("neg", "pos")


def test_positions_of_models_that_number_them_after_padding():
    from transformers import BertConfig, MPNetConfig, RobertaConfig

    from textdistill.models.loading import usable_positions

    assert usable_positions(BertConfig(max_position_embeddings=512)) == 512
    assert usable_positions(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert usable_positions(MPNetConfig(max_position_embeddings=514, pad_token_id=1)) == 512
