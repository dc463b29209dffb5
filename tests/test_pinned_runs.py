"""Short runs of every task on the tiny models, pinned to their numbers.

A change to how a run is put together (data order, step budget, objective weights, teacher signal,
evaluation) moves these numbers; a change that only moves code does not. float32, one thread, so the
values do not depend on the machine's bfloat16 support or on how reductions are split between threads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generation_fixtures import write_corpora
from textdistill.config import load_config
from textdistill.pipeline import commands

REL = 1e-4  # float32 on one thread repeats to ~1e-6; a real change moves these by far more


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _losses(run_dir: Path) -> dict[str, list[float]]:
    """Every training-loss line of metrics.jsonl, per run."""
    out: dict[str, list[float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "loss" in entry:
            out.setdefault(entry["run"], []).append(entry["loss"])
    return out


def _check(got: dict, pinned: dict, where: str = "") -> None:
    for key, want in pinned.items():
        value = got[key]
        if isinstance(want, dict):
            _check(value, want, f"{where}{key}.")
        elif isinstance(want, list):
            assert value == pytest.approx(want, rel=REL), f"{where}{key}"
        else:
            assert value == pytest.approx(want, rel=REL), f"{where}{key}: {value!r} != {want!r}"


def test_classification_recipe_run_is_pinned(tiny_overrides):
    # the default recipe's machinery on the tiny teacher: task vocabulary, narrower width, hidden-state
    # matching through a projection, temperature schedule, confidence weighting, one token variant per text
    cfg = load_config(None, {**tiny_overrides, "train.threads": 1, "train.mixed_precision": "no",
                             "student.vocab": "task", "student.hidden_size": 16, "loss.hidden_loss": "mse",
                             "loss.schedule": "linear", "loss.temperature": 4.0, "loss.temperature_end": 1.0,
                             "loss.soft_weighting": "confidence", "train.freeze_embeddings": False,
                             "data.augment_copies": 1})
    summary = commands.distill(cfg)
    res = summary["results"]
    got = {name: {k: res[name][k] for k in ("accuracy", "macro_f1")} for name in res}
    got["runs"] = {name: {"steps": r["steps"], "best_score": r["best_score"]} for name, r in summary["runs"].items()}
    got["losses"] = _losses(Path(cfg.output_dir))
    got["test_logits"] = {name: _test_logits(Path(cfg.output_dir) / name, tiny_overrides["data.test"])
                          for name in ("student", "baseline")}
    _check(got, PINNED["classification"])


def _test_logits(folder: Path, test_file: str) -> list[float]:
    """Sum and absolute sum of a saved classifier's logits on the test texts, read with plain transformers:
    pins the trained weights themselves, not only the accuracy they round to."""
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = pd.read_csv(test_file)["text"].tolist()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")).logits
    return [float(logits.sum()), float(logits.abs().sum())]


GENERATION = {"train.batch_size": 8, "train.max_steps": 6, "train.progress": False, "train.learning_rate": 3e-3,
              "train.freeze_embeddings": False, "train.threads": 1, "train.mixed_precision": "no",
              "teacher.batch_size": 16, "generation.max_new_tokens": 8, "report.latency_examples": 2,
              "data.max_eval_examples": 8, "data.max_length": 40,
              "data.validation_fraction": 0.1, "data.test_fraction": 0.1}
TEXT_METRICS = ("perplexity", "nll_per_token", "test_tokens", "token_agreement", "rouge_l", "bleu", "chrf",
                "distinct_outputs")


def _generation_numbers(summary: dict, run_dir: Path) -> dict:
    res = summary["results"]
    got = {name: {k: r[k] for k in TEXT_METRICS if k in r} for name, r in res.items()}
    got["runs"] = {name: {"steps": r["steps"], "best_score": r["best_score"]} for name, r in summary["runs"].items()}
    got["losses"] = _losses(run_dir)
    got["train_used"] = summary["sizes"]["train_used"]
    return got


def test_causal_lm_run_is_pinned(tmp_path, llama_teacher):
    files = write_corpora(tmp_path / "data", 60)
    cfg = load_config(None, {**GENERATION, "task": "causal_lm", "output_dir": str(tmp_path / "run"),
                             "teacher.path": str(llama_teacher), "data.train": str(files["prompt_response"]),
                             "loss.soft": "jsd", "loss.jsd_beta": 0.3, "loss.temperature": 2.0,
                             "loss.alpha": 0.3, "loss.beta": 0.7,
                             "generation.on_policy_fraction": 0.5})
    summary = commands.distill(cfg)
    _check(_generation_numbers(summary, tmp_path / "run"), PINNED["causal_lm"])


def test_causal_lm_topk_run_is_pinned(tmp_path, llama_teacher):
    files = write_corpora(tmp_path / "data", 60)
    cfg = load_config(None, {**GENERATION, "task": "causal_lm", "output_dir": str(tmp_path / "run"),
                             "teacher.path": str(llama_teacher), "data.train": str(files["text"]),
                             "generation.topk": 5, "student.layers": [1, 5]})
    summary = commands.distill(cfg)
    _check(_generation_numbers(summary, tmp_path / "run"), PINNED["causal_lm_topk"])


def test_seq2seq_run_is_pinned(tmp_path):
    files = write_corpora(tmp_path / "data", 60)
    cfg = load_config(None, {**GENERATION, "task": "seq2seq", "output_dir": str(tmp_path / "run"),
                             "teacher.path": "train", "data.train": str(files["parallel"]),
                             "teacher.architecture.num_layers": 3, "teacher.architecture.hidden_size": 32,
                             "teacher.architecture.num_heads": 2, "teacher.architecture.intermediate_size": 64,
                             "teacher.architecture.vocab_size": 100, "generation.sequence_kd": "greedy",
                             "generation.with_references": True, "student.layers": [2],
                             "teacher.finetune.max_steps": 8, "teacher.finetune.batch_size": 8,
                             "teacher.finetune.progress": False, "teacher.finetune.learning_rate": 3e-3,
                             "teacher.finetune.threads": 1,
                             # pinned with the one-epoch teacher recipe of that time (tests/test_teacher.py
                             # checks today's: until validation stops improving)
                             "teacher.finetune.epochs": 1, "teacher.finetune.early_stopping_patience": None})
    summary = commands.distill(cfg)
    got = _generation_numbers(summary, tmp_path / "run")
    got["teacher"]["validation_loss"] = summary["teacher"]["validation_loss"]
    _check(got, PINNED["seq2seq"])


# Measured on the code before the refactor of issue 16 (commit 304769d).
PINNED: dict = {'classification': {'teacher': {'accuracy': 0.425, 'macro_f1': 0.2982456140350877},
                    'student': {'accuracy': 0.425, 'macro_f1': 0.2982456140350877},
                    'baseline': {'accuracy': 0.425, 'macro_f1': 0.2982456140350877},
                    'runs': {'student': {'steps': 20, 'best_score': 0.55},
                             'baseline': {'steps': 20, 'best_score': 0.55}},
                    'losses': {'student': [2.768626403808594, 2.614828109741211],
                               'baseline': [0.6931957721710205, 0.6931219100952148]},
                    'test_logits': {'student': [-0.1133635863661766, 0.1133635863661766],
                                    'baseline': [0.004578016698360443, 0.47309237718582153]}},
 'causal_lm': {'teacher': {'perplexity': 36.182048629841375,
                           'nll_per_token': 3.5885631016322543,
                           'test_tokens': 42,
                           'rouge_l': 0.0,
                           'distinct_outputs': 0.3333333333333333},
               'student': {'perplexity': 26.253663825897057,
                           'nll_per_token': 3.2678055536179316,
                           'test_tokens': 42,
                           'token_agreement': 0.5,
                           'rouge_l': 0.21428571428571427,
                           'distinct_outputs': 0.16666666666666666},
               'baseline': {'perplexity': 24.487193618980687,
                            'nll_per_token': 3.1981502714611234,
                            'test_tokens': 42,
                            'token_agreement': 0.40476190476190477,
                            'rouge_l': 0.21428571428571427,
                            'distinct_outputs': 0.16666666666666666},
               'runs': {'student': {'steps': 6, 'best_score': -3.248326982770647},
                        'baseline': {'steps': 6, 'best_score': -3.185032435825893}},
               'losses': {'student': [0.5182080666224161], 'baseline': [3.3624916076660156]},
               'train_used': 48},
 'causal_lm_topk': {'teacher': {'perplexity': 35.645617226624275,
                                'nll_per_token': 3.5736262003580728,
                                'test_tokens': 36},
                    'student': {'perplexity': 25.531324220658092,
                                'nll_per_token': 3.2399060991075306,
                                'test_tokens': 36,
                                'token_agreement': 0.05555555555555555},
                    'baseline': {'perplexity': 25.44873248512992,
                                 'nll_per_token': 3.2366659376356335,
                                 'test_tokens': 36,
                                 'token_agreement': 0.05555555555555555},
                    'runs': {'student': {'steps': 6, 'best_score': -3.2351470523410373},
                             'baseline': {'steps': 6, 'best_score': -3.2319005330403647}},
                    'losses': {'student': [1.7011240323384602], 'baseline': [3.398923873901367]},
                    'train_used': 48},
 'seq2seq': {'teacher': {'perplexity': 78.38160108959646,
                         'nll_per_token': 4.36158921983507,
                         'test_tokens': 63,
                         'bleu': 0.0,
                         'chrf': 0.4916420845624385,
                         'distinct_outputs': 0.16666666666666666,
                         'validation_loss': 4.365211268833705},
             'student': {'perplexity': 71.46367362201748,
                         'nll_per_token': 4.269189259362599,
                         'test_tokens': 63,
                         'token_agreement': 0.9047619047619048,
                         'bleu': 0.0,
                         'chrf': 0.12291052114060963,
                         'distinct_outputs': 0.16666666666666666},
             'baseline': {'perplexity': 59.37742692998364,
                          'nll_per_token': 4.083914136129712,
                          'test_tokens': 63,
                          'token_agreement': 0.8253968253968254,
                          'bleu': 0.0,
                          'chrf': 0.4916420845624385,
                          'distinct_outputs': 0.16666666666666666},
             'runs': {'student': {'steps': 6, 'best_score': -4.286807250976563},
                      'baseline': {'steps': 6, 'best_score': -4.083282470703125}},
             'losses': {'student': [2.087494691212972], 'baseline': [4.265304247538249]},
             'train_used': 96}}


def test_the_seq2seq_teacher_cache_key_of_the_shipped_config_is_unchanged():
    # an encoder-decoder teacher trained here takes an hour on a CPU: a config schema change must not make
    # its cache key differ (the key still names its settings as the earlier generation section did)
    from textdistill.data.pairs import GenerationData
    from textdistill.pipeline.seq2seq_teacher import teacher_key

    config = Path(__file__).resolve().parents[1] / "textdistill" / "configs" / "translation_seq2seq.yaml"
    data = GenerationData([("a b", "c d"), ("e", "f")], [("x", "y")], [("x", "y")], "parallel", "n")
    assert teacher_key(load_config(config), data) == "4ef1a3bb164a869b54e1"  # computed before the refactor
