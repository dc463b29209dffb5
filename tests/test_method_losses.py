"""VID, contrastive, DKD, adaptive and mutual-learning losses (and their heads) against independent formulas."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textdistill.losses import (IGNORE_INDEX, adaptive_forward_kl, decoupled_forward_kl, decoupled_forward_kl_terms,
                                forward_kl, info_nce_student_to_teacher, masked_mean_per_example, masked_sum,
                                mutual_forward_kl, peer_ensemble_forward_kl, peer_ensemble_logits, vid_nll)
from textdistill.training.heads import ContrastiveHeads, MemoryBank, VIDHead, mean_pool

DETERMINISTIC = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))
FEW = settings(DETERMINISTIC, max_examples=12)  # for properties with a small input space


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal within `rel` of the scale of the expected values (1 at least)."""
    scale = 1.0 + expected.detach().abs().max().item() if expected.numel() else 1.0
    assert actual.shape == expected.shape
    assert torch.allclose(actual.double(), expected.double(), rtol=0, atol=rel * scale), (actual, expected)


def logits_pair(seed: int, shape=(4, 6), gap: float = 0.0):
    """Random student and teacher logits; with a gap, the student is confident in one class per row."""
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(*shape, generator=g) * 2, torch.randn(*shape, generator=g) * 2
    rows = student.reshape(-1, shape[-1])
    rows[torch.arange(rows.shape[0]), torch.randint(0, shape[-1], (rows.shape[0],), generator=g)] += gap
    return student, teacher


def grad_of(fn, *inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    return torch.autograd.grad(fn(*leaves).sum(), leaves)


# ---- VID -------------------------------------------------------------------------------------------------

def test_vid_is_the_gaussian_negative_log_likelihood():
    g = torch.Generator().manual_seed(0)
    mu, teacher = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    variance = torch.rand(8, generator=g) + 0.1
    normal = torch.distributions.Normal(mu.double(), variance.double().sqrt())
    expected = -normal.log_prob(teacher.double()).mean(-1) - 0.5 * math.log(2 * math.pi)
    assert_close(vid_nll(mu, teacher, variance), expected)
    # not 0 on identical features: what is left is the log-variance term
    assert_close(vid_nll(teacher, teacher, variance), 0.5 * variance.log().mean().expand(2, 5))


def test_vid_variance_is_learned_to_the_residual_variance():
    # the NLL's minimiser over sigma_d^2 is the mean squared residual of dimension d
    g = torch.Generator().manual_seed(1)
    mu, teacher = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g) * 3
    best = (teacher - mu).pow(2).mean(0)  # [4]
    for factor in (1.0, 0.5, 2.0):
        variance = (best * factor).requires_grad_()
        vid_nll(mu, teacher, variance).sum().backward()
        grad = variance.grad
        assert (grad.abs() < 1e-4).all() if factor == 1.0 else ((grad > 0) == (factor > 1.0)).all()


def test_vid_head_variance_starts_at_init_and_is_floored():
    head = VIDHead(student_width=6, teacher_width=10, init_variance=5.0, min_variance=1e-3)
    assert_close(head.variance(), torch.full((10,), 5.0))
    assert head(torch.randn(2, 3, 6)).shape == (2, 3, 10) and head.variance().shape == (10,)
    with torch.no_grad():
        head.raw_variance.fill_(-1e4)  # as if training had pushed it down without bound
    assert (head.variance() >= 1e-3).all()
    loss = vid_nll(head(torch.randn(2, 3, 6)), torch.randn(2, 3, 10), head.variance()).sum()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in head.parameters())
    with pytest.raises(ValueError, match="min_variance"):
        VIDHead(6, 10, init_variance=1e-6, min_variance=1e-5)


def test_vid_all_masked_gives_zero_and_masks_are_respected():
    head = VIDHead(4, 4)
    hidden, teacher = torch.randn(3, 5, 4, requires_grad=True), torch.randn(3, 5, 4)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    per_example = masked_mean_per_example(vid_nll(head(hidden), teacher, head.variance()), mask)  # [3]
    total = masked_sum(per_example, torch.zeros(3, dtype=torch.bool))
    total.backward()
    assert total.item() == 0.0 and torch.isfinite(hidden.grad).all() and not hidden.grad.any()
    mask[0, :2] = True
    changed = teacher.clone()
    changed[:, 2:] += 100.0  # outside the mask
    a = masked_mean_per_example(vid_nll(head(hidden), teacher, head.variance()), mask)
    b = masked_mean_per_example(vid_nll(head(hidden), changed, head.variance()), mask)
    assert torch.equal(a, b)


# ---- contrastive -----------------------------------------------------------------------------------------

def reference_info_nce(student, teacher, temperature, negatives=None, valid=None):
    """Per anchor i: -log exp(cos(s_i, t_i)/tau) / (sum over valid j of exp(cos(s_i, t_j)/tau) + bank terms)."""
    n = student.shape[0]
    valid = torch.ones(n, dtype=torch.bool) if valid is None else valid
    out = []
    for i in range(n):
        if not valid[i]:
            out.append((student[i].sum() + teacher[i].sum()) * 0.0)  # no positive: 0, on the graph
            continue
        cos = lambda a, b: (a @ b) / (a.norm() * b.norm())  # noqa: E731
        denominator = sum(torch.exp(cos(student[i], teacher[j]) / temperature) for j in range(n) if valid[j])
        if negatives is not None:
            denominator = denominator + sum(torch.exp(cos(student[i], m) / temperature) for m in negatives)
        out.append(-torch.log(torch.exp(cos(student[i], teacher[i]) / temperature) / denominator))
    return torch.stack(out)


@DETERMINISTIC
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), bank=st.integers(0, 5),
       temperature=st.sampled_from([0.05, 0.1, 1.0]), drop=st.integers(0, 63))
def test_info_nce_matches_reference_values_and_gradients(seed, batch, bank, temperature, drop):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(batch, 5, generator=g), torch.randn(batch, 5, generator=g)
    negatives = torch.randn(bank, 5, generator=g) if bank else None
    valid = torch.tensor([not (drop >> i) & 1 for i in range(batch)])
    bank64 = None if negatives is None else negatives.double()
    fn = lambda s_, t_: info_nce_student_to_teacher(s_, t_, temperature, negatives, valid)  # noqa: E731
    ref = lambda s_, t_: reference_info_nce(s_, t_, temperature, bank64, valid)  # noqa: E731
    value, expected = fn(s, t), ref(s.double(), t.double())
    assert_close(value, expected)
    assert (value >= -1e-6).all()  # the positive is one of the candidates
    for got, want in zip(grad_of(fn, s, t), grad_of(ref, s.double(), t.double())):
        assert torch.isfinite(got).all()
        assert_close(got, want, rel=1e-4)


def test_info_nce_masks_examples_without_a_teacher_representation():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    valid = torch.tensor([True, False, True, True])
    base = info_nce_student_to_teacher(s, t, 0.1, teacher_valid=valid)
    garbage = t.clone()
    garbage[1] = torch.randn(6, generator=g) * 100  # no teacher representation: its content must not matter
    assert torch.equal(info_nce_student_to_teacher(s, garbage, 0.1, teacher_valid=valid), base)
    assert base[1] == 0 and (base[valid] > 0).all()
    # the same as dropping the example from the batch
    keep = valid.nonzero().squeeze(-1)
    assert_close(base[keep], info_nce_student_to_teacher(s[keep], t[keep], 0.1))


@pytest.mark.parametrize("bank", [0, 3])
def test_info_nce_all_masked_gives_zero_with_finite_gradients(bank):
    s, t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    negatives = torch.randn(bank, 4) if bank else None
    values = info_nce_student_to_teacher(s, t, 0.1, negatives, torch.zeros(3, dtype=torch.bool))
    total = masked_sum(values, torch.zeros(3, dtype=torch.bool)) + values.sum()
    total.backward()
    assert total.item() == 0.0
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()


def test_info_nce_direction_and_sharp_limit():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert not torch.allclose(info_nce_student_to_teacher(s, t, 0.5), info_nce_student_to_teacher(t, s, 0.5),
                              atol=1e-3)
    # matched, mutually orthogonal representations at a sharp temperature: every positive wins, loss -> 0
    eye = torch.eye(4)
    assert (info_nce_student_to_teacher(eye, eye * 3, 0.01) < 1e-30).all()
    # a bank negative equal to the positive is as likely as it: loss log 2 for every anchor
    assert_close(info_nce_student_to_teacher(eye[:1], eye[:1], 0.1, negatives=eye[:1]), torch.tensor([math.log(2)]))


def test_contrastive_heads_and_pooling():
    heads = ContrastiveHeads(student_width=6, teacher_width=10, dim=8)
    s, t = heads(torch.randn(3, 6), torch.randn(3, 10))
    assert s.shape == t.shape == (3, 8)
    hidden = torch.randn(3, 4, 6)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    pooled = mean_pool(hidden, mask)
    assert_close(pooled[0], hidden[0, :2].mean(0))
    assert_close(pooled[1], hidden[1].mean(0))
    assert torch.equal(pooled[2], torch.zeros(6))


def test_memory_bank_is_a_fifo_of_valid_rows_that_excludes_the_batch():
    bank = MemoryBank(size=4, width=2)
    assert bank.negatives().shape == (0, 2)
    bank.push(torch.tensor([[0.0, 0], [1, 1], [2, 2]]), ids=torch.tensor([0, 1, 2]),
              valid=torch.tensor([True, False, True]))  # example 1 has no teacher representation
    assert bank.negatives()[:, 0].tolist() == [0.0, 2.0]
    bank.push(torch.tensor([[3.0, 3], [4, 4], [5, 5]]), ids=torch.tensor([3, 4, 5]))  # overwrites the oldest
    assert sorted(bank.negatives()[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]
    assert sorted(bank.negatives(exclude_ids=torch.tensor([4, 9]))[:, 0].tolist()) == [2.0, 3.0, 5.0]
    bank.push(torch.arange(12.0).reshape(6, 2), ids=torch.arange(10, 16))  # more rows than slots: the newest
    assert sorted(bank.negatives()[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0]
    restored = MemoryBank(size=4, width=2)
    restored.load_state_dict(bank.state_dict())  # checkpointed with the run
    assert torch.equal(restored.negatives(), bank.negatives())
    with pytest.raises(ValueError, match="size"):
        MemoryBank(0, 2)


def test_bank_negatives_feed_the_loss_through_the_teacher_head():
    heads = ContrastiveHeads(6, 10, dim=8)
    bank = MemoryBank(16, 10)
    bank.push(torch.randn(5, 10), ids=torch.arange(5))
    ids = torch.tensor([3, 7])
    s, t = heads(torch.randn(2, 6), torch.randn(2, 10))
    loss = info_nce_student_to_teacher(s, t, 0.1, heads.teacher(bank.negatives(exclude_ids=ids))).sum()
    loss.backward()
    assert heads.teacher.weight.grad.abs().sum() > 0 and heads.student.weight.grad.abs().sum() > 0
    assert not bank.representations.requires_grad


# ---- DKD -------------------------------------------------------------------------------------------------

def reference_dkd_terms(student, teacher, labels, temperature):
    """TCKD and NCKD in float64 from probabilities, the paper's way (binary split, renormalised rest)."""
    p = torch.softmax(teacher.double() / temperature, -1)
    q = torch.softmax(student.double() / temperature, -1)
    target = torch.nn.functional.one_hot(labels, p.shape[-1]).bool()
    p_t, q_t = (p * target).sum(-1), (q * target).sum(-1)
    p_r = torch.where(target, 0.0, p).sum(-1)  # mass on the other classes, summed, not 1 - p_t
    q_r = torch.where(target, 0.0, q).sum(-1)
    tckd = p_t * (p_t / q_t).log() + p_r * (p_r / q_r).log()
    p_hat, q_hat = p / p_r.unsqueeze(-1), q / q_r.unsqueeze(-1)
    nckd = torch.where(target, 0.0, p_hat * (p_hat / q_hat).log()).sum(-1)
    return tckd, nckd, p_t


@DETERMINISTIC
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 8), gap=st.one_of(st.just(0.0), st.floats(0, 40)),
       temperature=st.sampled_from([1.0, 4.0]))
def test_dkd_matches_reference_and_decomposes_classical_kd(seed, classes, gap, temperature):
    s, t = logits_pair(seed, (5, classes), gap)
    labels = torch.randint(0, classes, (5,), generator=torch.Generator().manual_seed(seed))
    tckd, nckd = decoupled_forward_kl_terms(s, t, labels, temperature)
    ref_tckd, ref_nckd, p_t = reference_dkd_terms(s, t, labels, temperature)
    assert_close(tckd, ref_tckd)
    assert_close(nckd, ref_nckd)
    # KD = TCKD + (1 - p_t^T) NCKD (Zhao et al. 2022)
    assert_close(tckd + (1 - p_t) * nckd, forward_kl(s, t, temperature))

    def fn(s_):
        return decoupled_forward_kl(s_, t, labels, 1.0, 8.0, temperature)

    def ref(s_):
        ref_tckd_, ref_nckd_, _ = reference_dkd_terms(s_, t, labels, temperature)
        return 1.0 * ref_tckd_ + 8.0 * ref_nckd_

    assert_close(fn(s), ref(s.double()))
    (got,), (want,) = grad_of(fn, s), grad_of(ref, s.double())
    assert torch.isfinite(got).all()
    assert_close(got, want, rel=1e-4)


def test_dkd_zero_on_identical_direction_labels_and_masks():
    s, t = logits_pair(5, (3, 4, 7))
    labels = torch.randint(0, 7, (3, 4), generator=torch.Generator().manual_seed(5))
    for term in decoupled_forward_kl_terms(s, s.clone(), labels, 2.0):
        assert_close(term, torch.zeros(3, 4), rel=1e-6)
    assert not torch.allclose(decoupled_forward_kl(s, t, labels), decoupled_forward_kl(t, s, labels), atol=1e-3)
    assert_close(decoupled_forward_kl(s, t, labels, alpha=0.3, beta=2.0),
                 0.3 * decoupled_forward_kl_terms(s, t, labels)[0] + 2.0 * decoupled_forward_kl_terms(s, t, labels)[1])
    labels[0] = IGNORE_INDEX
    student = s.clone().requires_grad_()
    values = decoupled_forward_kl(student, t, labels)
    assert (values[0] == 0).all() and (values[1:] > 0).all()
    total = masked_sum(values, torch.zeros(3, 4, dtype=torch.bool))
    (total + values[0].sum()).backward()
    assert total.item() == 0.0 and torch.isfinite(student.grad).all() and not student.grad[0].any()
    with pytest.raises(ValueError, match="2 classes"):
        decoupled_forward_kl(s[..., :1], t[..., :1], torch.zeros(3, 4, dtype=torch.long))


# ---- adaptive --------------------------------------------------------------------------------------------

def reference_adaptive(student, teacher, beta, gamma, temperature):
    p = torch.softmax(teacher.double() / temperature, -1)
    q = torch.softmax(student / temperature, -1)
    kl = (p * (p / q).log()).sum(-1)
    entropy = -(p * p.log()).sum(-1)
    return (1 - torch.exp(-kl - beta * entropy)) ** gamma * kl


@DETERMINISTIC
@given(seed=st.integers(0, 10_000), gap=st.one_of(st.just(0.0), st.floats(0, 30)), beta=st.sampled_from([0.0, 1.5]),
       gamma=st.sampled_from([0.0, 1.0, 2.0]), temperature=st.sampled_from([1.0, 2.0]))
def test_adaptive_kl_matches_reference_and_never_exceeds_kl(seed, gap, beta, gamma, temperature):
    s, t = logits_pair(seed, (4, 6), gap)
    fn = lambda s_: adaptive_forward_kl(s_, t, beta, gamma, temperature)  # noqa: E731
    ref = lambda s_: reference_adaptive(s_, t, beta, gamma, temperature)  # noqa: E731
    value = fn(s)
    assert_close(value, ref(s.double()))
    full = forward_kl(s, t, temperature)
    assert (value <= full * (1 + 1e-6) + 1e-7).all()
    if gamma == 0.0:
        assert_close(value, full)
    (got,), (want,) = grad_of(fn, s), grad_of(ref, s.double())
    assert torch.isfinite(got).all()
    assert_close(got, want, rel=1e-4)


def test_adaptive_weight_follows_the_gap_and_direction():
    teacher = torch.tensor([[2.0, 0.0, -1.0]]).expand(3, 3)
    student = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-3.0, 3.0, 2.0]])  # growing gap
    kl = forward_kl(student, teacher)
    weight = adaptive_forward_kl(student, teacher, beta=0.0)[1:] / kl[1:]
    assert weight[0] < weight[1] < 1.0  # the harder example weighs more
    same = student[:1].clone().requires_grad_()
    value = adaptive_forward_kl(same, teacher[:1], beta=0.0, gamma=0.5)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-7) and torch.isfinite(same.grad).all()
    s, t = logits_pair(6, (4, 6))
    assert not torch.allclose(adaptive_forward_kl(s, t), adaptive_forward_kl(t, s), atol=1e-3)
    assert masked_sum(adaptive_forward_kl(s, t), torch.zeros(4, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ValueError, match="beta"):
        adaptive_forward_kl(s, t, beta=-1.0)


# ---- mutual learning -------------------------------------------------------------------------------------

@FEW
@given(seed=st.integers(0, 10_000), peers=st.integers(2, 4), temperature=st.sampled_from([1.0, 3.0]))
def test_mutual_kl_averages_the_other_peers_with_stop_gradient(seed, peers, temperature):
    g = torch.Generator().manual_seed(seed)
    logits = [(torch.randn(3, 5, generator=g) * 2).requires_grad_() for _ in range(peers)]
    values = mutual_forward_kl(logits, temperature)
    assert values.shape == (peers, 3)
    for i in range(peers):
        p_i = torch.softmax(logits[i].double() / temperature, -1)
        expected = sum((torch.softmax(logits[j].double() / temperature, -1) *
                        (torch.log_softmax(logits[j].double() / temperature, -1) - p_i.log())).sum(-1)
                       for j in range(peers) if j != i) / (peers - 1)
        assert_close(values[i], expected)
        grads = torch.autograd.grad(values[i].sum(), logits, retain_graph=True, allow_unused=True)
        for j, grad in enumerate(grads):
            if j == i:
                assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
            else:  # the other peers are targets: no gradient reaches them through this entry
                assert grad is None or not grad.any()


def test_mutual_kl_zero_on_identical_peers_direction_and_masks():
    a, b = logits_pair(7, (2, 3, 6))
    assert_close(mutual_forward_kl([a, a.clone(), a.clone()]), torch.zeros(3, 2, 3), rel=1e-6)
    values = mutual_forward_kl([a, b])
    assert_close(values[0], forward_kl(a, b))  # KL(p_b || p_a): peer a learns from b
    assert_close(values[1], forward_kl(b, a))
    assert not torch.allclose(values[0], values[1], atol=1e-3)
    assert masked_sum(values, torch.zeros(2, 2, 3, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ValueError, match="2 peers"):
        mutual_forward_kl([a])


def test_peer_ensemble_is_a_gated_logit_average_used_as_a_constant_target():
    g = torch.Generator().manual_seed(8)
    peers = [torch.randn(4, 5, generator=g).requires_grad_() for _ in range(3)]
    assert_close(peer_ensemble_logits(peers), sum(p.detach() for p in peers) / 3)
    gate = torch.softmax(torch.randn(3, 4, generator=g), 0)  # per-example weights, ONE's gate
    expected = sum(gate[k][:, None] * peers[k].detach() for k in range(3))
    assert_close(peer_ensemble_logits(peers, gate), expected)
    assert_close(peer_ensemble_logits(peers, gate * 7), expected)  # weights are normalised
    assert_close(peer_ensemble_logits(peers, torch.tensor([1.0, 0.0, 0.0])), peers[0].detach())
    values = peer_ensemble_forward_kl(peers, gate, temperature=2.0)
    for k in range(3):
        assert_close(values[k], forward_kl(peers[k], expected, 2.0))
    grads = torch.autograd.grad(values[0].sum(), peers, allow_unused=True)
    assert grads[0].abs().sum() > 0 and all(g_ is None or not g_.any() for g_ in grads[1:])
    same = peer_ensemble_forward_kl([peers[0], peers[0]])
    assert_close(same, torch.zeros(2, 4), rel=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        peer_ensemble_logits(peers, torch.tensor([1.0, -1.0, 1.0]))
