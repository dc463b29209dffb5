"""The transfer set's weighting: the labels' cross-entropy averaged over labelled examples only, and a soft
term balanced over the classes the gold labels give."""

import copy

import pytest
import torch

from conftest import tiny_bert
from test_training import _encoded, _no_dropout
from textdistill.config import LossConfig, TrainConfig, load_config
from textdistill.errors import TextDistillError
from textdistill.evaluation.predict import predict_logits
from textdistill.losses import IGNORE_INDEX, cross_entropy, forward_kl
from textdistill.pipeline.run import run_distill
from textdistill.tasks.classification import count_labelled
from textdistill.training.example_objectives import classification_objective
from textdistill.training.loop import accumulate_gradients, make_accelerator
from textdistill.training.schedules import class_balance_weights


def _half_unlabelled(tmp_path):
    tok, enc = _encoded(tmp_path, n=10)
    teacher = tiny_bert(len(tok.get_vocab()), layers=4, seed=1).eval()
    enc.teacher_logits = predict_logits(teacher, enc)
    enc.labels = enc.labels.clone()
    enc.labels[[1, 4, 5, 8, 9]] = IGNORE_INDEX  # transfer examples: teacher targets only
    return tok, enc


def test_labelled_normalisation_averages_ce_over_labelled_examples_and_accumulates_exactly(tmp_path):
    tok, enc = _half_unlabelled(tmp_path)
    objective = classification_objective(LossConfig(alpha=0.5, beta=0.5, temperature=2.0))
    start = _no_dropout(tiny_bert(len(tok.get_vocab()), layers=2, seed=2))
    accelerator = make_accelerator(TrainConfig(mixed_precision="no"))
    index = list(range(len(enc)))
    grads, losses = [], []
    # one batch, then ragged micro-batches whose labelled counts differ (3 of 4, then 2 of 6)
    for group in ([index], [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]):
        model = copy.deepcopy(start)
        loss, terms = accumulate_gradients(model, [enc.collate(i) for i in group], objective, accelerator,
                                           count_labelled)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        losses.append((loss, terms))
    with torch.no_grad():  # the formula, written out: each term a mean over the examples it applies to
        batch = enc.collate(index)
        logits = start(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labelled = batch["targets"] != IGNORE_INDEX
        ce = cross_entropy(logits[labelled], batch["targets"][labelled]).mean()
        soft = forward_kl(logits, batch["teacher_logits"], 2.0).mean()
    for loss, terms in losses:
        assert torch.allclose(terms["ce"], 0.5 * ce, rtol=1e-5)
        assert torch.allclose(terms["soft"], 0.5 * 4.0 * soft, rtol=1e-5)
        assert torch.allclose(loss, 0.5 * ce + 2.0 * soft, rtol=1e-5)
    scale = max(g.abs().max() for g in grads[0].values())
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-6 * scale), name


def test_class_balance_gives_each_class_the_gold_share_of_the_soft_weight():
    # the teacher puts class 2 first on one example in ten, the gold labels on three in ten
    teacher = torch.full((10, 3), -5.0)
    teacher[:6, 0] = 5.0
    teacher[6:9, 1] = 5.0
    teacher[9, 2] = 5.0
    gold = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    w = class_balance_weights(teacher, gold, 3)
    top = teacher.argmax(-1)
    shares = torch.stack([w[top == c].sum() for c in range(3)]) / len(w)
    assert torch.allclose(shares, torch.tensor([0.4, 0.3, 0.3]))
    assert w[9] > w[0] and torch.allclose(w.mean(), torch.tensor(1.0))
    # a class the teacher never puts first has nothing to weigh: the others keep their prior ratios
    none = class_balance_weights(teacher[:9], gold, 3)
    assert torch.isfinite(none).all() and (none > 0).all()


def test_uniform_class_balance_gives_every_class_an_equal_share_of_the_soft_weight():
    # the teacher puts class 2 first on one example in ten: the rarest class weighs most
    teacher = torch.full((10, 3), -5.0)
    teacher[:6, 0] = 5.0
    teacher[6:9, 1] = 5.0
    teacher[9, 2] = 5.0
    gold = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])  # the gold labels are as imbalanced as the teacher
    w = class_balance_weights(teacher, gold, 3, uniform=True)
    top = teacher.argmax(-1)
    shares = torch.stack([w[top == c].sum() for c in range(3)]) / len(w)
    assert torch.allclose(shares, torch.full((3,), 1 / 3))
    assert w[9] > w[6] > w[0] and torch.allclose(w.mean(), torch.tensor(1.0))
    # the gold share keeps the imbalance: every weight is 1
    assert torch.allclose(class_balance_weights(teacher, gold, 3), torch.ones(10))
    # on balanced data the two agree
    balanced = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    even = torch.full((9, 3), -5.0)
    even[torch.arange(9), balanced] = 5.0
    assert torch.allclose(class_balance_weights(even, balanced, 3, uniform=True),
                          class_balance_weights(even, balanced, 3))


def test_class_balance_weights_reach_the_soft_term(tmp_path):
    tok, enc = _half_unlabelled(tmp_path)
    objective = classification_objective(LossConfig(alpha=0.0, beta=1.0, temperature=1.0))
    model = tiny_bert(len(tok.get_vocab()), layers=2, seed=2).eval()
    batch = enc.collate(list(range(len(enc))))
    plain = objective(model, batch)["soft"]
    weights = torch.zeros(len(enc))
    weights[0] = 3.0
    weighted = objective(model, {**batch, "example_weights": weights})["soft"]
    per_example = forward_kl(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                             batch["teacher_logits"], 1.0)
    assert torch.allclose(weighted, (weights * per_example).sum(), rtol=1e-5)
    assert not torch.allclose(weighted, plain, rtol=1e-2)


@pytest.mark.parametrize("balance", [True, "uniform"])
def test_a_run_with_both_weightings_trains_and_reports(tiny_overrides, balance, monkeypatch):
    from textdistill.tasks import classification

    seen = []
    real = classification.class_balance_weights
    monkeypatch.setattr(classification, "class_balance_weights",
                        lambda *a, **k: seen.append(bool(k.get("uniform"))) or real(*a, **k))
    cfg = load_config(None, {**tiny_overrides, "data.augment_copies": 2, "loss.label_normalization": "labelled",
                             "loss.class_balance": balance})
    summary = run_distill(cfg)
    assert summary["runs"]["student"]["steps"] == summary["runs"]["baseline"]["steps"]
    assert summary["loss"]["class_balance"] == balance and seen == [balance == "uniform"]


def test_class_balance_takes_true_false_or_uniform(tiny_overrides):
    assert load_config(None, {**tiny_overrides, "loss.class_balance": "uniform"}).loss.class_balance == "uniform"
    with pytest.raises(TextDistillError, match="loss.class_balance.*'uniform'"):
        load_config(None, {**tiny_overrides, "loss.class_balance": "balanced"})


def test_the_cache_scores_each_variant_once_across_runs_and_seeds(tiny_overrides, tmp_path, monkeypatch, caplog):
    # variants depend on data.split_seed, not train.seed: a second run and other seeds read their scores back
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    scored = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2), ("d", 3)):
        caplog.clear()
        cfg = load_config(None, {**tiny_overrides, "output_dir": str(tmp_path / run), "train.seed": seed,
                                 "data.augment_copies": 3, "report.baseline": False, "train.epochs": 1})
        with caplog.at_level("INFO", logger="textdistill"):
            summary = run_distill(cfg)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("teacher scores of augmented")]
        assert len(lines) == 1, lines
        scored.append(lines[0])
    n = 3 * summary["sizes"]["train"]
    assert scored[0] == f"teacher scores of augmented: computed ({n} examples scored now)"
    assert all(line == "teacher scores of augmented: from the cache (0 examples scored now)" for line in scored[1:])


@pytest.mark.parametrize("scoring, expected", [("auto", ("bf16", False)), ("float32", ("no", True))])
def test_float32_scoring_scores_in_full_precision_whatever_the_training_autocast(tiny_overrides, monkeypatch,
                                                                                scoring, expected):
    import textdistill.tasks.classification as classification

    calls = []  # (autocast precision, an ONNX Runtime session was opened) of every teacher signal
    real = classification.score_signal

    def recording(*args, sessions=None, **kwargs):
        signal = real(*args, sessions=sessions, **kwargs)
        calls.append((args[5], any(session is not None for session in (sessions or {}).values())))
        return signal

    monkeypatch.setattr(classification, "score_signal", recording)
    cfg = load_config(None, {**tiny_overrides, "teacher.scoring": scoring, "train.mixed_precision": "bf16",
                             "report.baseline": False, "train.epochs": 1})
    run_distill(cfg)
    assert calls and set(calls) == {expected}


def test_a_run_scored_by_the_int8_teacher_reports_its_validation_check(tiny_overrides, caplog, monkeypatch):
    import textdistill.tasks.classification as classification

    opened = []  # the int8 session is opened and checked once for validation, train and variants
    real = classification.onnx_teacher_session
    monkeypatch.setattr(classification, "onnx_teacher_session",
                        lambda *a, **k: opened.append(k.get("int8")) or real(*a, **k))
    cfg = load_config(None, {**tiny_overrides, "teacher.scoring": "int8", "data.augment_copies": 1,
                             "report.baseline": False, "train.epochs": 1})
    with caplog.at_level("INFO", logger="textdistill"):
        summary = run_distill(cfg)
    assert opened.count(True) == 1
    check = summary["teacher_scoring"]["int8"]["teacher"]
    assert set(check) == {"used", "validation_agreement", "validation_accuracy", "full_precision_validation_accuracy"}
    assert 0 <= check["validation_agreement"] <= 1
    assert check["used"] == (check["validation_accuracy"] >= check["full_precision_validation_accuracy"] - 0.01)
    scored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("teacher scores of")]
    assert [m.split(":")[0] for m in scored] == ["teacher scores of validation", "teacher scores of validation (int8)",
                                                 "teacher scores of train", "teacher scores of augmented"]
