"""ONNX export of generation students: the graphs reproduce PyTorch's logits and greedy outputs."""

from __future__ import annotations

import pytest
import torch

from generation_fixtures import sentences, tiny_gpt2, tiny_mbart, word_tokenizer
from textdistill.pipeline import commands
from textdistill.models.onnx import OnnxGreedy


@pytest.mark.parametrize("build,task", [(tiny_gpt2, "causal_lm"), (tiny_mbart, "seq2seq")])
def test_exported_onnx_matches_pytorch(tmp_path, build, task):
    tok = word_tokenizer(tmp_path / "student")
    model = build(len(tok))
    model.save_pretrained(str(tmp_path / "student"))
    out = commands.export(tmp_path / "student", tmp_path / "exported")
    names = ["model"] if task == "causal_lm" else ["encoder", "decoder"]
    assert out["onnx_files"] == sorted(f"{n}{s}" for n in names for s in (".onnx", ".int8.onnx"))
    assert out["onnx_max_logit_difference"] < 1e-4
    assert not list((tmp_path / "exported").glob("*.data"))  # self-contained files
    assert out["onnx_greedy_same_as_pytorch"] == 1.0
    # a text the export check did not see, with another length: the graphs have dynamic shapes
    text = sentences(1, seed=9)[0]
    prompt = tok(text)["input_ids"]
    start = getattr(model.config, "decoder_start_token_id", None)
    onnx = OnnxGreedy(tmp_path / "exported", task, eos_token_id=1, decoder_start_token_id=start).generate(prompt, 10)
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=11, do_sample=False, num_beams=1, pad_token_id=0)[0].tolist()
    assert onnx == (ref[len(prompt):] if task == "causal_lm" else ref[1:])[:10]
    # the exported tokenizer knows the model's positions, so truncation=True cuts a long input where it fits
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(str(tmp_path / "exported"))
    positions = model.config.n_positions if task == "causal_lm" else model.config.max_position_embeddings
    assert tok.model_max_length > positions and exported.model_max_length == positions
    long_ids = exported(" ".join(sentences(60, seed=4)), truncation=True, return_tensors="pt")["input_ids"]
    assert long_ids.shape[1] == positions
