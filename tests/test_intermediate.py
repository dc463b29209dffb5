"""Intermediate-layer matching, schedules and confidence weighting: losses, layer maps, one training step."""

import math

import pandas as pd
import pytest
import torch

from textdistill.config import LossConfig, load_config
from textdistill.errors import TextDistillError
from textdistill.losses import attention_forward_kl, hidden_cosine, hidden_mse, masked_mean_per_example
from textdistill.training.intermediate import (LayerMatch, build_projections, check_models, resolve_layer_map,
                                              use_eager_attention)
from textdistill.training.example_objectives import classification_objective
from textdistill.training.schedules import scheduled, teacher_weights

from conftest import tiny_bert


def _attention(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g) * 2, -1)


def test_hidden_losses_zero_on_identical_and_reference():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    assert torch.allclose(hidden_mse(s, s.clone()), torch.zeros(2, 5))
    assert torch.allclose(hidden_cosine(s, s.clone()), torch.zeros(2, 5), atol=1e-6)
    assert torch.allclose(hidden_mse(s, t), ((s - t) ** 2).mean(-1))
    ref = 1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))
    assert torch.allclose(hidden_cosine(s, t), ref, atol=1e-5)
    assert hidden_mse(s, t).shape == hidden_cosine(s, t).shape == (2, 5)
    assert torch.allclose(hidden_cosine(3 * s, s), torch.zeros(2, 5), atol=1e-6)  # scale-free


def test_attention_kl_reference_direction_and_padding():
    s, t = _attention((2, 3, 4, 4), 0), _attention((2, 3, 4, 4), 1)
    ref = (t * (t.log() - s.log())).sum(-1).mean(1)
    assert torch.allclose(attention_forward_kl(s, t), ref, atol=1e-5)
    assert attention_forward_kl(s, t).shape == (2, 4)
    assert torch.allclose(attention_forward_kl(s, s.clone()), torch.zeros(2, 4), atol=1e-6)
    assert not torch.allclose(attention_forward_kl(s, t), attention_forward_kl(t, s), atol=1e-3)
    # a padded key has probability 0 in both: finite, and it adds nothing (the KL over the other keys)
    t_pad = t.clone()
    t_pad[..., -1] = 0
    t_pad = t_pad / t_pad.sum(-1, keepdim=True)
    s_pad = s.clone()
    s_pad[..., -1] = 0
    s_pad = s_pad / s_pad.sum(-1, keepdim=True)
    padded = attention_forward_kl(s_pad, t_pad)
    assert torch.isfinite(padded).all() and padded.abs().max() > 1e-3
    unpadded = attention_forward_kl(s_pad[..., :-1], t_pad[..., :-1])  # the same rows without the padded key
    assert torch.allclose(padded, unpadded, rtol=1e-5, atol=1e-7)


def test_masked_mean_per_example_all_masked_is_zero():
    values = torch.randn(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    out = masked_mean_per_example(values, mask)
    assert out[1] == 0 and torch.allclose(out[0], values[0, :2].mean()) and torch.allclose(out[2], values[2].mean())


@pytest.mark.parametrize("rule,n_s,n_t,expected", [
    ("uniform", 2, 6, [(0, 2), (1, 5)]),
    ("uniform", 3, 12, [(0, 3), (1, 7), (2, 11)]),
    ("skip", 2, 6, [(0, 2), (1, 5)]),
    ("skip", 3, 4, [(0, 0), (1, 1), (2, 2)]),
    ("last_k", 2, 6, [(0, 4), (1, 5)]),
])
def test_layer_map_rules(rule, n_s, n_t, expected):
    matches = resolve_layer_map(LossConfig(layer_map=rule), n_s, n_t)
    assert [(m.student_layer, m.teacher_layer) for m in matches] == expected


def test_layer_map_explicit_and_errors():
    assert resolve_layer_map(LossConfig(layer_pairs=[[0, 1]]), 2, 4) == [LayerMatch(0, 1)]
    for cfg, msg in ((LossConfig(layer_pairs=[[2, 1]]), "student layer 2 out of range"),
                     (LossConfig(layer_pairs=[[0, 4]]), "teacher layer 4 out of range"),
                     (LossConfig(layer_map="last_k", last_k=3), "loss.last_k is 3")):
        with pytest.raises(TextDistillError, match=msg) as e:
            resolve_layer_map(cfg, 2, 4)
        assert "\n" not in str(e.value)


def test_head_count_mismatch_is_a_startup_error():
    from transformers import BertConfig, BertForSequenceClassification

    teacher = tiny_bert(30)
    student = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=4, intermediate_size=64))
    with pytest.raises(TextDistillError, match="same number of attention heads"):
        check_models(LossConfig(attention_weight=1.0), student, teacher)
    check_models(LossConfig(hidden_loss="mse"), student, teacher)  # hidden matching does not care


def test_config_range_checks_and_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: rotten_tomatoes\n")
    cfg = load_config(path, {"loss.layer_pairs": [[0, 2], [1, 5]], "loss.hidden_loss": "cosine"})
    assert cfg.loss.layer_pairs == ((0, 2), (1, 5))  # frozen: lists become tuples
    for key, value, msg in (("loss.layer_pairs", [[0]], "layer_pairs entry"),
                            ("loss.attention_weight", -1, "attention_weight must be non-negative"),
                            ("loss.temperature_end", 0, "temperature_end must be positive"),
                            ("loss.hidden_loss", "l1", "not a valid choice")):
        with pytest.raises(TextDistillError, match=msg):
            load_config(path, {key: value})


def test_schedules_endpoints_and_shape():
    for kind in ("linear", "cosine"):
        assert scheduled(4.0, 1.0, kind, 0.0) == 4.0
        assert math.isclose(scheduled(4.0, 1.0, kind, 1.0), 1.0)
        assert math.isclose(scheduled(4.0, 1.0, kind, 0.5), 2.5)
    assert scheduled(4.0, 1.0, "constant", 0.7) == 4.0
    assert scheduled(4.0, None, "linear", 0.7) == 4.0
    assert scheduled(0.0, 1.0, "cosine", 0.25) < scheduled(0.0, 1.0, "linear", 0.25)  # slow start


def test_teacher_weights():
    logits = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    conf = teacher_weights(logits, "confidence")
    ent = teacher_weights(logits, "entropy")
    assert torch.allclose(conf, torch.tensor([1.0, 0.5]), atol=1e-4)
    assert torch.allclose(ent, torch.tensor([1.0, 0.0]), atol=1e-4)
    assert torch.equal(teacher_weights(logits, "none"), torch.ones(2))


def _batch(vocab=30, n=4, length=7, labels=2):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, 4:] = 0  # ragged
    return {"input_ids": ids, "attention_mask": mask, "targets": torch.tensor([0, 1, -100, 1]),
            "teacher_logits": torch.randn(n, labels, generator=g)}


def test_one_step_moves_student_and_projections_not_teacher():
    from transformers import BertConfig, BertForSequenceClassification

    teacher = tiny_bert(30, layers=4).eval().requires_grad_(False)
    torch.manual_seed(1)
    student = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                                       num_attention_heads=2, intermediate_size=32,
                                                       max_position_embeddings=64))
    cfg = LossConfig(hidden_loss="mse", attention_weight=1.0, embedding_weight=1.0)
    use_eager_attention(student)
    use_eager_attention(teacher)
    matches = resolve_layer_map(cfg, 2, 4)
    projections = build_projections(cfg, matches, student, teacher)
    assert set(projections.maps) == {"layer0_to1", "layer1_to3", "embeddings"}
    assert not any(k.startswith("maps") for k in student.state_dict())  # never part of the student
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    before_p = {k: v.clone() for k, v in projections.state_dict().items()}
    objective = classification_objective(cfg, teacher, matches, projections)
    terms = objective(student, _batch(), 0.0)
    assert set(terms) == {"ce", "soft", "hidden", "attention", "embedding"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values())
    opt = torch.optim.SGD(list(student.parameters()) + list(projections.parameters()), lr=0.1)
    sum(terms.values()).backward()
    opt.step()
    assert all(torch.equal(v, before_t[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(v, before_s[k]) for k, v in student.state_dict().items())
    assert all(not torch.equal(v, before_p[k]) for k, v in projections.state_dict().items())


def test_identical_models_match_with_zero_intermediate_loss():
    teacher = tiny_bert(30, layers=2).eval().requires_grad_(False)
    student = tiny_bert(30, layers=2)
    student.load_state_dict(teacher.state_dict())
    student.eval()  # no dropout: the two forwards are the same function
    for m in (student, teacher):
        use_eager_attention(m)
    cfg = LossConfig(hidden_loss="mse", attention_weight=1.0, embedding_weight=1.0, alpha=0.0, beta=0.0)
    matches = resolve_layer_map(cfg, 2, 2)
    terms = classification_objective(cfg, teacher, matches, build_projections(cfg, matches, student, teacher))(
        student, _batch(), 0.0)
    for k in ("hidden", "attention", "embedding"):
        assert abs(terms[k].item()) < 1e-5, k


def test_distill_with_intermediate_matching_end_to_end(tiny_overrides):
    from textdistill.pipeline.run import run_distill

    overrides = {**tiny_overrides, "student.init": "shrink", "student.num_layers": 2, "student.hidden_size": 16,
                 "loss.hidden_loss": "mse", "loss.attention_weight": 0.5, "loss.schedule": "linear",
                 "loss.temperature_end": 1.0, "loss.soft_weighting": "entropy", "train.epochs": 1,
                 "report.baseline": False}
    summary = run_distill(load_config(None, overrides))
    from pathlib import Path

    from safetensors.torch import load_file

    from textdistill.data.labelled import TextSplit, encode
    from textdistill.evaluation.predict import predict_logits
    from textdistill.models.loading import load_classifier, load_tokenizer

    run = Path(overrides["output_dir"])
    # the saved student is the one the report measured: reloaded, it scores the reported test accuracy
    saved = load_classifier(run / "student", "student")
    tok = load_tokenizer(run / "student", "student")
    test = pd.read_csv(overrides["data.test"])
    labels = [saved.config.label2id[v] for v in test["label"]]
    enc = encode(tok, TextSplit(texts=list(test["text"]), labels=list(test["label"])), labels, 16, "test")
    accuracy = float((predict_logits(saved, enc).argmax(-1) == enc.labels).double().mean())
    assert accuracy == pytest.approx(summary["results"]["student"]["accuracy"])
    weights = load_file(str(run / "student" / "model.safetensors"))
    assert not any("maps" in k for k in weights)  # projections never reach the saved student
    import json
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_hidden" in e and "loss_attention" in e for e in lines)


def test_attention_matching_restores_attention_implementation(tiny_overrides, monkeypatch):
    import textdistill.tasks.classification as task_mod
    from textdistill.pipeline.run import run_distill

    # attention matching trains with eager attention; the models are timed (and saved) as they were loaded
    default = tiny_bert(30).config._attn_implementation
    assert default != "eager"
    seen = {}

    def recording_speed(models, *args, **kwargs):
        seen.update({name: m.config._attn_implementation for name, m in models.items()})
        return real_speed(models, *args, **kwargs)

    real_speed = task_mod.measure_speed
    monkeypatch.setattr(task_mod, "measure_speed", recording_speed)
    real_objective = task_mod.classification_objective
    during = []

    def recording_objective(cfg, teacher=None, *args, **kwargs):
        objective = real_objective(cfg, teacher, *args, **kwargs)

        def recorded(model, batch, progress):
            during.append((model.config._attn_implementation, teacher.config._attn_implementation))
            return objective(model, batch, progress)

        return recorded

    monkeypatch.setattr(task_mod, "classification_objective", recording_objective)
    overrides = {**tiny_overrides, "loss.attention_weight": 1.0, "train.epochs": 1, "report.baseline": False}
    run_distill(load_config(None, overrides))
    assert during and set(during) == {("eager", "eager")}
    assert seen == {"teacher": default, "student": default}
