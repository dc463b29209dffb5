"""Tiny random generation models, a word-level tokenizer and synthetic corpora, built in-process."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,
                          T5Config, T5ForConditionalGeneration)

from textdistill.pipeline.seq2seq_teacher import new_seq2seq_model

SPECIAL = ["<pad>", "</s>", "<unk>", "<s>"]
EN = ["the", "a", "man", "woman", "dog", "cat", "sees", "likes", "finds", "big", "small", "red", "house", "tree"]
ES = ["el", "una", "hombre", "mujer", "perro", "gato", "ve", "quiere", "encuentra", "grande", "pequeno", "rojo",
      "casa", "arbol"]
WORDS = EN + ES + ["translate", ":", "?", "answer"]


def word_tokenizer(folder: Path | None = None, extra: list[str] = ()) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS + list(extra))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")
    if folder is not None:
        fast.save_pretrained(str(folder))
    return fast


def tiny_llama(vocab: int, layers: int = 6, seed: int = 0, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128, pad_token_id=0,
                         eos_token_id=1, bos_token_id=3, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(vocab: int, layers: int = 4, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=layers, n_head=2, n_positions=128, pad_token_id=0,
                        eos_token_id=1, bos_token_id=3)
    return GPT2LMHeadModel(config).eval()


def tiny_marian(vocab: int, layers: int = 3, seed: int = 0):
    return new_seq2seq_model(vocab, layers, 32, 2, 64, 130, seed=seed, kind="marian").eval()


def tiny_mbart(vocab: int, layers: int = 3, seed: int = 0):
    """The pre-LN encoder-decoder that `teacher.path: train` builds."""
    return new_seq2seq_model(vocab, layers, 32, 2, 64, 130, seed=seed).eval()


def tiny_t5(vocab: int, layers: int = 3, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=layers, num_decoder_layers=layers,
                      num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(config).eval()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(" ".join([rng.choice(["the", "a"]), rng.choice(EN[9:12]), rng.choice(EN[2:6]),
                             rng.choice(EN[6:9]), rng.choice(["the", "a"]), rng.choice(EN[12:14])]))
    return out


def translate(sentence: str) -> str:
    return " ".join(ES[EN.index(w)] for w in sentence.split())


def write_corpora(folder: Path, n: int = 80) -> dict[str, Path]:
    """Plain text, prompt/response JSONL and parallel TSV files of the synthetic language."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = sentences(n)
    paths = {"text": folder / "corpus.txt", "prompt_response": folder / "chat.jsonl", "parallel": folder / "pairs.tsv"}
    paths["text"].write_text("\n".join(texts) + "\n", encoding="utf-8")
    paths["prompt_response"].write_text("".join(json.dumps({"prompt": f"translate : {t}", "response": translate(t)})
                                                + "\n" for t in texts), encoding="utf-8")
    paths["parallel"].write_text("".join(f"{t}\t{translate(t)}\n" for t in texts), encoding="utf-8")
    return paths
