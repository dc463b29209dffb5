"""The built-in teacher is fine-tuned once and cached under a key of everything that produced it."""

import json
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE
from textdistill.errors import TextDistillError
from textdistill.config import load_config
from textdistill.data.labelled import load_classification_data
from textdistill.pipeline import teacher as teacher_mod
from textdistill.pipeline.run import run_distill
from textdistill.report.render import guidance


def _cfg(tiny_overrides, teacher_dir, **extra):
    return load_config(None, {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                              "teacher.finetune.max_steps": 2, "teacher.finetune.progress": False, **extra})


def test_builtin_teacher_is_cached_and_keyed(tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_overrides, teacher_dir)
    data = load_classification_data(cfg.data)
    calls = []
    real = teacher_mod.train  # the training loop, as the fine-tuning calls it
    monkeypatch.setattr(teacher_mod, "train", lambda *a, **k: calls.append(1) or real(*a, **k))

    folder, info = teacher_mod.builtin_teacher(cfg, data)
    assert not info["cached"] and (folder / "model.safetensors").is_file()
    assert folder.parent.parent == tmp_path / "cache"
    again, info2 = teacher_mod.builtin_teacher(cfg, data)
    assert again == folder and info2["cached"] and len(calls) == 1

    # a different training setting or different data gives a different key
    other = _cfg(tiny_overrides, teacher_dir, **{"teacher.finetune.learning_rate": 1e-3})
    assert teacher_mod.teacher_cache_key(other, data) != teacher_mod.teacher_cache_key(cfg, data)
    data.train.labels[0] = "neg" if data.train.labels[0] == "pos" else "pos"
    assert teacher_mod.teacher_cache_key(cfg, data) != teacher_mod.teacher_cache_key(_cfg(tiny_overrides, teacher_dir),
                                                                                   load_classification_data(cfg.data))
    # display settings do not
    quiet = _cfg(tiny_overrides, teacher_dir, **{"teacher.finetune.progress": True})
    assert teacher_mod.teacher_cache_key(quiet, data) == teacher_mod.teacher_cache_key(cfg, data)


def test_two_runs_wanting_the_same_builtin_teacher_fine_tune_it_once(tiny_overrides, teacher_dir, tmp_path):
    import multiprocessing

    from cache_workers import teacher_race

    overrides = {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                 "teacher.finetune.max_steps": 2, "teacher.finetune.progress": False}
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=teacher_race, args=(overrides, str(tmp_path / "shared"), barrier, results))
               for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    # one fine-tuned it while the other waited for the lock, then read the cached copy: the same weights
    assert sorted(cached for cached, _, _ in got) == [False, True]
    assert len({digest for _, digest, _ in got} | {recorded for _, _, recorded in got}) == 1


def test_teacher_scores_are_computed_again_when_the_teachers_files_change(tiny_overrides, teacher_dir, tmp_path,
                                                                          monkeypatch):
    import shutil

    import torch

    import textdistill.tasks.classification as task_mod
    from conftest import tiny_bert, write_tokenizer
    from textdistill.hashing import folder_digest as teacher_folder_digest
    from textdistill.pipeline.run import run_distill

    folder = tmp_path / "teacher"
    shutil.copytree(teacher_dir, folder)
    digest = teacher_folder_digest(folder)
    (folder / "notes.md").write_text("not a model file")
    assert teacher_folder_digest(folder) == digest  # what cannot change the outputs does not count
    scored = {}  # split size -> the teacher's logits on it (PyTorch's predict_logits or ONNX Runtime's)

    def spy(real):
        def scoring(m, d, *a, **k):
            scored[len(d)] = real(m, d, *a, **k)
            return scored[len(d)]
        return scoring

    for name in ("predict_logits", "onnx_logits"):
        monkeypatch.setattr(task_mod, name, spy(getattr(task_mod, name)))
    base = {**tiny_overrides, "teacher.path": str(folder), "data.augment_copies": 0, "train.max_steps": 1,
            "report.baseline": False, "train.threads": 1}

    def run(name):
        scored.clear()
        summary = run_distill(load_config(None, {**base, "output_dir": str(tmp_path / name)}))
        n = summary["sizes"]["train"]
        return n in scored, {"train": scored.get(n)}

    first_scored, first = run("first")
    assert first_scored and run("again")[0] is False  # the cross-run cache served the second run
    tiny_bert(29, seed=9).save_pretrained(str(folder))  # new weights in the same folder
    assert teacher_folder_digest(folder) != digest
    new_scored, new = run("new_weights")
    assert new_scored and not torch.equal(first["train"], new["train"])
    digest = teacher_folder_digest(folder)
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")
    assert teacher_folder_digest(folder) != digest  # any byte of the config
    digest = teacher_folder_digest(folder)
    write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)  # the same vocabulary, written again: same bytes
    assert teacher_folder_digest(folder) == digest
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text().replace('"good"', '"gold"'))
    assert teacher_folder_digest(folder) != digest and run("new_tokenizer")[0]


def test_training_stops_when_validation_stops_improving_and_keeps_the_best_weights(tiny_overrides, tmp_path,
                                                                                    caplog):
    """A validation curve that rises then falls: training stops `patience` evaluations after the peak (not
    before `min_steps`), and the model ends with the weights it had at the peak. After each evaluation the
    log says between which steps it will end."""
    import torch

    from conftest import tiny_bert
    from textdistill.config import TrainConfig
    from textdistill.data.labelled import Encoded
    from textdistill.training.loop import train
    from textdistill.training.objectives import label_objective

    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(5, 40, (8,), generator=g).tolist() for _ in range(64)]
    data = Encoded(input_ids=ids, token_type_ids=None, labels=torch.randint(0, 2, (64,), generator=g),
                   lengths=[8] * 64, pad_id=0)
    curve = [0.50, 0.70, 0.65, 0.60, 0.95, 0.99]  # evaluated every 2 steps; 0.95 comes too late to matter

    def run(min_steps):
        model, seen = tiny_bert(50), []

        def evaluate(m):
            seen.append({k: v.clone() for k, v in m.state_dict().items()})
            return {"accuracy": curve[len(seen) - 1] if len(seen) <= len(curve) else 0.5}

        cfg = TrainConfig(epochs=3, batch_size=8, eval_every=2, early_stopping_patience=2, min_steps=min_steps,
                          progress=False, checkpoint_every=0, learning_rate=1e-2)
        run_dir = tmp_path / f"r{min_steps}"
        (run_dir / "checkpoints").mkdir(parents=True)
        result = train(model, data, label_objective(), cfg, name="t", run_dir=run_dir, evaluate=evaluate)
        return model, seen, result

    caplog.set_level("INFO", logger="textdistill")
    model, seen, result = run(0)
    assert result.steps == 8 and len(seen) == 4  # peak at the 2nd evaluation, two without improvement
    outlook = [r.message.split("; ends ")[1].split(",")[0] for r in caplog.records if "; ends " in r.message]
    assert outlook == ["between step 6 and 24", "between step 8 and 24", "between step 8 and 24"]
    assert result.best_step == 4 and result.best_score == 0.70
    final = model.state_dict()
    assert all(torch.equal(final[k], seen[1][k]) for k in final)  # the peak's weights, not the last ones
    assert not all(torch.equal(final[k], seen[3][k]) for k in final)
    caplog.clear()
    _, seen, result = run(12)  # no early stop before step 12: the later peak is found, then two evaluations
    assert [r.message.split("; ends ")[1].split(",")[0] for r in caplog.records if "; ends " in r.message][:3] == \
        ["between step 12 and 24"] * 3
    assert result.best_step == 12 and result.best_score == 0.99 and result.steps == 16 and len(seen) == 8


def test_learning_rate_search_keeps_the_best_validation_teacher_and_caches_every_trial(
        tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_overrides, teacher_dir, **{"teacher.learning_rates": [1e-6, 3e-3]})
    data = load_classification_data(cfg.data)
    folder, info = teacher_mod.builtin_teacher(cfg, data)
    trials = info["search"]
    assert [t["learning_rate"] for t in trials] == [1e-6, 3e-3] and not any(t["cached"] for t in trials)
    best = max(trials, key=lambda t: t["validation_accuracy"])
    assert info["learning_rate"] == best["learning_rate"] and info["validation_accuracy"] == best["validation_accuracy"]
    assert info["validation_curve"] and info["validation_curve"][-1]["step"] <= info["steps"]
    again, info2 = teacher_mod.builtin_teacher(cfg, data)
    assert again == folder and all(t["cached"] for t in info2["search"])
    single = _cfg(tiny_overrides, teacher_dir, **{"teacher.finetune.learning_rate": best["learning_rate"]})
    assert teacher_mod.builtin_teacher(single, data)[0] == folder  # a trial is an ordinary cached teacher


def test_the_report_shows_the_teachers_validation_curve_and_search(tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    from textdistill.pipeline.run import run_distill

    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_overrides, teacher_dir, **{"teacher.learning_rates": [1e-6, 3e-3],
                                                 "teacher.finetune.max_steps": 4, "teacher.finetune.eval_every": 2})
    summary = run_distill(cfg)
    curve = summary["teacher"]["validation_curve"]
    assert [e["step"] for e in curve] == [2, 4]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Teacher fine-tuning" in report and "## Teacher learning-rate search" in report
    kept = f"{summary['teacher']['learning_rate']:g}"
    assert any(line.startswith(f"| {kept} ") and line.rstrip().endswith("kept |") for line in report.splitlines())


def test_a_teacher_no_better_than_the_student_alone_is_reported_before_distilling(tiny_overrides, data_files, caplog):
    # the random tiny teacher guesses; the student trained alone learns the synthetic task
    cfg = load_config(None, {**tiny_overrides, "data.test": str(data_files["validation"]), "train.epochs": 4})
    with caplog.at_level("WARNING", logger="textdistill"):
        summary = run_distill(cfg)
    check = summary["teacher_check"]
    assert check["teacher"] == summary["results"]["teacher"]["accuracy"]  # the same split, scored again
    assert check["baseline"] == summary["runs"]["baseline"]["best_score"]
    assert check["teacher"] <= check["baseline"]
    warned = [r.getMessage() for r in caplog.records if "no better than the same student" in r.getMessage()]
    assert len(warned) == 1
    assert any("teacher.learning_rates" in line for line in guidance(summary))


def test_without_a_baseline_there_is_no_teacher_check(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "report.baseline": False})
    summary = run_distill(cfg)
    assert "teacher_check" not in summary  # nothing to compare with


def test_the_fine_tuned_teacher_does_not_depend_on_what_ran_before_it(tiny_overrides, tmp_path, monkeypatch):
    """A base without a classification head (like all-MiniLM-L6-v2) gets a new one drawn from
    teacher.finetune.seed, not from wherever the process's random state happens to be: two fine-tunings with
    the same cache key give the same weights, and another seed gives another head."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertModel

    from conftest import tiny_bert, write_tokenizer

    base = tmp_path / "headless"
    tok = write_tokenizer(base, POSITIVE + NEGATIVE + FILLER)
    BertModel(tiny_bert(len(tok.get_vocab())).config).save_pretrained(str(base))

    def fine_tuned(cache: str, process_state: int, **extra):
        monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / cache))
        cfg = _cfg(tiny_overrides, base, **extra)
        torch.manual_seed(process_state)  # what earlier work in the process left behind
        folder, _ = teacher_mod.builtin_teacher(cfg, load_classification_data(cfg.data))
        return load_file(folder / "model.safetensors")

    first, second = fine_tuned("a", 1), fine_tuned("b", 2)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = fine_tuned("c", 1, **{"teacher.finetune.seed": 7})
    assert not torch.equal(other["classifier.weight"], first["classifier.weight"])


def _validation_lines(run_dir, name):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in lines if e.get("run") == name and e.get("split") == "validation"]


def test_select_on_macro_f1_keeps_the_checkpoint_best_on_macro_f1_for_student_baseline_and_teacher(
        tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_overrides, teacher_dir, **{"train.select_on": "macro_f1", "train.eval_every": 1,
                                                 "train.epochs": 3, "teacher.finetune.select_on": "macro_f1",
                                                 "teacher.finetune.max_steps": 6, "teacher.finetune.eval_every": 1})
    summary = run_distill(cfg)
    run_dir = Path(cfg.output_dir)
    for name in ("student", "baseline"):
        curve = _validation_lines(run_dir, name)
        run = summary["runs"][name]
        assert len(curve) > 2 and run["best_score"] == max(e["macro_f1"] for e in curve)
        best = next(e for e in curve if e["macro_f1"] == run["best_score"])  # the first best is kept
        assert run["best_step"] == best["step"]
    teacher = summary["teacher"]
    curve = teacher["validation_curve"]
    assert teacher["selected_on"] == "macro_f1" and teacher["validation_score"] == max(e["macro_f1"] for e in curve)
    kept = next(e for e in curve if e["step"] == teacher["best_step"])
    assert kept["macro_f1"] == teacher["validation_score"] and teacher["validation_accuracy"] == kept["accuracy"]
    assert "once validation macro-F1 stops improving" in (run_dir / "report.md").read_text()


def test_select_on_is_refused_for_generation_and_for_unknown_metrics(tmp_path):
    with pytest.raises(TextDistillError, match="select_on"):
        load_config(None, {"task": "causal_lm", "train.select_on": "macro_f1"})
    with pytest.raises(TextDistillError, match="'accuracy', 'macro_f1'"):
        load_config(None, {"train.select_on": "f1"})
