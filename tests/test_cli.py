"""The CLI end to end on a tiny config: files produced, report written, export reloads identically."""

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from conftest import write_config
from textdistill.cli import main, run


def _write_config(tmp_path, overrides: dict) -> Path:
    return write_config(tmp_path / "tiny.yaml", overrides)


def _fail(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_distill_report_eval_export(tmp_path, tiny_overrides, capsys, caplog):
    config = _write_config(tmp_path, tiny_overrides)
    assert run(["-q", "distill", "--config", str(config), "--train.epochs", "3"]) == 0
    run_dir = Path(tiny_overrides["output_dir"])
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "report.html",
                 "student/model.safetensors", "student/config.json", "baseline/model.safetensors"):
        assert (run_dir / name).is_file(), name
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 3.0  # the flag beat the file
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["results"]) == {"teacher", "student", "baseline"}
    for r in summary["results"].values():
        assert 0 <= r["accuracy"] <= 1 and r["latency_p50_ms"] > 0 and r["parameters"] > 0
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {h["run"] for h in history} == {"student", "baseline"}
    assert any(h.get("split") == "validation" for h in history)
    report = (run_dir / "report.md").read_text()
    assert "% of teacher accuracy" in report and "baseline (no teacher)" in report
    assert "<svg" in (run_dir / "report.html").read_text()

    capsys.readouterr()
    assert run(["report", str(run_dir)]) == 0
    assert "student (distilled)" in capsys.readouterr().out

    assert run(["eval", "--config", str(config), "--model", str(run_dir / "student"),
                "--teacher", tiny_overrides["teacher.path"]]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == pytest.approx(summary["results"]["student"]["accuracy"])
    assert scores["teacher_agreement"] == pytest.approx(summary["results"]["student"]["teacher_agreement"])

    out = tmp_path / "exported"
    assert run(["export", str(run_dir), "--output", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == ["neg", "pos"] and info["max_logit_difference"] == 0.0
    assert "model.safetensors" in info["files"] and not any(f.endswith(".bin") for f in info["files"])
    # the export is a plain HF classifier: no weights beyond the architecture's own
    exported = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    fresh = AutoModelForSequenceClassification.from_config(exported.config)
    assert set(exported.state_dict()) == set(fresh.state_dict())
    original = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "student")).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    enc = tok(["good film", "the plot was dull and boring"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(original(**enc).logits, exported(**enc).logits)
    capsys.readouterr()
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run(["bench", str(run_dir), "--latency_examples", "5", "--throughput_batches", "1"]) == 0
    assert [str(w.message)[:80] for w in caught] == []
    assert [r.getMessage()[:80] for r in caplog.records if "onnxruntime" in r.pathname] == []
    printed, err = capsys.readouterr()
    # a table a person reads, under one line of progress: no exporter or quantiser chatter
    assert printed.splitlines()[0].split()[:3] == ["model", "accuracy", "p50"], printed
    assert "student onnx int8" in printed and "bench.json" in printed.splitlines()[-1]
    assert err.splitlines() == [next(line for line in err.splitlines() if line.startswith("textdistill: bench:"))], err
    assert run(["bench", str(run_dir), "--latency_examples", "5", "--throughput_batches", "1", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert set(bench) == {f"{r} {v}" for r in ("teacher", "student") for v in ("pytorch fp32", "onnx fp32", "onnx int8")}
    assert bench["student onnx fp32"]["accuracy"] == pytest.approx(summary["results"]["student"]["accuracy"])
    assert (run_dir / "bench.json").is_file() and "ONNX Runtime" in (run_dir / "report.md").read_text()
    # the ONNX files run in ONNX Runtime at another batch size and length than they were traced with
    import onnxruntime as ort

    assert {"model.onnx", "model.int8.onnx"} <= set(info["files"]) and info["onnx_max_logit_difference"] < 1e-4
    with torch.inference_mode():
        reference = original(**enc).logits.numpy()
    # tolerances are shares of the logits' own scale (a random tiny student's are about 0.01): an all-zero output
    # fails; int8 weights measured at about 2% of it
    scale = abs(reference).max()
    for name, share in (("model.onnx", 1e-4), ("model.int8.onnx", 0.1)):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        feed = {i.name: enc[i.name].numpy() for i in session.get_inputs()}
        assert abs(session.run(None, feed)[0] - reference).max() <= share * scale, name
    clf = pipeline("text-classification", model=str(out))
    assert clf("good film")[0]["label"] in ("neg", "pos")


def test_teacher_command_fine_tunes_a_folder(tmp_path, tiny_overrides, teacher_dir, capsys):
    out = tmp_path / "my_teacher"
    args = ["-q", "teacher", "--data.train", tiny_overrides["data.train"], "--teacher.base", str(teacher_dir),
            "--teacher.finetune.max_steps", "3", "--teacher.finetune.progress", "false", "--output", str(out)]
    assert run(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert 0 <= info["test_accuracy"] <= 1
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "neg", 1: "pos"}


def test_each_log_line_of_a_run_appears_once(tmp_path, tiny_overrides, teacher_dir, capsys):
    # every split is tokenised up to three times (fine-tuning the teacher, the run, the student's pruned
    # vocabulary) and the teacher scores two parts (train, variants): each fact is still said once
    from collections import Counter

    from conftest import synthetic_frame

    files = {}
    for name, n, seed in (("train", 80, 0), ("validation", 24, 1), ("test", 24, 2)):
        frame = synthetic_frame(n, seed)
        frame["text"] = [t + (" and the story was really very long and the plot was very dull" if i % 5 == 0 else "")
                         for i, t in enumerate(frame["text"])]
        files[f"data.{name}"] = str(tmp_path / f"{name}.csv")
        frame.to_csv(files[f"data.{name}"], index=False)
    config = _write_config(tmp_path, {**tiny_overrides, **files, "teacher.path": "builtin",
                                      "teacher.base": str(teacher_dir), "teacher.finetune.max_steps": 2,
                                      "teacher.finetune.progress": False, "student.vocab": "task",
                                      "data.augment_copies": 1, "train.epochs": 1})
    assert run(["distill", "--config", str(config)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("textdistill:")]
    assert [line for line, n in Counter(lines).items() if n > 1] == []
    for split in ("train", "validation", "test"):
        assert sum(line.startswith(f"textdistill: warning: {split}: ") and "truncated" in line for line in lines) == 1
    assert sum("teacher scores of train: computed" in line for line in lines) == 1
    assert sum("teacher scores of augmented: computed" in line for line in lines) == 1


def test_existing_run_folder_is_not_overwritten(tmp_path, tiny_overrides, capsys):
    run_dir = Path(tiny_overrides["output_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "precious.txt").write_text("keep me")
    config = _write_config(tmp_path, tiny_overrides)
    msg = _fail(["distill", "--config", str(config)], capsys)
    assert "already exists" in msg and "--overwrite" in msg
    msg = _fail(["distill", "--config", str(config), "--overwrite"], capsys)
    assert "not a textdistill run folder" in msg
    assert (run_dir / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("extra,needle", [
    ({"data.train": "missing.csv"}, "does not exist"),
    ({"data.text_column": "txt"}, "did you mean 'text'"),
    ({"teacher.path": "/nonexistent/teacher"}, "does not exist"),
    ({"student.layers": [0, 7]}, "out of range"),
    ({"loss.temperature": -1}, "temperature must be positive"),
])
def test_bad_input_gives_one_line_error(tmp_path, tiny_overrides, capsys, extra, needle):
    config = _write_config(tmp_path, {**tiny_overrides, **extra})
    assert needle in _fail(["distill", "--config", str(config)], capsys)


def test_matching_layers_across_different_vocabularies_is_refused_at_start_up(tmp_path, tiny_overrides, capsys):
    # a pretrained student with a tokenizer of its own learns from the teacher's outputs, but its tokens cannot
    # be matched one by one with the teacher's
    from conftest import tiny_bert, write_tokenizer

    folder = tmp_path / "other_student"
    tok = write_tokenizer(folder, ["completely", "different", "words"])
    tiny_bert(len(tok.get_vocab()), layers=1).save_pretrained(str(folder))
    config = _write_config(tmp_path, {**tiny_overrides, "student.init": "pretrained", "student.path": str(folder),
                                      "loss.hidden_loss": "mse"})
    capsys.readouterr()  # (saving the folder above prints a progress bar)
    msg = _fail(["distill", "--config", str(config)], capsys)
    assert "student's tokenizer is not the teacher's" in msg
    assert not (Path(tiny_overrides["output_dir"]) / "metrics.jsonl").exists()


def test_resume_guards(tmp_path, tiny_overrides, capsys):
    config = _write_config(tmp_path, tiny_overrides)
    msg = _fail(["distill", "--config", str(config), "--resume"], capsys)
    assert "nothing to resume" in msg
    msg = _fail(["distill", "--resume", "--output_dir", str(tmp_path / "no_such_run")], capsys)
    assert "nothing to resume" in msg and "--output_dir" in msg
    msg = _fail(["distill", "--config", str(config), "--resume", "--overwrite"], capsys)
    assert "contradict" in msg


def test_run_folder_that_cannot_be_created_is_one_line(tmp_path, tiny_overrides, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = _write_config(tmp_path, {**tiny_overrides, "output_dir": str(blocker / "run")})
    msg = _fail(["distill", "--config", str(config)], capsys)
    assert "could not write" in msg and "a_file" in msg
