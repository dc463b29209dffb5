"""Generation losses (skew KL, total variation, chunked, top-k teacher) against reference formulas."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from textdistill.losses import (
    IGNORE_INDEX,
    LOSSES,
    chunked,
    cross_entropy,
    forward_kl,
    forward_kl_topk,
    cross_entropy_from_hidden,
    forward_kl_topk_from_hidden,
    masked_sum,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    topk_with_leftover,
    total_variation,
)


def ref_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (p.log() - q.log())).sum(-1)


@pytest.fixture()
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 6, 11, generator=g) * 2, torch.randn(2, 6, 11, generator=g) * 2


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_on_identical_logits(logits, name):
    s, _ = logits
    assert torch.allclose(LOSSES[name](s, s.clone()), torch.zeros(2, 6), atol=1e-6)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_skew_kl_matches_reference(logits, alpha, temperature):
    s, t = logits
    p, q = torch.softmax(t / temperature, -1), torch.softmax(s / temperature, -1)
    assert torch.allclose(skew_kl(s, t, alpha, temperature), ref_kl(p, alpha * p + (1 - alpha) * q), atol=1e-5)
    assert torch.allclose(
        skew_reverse_kl(s, t, alpha, temperature), ref_kl(q, alpha * q + (1 - alpha) * p), atol=1e-5
    )


def test_skew_endpoints_and_direction(logits):
    s, t = logits
    assert torch.allclose(skew_kl(s, t, 0.0), forward_kl(s, t))
    assert torch.allclose(skew_reverse_kl(s, t, 0.0), reverse_kl(s, t))
    assert torch.equal(skew_kl(s, t, 1.0), torch.zeros(2, 6))
    assert not torch.allclose(skew_kl(s, t, 0.1), skew_reverse_kl(s, t, 0.1), atol=1e-3)
    with pytest.raises(ValueError):
        skew_kl(s, t, 1.5)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_total_variation_matches_reference_and_is_symmetric(logits, temperature):
    s, t = logits
    p, q = torch.softmax(t / temperature, -1), torch.softmax(s / temperature, -1)
    tv = total_variation(s, t, temperature)
    assert torch.allclose(tv, 0.5 * (p - q).abs().sum(-1), atol=1e-6)
    assert torch.allclose(tv, total_variation(t, s, temperature))
    assert bool((tv >= 0).all() and (tv <= 1).all())


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("chunk_size", [1, 4, 5, 100])
def test_chunked_equals_full_values_and_gradients(logits, name, chunk_size):
    s, t = logits
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    fn = LOSSES[name]
    full, parts = fn(s1, t, temperature=2.0), chunked(fn, s2, t, chunk_size, temperature=2.0)
    assert parts.shape == full.shape
    assert torch.allclose(full, parts, atol=1e-6)
    full.sum().backward()
    parts.sum().backward()
    assert torch.allclose(s1.grad, s2.grad, atol=1e-6)


def test_all_masked_gives_zero_not_nan(logits):
    s, t = logits
    mask = torch.zeros(2, 6, dtype=torch.bool)
    for fn in LOSSES.values():
        assert masked_sum(fn(s, t), mask).item() == 0.0
    sparse = topk_with_leftover(t, 3)
    assert masked_sum(forward_kl_topk(s, *sparse), mask).item() == 0.0


def test_topk_with_leftover_shapes_and_mass(logits):
    _, t = logits
    top, ids, left = topk_with_leftover(t, 4)
    assert top.shape == ids.shape == (2, 6, 4) and left.shape == (2, 6)
    total = top.exp().sum(-1) + left.exp()
    assert torch.allclose(total, torch.ones(2, 6), atol=1e-5)
    _, _, none_left = topk_with_leftover(t, 11)
    assert torch.isinf(none_left).all()


def test_topk_with_all_ids_equals_full_kl_and_has_finite_gradients(logits):
    s, t = logits
    s = s.clone().requires_grad_()
    sparse_kl = forward_kl_topk(s, *topk_with_leftover(t, 11))
    assert torch.allclose(sparse_kl, forward_kl(s, t), atol=1e-5)
    sparse_kl.sum().backward()
    assert torch.isfinite(s.grad).all()


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 11), seed=st.integers(0, 10_000), temperature=st.sampled_from([1.0, 2.0]))
def test_topk_bound_against_full_kl(k, seed, temperature):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(3, 11, generator=g) * 3, torch.randn(3, 11, generator=g) * 3
    top, ids, left = topk_with_leftover(t, k, temperature)
    sparse_kl = forward_kl_topk(s, top, ids, left, temperature)
    full = forward_kl(s, t, temperature)
    # documented gap: r * KL(p_rest / r || q_rest / Q), the teacher's and student's mass outside the ids
    p, q = torch.softmax(t / temperature, -1), torch.softmax(s / temperature, -1)
    outside = torch.ones_like(p, dtype=torch.bool).scatter(-1, ids, False)
    r, big_q = (p * outside).sum(-1), (q * outside).sum(-1)
    outside_kl = torch.where(outside, p * (p.log() - q.log()), torch.zeros_like(p)).sum(-1)
    lumped = torch.where(r > 0, r * (r.clamp_min(1e-30).log() - big_q.log()), torch.zeros_like(r))
    gap = outside_kl - lumped  # = r * KL(p_rest / r || q_rest / Q) by the log-sum inequality, >= 0
    assert bool((sparse_kl <= full + 1e-4).all())
    assert torch.allclose(full - sparse_kl, gap, atol=1e-4)


def test_topk_kl_is_zero_on_identical_logits(logits):
    _, t = logits
    assert torch.allclose(forward_kl_topk(t, *topk_with_leftover(t, 3)), torch.zeros(2, 6), atol=1e-6)


@pytest.mark.parametrize("k", [0, 12])
def test_topk_outside_the_vocabulary_is_refused(logits, k):
    with pytest.raises(ValueError, match="top-k must be in"):
        topk_with_leftover(logits[1], k)


@pytest.mark.parametrize("vocab_chunk", [1, 7, 40, 1000])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_from_hidden_equals_topk_on_logits_values_and_gradients(vocab_chunk, temperature):
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(3, 5, 16, generator=g, requires_grad=True)  # [B, L, D]
    weight = torch.randn(40, 16, generator=g, requires_grad=True)  # [V, D]
    teacher = torch.randn(3, 5, 40, generator=g) * 3
    top, ids, left = topk_with_leftover(teacher, 6, temperature)
    via_logits = forward_kl_topk(hidden @ weight.T, top, ids, left, temperature)
    via_hidden = forward_kl_topk_from_hidden(hidden, weight, top, ids, left, temperature, vocab_chunk)
    assert via_hidden.shape == (3, 5)
    assert torch.allclose(via_hidden, via_logits, atol=1e-5)
    g1 = torch.autograd.grad(via_logits.sum(), (hidden, weight))
    g2 = torch.autograd.grad(via_hidden.sum(), (hidden, weight))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("vocab_chunk", [1, 7, 1000])
def test_cross_entropy_from_hidden_equals_cross_entropy_on_logits(vocab_chunk):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 5, 16, generator=g, requires_grad=True)  # [B, L, D]
    weight = torch.randn(40, 16, generator=g, requires_grad=True)  # [V, D]
    labels = torch.randint(0, 40, (3, 5), generator=g)
    labels[0, :2] = IGNORE_INDEX
    via_logits = cross_entropy(hidden @ weight.T, labels)
    via_hidden = cross_entropy_from_hidden(hidden, weight, labels, vocab_chunk)
    assert via_hidden.shape == (3, 5) and (via_hidden[0, :2] == 0).all()
    assert torch.allclose(via_hidden, via_logits, atol=1e-5)
    g1 = torch.autograd.grad(via_logits.sum(), (hidden, weight))
    g2 = torch.autograd.grad(via_hidden.sum(), (hidden, weight))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)
