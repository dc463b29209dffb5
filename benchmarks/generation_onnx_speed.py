"""Greedy decoding speed of an exported generation student: PyTorch `generate` (with its key/value cache)
against the ONNX Runtime loop (`OnnxGreedy`, float32 and int8 graphs, no cache), batch 1, on test inputs
of a config's data; one warm-up pass, then one timed pass per engine, all in one process.

    textdistill export runs/bench_translation_preln/variant0 --output exported/mt
    python benchmarks/generation_onnx_speed.py exported/mt --config textdistill/configs/translation_seq2seq.yaml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from textdistill.config import load_config
from textdistill.data.pairs import load_generation_data
from textdistill.models.loading import load_generation_model
from textdistill.models.loading import load_tokenizer
from textdistill.models.onnx import OnnxGreedy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a folder written by `textdistill export`")
    parser.add_argument("--config", required=True, help="the run's config (its test split gives the inputs)")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.export)
    task = "seq2seq" if json.loads((folder / "config.json").read_text())["is_encoder_decoder"] else "causal_lm"
    model, tokenizer = load_generation_model(folder, task, "export"), load_tokenizer(folder, "export")
    cfg = load_config(args.config, {})
    test = load_generation_data(cfg.generation).test[: args.examples]
    prompts = [tokenizer(p)["input_ids"][: cfg.data.max_length] for p, _ in test]
    eos, start = model.generation_config.eos_token_id, getattr(model.config, "decoder_start_token_id", None)

    @torch.no_grad()
    def pytorch(ids):
        out = model.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False, num_beams=1)[0]
        return out[len(ids):] if task == "causal_lm" else out[1:]

    engines = {"pytorch (cache)": pytorch}
    for kind in ("float32", "int8"):
        loop = OnnxGreedy(folder, task, eos, start, int8=kind == "int8")
        engines[f"onnx {kind} (no cache)"] = lambda ids, loop=loop: loop.generate(ids, args.max_new_tokens)
    rows = {}
    for name, generate in engines.items():
        for timed in (False, True):
            started, tokens = time.perf_counter(), 0
            for ids in prompts:
                tokens += len(generate(ids))
            if timed:
                rows[name] = {"tokens": tokens, "tokens_per_s": tokens / (time.perf_counter() - started)}
    base = rows["pytorch (cache)"]["tokens_per_s"]
    print("| engine | tokens | tokens/s | vs PyTorch |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tokens']} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
