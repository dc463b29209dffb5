"""Generation objectives against reference formulas; top-k, chunked, on-policy and accumulation checks."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from generation_fixtures import sentences, tiny_gpt2, tiny_llama, tiny_marian, tiny_mbart, translate, word_tokenizer
from textdistill.config import defaults
from textdistill.data.pairs import encode_pairs
from textdistill.losses import IGNORE_INDEX, LOSSES, topk_with_leftover
from textdistill.models.layers import keep_layers
from textdistill.models.inputs import logits_of, prompt_lengths
from textdistill.training import token_objectives as gen
from textdistill.training.loop import accumulate_gradients, make_accelerator
from textdistill.config import TrainConfig

TOK = word_tokenizer()
V = len(TOK)
PAIRS = [(f"translate : {s}", translate(s)) for s in sentences(8, seed=3)]


def configs(**settings) -> SimpleNamespace:
    """The generation tasks' loss, generation and data sections, each setting in the section it belongs to."""
    base = defaults("causal_lm")
    parts = {}
    for name in ("loss", "generation", "data"):
        section = getattr(base, name)
        fields = {f.name for f in dataclasses.fields(section)}
        parts[name] = dataclasses.replace(section, **{k: v for k, v in settings.items() if k in fields})
    return SimpleNamespace(**parts)


def setup(task="causal_lm", **settings):
    cfg = configs(max_new_tokens=6, **settings)
    if task == "causal_lm":
        teacher = tiny_llama(V, layers=4, seed=1)
        student = tiny_llama(V, layers=2, seed=2)
        data = encode_pairs(TOK, PAIRS, task, cfg.data)
    else:
        teacher = tiny_marian(V, layers=3, seed=1)
        student = tiny_marian(V, layers=2, seed=2)
        data = encode_pairs(TOK, PAIRS, task, cfg.data, teacher.config.decoder_start_token_id)
    return cfg, teacher, student, data


def reference_terms(cfg, student, teacher, batch):
    """The objective written out: explicit softmaxes, a loop over target positions."""
    s_logits = logits_of(student, batch).double()
    with torch.no_grad():
        t_logits = logits_of(teacher, batch).double()
    ce, kd = 0.0, 0.0
    T = cfg.loss.temperature
    for b, t in (batch["targets"] != IGNORE_INDEX).nonzero().tolist():
        y = batch["targets"][b, t]
        ce = ce - F.log_softmax(s_logits[b, t], -1)[y]
        p = F.softmax(t_logits[b, t] / T, -1)
        q = F.softmax(s_logits[b, t] / T, -1)
        if cfg.loss.soft == "forward_kl":
            d = (p * (p.log() - q.log())).sum()
        elif cfg.loss.soft == "reverse_kl":
            d = (q * (q.log() - p.log())).sum()
        elif cfg.loss.soft == "jsd":
            m = cfg.loss.jsd_beta * p + (1 - cfg.loss.jsd_beta) * q
            d = cfg.loss.jsd_beta * (p * (p / m).log()).sum() + (1 - cfg.loss.jsd_beta) * (q * (q / m).log()).sum()
        elif cfg.loss.soft == "skew_kl":
            d = (p * (p / (cfg.loss.skew_alpha * p + (1 - cfg.loss.skew_alpha) * q)).log()).sum()
        elif cfg.loss.soft == "skew_reverse_kl":
            d = (q * (q / (cfg.loss.skew_alpha * q + (1 - cfg.loss.skew_alpha) * p)).log()).sum()
        elif cfg.loss.soft == "total_variation":
            d = 0.5 * (p - q).abs().sum()
        elif cfg.loss.soft == "adaptive_kl":  # ADL: the forward KL weighted by the gap and the teacher's entropy
            kl, entropy = (p * (p.log() - q.log())).sum(), -(p * p.log()).sum()
            d = (1 - torch.exp(-(kl + cfg.loss.adaptive_beta * entropy))) ** cfg.loss.adaptive_gamma * kl
        elif cfg.loss.soft == "dkd":  # DKD at the reference token: binary target/rest KL + KL over the rest
            others = torch.arange(len(p)) != y
            bp, bq = torch.stack([p[y], 1 - p[y]]), torch.stack([q[y], 1 - q[y]])
            rp, rq = p[others] / p[others].sum(), q[others] / q[others].sum()
            d = (cfg.loss.dkd_alpha * (bp * (bp / bq).log()).sum()
                 + cfg.loss.dkd_beta * (rp * (rp / rq).log()).sum())
        else:  # logit MSE: raw logits, no temperature, no T^2
            d = (s_logits[b, t] - t_logits[b, t]).pow(2).mean() / T**2
        kd = kd + d
    return cfg.loss.alpha * ce, cfg.loss.beta * T**2 * kd


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("task", ["causal_lm", "seq2seq"])
def test_live_objective_matches_reference_formula(loss, task):
    cfg, teacher, student, data = setup(task, soft=loss, temperature=2.0, alpha=0.3, beta=0.7, jsd_beta=0.3,
                                        skew_alpha=0.2)
    batch = data.collate([0, 1, 2])
    terms = gen.live_teacher_objective(cfg.loss, teacher, V)(student, batch)
    ce, kd = reference_terms(cfg, student, teacher, batch)
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-4)
    assert terms["soft"].item() == pytest.approx(kd.item(), rel=1e-4, abs=1e-6)


def test_forward_and_reverse_differ_and_identical_models_give_zero():
    cfg, teacher, student, data = setup()
    batch = data.collate([0, 1])
    fwd = gen.live_teacher_objective(configs(soft="forward_kl").loss, teacher, V)(student, batch)["soft"]
    rev = gen.live_teacher_objective(configs(soft="reverse_kl").loss, teacher, V)(student, batch)["soft"]
    assert abs(fwd.item() - rev.item()) > 1e-6
    same = gen.live_teacher_objective(cfg.loss, teacher, V)(copy.deepcopy(teacher), batch)["soft"]
    assert same.item() == pytest.approx(0.0, abs=1e-5)


def test_loss_is_on_response_tokens_only():
    cfg, teacher, student, data = setup()
    for i, (prompt, response) in enumerate(PAIRS):
        p_ids = TOK(prompt)["input_ids"]
        assert data.labels[i][: len(p_ids)] == [IGNORE_INDEX] * len(p_ids)
        assert data.labels[i][len(p_ids):] == TOK(" " + response)["input_ids"] + [TOK.eos_token_id]
    batch = data.collate([0, 1])
    assert gen.count_target_tokens(batch) == sum(len(TOK(" " + PAIRS[i][1])["input_ids"]) + 1 for i in (0, 1))
    # what the student predicts at prompt (and padding) positions never matters: only response positions
    # are scored, by the cross-entropy and by the teacher term alike
    student.eval()
    loss = gen.live_teacher_objective(cfg.loss, teacher, V)(student, batch)
    ignored = batch["targets"] == IGNORE_INDEX  # [B, T]
    noisy = NoisyWhere(student, ignored)
    terms = gen.live_teacher_objective(cfg.loss, teacher, V)(noisy, batch)
    assert noisy.changed > 1.0  # the logits there really moved
    for name in ("ce", "soft"):
        assert terms[name].item() == pytest.approx(loss[name].item(), rel=1e-6), name


class NoisyWhere(torch.nn.Module):
    """`model` with large random noise added to its logits where `where` ([B, T]) is true."""

    def __init__(self, model: torch.nn.Module, where: torch.Tensor):
        super().__init__()
        self.model, self.where, self.changed = model, where, 0.0

    def forward(self, **inputs):
        out = self.model(**inputs)
        noise = 10 * torch.randn(out.logits.shape, generator=torch.Generator().manual_seed(0))  # [B, T, V]
        out.logits = out.logits + noise * self.where[..., None]
        self.changed = float((noise * self.where[..., None]).abs().max())
        return out


def test_chat_template_is_honoured():
    tok = word_tokenizer(extra=["<|user|>", "<|assistant|>", "<|end|>"])
    tok.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' <|end|> ' }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}")
    data = encode_pairs(tok, PAIRS[:1], "causal_lm", configs().data)
    words = tok.convert_ids_to_tokens(data.input_ids[0])
    assert words[0] == "<|user|>" and "<|assistant|>" in words
    start = data.prompt_lengths[0]
    assert words[start - 1] == "<|assistant|>"  # the prompt ends with the assistant header (not scored)
    scored = tok.convert_ids_to_tokens([t for t in data.labels[0] if t != IGNORE_INDEX])
    assert scored[: len(PAIRS[0][1].split())] == PAIRS[0][1].split() and "<|end|>" in scored
    plain = encode_pairs(tok, PAIRS[:1], "causal_lm", configs(chat_template=False).data)
    assert "<|assistant|>" not in tok.convert_ids_to_tokens(plain.input_ids[0])


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_chunked_equals_full_in_value_and_gradient(loss):
    cfg, teacher, student, data = setup(soft=loss)
    batch = data.collate([0, 1, 2])
    grads = []
    values = []
    for chunk in (0, 3):
        model = copy.deepcopy(student)
        terms = gen.live_teacher_objective(configs(soft=loss).loss, teacher, V, chunk)(model, batch)
        sum(terms.values()).backward()
        values.append(terms["soft"].item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_topk_teacher_is_exact_at_full_k_and_a_lower_bound_below():
    cfg, teacher, student, data = setup()
    batch = data.collate([0, 1, 2])
    full = gen.live_teacher_objective(cfg.loss, teacher, V)(student, batch)["soft"].item()
    for k in (V, 8, 1):
        with torch.no_grad():
            top, ids, left = topk_with_leftover(logits_of(teacher, batch), k, cfg.loss.temperature)
        topk_batch = {**batch, "teacher_top_logprobs": top, "teacher_top_ids": ids, "teacher_leftover": left}
        value = gen.cached_topk_objective(cfg.loss, V)(student, topk_batch)["soft"].item()
        if k == V:
            assert value == pytest.approx(full, rel=1e-4)
        else:
            assert value <= full + 1e-5


@pytest.mark.parametrize("task,build", [("causal_lm", tiny_llama), ("causal_lm", tiny_gpt2), ("seq2seq", tiny_marian)])
def test_topk_objective_from_hidden_states_equals_the_logits_path(task, build):
    cfg, teacher, _, data = setup(task, temperature=2.0, alpha=0.3, beta=0.7)
    student = build(V, layers=2, seed=2)
    batch = data.collate([0, 1, 2])
    with torch.no_grad():
        top, ids, left = topk_with_leftover(logits_of(teacher, batch), 5, cfg.loss.temperature)
    batch = {**batch, "teacher_top_logprobs": top, "teacher_top_ids": ids, "teacher_leftover": left}
    assert gen.head_factorises(student, batch)
    student.eval()  # the same dropout-free forward on both paths
    terms, grads = [], []
    for vocab_chunk in (3, 10_000):
        model = copy.deepcopy(student)
        got = gen.cached_topk_objective(cfg.loss, V, vocab_chunk)(model, batch)
        sum(got.values()).backward()
        terms.append(got)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    model = copy.deepcopy(student)
    logits = logits_of(model, batch)
    mask = batch["targets"] != IGNORE_INDEX
    from textdistill.losses import forward_kl_topk
    kd = forward_kl_topk(logits[mask], top[mask], ids[mask], left[mask], cfg.loss.temperature)
    reference = gen.token_terms(cfg.loss, 0.0, logits, batch["targets"], lambda t: kd)
    sum(reference.values()).backward()
    ref_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    for got, grad in zip(terms, grads):
        for name in ("ce", "soft"):
            assert got[name].item() == pytest.approx(reference[name].item(), rel=1e-4)
        assert torch.allclose(grad, ref_grad, atol=1e-5)


@pytest.mark.parametrize("build", [tiny_mbart, tiny_llama])
def test_head_check_is_structural_under_bf16_autocast(build):
    # training under autocast must not make the check compare a bfloat16 product with float32 logits
    # (mBART adds a float32 zero bias to its logits): the answer is the model's, not the precision's
    cfg, teacher, _, data = setup("seq2seq" if build is tiny_mbart else "causal_lm")
    student = build(V, layers=2, seed=2)
    batch = data.collate([0, 1])
    with torch.no_grad():
        top, ids, left = topk_with_leftover(logits_of(teacher, batch), 5, cfg.loss.temperature)
    batch = {**batch, "teacher_top_logprobs": top, "teacher_top_ids": ids, "teacher_leftover": left}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gen.head_factorises(student, batch)
        terms = gen.cached_topk_objective(cfg.loss, V)(student, batch)
    assert all(torch.isfinite(t) for t in terms.values())


def test_topk_objective_falls_back_to_logits_when_the_head_does_not_factorise():
    cfg, teacher, student, data = setup(temperature=1.0)
    batch = data.collate([0, 1])
    with torch.no_grad():
        top, ids, left = topk_with_leftover(logits_of(teacher, batch), V, cfg.loss.temperature)
        student.get_output_embeddings().bias = torch.nn.Parameter(torch.randn(V))  # logits = h W^T + b
    batch = {**batch, "teacher_top_logprobs": top, "teacher_top_ids": ids, "teacher_leftover": left}
    assert not gen.head_factorises(student, batch)
    student.eval()
    kd = gen.cached_topk_objective(cfg.loss, V)(student, batch)["soft"].item()
    live = gen.live_teacher_objective(cfg.loss, teacher, V)(student, batch)["soft"].item()
    assert kd == pytest.approx(live, rel=1e-4)  # k = V: exact, and the bias is in both


def test_on_policy_fraction_is_honoured():
    for fraction in (0.0, 0.25, 0.5, 1 / 3, 1.0):
        chosen = [gen.on_policy_step(s, fraction) for s in range(120)]
        assert sum(chosen) == int(120 * fraction + 1e-9)
    cfg, teacher, student, data = setup(on_policy_fraction=0.5, beta=1.0)
    calls = []
    off = gen.live_teacher_objective(cfg.loss, teacher, V)
    objective = gen.on_policy_objective(cfg.loss, cfg.generation, teacher, V, lambda *a: calls.append("off") or off(*a), 10,
                                        "causal_lm", data.pad_id, TOK.eos_token_id)
    batch = data.collate([0, 1])
    kinds = [sorted(objective(student, batch, step / 10)) for step in range(10)]
    assert calls == ["off"] * 5
    assert kinds.count(["soft_on_policy"]) == 5


@pytest.mark.parametrize("task", ["causal_lm", "seq2seq"])
def test_student_samples_are_well_formed(task):
    cfg, teacher, student, data = setup(task)
    batch = data.collate([0, 1, 2])
    sampled = gen.student_samples(student, batch, cfg.generation, task, data.pad_id, TOK.eos_token_id)
    targets = sampled["targets"]
    assert 0 < gen.count_target_tokens(sampled) <= 3 * cfg.generation.max_new_tokens
    logits = logits_of(student, sampled)
    assert logits.shape[:2] == targets.shape and torch.isfinite(logits).all()
    if task == "causal_lm":  # prompts are left-padded to width P; the first target is the token at P
        width = int(prompt_lengths(batch, cfg.generation.on_policy_prompt_tokens).max())
        assert (targets[:, : width - 1] == IGNORE_INDEX).all()
        assert (targets[:, width - 1] != IGNORE_INDEX).all()


def test_one_step_moves_the_student_not_the_teacher():
    cfg, teacher, student, data = setup()
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    teacher.requires_grad_(False)
    student.train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    sum(gen.live_teacher_objective(cfg.loss, teacher, V)(student, data.collate([0, 1])).values()).backward()
    optimizer.step()
    assert all(torch.equal(before_t[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert any(not torch.equal(before_s[k], v) for k, v in student.state_dict().items())


def test_gradient_accumulation_equals_one_batch():
    cfg, teacher, student, data = setup()
    objective = gen.live_teacher_objective(cfg.loss, teacher, V)
    accelerator = make_accelerator(TrainConfig(mixed_precision="no"))
    grads = []
    for groups in ([[0, 1, 2, 3]], [[0, 1], [2, 3]], [[0], [1, 2, 3]]):
        model = copy.deepcopy(student)
        accumulate_gradients(model, [data.collate(g) for g in groups], objective, accelerator,
                             count=gen.count_target_tokens)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(grads[0], grads[2], atol=1e-6)


def test_all_masked_batch_gives_zero_not_nan():
    cfg, teacher, student, data = setup()
    batch = data.collate([0, 1])
    batch["targets"] = torch.full_like(batch["targets"], IGNORE_INDEX)
    terms = gen.live_teacher_objective(cfg.loss, teacher, V)(student, batch)
    assert all(v.item() == 0.0 for v in terms.values())


def test_gpt2_student_from_layers_trains():
    teacher = tiny_gpt2(V, layers=4)
    student = keep_layers(teacher, {"decoder": [1, 3]})
    cfg = configs(soft="reverse_kl")
    data = encode_pairs(TOK, PAIRS, "causal_lm", cfg.data)
    terms = gen.live_teacher_objective(cfg.loss, teacher, V)(student, data.collate([0, 1]))
    assert torch.isfinite(sum(terms.values()))


def test_on_policy_term_is_the_sampled_tokens_mean_times_the_reference_token_count():
    # a sampled batch has its own token count, but the loop divides by the reference batch's: the term is
    # beta * T^2 * (mean divergence over the sampled tokens) * (reference tokens)
    cfg, teacher, student, data = setup(on_policy_fraction=1.0, beta=0.7, temperature=2.0)
    student.eval()
    batch = data.collate([0, 1, 2])
    objective = gen.on_policy_objective(cfg.loss, cfg.generation, teacher, V, None, 4, "causal_lm", data.pad_id, TOK.eos_token_id)
    torch.manual_seed(5)
    got = objective(student, batch, 0.0)["soft_on_policy"]
    torch.manual_seed(5)
    sampled = gen.student_samples(student, batch, cfg.generation, "causal_lm", data.pad_id, TOK.eos_token_id)
    mask = sampled["targets"] != IGNORE_INDEX  # [B, T]
    reference_tokens = int((batch["targets"] != IGNORE_INDEX).sum())
    assert 0 < int(mask.sum()) != reference_tokens  # the rescaling matters in this batch
    with torch.no_grad():
        p = F.softmax(logits_of(teacher, sampled)[mask].double() / 2.0, -1)
        q = F.softmax(logits_of(student, sampled)[mask].double() / 2.0, -1)
    kl = (p * (p.log() - q.log())).sum(-1)  # [N] forward KL per sampled token
    assert got.item() == pytest.approx(0.7 * 2.0**2 * kl.mean().item() * reference_tokens, rel=1e-4)
