"""The named methods wired end to end: config refusal per task, objective terms against the pure losses,
where gradients go, online training, quantisation-aware training and its int8 export, the sweep, the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_config, write_tokenizer
from textdistill.cli import run
from textdistill.config import LossConfig, load_config
from textdistill.errors import TextDistillError
from textdistill.losses import (IGNORE_INDEX, adaptive_forward_kl, cross_entropy, decoupled_forward_kl, forward_kl,
                                info_nce_student_to_teacher, masked_mean_per_example, mutual_forward_kl,
                                peer_ensemble_forward_kl, vid_nll)
from textdistill.models.inputs import model_inputs
from textdistill.models.onnx import export_classifier_onnx
from textdistill.models.quantisation import FakeQuantLinear, fake_quantise, set_fake_quant, strip_fake_quant
from textdistill.pipeline.sweep import Setting, apply_setting, sweep_grid
from textdistill.training.example_objectives import classification_objective
from textdistill.training.heads import ContrastiveTerm, VIDHeads, mean_pool
from textdistill.training.intermediate import Projections, resolve_layer_map
from textdistill.training.objectives import fake_quant_evaluation, quantisation_aware
from textdistill.training.online import co_training_objective, mutual_objective
from textdistill.training.token_objectives import token_positions

T = 2.0


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal within `rel` of the expected values' scale (and never both ~0 by accident: callers check that)."""
    scale = float(expected.detach().abs().max())
    assert torch.allclose(actual.detach().double(), expected.detach().double(), rtol=0, atol=rel * max(scale, 1e-6)), \
        (actual, expected)


def tiny_batch(n=4, length=7, vocab=30, labels=2, seed=3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, 4:] = 0  # ragged
    return {"input_ids": torch.randint(5, vocab, (n, length), generator=g), "attention_mask": mask,
            "targets": torch.tensor([0, labels - 1, IGNORE_INDEX, 1])[:n],
            "teacher_logits": torch.randn(n, labels, generator=g) * 3}


def narrow_student(seed=1) -> BertForSequenceClassification:
    """Eval mode, as every model here: no dropout, so two forward passes give the same values."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=32,
                                                    max_position_embeddings=64)).eval()


def grads_of(model: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in model.parameters()]


# ---- config: fields refused where a task does not use them, online modes' cross-field rules -------------------

GENERATION = {"task": "causal_lm", "data.dataset": "bible_en"}


@pytest.mark.parametrize("field,value", [
    ("loss.hidden_loss", "vid"), ("loss.contrastive_weight", 1.0), ("loss.contrastive_bank", 64),
    ("quantisation.aware", True), ("quantisation.start", 0.0), ("sweep.softs", ["dkd"]),
])
def test_classification_methods_are_refused_for_generation(field, value):
    with pytest.raises(TextDistillError, match=f"{field} is not used by task 'causal_lm'"):
        load_config(None, {**GENERATION, field: value})


def test_shared_method_fields_serve_every_task():
    for task in ({"data.dataset": "rotten_tomatoes"}, GENERATION, {"task": "seq2seq", "data.dataset": "bible_en_es",
                                                                   "teacher.path": "folder"}):
        cfg = load_config(None, {**task, "loss.soft": "dkd", "loss.dkd_beta": 2.0, "online.mode": "mutual"})
        assert cfg.loss.soft == "dkd" and cfg.online.mode == "mutual"
        assert load_config(None, {**task, "loss.soft": "adaptive_kl", "loss.adaptive_gamma": 2.0}).loss.adaptive_gamma == 2


@pytest.mark.parametrize("extra,needle", [
    ({"online.students": 2}, "for online.mode 'mutual'"),
    ({"online.mode": "mutual", "online.teacher_peer": False}, "at least 2 peers"),
    ({"online.mode": "mutual", "online.students": 2}, "start identical"),
    ({"online.mode": "co_training", "loss.hidden_loss": "mse"}, "compares outputs only"),
    ({"online.mode": "co_training", "loss.contrastive_weight": 1.0}, "compares outputs only"),
    ({"online.mode": "co_training", "quantisation.aware": True}, "cannot be combined"),
    ({"online.mode": "mutual", "loss.soft_weighting": "confidence"}, "soft_weighting: none"),
    ({"online.mode": "co_training", "loss.class_balance": True}, "class_balance: false"),
    ({"online.mode": "co_training", "loss.label_normalization": "labelled"}, "label_normalization: examples"),
    ({"online.mode": "co_training", "teacher.scoring": "int8"}, "set teacher.scoring: auto"),
    ({"online.mode": "co_training", "online.teacher_learning_rate": 0}, "teacher_learning_rate must be positive"),
    ({"online.mode": "co_training", "student.source": "minilm"}, "a tokenizer of its own"),
    ({"online.mode": "mutual", "online.teacher_share": 0.5}, "teacher_share is for online.mode 'co_training'"),
    ({"online.mode": "co_training", "online.teacher_share": 0}, r"teacher_share must be in \(0, 1\]"),
    ({"loss.soft": "dkd", "loss.dkd_alpha": 0, "loss.dkd_beta": 0}, "both 0"),
    ({"loss.adaptive_gamma": -1}, "adaptive_gamma must be non-negative"),
    ({"loss.contrastive_temperature": 0}, "contrastive_temperature must be positive"),
    ({"quantisation.start": 1.0}, r"quantisation.start must be in \[0, 1\)"),
    ({"sweep.softs": ["kl"]}, "sweep.softs entry 'kl' is not a loss"),
    ({"sweep.dkd_betas": [-1.0]}, "non-negative"),
])
def test_method_settings_are_checked(tiny_overrides, extra, needle):
    with pytest.raises(TextDistillError, match=needle):
        load_config(None, {**tiny_overrides, **extra})


def test_online_generation_refuses_cached_teacher_signals():
    with pytest.raises(TextDistillError, match="generation.topk: 0"):
        load_config(None, {**GENERATION, "online.mode": "co_training", "generation.topk": 8})
    with pytest.raises(TextDistillError, match="teacher.path 'train'"):
        load_config(None, {"task": "seq2seq", "data.dataset": "bible_en_es", "teacher.path": "train",
                           "online.mode": "co_training"})


# ---- objective terms equal the pure losses ------------------------------------------------------------------

@pytest.mark.parametrize("soft", ["dkd", "adaptive_kl"])
def test_soft_terms_equal_the_pure_functions(soft):
    cfg = LossConfig(soft=soft, alpha=0.3, beta=0.7, temperature=T, dkd_alpha=0.5, dkd_beta=3.0, adaptive_beta=0.5,
                     adaptive_gamma=2.0)
    # three classes: with two, DKD's split is the same whichever class is the target (NCKD is 0)
    student, batch = tiny_bert(30, layers=2, seed=1, labels=("a", "b", "c")).eval(), tiny_batch(labels=3)
    terms = classification_objective(cfg)(student, batch, 0.0)
    with torch.no_grad():
        logits = student(**model_inputs(batch)).logits
    teacher = batch["teacher_logits"]
    if soft == "dkd":  # the unlabelled row splits off the teacher's top class
        assert (teacher.argmax(-1) != batch["targets"]).any()  # labels, not the teacher, pick the others' class
        targets = torch.where(batch["targets"] == IGNORE_INDEX, teacher.argmax(-1), batch["targets"])
        expected = decoupled_forward_kl(logits, teacher, targets, 0.5, 3.0, T)
    else:
        expected = adaptive_forward_kl(logits, teacher, beta=0.5, gamma=2.0, temperature=T)
    assert_close(terms["soft"], 0.7 * T**2 * expected.sum())
    assert not torch.allclose(expected, forward_kl(logits, teacher, T))


def test_vid_term_equals_vid_nll_and_trains_the_heads_not_the_teacher():
    teacher, student, batch = tiny_bert(30, layers=4).eval().requires_grad_(False), narrow_student(), tiny_batch()
    cfg = LossConfig(hidden_loss="vid", hidden_weight=0.5, alpha=0.0, beta=0.0)
    matches = resolve_layer_map(cfg, 2, 4)
    vid = VIDHeads([f"layer{m.student_layer}_to{m.teacher_layer}" for m in matches], 16, 32)
    terms = classification_objective(cfg, teacher, matches, Projections([], 16, 32, False), vid=vid)(student, batch)
    with torch.no_grad():
        s_out = student(**model_inputs(batch), output_hidden_states=True)
        t_out = teacher(**model_inputs(batch), output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    expected = 0.0
    for m in matches:
        head = vid.heads[f"layer{m.student_layer}_to{m.teacher_layer}"]
        nll = vid_nll(head(s_out.hidden_states[m.student_layer + 1]), t_out.hidden_states[m.teacher_layer + 1],
                      head.variance())
        expected = expected + masked_mean_per_example(nll, mask).sum()
    assert_close(terms["hidden"], 0.5 * expected)
    terms["hidden"].backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads_of(vid))  # regressors and variances
    assert any(g is not None and g.abs().sum() > 0 for g in grads_of(student))
    assert all(g is None for g in grads_of(teacher))


def test_contrastive_term_uses_bank_negatives_and_trains_heads_and_student():
    student, batch = narrow_student(), tiny_batch()
    g = torch.Generator().manual_seed(0)
    bank_rows, batch_rows = torch.randn(6, 32, generator=g), torch.randn(4, 32, generator=g)
    term = ContrastiveTerm(16, 32, dim=8, temperature=0.2, bank_size=6)
    term.bank.push(bank_rows, torch.tensor([10, 11, 12, 13, 0, 14]))  # id 0 is in the batch: never its negative
    batch = {**batch, "teacher_repr": batch_rows, "example_index": torch.arange(4)}
    cfg = LossConfig(contrastive_weight=0.3, alpha=0.0, beta=0.0)
    terms = classification_objective(cfg, contrastive=term)(student, batch)
    with torch.no_grad():
        pooled = mean_pool(student(**model_inputs(batch), output_hidden_states=True).hidden_states[-1],
                           batch["attention_mask"])
        s, t = term.heads(pooled, batch_rows)
        negatives = term.heads.teacher(bank_rows[[0, 1, 2, 3, 5]])
    expected = 0.3 * info_nce_student_to_teacher(s, t, 0.2, negatives).sum()
    assert_close(terms["contrastive"], expected)
    assert not torch.allclose(expected, 0.3 * info_nce_student_to_teacher(s, t, 0.2).sum())  # the bank counts
    terms["contrastive"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.heads.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_memory_bank_is_first_in_first_out():
    term = ContrastiveTerm(16, 32, dim=8, temperature=0.2, bank_size=6)
    term.bank.push(torch.randn(6, 32), torch.tensor([10, 11, 12, 13, 0, 14]))
    term(torch.randn(4, 16), torch.randn(4, 32), torch.arange(4))
    assert term.bank.ids.tolist() == [0, 1, 2, 3, 0, 14]  # the four oldest overwritten
    term.eval()
    term(torch.randn(4, 16), torch.randn(4, 32), torch.tensor([7, 8, 9, 5]))
    assert term.bank.ids.tolist() == [0, 1, 2, 3, 0, 14]  # evaluation does not fill the bank


def _positions(model, batch):
    return model(**model_inputs(batch)).logits, batch["targets"]


def test_co_training_terms_and_where_their_gradients_go():
    teacher, student, batch = tiny_bert(30, layers=2, seed=5).eval(), tiny_bert(30, layers=1, seed=6).eval(), tiny_batch()
    cfg = LossConfig(alpha=0.4, beta=0.6, temperature=T)
    terms = co_training_objective(cfg, teacher, _positions, _positions)(student, batch)
    with torch.no_grad():
        s_logits, t_logits = student(**model_inputs(batch)).logits, teacher(**model_inputs(batch)).logits
    labelled = batch["targets"] != IGNORE_INDEX
    assert_close(terms["teacher_ce"], cross_entropy(t_logits, batch["targets"])[labelled].sum())
    assert_close(terms["ce"], 0.4 * cross_entropy(s_logits, batch["targets"])[labelled].sum())
    assert_close(terms["soft"], 0.6 * T**2 * forward_kl(s_logits, t_logits, T).sum())  # every row, the unlabelled too
    # the teacher learns from the labels alone: the soft term sends it nothing
    terms["soft"].backward(retain_graph=True)
    assert all(g is None for g in grads_of(teacher)) and any(g is not None for g in grads_of(student))
    terms["teacher_ce"].backward()
    assert all(g is not None for g in grads_of(teacher))


def test_co_trained_teacher_stops_learning_after_its_share():
    teacher, student, batch = tiny_bert(30, layers=2, seed=5), tiny_bert(30, layers=1, seed=6).eval(), tiny_batch()
    objective = co_training_objective(LossConfig(), teacher, _positions, _positions, teacher_share=0.5)
    graphs = []  # whether the teacher's forward builds a graph (forward only once frozen)
    teacher.register_forward_hook(lambda module, args, out: graphs.append(out.logits.requires_grad))
    early = objective(student, batch, 0.25)
    assert teacher.training and "teacher_ce" in early
    late = objective(student, batch, 0.5)
    assert not teacher.training and set(late) == {"ce", "soft"} and graphs == [True, False]
    sum(late.values()).backward()
    assert all(g is None for g in grads_of(teacher)) and any(g is not None for g in grads_of(student))


def test_online_setup_reads_the_config(tiny_overrides):
    from textdistill.training.online import online_training

    teacher, student, batch = tiny_bert(30, layers=2, seed=5), tiny_bert(30, layers=1, seed=6).eval(), tiny_batch()
    cfg = load_config(None, {**tiny_overrides, "online.mode": "co_training", "online.teacher_share": 0.5,
                             "online.teacher_learning_rate": 1e-4})
    setup = online_training(cfg, teacher, None, _positions, _positions)
    assert setup.trains_teacher and set(setup.extra) == {"teacher"} and setup.learning_rates == {"teacher": 1e-4}
    assert "teacher_ce" in setup.objective(student, batch, 0.25) and "teacher_ce" not in setup.objective(
        student, batch, 0.75)
    cfg = load_config(None, {**tiny_overrides, "online.mode": "mutual", "online.students": 3, "train.dropout": 0.1,
                             "online.teacher_peer": False})
    setup = online_training(cfg, teacher, lambda k: tiny_bert(30, layers=1, seed=10 + k).eval(), _positions, _positions)
    assert not setup.trains_teacher and set(setup.extra) == {"student1", "student2"} and not setup.learning_rates
    assert {"soft", "student1_soft", "student2_soft"} <= set(setup.objective(student, batch, 0.0))
    assert not setup.extra["student1"].get_input_embeddings().weight.requires_grad  # as the loop does for the student


@pytest.mark.parametrize("target", ["each", "ensemble"])
def test_mutual_terms_equal_the_pure_functions_and_each_peer_learns_alone(target):
    models = [tiny_bert(30, layers=1, seed=s).eval() for s in (1, 2, 3)]
    batch = tiny_batch()
    cfg = LossConfig(alpha=0.5, beta=1.0, temperature=T)
    peers = [("teacher", models[1], _positions), ("student1", models[2], _positions)]
    terms = mutual_objective(cfg, peers, _positions, target)(models[0], batch)
    with torch.no_grad():
        logits = [m(**model_inputs(batch)).logits for m in models]
    expected = (mutual_forward_kl(logits, T) if target == "each" else peer_ensemble_forward_kl(logits, None, T))
    for k, name in enumerate(["", "teacher_", "student1_"]):
        assert_close(terms[f"{name}soft"], T**2 * expected[k].sum())
        assert f"{name}ce" in terms
    # each peer's term reaches that peer only
    terms["student1_soft"].backward()
    assert all(g is None for g in grads_of(models[0]) + grads_of(models[1]))
    assert any(g is not None for g in grads_of(models[2]))


def test_token_level_mutual_learning_uses_target_tokens_only():
    from generation_fixtures import tiny_llama

    a, b = tiny_llama(20, layers=1, seed=1), tiny_llama(20, layers=1, seed=2)
    ids = torch.randint(3, 20, (2, 6), generator=torch.Generator().manual_seed(0))
    targets = torch.full((2, 6), IGNORE_INDEX)
    targets[0, 2:5], targets[1, 1:3] = ids[0, 3:6], ids[1, 2:4]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "targets": targets}
    cfg = LossConfig(alpha=1.0, beta=1.0, temperature=1.0)
    terms = mutual_objective(cfg, [("student1", b, token_positions)], token_positions, shared=15)(a, batch)
    with torch.no_grad():
        mask = targets != IGNORE_INDEX
        la, lb = a(input_ids=ids).logits[mask], b(input_ids=ids).logits[mask]  # [5, 20]
    assert la.shape[0] == 5
    assert_close(terms["soft"], mutual_forward_kl([la[:, :15], lb[:, :15]])[0].sum())
    assert_close(terms["student1_ce"], cross_entropy(lb, targets[mask]).sum())


# ---- quantisation-aware: the fake-quantised student is the int8 export ----------------------------------------

def _loud_classifier(folder: Path):
    """A tiny classifier whose logits are large enough for int8 rounding to show (a few percent)."""
    tok = write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)
    model = tiny_bert(len(tok.get_vocab()), layers=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20)
    return model, tok


def test_int8_export_equals_the_fake_quantised_model(tmp_path):
    model, tok = _loud_classifier(tmp_path)
    probes = ["good film", "the plot was dull and boring very", "a lovely story and fun actors really"]
    info = export_classifier_onnx(model, tok, tmp_path, probes, require_int8_match=True)
    enc = tok(probes, padding=True, return_tensors="pt")
    with torch.no_grad():
        float_logits = model(**enc).logits
    scale = float(float_logits.abs().max())
    assert info["int8_vs_fake_quant_relative_difference"] < 1e-5
    assert info["int8_max_logit_difference"] > 1e-2 * scale  # int8 is far from float: the match is no accident
    # the simulation is PyTorch's own: with the fake quantisation off it is the float model, bit for bit
    simulated = fake_quantise(copy.deepcopy(model)).eval()
    set_fake_quant(simulated, False)
    with torch.no_grad():
        assert torch.equal(simulated(**enc).logits, float_logits)


def test_int8_check_fails_loudly_when_the_simulation_is_wrong(tmp_path, monkeypatch):
    import textdistill.models.onnx as onnx_mod

    model, tok = _loud_classifier(tmp_path)
    monkeypatch.setattr(onnx_mod, "fake_quant_logits", lambda m, enc: m(**enc).logits.detach().numpy())
    with pytest.raises(TextDistillError, match="int8 ONNX model differs"):
        export_classifier_onnx(model, tok, tmp_path, ["good film", "dull and boring"], require_int8_match=True)


def test_strip_fake_quant_restores_the_plain_model():
    model = tiny_bert(30, layers=2)
    keys = set(model.state_dict())
    parameters = {id(p) for p in model.parameters()}
    fake_quantise(model)
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, FakeQuantLinear)
    assert model.get_input_embeddings().weight.shape[0] == 30
    assert set(model.state_dict()) != keys
    strip_fake_quant(model)
    assert set(model.state_dict()) == keys and {id(p) for p in model.parameters()} == parameters


def test_quantisation_aware_turns_on_at_start_and_validation_always_sees_int8():
    model, batch = fake_quantise(tiny_bert(30, layers=2)).eval(), tiny_batch()
    seen = []

    def objective(m, b, progress=0.0):
        seen.append([q.fake_quant_enabled.item() for q in m.modules() if hasattr(q, "fake_quant_enabled")])
        return {}

    wrapped = quantisation_aware(objective, start=0.5)
    wrapped(model, batch, 0.2)
    wrapped(model, batch, 0.5)
    assert set(seen[0]) == {0} and set(seen[1]) == {1}
    wrapped(model, batch, 0.0)
    fake_quant_evaluation(lambda m: seen.append([q.fake_quant_enabled.item() for q in m.modules()
                                                 if hasattr(q, "fake_quant_enabled")]))(model)
    assert set(seen[-1]) == {1}


# ---- sweep ------------------------------------------------------------------------------------------------------

def test_sweep_grid_covers_the_soft_losses_and_their_options(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "sweep.softs": ["forward_kl", "dkd", "adaptive_kl"],
                             "sweep.dkd_betas": [1.0, 8.0], "sweep.temperatures": [2], "sweep.alphas": [0.5]})
    grid = sweep_grid(cfg, None)
    assert [(s.soft, s.soft_option) for s in grid] == [("forward_kl", None), ("dkd", 1.0), ("dkd", 8.0),
                                                       ("adaptive_kl", None)]
    out = apply_setting(cfg, grid[2], None)
    assert (out.loss.soft, out.loss.dkd_beta) == ("dkd", 8.0)
    assert "dkd (NCKD weight 8)" in grid[2].label()
    gamma = apply_setting(cfg, Setting(None, 2.0, None, "adaptive_kl", 3.0), None)
    assert (gamma.loss.soft, gamma.loss.adaptive_gamma) == ("adaptive_kl", 3.0)


# ---- end to end through the CLI, one tiny run per method --------------------------------------------------------

def _config(tmp_path, overrides: dict) -> Path:
    return write_config(tmp_path / "tiny.yaml", overrides)


METHODS = {
    "dkd": ({"loss.soft": "dkd"}, {"loss_soft"}),
    "adaptive_kl": ({"loss.soft": "adaptive_kl"}, {"loss_soft"}),
    "vid": ({"loss.hidden_loss": "vid", "student.hidden_size": 16, "student.num_heads": 1}, {"loss_hidden"}),
    "contrastive": ({"loss.contrastive_weight": 0.5, "loss.contrastive_bank": 32}, {"loss_contrastive"}),
    "co_training": ({"online.mode": "co_training"}, {"loss_teacher_ce", "loss_soft"}),
    "mutual": ({"online.mode": "mutual", "online.students": 2, "train.dropout": 0.1, "online.peer_target": "ensemble"},
               {"loss_teacher_soft", "loss_student1_soft", "loss_soft"}),
    "quantisation_aware": ({"quantisation.aware": True, "quantisation.start": 0.3}, {"loss_soft"}),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_end_to_end_through_the_cli(tmp_path, tiny_overrides, teacher_dir, method, capsys, monkeypatch):
    import textdistill.tasks.classification as task_mod
    from textdistill.pipeline.export import _quantisation_aware

    seen = {"fake_quantised": set(), "bank": []}
    real_aware, real_fill = task_mod.quantisation_aware, task_mod.fill_bank

    def recording_aware(objective, start):  # does the student reach the objective fake-quantised?
        inner = real_aware(objective, start)

        def wrapped(model, batch, progress=0.0):
            seen["fake_quantised"].add(any(isinstance(m, FakeQuantLinear) for m in model.modules()))
            return inner(model, batch, progress)

        return wrapped

    def recording_fill(term, representations, seed):
        real_fill(term, representations, seed)
        seen["bank"].append(int(term.bank.occupied.sum()))

    monkeypatch.setattr(task_mod, "quantisation_aware", recording_aware)
    monkeypatch.setattr(task_mod, "fill_bank", recording_fill)
    settings, logged = METHODS[method]
    config = _config(tmp_path, {**tiny_overrides, **settings, "train.epochs": 1, "report.baseline": method == "dkd"})
    assert run(["-q", "distill", "--config", str(config)]) == 0
    run_dir = Path(tiny_overrides["output_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged <= {k for h in history if h["run"] == "student" for k in h}
    # whatever trained beside it, the saved student is a plain classifier of its own architecture
    saved = set(load_file(str(run_dir / "student" / "model.safetensors")))
    fresh = BertForSequenceClassification(BertForSequenceClassification.config_class.from_pretrained(
        str(run_dir / "student")))
    assert saved == set(fresh.state_dict())
    report = (run_dir / "report.md").read_text()
    teacher_weights = load_file(str(teacher_dir / "model.safetensors"))
    if method in ("co_training", "mutual"):
        assert summary["online"]["mode"] == METHODS[method][0]["online.mode"]
        assert summary["online"]["train_seconds"] > 0 and "not used" in summary["online"]["teacher_cache"]
        assert "Online distillation" in report and "Teacher-output cache: not used" in report
        # the teacher learned in the loop, and the report measures the one it became
        assert summary["teacher"]["path"] == str(run_dir / "teacher")
        trained = load_file(str(run_dir / "teacher" / "model.safetensors"))
        assert any(not torch.equal(trained[k], teacher_weights[k]) for k in teacher_weights)
    if method == "contrastive":
        assert seen["bank"] == [32]  # filled from the cached teacher representations before the first step
    if method == "quantisation_aware":
        assert seen["fake_quantised"] == {True} and "Quantisation-aware" in report
        assert _quantisation_aware(run_dir) and not _quantisation_aware(run_dir / "student")
        assert not _quantisation_aware(Path(tiny_overrides["output_dir"]).parent)
        capsys.readouterr()
        assert run(["export", str(run_dir), "--output", str(tmp_path / "exported")]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["int8_vs_fake_quant_relative_difference"] < 1e-3 and "model.int8.onnx" in info["files"]
        # a quantisation-aware run's export insists on the match
        import textdistill.models.onnx as onnx_mod

        monkeypatch.setattr(onnx_mod, "fake_quant_logits", lambda m, enc: 2 * m(**enc).logits.detach().numpy())
        with pytest.raises(TextDistillError, match="int8 ONNX model differs"):
            run(["export", str(run_dir), "--output", str(tmp_path / "again")])


def test_online_rates_and_clipping_groups():
    from textdistill.config import TrainConfig
    from textdistill.training.loop import _clipped_groups, _optimizer

    student, teacher, heads = tiny_bert(30, layers=1), tiny_bert(30, layers=2), torch.nn.Linear(4, 4)
    optimizer = _optimizer([student, heads], TrainConfig(learning_rate=1e-3), [(teacher, 5e-5)])
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {rates[id(p)] for p in teacher.parameters()} == {5e-5}
    assert {rates[id(p)] for p in list(student.parameters()) + list(heads.parameters())} == {1e-3}
    groups = _clipped_groups([student, heads], [(teacher, 5e-5)])
    assert [len(g) for g in groups] == [len(list(student.parameters())) + 2, len(list(teacher.parameters()))]


def test_co_trained_teacher_is_reloaded_when_a_finished_student_phase_is_resumed(tiny_overrides, teacher_dir,
                                                                               monkeypatch):
    import textdistill.pipeline.run as run_mod

    measured = []  # the teacher's weights as evaluation receives them

    def recording(plan, *args):
        measured.append({k: v.clone() for k, v in plan.teacher.model.state_dict().items()})
        return real(plan, *args)

    real = run_mod.evaluate_and_report
    monkeypatch.setattr(run_mod, "evaluate_and_report", recording)
    cfg = load_config(None, {**tiny_overrides, "online.mode": "co_training", "train.epochs": 1,
                             "report.baseline": False})
    run_mod.run_distill(cfg)
    run_dir = Path(cfg.output_dir)
    saved = load_file(str(run_dir / "teacher" / "model.safetensors"))
    loaded = load_file(str(teacher_dir / "model.safetensors"))
    (run_dir / "phases" / "report.json").unlink()  # evaluation runs again; training does not
    run_mod.run_distill(cfg, resume=True)
    for weights in measured:  # both times the teacher trained in the loop, not the one loaded at start-up
        assert all(torch.equal(weights[k], saved[k]) for k in saved)
        assert any(not torch.equal(weights[k], loaded[k]) for k in loaded)
    (run_dir / "phases" / "report.json").unlink()
    (run_dir / "phases" / "teacher.json").unlink()
    with pytest.raises(TextDistillError, match="was not saved"):
        run_mod.run_distill(cfg, resume=True)


@pytest.mark.parametrize("mode", ["co_training", "mutual"])
def test_online_generation_end_to_end(tmp_path, llama_teacher, mode):
    from generation_fixtures import write_corpora
    from textdistill.pipeline import commands

    files = write_corpora(tmp_path / "data", 40)
    overrides = {"task": "causal_lm", "output_dir": str(tmp_path / "run"), "teacher.path": str(llama_teacher),
                 "data.train": str(files["prompt_response"]), "train.batch_size": 8, "train.max_steps": 3,
                 "train.progress": False, "generation.max_new_tokens": 4, "report.latency_examples": 2,
                 "data.max_eval_examples": 4, "data.max_length": 40, "report.baseline": False,
                 "online.mode": mode}
    if mode == "mutual":
        overrides.update({"online.students": 2, "train.dropout": 0.1})
    summary = commands.distill(load_config(None, overrides))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = {k for h in history for k in h}
    assert {"loss_teacher_ce"} <= keys if mode == "co_training" else {"loss_student1_soft", "loss_teacher_soft"} <= keys
    assert summary["online"]["mode"] == mode and (tmp_path / "run" / "teacher" / "model.safetensors").is_file()
