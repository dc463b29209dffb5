"""Loss properties against explicit reference formulas."""

import math

import pytest
import torch

from textdistill.losses import IGNORE_INDEX, cross_entropy, forward_kl, jsd, logit_mse, masked_sum, reverse_kl


def ref_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) for probability rows, the textbook way."""
    return (p * (p.log() - q.log())).sum(-1)


@pytest.fixture()
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 7, generator=g) * 2, torch.randn(3, 5, 7, generator=g) * 2


def test_zero_on_identical_logits(logits):
    s, _ = logits
    for fn in (forward_kl, reverse_kl, jsd, logit_mse):
        assert torch.allclose(fn(s, s.clone()), torch.zeros(3, 5), atol=1e-6), fn.__name__


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_forward_kl_is_teacher_first(logits, temperature):
    s, t = logits
    p = torch.softmax(t / temperature, -1)
    q = torch.softmax(s / temperature, -1)
    assert torch.allclose(forward_kl(s, t, temperature), ref_kl(p, q), atol=1e-5)
    assert torch.allclose(reverse_kl(s, t, temperature), ref_kl(q, p), atol=1e-5)


def test_forward_and_reverse_differ_on_asymmetric_inputs(logits):
    s, t = logits
    assert not torch.allclose(forward_kl(s, t), reverse_kl(s, t), atol=1e-3)


def test_temperature_softens(logits):
    s, t = logits
    assert forward_kl(s, t, 8.0).mean() < forward_kl(s, t, 1.0).mean()


def test_shape_is_per_position_without_reduction(logits):
    s, t = logits
    for fn in (forward_kl, reverse_kl, jsd, logit_mse):
        assert fn(s, t).shape == (3, 5)


def test_jsd_reference_and_endpoints(logits):
    s, t = logits
    beta = 0.3
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    m = beta * p + (1 - beta) * q
    expected = beta * ref_kl(p, m) + (1 - beta) * ref_kl(q, m)
    assert torch.allclose(jsd(s, t, beta), expected, atol=1e-5)
    assert torch.allclose(jsd(s, t, 0.0), forward_kl(s, t))
    assert torch.allclose(jsd(s, t, 1.0), reverse_kl(s, t))
    # symmetric JSD is bounded by log 2
    assert (jsd(s, t, 0.5) <= math.log(2) + 1e-6).all()


def test_logit_mse_reference(logits):
    s, t = logits
    assert torch.allclose(logit_mse(s, t), ((s - t) ** 2).mean(-1))


def test_cross_entropy_ignores_unlabelled():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, IGNORE_INDEX])
    ce = cross_entropy(logits, labels)
    assert ce[1] == 0
    assert torch.isclose(ce[0], -torch.log_softmax(logits[0], -1)[0])


def test_all_masked_batch_gives_zero_not_nan(logits):
    from textdistill.config import TrainConfig
    from textdistill.training.loop import accumulate_gradients, make_accelerator

    s, t = logits
    assert masked_sum(forward_kl(s, t), torch.zeros(3, 5, dtype=torch.bool)).item() == 0.0
    labels = torch.full((4,), IGNORE_INDEX)
    ce = cross_entropy(torch.randn(4, 3), labels)
    assert masked_sum(ce, labels != IGNORE_INDEX).item() == 0.0
    # the loop divides by the step's count of scored units, 0 here: the loss and the gradients are 0, not NaN
    head = torch.nn.Linear(7, 7)
    mask = torch.zeros(3, 5, dtype=torch.bool)

    def objective(model, batch, progress):
        student = model(batch["x"])  # [3, 5, 7]
        return {"kd": masked_sum(forward_kl(student, batch["t"]), batch["mask"])}

    loss, terms = accumulate_gradients(head, [{"x": s, "t": t, "mask": mask}], objective,
                                       make_accelerator(TrainConfig()), count=lambda b: int(b["mask"].sum()))
    assert loss.item() == 0.0 and terms["kd"].item() == 0.0
    assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)) for p in head.parameters())


def test_losses_run_in_float32_from_bfloat16(logits):
    s, t = logits
    out = forward_kl(s.bfloat16(), t.bfloat16())
    assert out.dtype == torch.float32
