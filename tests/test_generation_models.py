"""Students made of teacher layers, padding-row vocabularies, real mismatches, data files, teacher caches."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from generation_fixtures import (WORDS, sentences, tiny_gpt2, tiny_llama, tiny_marian, tiny_mbart, tiny_t5,
                                 translate, word_tokenizer, write_corpora)
from textdistill.config import defaults, replaced
from textdistill.data.pairs import encode_pairs, load_generation_data, read_pairs
from textdistill.errors import TextDistillError
from textdistill.models.layers import keep_layers, shrunk
from textdistill.models.loading import shared_vocabulary
from textdistill.pipeline.signal import SignalServer
from textdistill.tasks import generation as pipeline
from textdistill.models.inputs import logits_of
from textdistill.training import token_objectives as gen

TOK = word_tokenizer()
V = len(TOK)
PAIRS = [(f"translate : {s}", translate(s)) for s in sentences(6, seed=5)]
DATA = defaults("causal_lm").data  # the generation tasks' data defaults
LOSS = defaults("causal_lm").loss


@pytest.mark.parametrize("build,task,n", [(tiny_llama, "causal_lm", 6), (tiny_gpt2, "causal_lm", 4),
                                         (tiny_marian, "seq2seq", 3), (tiny_mbart, "seq2seq", 3),
                                         (tiny_t5, "seq2seq", 3)])
def test_keeping_all_layers_reproduces_the_teacher(build, task, n):
    teacher = build(V)
    data = encode_pairs(TOK, PAIRS, task, DATA, getattr(teacher.config, "decoder_start_token_id", None))
    batch = data.collate([0, 1, 2])
    copy_ = keep_layers(teacher, {"decoder": list(range(n))})
    assert torch.allclose(logits_of(copy_, batch), logits_of(teacher, batch), atol=1e-5)
    small = keep_layers(teacher, {"decoder": [n - 1]})
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in teacher.parameters())
    assert torch.isfinite(logits_of(small, batch)).all()


def test_kept_layers_carry_the_teacher_weights():
    teacher = tiny_llama(V, layers=6)
    student = keep_layers(teacher, {"decoder": [2, 5]})
    assert student.config.num_hidden_layers == 2
    assert torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[2].mlp.up_proj.weight)
    assert torch.equal(student.model.layers[1].self_attn.q_proj.weight, teacher.model.layers[5].self_attn.q_proj.weight)


def test_seq2seq_student_keeps_the_encoder_and_thins_the_decoder():
    teacher = tiny_marian(V, layers=3)
    student = keep_layers(teacher, {"decoder": [1]})
    assert student.config.encoder_layers == 3 and student.config.decoder_layers == 1
    for a, b in zip(student.model.encoder.parameters(), teacher.model.encoder.parameters()):
        assert torch.equal(a, b)
    part = keep_layers(teacher, {"decoder": [2], "encoder": [0, 2]})
    assert part.config.encoder_layers == 2


def test_t5_student_without_block_zero_keeps_the_position_bias():
    teacher = tiny_t5(V, layers=3)
    student = keep_layers(teacher, {"decoder": [2]})
    bias = student.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert torch.equal(bias, teacher.decoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight)


def test_layer_out_of_range_is_a_clear_error():
    with pytest.raises(TextDistillError, match="teacher's decoder has layers 0..5"):
        keep_layers(tiny_llama(V), {"decoder": [7]})


def test_shrink_makes_a_smaller_random_model():
    teacher = tiny_llama(V, layers=6)
    student = shrunk(teacher, 2, 16, 2, 32, seed=0)
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 16


def test_padding_rows_are_handled_by_shared_ids():
    teacher = tiny_llama(V, layers=4, seed=1)
    student = keep_layers(teacher, {"decoder": [1, 3]})
    padded = copy.deepcopy(student)
    padded.resize_token_embeddings(V + 12)  # rows beyond the tokenizer, as in vocabularies padded to 64
    assert shared_vocabulary(TOK, TOK, teacher, padded) == V
    data = encode_pairs(TOK, PAIRS, "causal_lm", DATA)
    batch = data.collate([0, 1])
    plain = gen.live_teacher_objective(LOSS, teacher, V)(student, batch)["soft"]
    wide = gen.live_teacher_objective(LOSS, teacher, V)(padded, batch)["soft"]
    # logits are sliced to the shared ids before the softmax: the padding rows drop out on either side
    assert logits_of(padded, batch).shape[-1] == V + 12
    assert wide.item() == pytest.approx(plain.item(), rel=1e-5)
    wide_teacher = copy.deepcopy(teacher)
    wide_teacher.resize_token_embeddings(V + 12)
    assert shared_vocabulary(TOK, TOK, wide_teacher, student) == V
    assert gen.live_teacher_objective(LOSS, wide_teacher, V)(student, batch)["soft"].item() == pytest.approx(
        plain.item(), rel=1e-5)


def test_real_vocabulary_mismatch_is_a_start_up_error(tmp_path):
    teacher = tiny_llama(V)
    other = word_tokenizer(extra=[])
    swapped = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "<s>"] + list(reversed(WORDS)))}
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(swapped, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    other = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    with pytest.raises(TextDistillError, match="tokenizers differ"):
        shared_vocabulary(TOK, other, teacher, tiny_llama(V))
    small = tiny_llama(V - 5)
    with pytest.raises(TextDistillError, match="cannot read every token id|output layer"):
        shared_vocabulary(TOK, TOK, teacher, small)


def test_data_files_in_every_format(tmp_path):
    files = write_corpora(tmp_path, 20)
    assert read_pairs(files["text"], "x")[1] == "text"
    assert read_pairs(files["prompt_response"], "x")[1] == "prompt_response"
    pairs, kind = read_pairs(files["parallel"], "x")
    assert kind == "parallel" and pairs[0][1] == translate(pairs[0][0])
    jsonl = tmp_path / "par.jsonl"
    jsonl.write_text(json.dumps({"source": "a", "target": "b"}) + "\n")
    assert read_pairs(jsonl, "x") == ([("a", "b")], "parallel")
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\ttwo\tthree\n")
    with pytest.raises(TextDistillError, match="two: source<TAB>target"):
        read_pairs(bad, "data.train")
    data = load_generation_data(replace(DATA, train=str(files["parallel"]), validation_fraction=0.1,
                                        test_fraction=0.1, source_prefix="translate : "))
    assert len(data.train) == 16 and len(data.validation) == 2 and len(data.test) == 2
    assert data.train[0][0].startswith("translate : ")


def test_builtin_data_uses_the_bible_module(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("textdistill.data.bible")
    fake.english_verses = lambda: sentences(30)
    fake.parallel_verses = lambda: [(s, translate(s)) for s in sentences(30)]
    monkeypatch.setitem(sys.modules, "textdistill.data.bible", fake)
    import textdistill.data

    monkeypatch.setattr(textdistill.data, "bible", fake, raising=False)
    lm = load_generation_data(replace(DATA, dataset="bible_en"))
    assert lm.kind == "text" and lm.train[0][0] == ""
    mt = load_generation_data(replace(DATA, dataset="bible_en_es"))
    assert mt.kind == "parallel" and translate(mt.train[0][0]) == mt.train[0][1]


@pytest.mark.parametrize("task", ["causal_lm", "seq2seq"])
def test_sequence_kd_targets_are_cached_and_invalidated(tmp_path, monkeypatch, task):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    teacher = tiny_llama(V, seed=1) if task == "causal_lm" else tiny_marian(V, seed=1)
    dataset = {"causal_lm": "bible_en", "seq2seq": "bible_en_es"}[task]
    cfg = replaced(defaults(task), {"data.dataset": dataset, "teacher.path": "a-teacher-folder",
                                    "generation.max_new_tokens": 5, "generation.sequence_kd": "greedy"})
    data = encode_pairs(TOK, PAIRS, task, cfg.data, getattr(teacher.config, "decoder_start_token_id", None))
    calls = []
    real = pipeline.student_samples
    monkeypatch.setattr(pipeline, "student_samples", lambda *a, **k: calls.append(1) or real(*a, **k))
    serve = SignalServer()
    first = pipeline.sequence_kd_data(serve, teacher, data, cfg, "digest-a")
    n = len(calls)
    assert n > 0
    again = pipeline.sequence_kd_data(serve, teacher, data, cfg, "digest-a")
    assert len(calls) == n and again.labels == first.labels  # reused, not generated again
    cfg = replaced(cfg, {"train.seed": cfg.train.seed + 1})  # greedy targets do not depend on the training seed
    pipeline.sequence_kd_data(serve, teacher, data, cfg, "digest-a")
    assert len(calls) == n
    if task == "causal_lm":  # the prompt is kept, the teacher's continuation is the target
        assert first.input_ids[0][: data.prompt_lengths[0]] == data.input_ids[0][: data.prompt_lengths[0]]
        assert all(t == -100 for t in first.labels[0][: data.prompt_lengths[0]])
    pipeline.sequence_kd_data(serve, teacher, data, cfg, "digest-b")  # another teacher
    assert len(calls) == 2 * n
    cfg = replaced(cfg, {"generation.sequence_kd": "beam", "generation.num_beams": 2})
    pipeline.sequence_kd_data(serve, teacher, data, cfg, "digest-a")  # other decoding settings
    assert len(calls) == 3 * n
    assert len(list((tmp_path / "cache" / "sequence_kd").iterdir())) == 3


def test_topk_cache_is_reused_and_matches_live_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    teacher = tiny_llama(V, seed=1)
    student = keep_layers(teacher, {"decoder": [5]})
    data = encode_pairs(TOK, PAIRS, "causal_lm", DATA)
    data.teacher_topk = SignalServer()(pipeline.topk_signal(teacher, data, V, 1.0, V, "d", 4))
    batch = data.collate([0, 1, 2])
    cached = gen.cached_topk_objective(LOSS, V)(student, batch)["soft"]
    live = gen.live_teacher_objective(LOSS, teacher, V)(student, batch)["soft"]
    assert cached.item() == pytest.approx(live.item(), rel=1e-4)
    again = SignalServer()(pipeline.topk_signal(teacher, data, V, 1.0, V, "d", 4))
    assert len(list((tmp_path / "cache" / "topk").iterdir())) == 1 and again["leftover"].shape[0] == len(data)


def test_source_shuffled_loss_pairs_each_target_with_another_source():
    from textdistill.evaluation.generative import heldout_nll
    from textdistill.pipeline.seq2seq_teacher import source_shuffled_loss

    model = tiny_mbart(V, seed=3)
    start = model.config.decoder_start_token_id
    same_source = encode_pairs(TOK, [("translate : a b c", t) for _, t in PAIRS], "seq2seq", DATA, start)
    nll, n = heldout_nll(model, same_source, 4)
    assert source_shuffled_loss(model, same_source, 4) == pytest.approx(nll / n, rel=1e-6)
    distinct = encode_pairs(TOK, PAIRS, "seq2seq", DATA, start)
    nll, n = heldout_nll(model, distinct, 4)
    assert abs(source_shuffled_loss(model, distinct, 4) - nll / n) > 1e-6
