"""The loop's arithmetic: accumulation equals one big batch; the teacher never moves, the student does."""

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer
from textdistill.config import LossConfig, TrainConfig, load_config
from textdistill.data.classification import TextSplit, encode
from textdistill.evaluation.predict import predict_logits
from textdistill.models.students import build_student
from textdistill.pipeline.distill import run_distill
from textdistill.training.loop import accumulate_gradients, make_accelerator
from textdistill.training.objectives import classification_objective


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
    import textdistill.pipeline.distill as distill_mod

    seen = []

    def spy(real):
        def scoring(model, *args, **kwargs):
            seen.append((model, model.training, any(p.requires_grad for p in model.parameters())))
            return real(model, *args, **kwargs)
        return scoring

    # the teacher reaches PyTorch's predict_logits or, scoring in float32 on a CPU, the ONNX export first
    for name in ("predict_logits", "onnx_teacher_session"):
        monkeypatch.setattr(distill_mod, name, spy(getattr(distill_mod, name)))
    run_distill(load_config(None, {**tiny_overrides, "train.max_steps": 2, "report.baseline": False}))
    teacher, training, needs_grad = seen[0]
    assert not training and not needs_grad
    assert all(p.grad is None for p in teacher.parameters())
