"""A student made of another model than the teacher (student.source), with a tokenizer of its own: it learns
from the teacher's outputs, the teacher reading the same text and variants through its own tokenizer."""

import json
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_tokenizer
from textdistill.config import load_config
from textdistill.data.labelled import TextSplit, encode
from textdistill.errors import TextDistillError
from textdistill.pipeline.run import run_distill
from textdistill.tasks.classification import retokenized, same_tokenizer

EXTRA = ["zebra", "quartz"]  # words only the source's tokenizer has


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    """A 3-layer encoder whose tokenizer orders the words differently from the teacher's (and has two more)."""
    folder = tmp_path_factory.mktemp("source")
    tok = write_tokenizer(folder, EXTRA + list(reversed(POSITIVE + NEGATIVE + FILLER)))
    tiny_bert(len(tok.get_vocab()), layers=3, seed=7).save_pretrained(str(folder))
    return folder


def test_variants_reach_a_teacher_with_another_tokenizer_as_the_same_text(teacher_dir, source_dir):
    from transformers import AutoTokenizer

    teacher_tok, source_tok = AutoTokenizer.from_pretrained(teacher_dir), AutoTokenizer.from_pretrained(source_dir)
    assert not same_tokenizer(teacher_tok, source_tok) and same_tokenizer(teacher_tok, teacher_tok)
    split = TextSplit(texts=["good film", "the plot was dull"], pairs=["really fun", "boring actors"])
    in_source = encode(source_tok, split, [0, 1], 16, "x")
    assert in_source.input_ids != encode(teacher_tok, split, [0, 1], 16, "x").input_ids  # other ids
    back = retokenized(in_source, source_tok, teacher_tok, 16)
    assert back.input_ids == encode(teacher_tok, split, [0, 1], 16, "x").input_ids  # both segments, same text
    assert back.token_type_ids == encode(teacher_tok, split, [0, 1], 16, "x").token_type_ids


def test_a_student_from_another_model_trains_on_the_teachers_outputs(tiny_overrides, source_dir, tmp_path):
    cfg = load_config(None, {**tiny_overrides, "student.source": str(source_dir), "student.layers": [0, 2],
                             "student.vocab": "task", "data.augment_copies": 2,
                             "data.augment_kinds": ["tokens", "neighbours"]})
    summary = run_distill(cfg)
    assert summary["student_source"] == str(source_dir)
    vocab = json.loads((tmp_path / "run" / "student" / "tokenizer.json").read_text())["model"]["vocab"]
    source = json.loads((source_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert set(vocab) <= set(source) and vocab != source  # the source's tokenizer, pruned to the task
    assert summary["results"]["student"]["parameters"] < summary["results"]["teacher"]["parameters"]
    assert summary["sizes"]["augmented"] == 2 * summary["sizes"]["train"]


def test_matching_intermediate_layers_across_tokenizers_is_refused_before_training(tiny_overrides, source_dir):
    cfg = load_config(None, {**tiny_overrides, "student.source": str(source_dir), "loss.hidden_loss": "mse"})
    with pytest.raises(TextDistillError, match="student's tokenizer is not the teacher's"):
        run_distill(cfg)
    with pytest.raises(TextDistillError, match="student.source"):
        load_config(None, {**tiny_overrides, "student.source": str(source_dir), "student.init": "shrink"})


def test_a_fine_tuned_source_is_fine_tuned_once_and_both_student_and_baseline_are_made_of_it(
        tiny_overrides, source_dir, tmp_path, monkeypatch, caplog):
    import torch
    from safetensors.torch import load_file

    import textdistill.tasks.classification as classification
    from textdistill.cache import cache_root

    built = []  # the source model each student (student, baseline) is made of
    real = classification.construct_student
    monkeypatch.setattr(classification, "construct_student",
                        lambda spec, source, *a, **k: built.append(source) or real(spec, source, *a, **k))
    overrides = {**tiny_overrides, "student.source": str(source_dir), "student.layers": [0, 2],
                 "student.fine_tune_source": True, "teacher.finetune.max_steps": 3,
                 "teacher.finetune.progress": False}
    with caplog.at_level("INFO", logger="textdistill"):
        summary = run_distill(load_config(None, overrides))
    assert summary["student_source"] == f"{source_dir} (fine-tuned on the labelled data)"
    # the fine-tuned source, cached like a teacher
    [folder] = [f.parent for f in (cache_root() / "teachers").glob("*/textdistill_teacher.json")]
    assert json.loads((folder / "textdistill_teacher.json").read_text())["base"] == str(source_dir)
    fine_tuned, pretrained = load_file(folder / "model.safetensors"), load_file(source_dir / "model.safetensors")
    name = "bert.encoder.layer.2.attention.self.query.weight"
    assert not torch.equal(fine_tuned[name], pretrained[name])
    assert len(built) == 2 and all(torch.equal(m.state_dict()[name], fine_tuned[name]) for m in built)
    assert sum("fine-tuning" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()  # a second run reads the fine-tuned source back
    with caplog.at_level("INFO", logger="textdistill"):
        run_distill(load_config(None, {**overrides, "output_dir": str(tmp_path / "again")}))
    assert not any("fine-tuning" in r.getMessage() for r in caplog.records)
    with pytest.raises(TextDistillError, match="student.fine_tune_source"):
        load_config(None, {**tiny_overrides, "student.fine_tune_source": True})
