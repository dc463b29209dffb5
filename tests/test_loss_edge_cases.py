"""Loss edge cases: top-k KL for a confident student, and a chunked loss on an all-masked micro-batch."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generation_fixtures import sentences, tiny_llama, translate, word_tokenizer
from textdistill.config import TrainConfig, defaults
from textdistill.data.pairs import encode_pairs
from textdistill.losses import (IGNORE_INDEX, forward_kl, forward_kl_topk, forward_kl_topk_from_hidden,
                                topk_with_leftover)
from textdistill.models.inputs import logits_of
from textdistill.training import token_objectives as gen
from textdistill.training.loop import accumulate_gradients, make_accelerator

DETERMINISTIC = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))


def reference_topk_kl(student: torch.Tensor, teacher: torch.Tensor, ids: torch.Tensor, temperature: float):
    """KL(p' || q') in float64 from probabilities: k ids plus one bucket holding the mass summed outside them.

    The bucket is a sum of the outside probabilities themselves (each accurate in float64), never 1 minus
    the mass at the ids."""
    p = torch.softmax(teacher.double() / temperature, -1)
    q = torch.softmax(student / temperature, -1)
    outside = torch.ones_like(p, dtype=torch.bool).scatter(-1, ids, False)
    p_top, q_top = p.gather(-1, ids), q.gather(-1, ids)
    r = torch.where(outside, p, torch.zeros_like(p)).sum(-1)
    big_q = torch.where(outside, q, torch.zeros_like(q)).sum(-1)
    top = (p_top * (p_top.log() - q_top.log())).sum(-1)
    bucket = torch.where(r > 0, r * (r.clamp_min(1e-300).log() - big_q.clamp_min(1e-300).log()), torch.zeros_like(r))
    return top + bucket


def test_confident_student_example_from_the_report():
    # teacher [2, 0, 0], k = 1, student [17, 0, 0]: the rest distributions agree, so top-k KL = full KL
    teacher = torch.tensor([2.0, 0.0, 0.0])
    expected_grad = torch.tensor([0.2130, -0.1065, -0.1065])
    sparse = topk_with_leftover(teacher, 1)
    student = torch.tensor([17.0, 0.0, 0.0], requires_grad=True)
    value = forward_kl_topk(student, *sparse)
    value.backward()
    assert value.item() == pytest.approx(2.9557, abs=1e-3)
    assert value.item() == pytest.approx(forward_kl(student, teacher).item(), rel=1e-5)
    assert torch.allclose(student.grad, expected_grad, atol=1e-3)

    hidden = torch.tensor([17.0, 0.0, 0.0], requires_grad=True)  # identity head: logits = hidden
    for vocab_chunk in (1, 2, 3):
        hidden.grad = None
        value = forward_kl_topk_from_hidden(hidden, torch.eye(3), *sparse, vocab_chunk=vocab_chunk)
        value.backward()
        assert value.item() == pytest.approx(2.9557, abs=1e-3)
        assert torch.allclose(hidden.grad, expected_grad, atol=1e-3)


@DETERMINISTIC
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 12), k_share=st.floats(0.0, 1.0),
       gap=st.one_of(st.just(0.0), st.floats(0.0, 120.0)), temperature=st.sampled_from([1.0, 2.0]),
       vocab_chunk=st.integers(1, 12))
def test_topk_kl_is_exact_bounded_and_has_true_gradients_for_any_confidence(seed, vocab, k_share, gap, temperature,
                                                                            vocab_chunk):
    """Random students (gap 0) and confident ones: one logit ahead by up to 120, so the student's mass
    outside the teacher's ids falls to e^-120, far below float32's epsilon."""
    g = torch.Generator().manual_seed(seed)
    k = 1 + round(k_share * (vocab - 1))
    teacher = torch.randn(4, vocab, generator=g) * 3
    student = torch.randn(4, vocab, generator=g)
    student[torch.arange(4), torch.randint(0, vocab, (4,), generator=g)] += gap
    top, ids, left = topk_with_leftover(teacher, k, temperature)

    s64 = student.double().requires_grad_()
    expected = reference_topk_kl(s64, teacher, ids, temperature)
    (expected_grad,) = torch.autograd.grad(expected.sum(), s64)
    full = forward_kl(s64, teacher.double(), temperature)
    scale = 1.0 + expected.abs().max().item()
    grad_scale = 1.0 + expected_grad.abs().max().item()

    on_logits = student.clone().requires_grad_()
    on_hidden = student.clone().requires_grad_()  # identity head: logits = hidden, masked block by block
    values = {"logits": forward_kl_topk(on_logits, top, ids, left, temperature),
              "hidden": forward_kl_topk_from_hidden(on_hidden, torch.eye(vocab), top, ids, left, temperature,
                                                    vocab_chunk)}
    for name, value in values.items():
        (grad,) = torch.autograd.grad(value.sum(), on_logits if name == "logits" else on_hidden)
        assert torch.allclose(value.double(), expected, rtol=0, atol=1e-5 * scale), name
        assert bool((value.double() <= full + 1e-5 * scale).all()), name  # never above the full KL
        assert torch.isfinite(grad).all(), name
        assert torch.allclose(grad.double(), expected_grad, rtol=0, atol=1e-5 * grad_scale), name


PAIRS = [(f"translate : {s}", translate(s)) for s in sentences(6, seed=3)]


def all_masked_setup(**loss_settings):
    tok = word_tokenizer()
    cfg = defaults("causal_lm")
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **loss_settings))
    teacher, student = tiny_llama(len(tok), layers=4, seed=1), tiny_llama(len(tok), layers=2, seed=2)
    batch = encode_pairs(tok, PAIRS, "causal_lm", cfg.data).collate([0, 1])
    batch["targets"] = torch.full_like(batch["targets"], IGNORE_INDEX)  # no position to learn from
    with torch.no_grad():
        top, ids, left = topk_with_leftover(logits_of(teacher, batch), 4, cfg.loss.temperature)
    batch.update(teacher_top_logprobs=top, teacher_top_ids=ids, teacher_leftover=left)
    return cfg, teacher, student, batch, len(tok)


@pytest.mark.parametrize("loss", ["forward_kl", "jsd"])
def test_chunked_kd_alone_on_an_all_masked_micro_batch_gives_zero_and_zero_gradients(loss):
    # alpha 0: the soft term is the whole loss, so it must stay on the autograd graph even when empty
    grads = []
    for chunk_size in (0, 3):
        cfg, teacher, student, batch, vocab = all_masked_setup(soft=loss, alpha=0.0, beta=1.0)
        objective = gen.live_teacher_objective(cfg.loss, teacher, vocab, chunk_size)
        total, terms = accumulate_gradients(student, [batch], objective,
                                            make_accelerator(TrainConfig(mixed_precision="no")),
                                            count=gen.count_target_tokens)
        assert total.item() == 0.0 and terms["soft"].item() == 0.0
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]))
    assert torch.equal(grads[0], grads[1]) and not grads[1].any()


@pytest.mark.parametrize("vocab_chunk", [3, 10_000])
def test_cached_topk_kd_alone_on_an_all_masked_micro_batch_gives_zero_and_zero_gradients(vocab_chunk):
    cfg, _, student, batch, vocab = all_masked_setup(alpha=0.0, beta=1.0)
    model = copy.deepcopy(student)
    terms = gen.cached_topk_objective(cfg.loss, vocab, vocab_chunk)(model, batch)
    sum(terms.values()).backward()
    assert terms["soft"].item() == 0.0
    assert all(not p.grad.any() for p in model.parameters() if p.grad is not None)
