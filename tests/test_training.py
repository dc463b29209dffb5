"""The loop's arithmetic: accumulation equals one big batch; the teacher never moves, the student does."""

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer
from textdistill.config import LossConfig, TrainConfig, load_config
from textdistill.data.labelled import TextSplit, encode
from textdistill.evaluation.predict import predict_logits
from textdistill.models.students import build_student
from textdistill.pipeline.run import run_distill
from textdistill.training.loop import _optimizer, accumulate_gradients, make_accelerator
from textdistill.training.example_objectives import classification_objective


def _encoded(tmp_path, n=8):
    tok = write_tokenizer(tmp_path / "tok", POSITIVE + NEGATIVE + FILLER)
    frame = synthetic_frame(n, seed=3)
    # ragged lengths so micro-batches pad differently from the big batch
    texts = [t + " very" * (i % 4) for i, t in enumerate(frame["text"])]
    labels = [0 if label == "neg" else 1 for label in frame["label"]]
    enc = encode(tok, TextSplit(texts=texts, labels=list(frame["label"])), labels, 32, "test")
    return tok, enc


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    tok, enc = _encoded(tmp_path)
    teacher = tiny_bert(len(tok.get_vocab()), layers=4, seed=1).eval()
    enc.teacher_logits = predict_logits(teacher, enc)
    assert len(set(enc.lengths)) > 1, "the test needs ragged lengths"
    objective = classification_objective(LossConfig(alpha=0.5, beta=0.5, temperature=2.0))
    start = _no_dropout(tiny_bert(len(tok.get_vocab()), layers=2, seed=2))
    accelerator = make_accelerator(TrainConfig(mixed_precision="no"))  # exact arithmetic is a float32 property
    by_length = sorted(range(len(enc)), key=lambda i: enc.lengths[i])
    grads, losses = [], []
    for group in ([by_length], [by_length[:3], by_length[3:]], [[i] for i in by_length]):
        model = copy.deepcopy(start)
        loss, _ = accumulate_gradients(model, [enc.collate(index) for index in group], objective, accelerator)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        losses.append(loss)
    for other, other_loss in zip(grads[1:], losses[1:]):
        assert torch.allclose(losses[0], other_loss, atol=1e-6)
        for name, g in grads[0].items():
            assert torch.allclose(g, other[name], atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads[0].values())


def test_one_step_leaves_teacher_identical_and_moves_student(tiny_overrides, teacher_dir):
    before = load_file(str(teacher_dir / "model.safetensors"))
    cfg = load_config(None, {**tiny_overrides, "train.max_steps": 1, "report.baseline": False})
    run_distill(cfg)
    after = load_file(str(teacher_dir / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)

    teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))
    initial = build_student(cfg.student, teacher, ["neg", "pos"], cfg.train.seed).state_dict()
    student = load_file(str(Path(cfg.output_dir) / "student" / "model.safetensors"))
    changed = [k for k in initial if not torch.equal(initial[k], student[k])]
    assert changed, "student weights did not move after one step"


def test_teacher_is_scored_frozen_in_eval_mode(tiny_overrides, monkeypatch):
    import textdistill.tasks.classification as task_mod

    seen = []

    def spy(real):
        def scoring(model, *args, **kwargs):
            seen.append((model, model.training, any(p.requires_grad for p in model.parameters())))
            return real(model, *args, **kwargs)
        return scoring

    # the teacher reaches PyTorch's predict_logits or, scoring in float32 on a CPU, the ONNX export first
    for name in ("predict_logits", "onnx_teacher_session"):
        monkeypatch.setattr(task_mod, name, spy(getattr(task_mod, name)))
    run_distill(load_config(None, {**tiny_overrides, "train.max_steps": 2, "report.baseline": False}))
    teacher, training, needs_grad = seen[0]
    assert not training and not needs_grad
    assert all(p.grad is None for p in teacher.parameters())


def test_classification_objective_is_the_whole_formula():
    # alpha * CE (labelled examples only) + beta * T^2 * w * KL(teacher_T || student_T), written out by hand
    from textdistill.losses import IGNORE_INDEX

    student = _no_dropout(tiny_bert(30, layers=2, seed=4))
    g = torch.Generator().manual_seed(1)
    batch = {"input_ids": torch.randint(5, 30, (4, 6), generator=g),
             "attention_mask": torch.ones(4, 6, dtype=torch.long),
             "targets": torch.tensor([0, 1, IGNORE_INDEX, 1]), "teacher_logits": 3 * torch.randn(4, 2, generator=g)}
    T = 3.0
    cfg = LossConfig(alpha=0.3, beta=0.7, temperature=T, soft_weighting="confidence")
    terms = classification_objective(cfg)(student, batch, 0.0)
    assert set(terms) == {"ce", "soft"}
    with torch.no_grad():  # the reference needs no gradient
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()  # [4, 2]
    teacher = batch["teacher_logits"].double()
    p, q = torch.softmax(teacher / T, -1), torch.softmax(logits / T, -1)
    kl = (p * (p.log() - q.log())).sum(-1)  # [4]
    w = torch.softmax(teacher, -1).max(-1).values  # the teacher's top probability
    ce = sum(-torch.log_softmax(logits[i], -1)[y] for i, y in enumerate(batch["targets"].tolist()) if y != IGNORE_INDEX)
    total = float(sum(t.detach() for t in terms.values()))
    assert total == pytest.approx(float(0.3 * ce + 0.7 * T**2 * (w * kl).sum()), rel=1e-5)
    assert float(terms["ce"].detach()) == pytest.approx(float(0.3 * ce), rel=1e-5)


def test_baseline_starts_from_the_students_initial_weights(tiny_overrides, monkeypatch):
    import textdistill.pipeline.run as run_mod

    initial = {}
    real_train = run_mod.train

    def recording(model, *args, **kwargs):
        initial[kwargs["name"]] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(run_mod, "train", recording)
    run_distill(load_config(None, {**tiny_overrides, "train.max_steps": 2, "train.threads": 1}))
    student, baseline = initial["student"], initial["baseline"]
    assert student.keys() == baseline.keys() and all(torch.equal(student[k], baseline[k]) for k in student)
    trained = load_file(str(Path(tiny_overrides["output_dir"]) / "student" / "model.safetensors"))
    assert any(not torch.equal(trained[k], student[k]) for k in trained)  # and the student did move from there


def test_unlabelled_text_gets_teacher_targets_and_no_label(tmp_path, tiny_overrides, monkeypatch):
    import pandas as pd

    import textdistill.pipeline.run as run_mod
    from textdistill.losses import IGNORE_INDEX

    extra = pd.DataFrame({"text": [f"the movie was {w} really" for w in FILLER * 3][:30]})
    extra.to_csv(tmp_path / "unlabeled.csv", index=False)
    seen = {}
    real_train = run_mod.train

    def recording(model, data, *args, **kwargs):
        seen[kwargs["name"]] = data
        return real_train(model, data, *args, **kwargs)

    monkeypatch.setattr(run_mod, "train", recording)
    summary = run_distill(load_config(None, {**tiny_overrides, "data.unlabeled": str(tmp_path / "unlabeled.csv"),
                                             "data.augment_copies": 0, "train.max_steps": 2, "train.threads": 1}))
    n = summary["sizes"]["train"]
    assert summary["sizes"]["unlabeled"] == 30
    student, baseline = seen["student"], seen["baseline"]
    assert len(student) == n + 30 and len(baseline) == n  # the baseline has no teacher, so no use for them
    assert torch.equal(student.labels[n:], torch.full((30,), IGNORE_INDEX))  # no cross-entropy on them
    assert bool((student.labels[:n] != IGNORE_INDEX).all())
    assert student.teacher_logits.shape == (n + 30, 2) and student.teacher_logits[n:].abs().sum() > 0


def test_optimizer_is_adamw_fused_on_cpu_and_makes_the_same_update():
    """The fused kernel is chosen for float CPU weights and updates them as the multi-tensor kernel does."""
    models = [_no_dropout(tiny_bert(50, layers=2, seed=4)) for _ in range(2)]
    cfg = TrainConfig(learning_rate=1e-3, weight_decay=0.5)  # large enough that a lost decay shows
    fused, foreach = _optimizer([models[0]], cfg), _optimizer([models[1]], cfg, fused=False)
    assert all(g["fused"] for g in fused.param_groups)
    assert not any(g["fused"] for g in foreach.param_groups)
    ids = torch.randint(5, 50, (4, 7), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for model, opt in zip(models, (fused, foreach)):
            opt.zero_grad()
            model(input_ids=ids, labels=torch.tensor([0, 1, 1, 0])).loss.backward()
            opt.step()
    start = tiny_bert(50, layers=2, seed=4).state_dict()
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        moved = (b - start[name]).abs().max()
        # the same update: the two kernels differ by rounding only, far below how far the weights moved
        assert (a - b).abs().max() <= 1e-3 * moved + 1e-7, name
