"""Text written by a causal LM for the transfer set: prompts of one class each, taken in turn, from training
text only; filtering; written once and cached; a resumed build writes what an uninterrupted one does."""

from pathlib import Path

import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE
from textdistill.config import load_config
from textdistill.data import generated
from textdistill.data.generated import PROMPT_EXAMPLES, generate_texts, prompt_lines, written_texts
from textdistill.data.labelled import TextSplit
from textdistill.errors import TextDistillError
from textdistill.pipeline.run import run_distill

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def writer(tmp_path):
    """A tiny random Llama that knows the synthetic data's words, saved with its word-level tokenizer."""
    from generation_fixtures import WORDS, tiny_llama, word_tokenizer

    folder = tmp_path / "writer"
    tok = word_tokenizer(folder, extra=[w for w in dict.fromkeys(POSITIVE + NEGATIVE + FILLER) if w not in WORDS])
    tiny_llama(len(tok), layers=2).save_pretrained(str(folder))
    return folder


def _train(n_pos: int = 12, n_rare: int = 2) -> TextSplit:
    texts = [f"the film was {POSITIVE[i % 6]} number {i}" for i in range(n_pos)]
    texts += [f"a dull story {i}" for i in range(n_rare)]
    return TextSplit(texts=texts, labels=["pos"] * n_pos + ["rare"] * n_rare)


def test_prompts_take_the_classes_in_turn_from_training_text_only():
    train = _train()
    prompts = prompt_lines(train, 6, seed=0, max_chars=100)
    by_text = dict(zip(train.texts, train.labels))
    for i, lines in enumerate(prompts):
        assert {by_text[line] for line in lines} == {["pos", "rare"][i % 2]}
        assert len(lines) == (PROMPT_EXAMPLES if i % 2 == 0 else 2)  # the rare class has only two texts
        assert len(set(lines)) == len(lines)
    assert prompt_lines(train, 6, seed=0, max_chars=100) == prompts
    assert prompt_lines(train, 6, seed=1, max_chars=100) != prompts
    assert all(len(line) <= 8 for lines in prompt_lines(train, 4, 0, max_chars=8) for line in lines)


def test_written_texts_drop_empty_lines_copies_of_training_text_and_repeats(writer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(writer)
    train = TextSplit(texts=["the film was good"], labels=["pos"])
    rows = [tok(t, add_special_tokens=False).input_ids + [-1] for t in
            ["a plot", "the film was good", "a plot", "", "the story"]]
    assert written_texts(rows, tok, train) == ["a plot", "the story"]


def test_texts_are_written_once_and_cached(writer, monkeypatch):
    train = _train()
    texts, info = generate_texts(train, 40, str(writer), max_new_tokens=6, seed=0, precision="no",
                                 show_progress=False)
    assert info["prompts"] == 40 and info["texts"] == len(texts) and not info["cached"]
    assert 0 < len(texts) <= 40 and len(set(texts)) == len(texts) and not set(texts) & set(train.texts)

    def no_model(*args, **kwargs):
        raise AssertionError("the cached texts were written again")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_model)
    again, info = generate_texts(train, 40, str(writer), max_new_tokens=6, seed=0, precision="no",
                                 show_progress=False)
    assert again == texts and info["cached"]


def test_an_interrupted_build_resumes_and_writes_what_an_uninterrupted_one_does(writer, tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    train = _train()
    whole, _ = generate_texts(train, 80, str(writer), max_new_tokens=6, seed=0, precision="no", show_progress=False)
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "other-cache"))
    real, calls = LlamaForCausalLM.generate, []

    def dies_on_the_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "generate", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        generate_texts(train, 80, str(writer), max_new_tokens=6, seed=0, precision="no", show_progress=False)
    resumed = []

    def counted(self, *args, **kwargs):
        resumed.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "generate", counted)
    torch.manual_seed(123)  # a new process's random state differs: the texts must not depend on it
    assert generate_texts(train, 80, str(writer), max_new_tokens=6, seed=0, precision="no",
                          show_progress=False)[0] == whole
    assert len(resumed) == 2  # batches of 32: the first was kept, the two left were written


def test_a_run_trains_on_the_written_texts_as_unlabelled_text_with_the_same_steps(tiny_overrides, writer):
    overrides = {**tiny_overrides, "data.augment_copies": 0}
    without = run_distill(load_config(None, overrides))
    summary = run_distill(load_config(None, {**overrides, "data.generated_texts": 24, "data.generator": str(writer)}),
                          overwrite=True)
    written = summary["sizes"]["unlabeled"]
    assert 0 < written <= 24 and summary["written_texts"]["texts"] == written
    # the texts add data, not steps: the student and the baseline train as long as without them
    assert summary["runs"]["student"]["steps"] == without["runs"]["student"]["steps"]
    assert summary["runs"]["baseline"]["steps"] == without["runs"]["baseline"]["steps"]
    report = (Path(tiny_overrides["output_dir"]) / "report.md").read_text(encoding="utf-8")
    assert f"{written} unlabelled ({written} of them written by {writer})" in report


def test_settings_are_checked(tiny_overrides, tmp_path):
    with pytest.raises(TextDistillError, match="data.generated_texts writes single texts"):
        load_config(None, {**tiny_overrides, "data.generated_texts": 4, "data.text_pair_column": "other"})
    with pytest.raises(TextDistillError, match="data.generated_texts must be in"):
        load_config(None, {**tiny_overrides, "data.generated_texts": -1})
    with pytest.raises(TextDistillError, match="data.generator"):
        generated.generator_folder(str(tmp_path / "missing"))


def test_a_classifier_is_refused_as_writer(teacher_dir):
    head = r"holds a 'bert' model \(BertForSequenceClassification\), which cannot write text"
    with pytest.raises(TextDistillError, match=f"data.generator: .* {head}"):
        generated.generator_folder(str(teacher_dir))
