"""Top-k teacher targets: the stored triple, and the top-k KL bounded by the full KL."""

import pytest
import torch

from textdistill.losses import forward_kl, forward_kl_topk, topk_with_leftover


@pytest.fixture()
def logits():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 6, 50, generator=g) * 3, torch.randn(4, 6, 50, generator=g) * 3


def test_topk_triple_is_a_distribution(logits):
    _, t = logits
    logprobs, ids, leftover = topk_with_leftover(t, 5)
    assert logprobs.shape == ids.shape == (4, 6, 5) and leftover.shape == (4, 6)
    total = logprobs.exp().sum(-1) + leftover.exp()
    assert torch.allclose(total, torch.ones(4, 6), atol=1e-5)
    assert torch.equal(ids, t.topk(5, dim=-1).indices)


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_is_bounded_by_full_kl(logits, k, temperature):
    s, t = logits
    full = forward_kl(s, t, temperature)
    approx = forward_kl_topk(s, *topk_with_leftover(t, k, temperature), temperature=temperature)
    assert (approx >= -1e-6).all()
    assert (approx <= full + 1e-5).all()


def test_topk_kl_equals_full_kl_when_k_is_the_vocabulary(logits):
    s, t = logits
    approx = forward_kl_topk(s, *topk_with_leftover(t, 50))
    assert torch.allclose(approx, forward_kl(s, t), atol=1e-5)


def test_topk_kl_is_zero_on_identical_logits(logits):
    s, _ = logits
    assert torch.allclose(forward_kl_topk(s, *topk_with_leftover(s.clone(), 5)), torch.zeros(4, 6), atol=1e-5)


def test_topk_kl_gradient_is_finite(logits):
    s, t = logits
    s = s.clone().requires_grad_(True)
    forward_kl_topk(s, *topk_with_leftover(t, 50)).sum().backward()
    assert torch.isfinite(s.grad).all()


def test_bad_k_is_refused(logits):
    with pytest.raises(ValueError, match="top-k must be in"):
        topk_with_leftover(logits[1], 0)
