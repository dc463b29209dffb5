"""The big teacher's path (`teacher.base: mpnet`) on a tiny random MPNet: fine-tuned as the built-in teacher,
then distilled into a student of its own layers, or into a BERT student with a tokenizer of its own."""

import json
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_tokenizer
from textdistill.config import load_config
from textdistill.models import loading
from textdistill.pipeline.run import run_distill


@pytest.fixture()
def tiny_mpnet(tmp_path, monkeypatch) -> Path:
    """A 4-layer random MPNet classifier where the unpacked all-mpnet-base-v2 archive would be."""
    from transformers import MPNetConfig, MPNetForSequenceClassification
    import torch

    folder = tmp_path / "mpnet"
    tok = write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(tok.get_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=66, pad_token_id=tok.pad_token_id)
    MPNetForSequenceClassification(config).save_pretrained(str(folder))
    monkeypatch.setattr(loading, "unpacked_model_dir", lambda archive: folder)
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    return folder


def _overrides(tiny_overrides, **extra):
    return {**tiny_overrides, "teacher.path": "builtin", "teacher.base": "mpnet", "teacher.finetune.max_steps": 6,
            "teacher.finetune.progress": False, "student.layers": [1, 3], **extra}


def test_an_mpnet_teacher_is_fine_tuned_and_distilled_into_its_own_layers(tiny_overrides, tiny_mpnet):
    summary = run_distill(load_config(None, _overrides(tiny_overrides, **{"student.vocab": "task",
                                                                          "data.augment_copies": 1})))
    assert Path(summary["teacher"]["base"]) == tiny_mpnet
    student = json.loads((Path(tiny_overrides["output_dir"]) / "student" / "config.json").read_text())
    assert student["model_type"] == "mpnet" and student["num_hidden_layers"] == 2
    assert summary["teacher"]["steps"] == 6
    results = summary["results"]
    assert results["student"]["parameters"] < results["teacher"]["parameters"]
    assert 0 <= results["student"]["accuracy"] <= 1


def test_an_mpnet_teacher_teaches_a_bert_student_with_its_own_tokenizer(tiny_overrides, tiny_mpnet, tmp_path):
    source = tmp_path / "bert"
    tok = write_tokenizer(source, list(reversed(POSITIVE + NEGATIVE + FILLER)))
    tiny_bert(len(tok.get_vocab()), layers=3, seed=3).save_pretrained(str(source))
    summary = run_distill(load_config(None, _overrides(tiny_overrides, **{"student.source": str(source),
                                                                          "student.layers": [0, 2]})))
    assert summary["student_source"] == str(source)
    student = json.loads((Path(tiny_overrides["output_dir"]) / "student" / "config.json").read_text())
    assert student["model_type"] == "bert" and student["num_hidden_layers"] == 2  # the source's layers 0 and 2
