"""End to end on tiny models: causal LM and seq2seq distillation, resume, report and export reload."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from generation_fixtures import tiny_llama, write_corpora
from textdistill.config import load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline import commands

FAST = {"train.batch_size": 8, "train.max_steps": 6, "train.progress": False, "train.learning_rate": 3e-3,
        "train.freeze_embeddings": False, "train.checkpoint_every": 2, "teacher.batch_size": 16,
        "generation.max_new_tokens": 8, "report.latency_examples": 2, "data.max_eval_examples": 8,
        "data.max_length": 40, "data.validation_fraction": 0.1, "data.test_fraction": 0.1,
        "report.baseline": True}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))


def test_causal_lm_end_to_end_with_resume_and_export(tmp_path, llama_teacher):
    files = write_corpora(tmp_path / "data", 60)
    overrides = {**FAST, "task": "causal_lm", "output_dir": str(tmp_path / "run"), "teacher.path": str(llama_teacher),
                 "data.train": str(files["prompt_response"]), "generation.on_policy_fraction": 0.5}
    cfg = load_config(None, overrides)
    summary = commands.distill(cfg)
    run = tmp_path / "run"
    assert (run / "report.md").is_file() and (run / "summary.json").is_file()
    res = summary["results"]
    assert set(res) == {"teacher", "student", "baseline"}
    assert res["student"]["parameters"] < res["teacher"]["parameters"]
    assert summary["student_config"]["layers"] == {"decoder": [2, 5]}
    assert 0 <= res["student"]["token_agreement"] <= 1
    assert summary["runs"]["baseline"]["steps"] == summary["runs"]["student"]["steps"] == 6
    on_policy = [e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                 if e.get("run") == "student" and "loss_soft_on_policy" in e]
    assert on_policy, "on-policy steps were logged"
    assert "test perplexity" in (run / "report.md").read_text()
    # resuming a finished run returns its summary; the student folder reloads
    again = commands.distill(load_config(run / "config.yaml"), resume=True)
    assert again["results"]["student"]["perplexity"] == pytest.approx(res["student"]["perplexity"])
    assert summary["export"]["max_logit_difference"] < 1e-5
    out = commands.export(run, tmp_path / "exported")
    assert out["max_logit_difference"] < 1e-5 and "model.safetensors" in out["files"]
    # checked here too, not only by the exporter's own report: the exported folder, loaded with plain
    # transformers, gives the run's student's logits exactly
    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path / "exported")).eval()
    student = AutoModelForCausalLM.from_pretrained(str(run / "student")).eval()
    enc = AutoTokenizer.from_pretrained(str(tmp_path / "exported"))(["the man sees a dog", "a red house"],
                                                                   padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = exported(**enc).logits, student(**enc).logits
    assert torch.equal(a, b) and a.abs().max() > 0


def test_interrupted_student_resumes_to_the_same_weights(tmp_path, llama_teacher):
    files = write_corpora(tmp_path / "data", 40)
    base = {**FAST, "task": "causal_lm", "teacher.path": str(llama_teacher), "data.train": str(files["text"]),
            "report.baseline": False, "generation.on_policy_fraction": 0.5}  # sampled steps after the resume too
    full = commands.distill(load_config(None, {**base, "output_dir": str(tmp_path / "full")}))
    # a crash in step 5: the checkpoint of step 4 is the last one, the student phase is not finished
    from textdistill.tasks import generation as pipeline

    real = pipeline.on_policy_objective  # the objective the run trains with (on_policy_fraction 0.5)

    def crashing(*args, **kwargs):
        objective, calls = real(*args, **kwargs), {"n": 0}

        def wrapped(model, batch, progress=0.0):
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("crash")
            return objective(model, batch, progress)

        return wrapped

    pipeline.on_policy_objective = crashing
    try:
        with pytest.raises(RuntimeError, match="crash"):
            commands.distill(load_config(None, {**base, "output_dir": str(tmp_path / "cut")}))
    finally:
        pipeline.on_policy_objective = real
    assert list((tmp_path / "cut" / "checkpoints").iterdir())
    resumed = commands.distill(load_config(tmp_path / "cut" / "config.yaml"), resume=True)
    assert resumed["runs"]["student"]["steps"] == 6
    expected = load_file(str(tmp_path / "full" / "student" / "model.safetensors"))
    got = load_file(str(tmp_path / "cut" / "student" / "model.safetensors"))
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed["results"]["student"]["perplexity"] == full["results"]["student"]["perplexity"]


def test_seq2seq_trains_its_teacher_and_distils_with_sequence_kd(tmp_path):
    files = write_corpora(tmp_path / "data", 60)
    overrides = {**FAST, "task": "seq2seq", "output_dir": str(tmp_path / "run"), "teacher.path": "train",
                 "data.train": str(files["parallel"]), "teacher.architecture.num_layers": 3,
                 "teacher.architecture.hidden_size": 32, "teacher.architecture.num_heads": 2, "teacher.architecture.intermediate_size": 64,
                 "teacher.architecture.vocab_size": 100, "generation.sequence_kd": "greedy", "generation.with_references": True,
                 "student.layers": [2], "teacher.finetune.max_steps": 8, "teacher.finetune.batch_size": 8,
                 "teacher.finetune.progress": False, "teacher.finetune.learning_rate": 3e-3}
    summary = commands.distill(load_config(None, overrides))
    res = summary["results"]
    assert summary["sizes"]["train_used"] == 2 * summary["sizes"]["train"]  # sequence-KD targets + references
    assert {"bleu", "chrf"} <= set(res["student"])
    assert res["student"]["parameters"] < res["teacher"]["parameters"]
    assert summary["teacher"]["validation_loss_sources_shuffled"] > 0
    assert summary["student_config"]["layers"] == {"decoder": [2]}
    assert summary["export"]["max_logit_difference"] < 1e-5
    # the teacher is cached: a second run trains none
    again = commands.distill(load_config(None, {**overrides, "output_dir": str(tmp_path / "run2")}))
    assert again["teacher"]["cached"] is True


def test_generation_config_errors_name_the_field(tmp_path):
    with pytest.raises(TextDistillError, match="data.dataset"):
        load_config(None, {"task": "causal_lm"})
    with pytest.raises(TextDistillError, match="loss.soft 'kl' is not a loss.*'forward_kl'"):
        load_config(None, {"task": "causal_lm", "data.dataset": "bible_en", "loss.soft": "kl"})
    with pytest.raises(TextDistillError, match="topk works with loss.soft 'forward_kl'"):
        load_config(None, {"task": "causal_lm", "data.dataset": "bible_en", "loss.soft": "reverse_kl",
                           "generation.topk": 8})
    with pytest.raises(TextDistillError, match="teacher.path 'train'"):
        load_config(None, {"task": "causal_lm", "data.dataset": "bible_en", "teacher.path": "train"})
    with pytest.raises(TextDistillError, match="seq2seq set teacher.path"):
        load_config(None, {"task": "seq2seq", "data.dataset": "bible_en_es"})
    with pytest.raises(TextDistillError, match="sequence_kd"):
        load_config(None, {"task": "causal_lm", "data.dataset": "bible_en", "generation.with_references": True})
    with pytest.raises(TextDistillError, match="on_policy_fraction must be in"):
        load_config(None, {"task": "causal_lm", "data.dataset": "bible_en", "generation.on_policy_fraction": 2})


def test_classification_config_is_unchanged_by_the_generation_section():
    cfg = load_config(None, {"data.dataset": "rotten_tomatoes"})
    assert cfg.task == "classification"
    with pytest.raises(TextDistillError, match="--sweep is for task 'classification'"):
        commands.sweep(load_config(None, {"task": "causal_lm", "data.dataset": "bible_en"}))


def test_shipped_generation_configs_load():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].joinpath("textdistill", "configs").rglob("*.yaml")):
        cfg = load_config(path)
        if path.stem in ("smollm2_bible", "translation_seq2seq"):
            assert cfg.task in ("causal_lm", "seq2seq")


def test_cli_distill_report_resume_and_export(tmp_path, llama_teacher, capsys):
    import yaml

    from textdistill import cli

    files = write_corpora(tmp_path / "data", 40)
    config = {"task": "causal_lm", "output_dir": str(tmp_path / "run"),
              "teacher": {"path": str(llama_teacher), "batch_size": 16},
              "data": {"train": str(files["text"]), "max_eval_examples": 6, "max_length": 32},
              "student": {"layers": [5]},
              "loss": {"soft": "jsd", "jsd_beta": 0.5},
              "generation": {"topk": 0, "chunk_size": 4, "max_new_tokens": 6},
              "train": {"batch_size": 8, "max_steps": 3, "progress": False, "freeze_embeddings": False},
              "report": {"baseline": False, "latency_examples": 2}}
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.run(["-q", "distill", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "test perplexity" in out and "student (distilled)" in out
    assert cli.run(["-q", "distill", "--resume", "--output_dir", str(tmp_path / "run")]) == 0
    assert cli.run(["report", str(tmp_path / "run")]) == 0
    assert cli.run(["export", str(tmp_path / "run"), "--output", str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "tokenizer.json").is_file()


def test_topk_mode_runs_end_to_end(tmp_path, llama_teacher):
    files = write_corpora(tmp_path / "data", 40)
    overrides = {**FAST, "task": "causal_lm", "output_dir": str(tmp_path / "run"), "teacher.path": str(llama_teacher),
                 "data.train": str(files["prompt_response"]), "generation.topk": 5, "report.baseline": False}
    summary = commands.distill(load_config(None, overrides))
    assert (tmp_path / "cache" / "topk").is_dir()
    assert "rouge_l" in summary["results"]["student"]  # prompt/response data is scored by ROUGE-L


def test_classification_run_config_has_no_generation_section(tmp_path):
    import yaml

    from textdistill.config import save_config

    save_config(load_config(None, {"data.dataset": "rotten_tomatoes"}), tmp_path / "c.yaml")
    assert "generation" not in yaml.safe_load((tmp_path / "c.yaml").read_text())
    save_config(load_config(None, {"task": "causal_lm", "data.dataset": "bible_en"}), tmp_path / "g.yaml")
    assert load_config(tmp_path / "g.yaml").data.dataset == "bible_en"


def test_pretrained_student_with_another_tokenizer_is_refused_at_start_up(tmp_path, llama_teacher):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from generation_fixtures import SPECIAL, WORDS

    folder = tmp_path / "other"
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIAL + WORDS[::-1])}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>").save_pretrained(str(folder))
    tiny_llama(len(SPECIAL + WORDS), layers=2).save_pretrained(str(folder))
    files = write_corpora(tmp_path / "data", 30)
    overrides = {**FAST, "task": "causal_lm", "output_dir": str(tmp_path / "run"), "teacher.path": str(llama_teacher),
                 "data.train": str(files["text"]), "student.init": "pretrained", "student.path": str(folder)}
    with pytest.raises(TextDistillError, match="tokenizers differ"):
        commands.distill(load_config(None, overrides))
    assert not (tmp_path / "run").exists()  # refused before any training; the folder it had made is gone
