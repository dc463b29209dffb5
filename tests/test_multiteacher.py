"""Several teachers: the combination rule, start-up checks, and a tiny run with intermediate matching."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_tokenizer
from textdistill.cache import cache_root
from textdistill.config import load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline.run import run_distill
from textdistill.training.ensemble import combine_teacher_logits, teacher_mixture_weights


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


def _probs(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


@pytest.mark.parametrize("kind,weights", [("mean", None), ("weighted", [1.0, 2.0, 5.0]), ("confidence", None)])
def test_equal_teachers_give_the_single_teacher_target(kind, weights):
    torch.manual_seed(0)
    z = torch.randn(6, 4) * 3  # [N, C]
    same = torch.stack([z, z, z])  # [K, N, C]
    for temperature in (1.0, 2.0, 4.0):
        assert torch.allclose(combine_teacher_logits(same, kind, temperature, weights), z, atol=1e-5)
    assert torch.allclose(combine_teacher_logits(same, kind, None, weights), z, atol=1e-6)


def test_weights_are_respected():
    torch.manual_seed(1)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3) * 2
    t = 2.0
    mixed = combine_teacher_logits(torch.stack([z1, z2]), "weighted", t, [3.0, 1.0])
    assert torch.allclose(_probs(mixed, t), 0.75 * _probs(z1, t) + 0.25 * _probs(z2, t), atol=1e-6)
    only_second = combine_teacher_logits(torch.stack([z1, z2]), "weighted", t, [0.0, 1.0])
    assert torch.allclose(_probs(only_second, t), _probs(z2, t), atol=1e-6)
    mean = combine_teacher_logits(torch.stack([z1, z2]), "mean", t)
    assert torch.allclose(_probs(mean, t), 0.5 * _probs(z1, t) + 0.5 * _probs(z2, t), atol=1e-6)
    # the logit-MSE soft loss has no temperature: the logits are averaged
    assert torch.allclose(combine_teacher_logits(torch.stack([z1, z2]), "weighted", None, [3.0, 1.0]),
                          0.75 * z1 + 0.25 * z2, atol=1e-6)


def test_confidence_favours_the_confident_teacher_per_example():
    # teacher A is sure of class 0 on example 0 and unsure on example 1; teacher B the other way round
    a = torch.tensor([[8.0, 0.0], [0.1, 0.0]])
    b = torch.tensor([[0.0, 0.1], [0.0, 8.0]])
    w = teacher_mixture_weights(torch.stack([a, b]), "confidence")  # [K, N]
    assert w[0, 0] > 0.6 and w[1, 1] > 0.6 and torch.allclose(w.sum(0), torch.ones(2))
    top = torch.stack([torch.softmax(a, -1).max(-1).values, torch.softmax(b, -1).max(-1).values])
    assert torch.allclose(w, top / top.sum(0))
    p = _probs(combine_teacher_logits(torch.stack([a, b]), "confidence", 1.0), 1.0)
    assert torch.allclose(p, w[0, :, None] * _probs(a, 1.0) + w[1, :, None] * _probs(b, 1.0), atol=1e-6)
    mean = _probs(combine_teacher_logits(torch.stack([a, b]), "mean", 1.0), 1.0)
    assert p[0, 0] > mean[0, 0] and p[1, 1] > mean[1, 1]  # pulled towards the confident teacher


@pytest.fixture(scope="module")
def second_teacher(tmp_path_factory) -> Path:
    """A shallower teacher (2 layers) with the same tokenizer and labels, other weights."""
    folder = tmp_path_factory.mktemp("teacher2")
    tok = write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)
    tiny_bert(len(tok.get_vocab()), layers=2, seed=7).save_pretrained(str(folder))
    return folder


def test_two_teachers_with_intermediate_matching(tiny_overrides, second_teacher):
    # teacher layer 3 exists only in the primary teacher: matching uses the primary's hidden states
    overrides = {**tiny_overrides, "teacher.extra_paths": [str(second_teacher)], "teacher.combine": "weighted",
                 "teacher.weights": [1.0, 3.0], "loss.hidden_loss": "mse", "loss.layer_pairs": [[0, 1], [1, 3]],
                 "train.epochs": 1, "report.baseline": False}
    summary = run_distill(load_config(None, overrides))
    run_dir = Path(tiny_overrides["output_dir"])
    info = summary["teachers"]
    assert [t["path"] for t in info["teachers"]] == [tiny_overrides["teacher.path"], str(second_teacher)]
    assert [t["weight"] for t in info["teachers"]] == [1.0, 3.0]
    assert info["teachers"][0]["test_accuracy"] == summary["results"]["teacher"]["accuracy"]
    assert all(0 <= t["test_accuracy"] <= 1 for t in info["teachers"]) and 0 <= info["combined_test_accuracy"] <= 1
    # each teacher's own scores of each part (train, variants) are cached, and combined when read
    cached = sorted((cache_root() / "scores").iterdir())
    logits = {np.fromfile(folder / "logits.bin", dtype="<f4").tobytes() for folder in cached}
    assert len(cached) == 4 and len(logits) == 4
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_hidden" in h for h in history)
    report = (run_dir / "report.md").read_text()
    assert "## Teachers" in report and str(second_teacher) in report and "combined (weighted)" in report
    # resuming reads each teacher's saved scores back and combines them again: the same target, the same run
    (run_dir / "phases" / "report.json").unlink()
    resumed = run_distill(load_config(run_dir / "config.yaml"), resume=True)
    assert resumed["teachers"] == info
    assert resumed["runs"]["student"]["best_score"] == summary["runs"]["student"]["best_score"]


def test_extra_teachers_are_checked_at_start_up(tmp_path, tiny_overrides):
    other_labels = tmp_path / "other_labels"
    tok = write_tokenizer(other_labels, POSITIVE + NEGATIVE + FILLER)
    tiny_bert(len(tok.get_vocab()), layers=1, labels=("cat", "dog")).save_pretrained(str(other_labels))
    other_vocab = tmp_path / "other_vocab"
    tok = write_tokenizer(other_vocab, ["completely", "different", "words"])
    tiny_bert(len(tok.get_vocab()), layers=1).save_pretrained(str(other_vocab))
    cases = ((other_labels, "differ from the data's labels"), (other_vocab, "does not read the token ids"))
    for folder, needle in cases:
        with pytest.raises(TextDistillError, match=needle) as e:
            run_distill(load_config(None, {**tiny_overrides, "teacher.extra_paths": [str(folder)]}), overwrite=True)
        assert "teacher.extra_paths[0]" in str(e.value)
        assert not Path(tiny_overrides["output_dir"]).exists()  # nothing trained; the folder it made is gone


@pytest.mark.parametrize("extra,needle", [
    ({"teacher.combine": "weighted"}, "teacher.weights has 0 values for 2"),
    ({"teacher.combine": "weighted", "teacher.weights": [1, -1]}, "non-negative"),
    ({"teacher.weights": [1, 1]}, "only used with teacher.combine 'weighted'"),
    ({"teacher.combine": "vote"}, "not a valid choice"),
])
def test_multi_teacher_settings_are_checked(tiny_overrides, extra, needle):
    with pytest.raises(TextDistillError, match=needle):
        load_config(None, {**tiny_overrides, "teacher.extra_paths": ["/x"], **extra})


def test_ensemble_trials_makes_every_learning_rate_trial_a_teacher(tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    from textdistill.data.labelled import encode_splits, load_classification_data
    from textdistill.evaluation.predict import predict_logits
    from textdistill.models.loading import load_classifier, load_tokenizer

    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    # two trials whose teachers disagree on validation
    overrides = {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                 "teacher.learning_rates": [3e-3, 1e-2], "teacher.ensemble_trials": True,
                 "teacher.finetune.max_steps": 6, "teacher.finetune.progress": False, "train.epochs": 1}
    cfg = load_config(None, overrides)
    summary = run_distill(cfg)
    trials = summary["teacher"]["search"]
    kept = summary["teacher"]["path"]
    paths = [t["path"] for t in summary["teachers"]["teachers"]]
    assert paths[0] == kept and sorted(paths) == sorted(t["path"] for t in trials) and len(set(paths)) == 2

    # the combination, recomputed here from each trial's own logits: the mean of their probabilities at T
    data = load_classification_data(cfg.data)
    logits = {}
    for path in paths:
        model = load_classifier(Path(path), "t")
        splits = encode_splits(load_tokenizer(Path(path), "t"), data, cfg.data.max_length, None, False)
        logits[path] = {n: predict_logits(model, getattr(splits, n)) for n in ("validation", "test")}
    labels = {n: getattr(splits, n).labels for n in ("validation", "test")}
    t = cfg.loss.temperature

    def accuracy(split):
        p = sum(torch.softmax(logits[path][split] / t, -1) for path in paths) / 2
        return (p.argmax(-1) == labels[split]).float().mean().item()

    accuracies = [(logits[path]["test"].argmax(-1) == labels["test"]).float().mean().item() for path in paths]
    assert [x["test_accuracy"] for x in summary["teachers"]["teachers"]] == pytest.approx(accuracies)
    assert summary["teachers"]["combined_test_accuracy"] == pytest.approx(accuracy("test"))
    # the check before distilling judges the target the student learns: the combination, on validation
    kept_alone = (logits[kept]["validation"].argmax(-1) == labels["validation"]).float().mean().item()
    assert accuracy("validation") != pytest.approx(kept_alone)  # (so the next line tells the two apart)
    assert summary["teacher_check"]["teacher"] == pytest.approx(accuracy("validation"))


@pytest.mark.parametrize("extra,needle", [
    ({"teacher.learning_rates": [1e-4]}, "list two or more rates"),
    ({"teacher.combine": "weighted", "teacher.weights": [1, 2]}, "known only after the search"),
    ({"online.mode": "co_training"}, "remove teacher.extra_paths and teacher.ensemble_trials"),
])
def test_ensemble_trials_settings_are_checked(tiny_overrides, extra, needle):
    base = {"teacher.path": "builtin", "teacher.learning_rates": [1e-4, 2e-4], "teacher.ensemble_trials": True}
    with pytest.raises(TextDistillError, match=needle):
        load_config(None, {**tiny_overrides, **base, **extra})
