"""Students built from the teacher, and start-up checks on teacher/student pairs."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import FILLER, NEGATIVE, POSITIVE, tiny_bert, write_tokenizer
from textdistill.config import StudentConfig
from textdistill.errors import TextDistillError
from textdistill.models.loading import check_same_vocabulary, teacher_label_order
from textdistill.models.layers import default_layers
from textdistill.models.size import count_parameters
from textdistill.models.students import build_student


@pytest.fixture()
def teacher(teacher_dir):
    return AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))


def test_teacher_layers_copies_chosen_layers(teacher):
    student = build_student(StudentConfig(init="teacher_layers", layers=[0, 3], ffn_keep=1.0), teacher, ["neg", "pos"], 0)
    t, s = teacher.state_dict(), student.state_dict()
    assert student.config.num_hidden_layers == 2
    assert torch.equal(s["bert.encoder.layer.1.attention.self.query.weight"], t["bert.encoder.layer.3.attention.self.query.weight"])
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])


def test_narrow_feed_forward_keeps_whole_neurons(teacher):
    student = build_student(StudentConfig(init="teacher_layers", layers=[1], ffn_keep=0.25), teacher,
                            ["neg", "pos"], 0)
    s = student.state_dict()
    w_in = s["bert.encoder.layer.0.intermediate.dense.weight"]  # [16, 32]
    w_out = s["bert.encoder.layer.0.output.dense.weight"]  # [32, 16]
    t_in = teacher.state_dict()["bert.encoder.layer.1.intermediate.dense.weight"]
    t_out = teacher.state_dict()["bert.encoder.layer.1.output.dense.weight"]
    assert w_in.shape == (16, 32) and w_out.shape == (32, 16)
    # every kept row of W_in has its matching column of W_out
    for row in range(16):
        j = next(j for j in range(t_in.shape[0]) if torch.equal(t_in[j], w_in[row]))
        assert torch.equal(t_out[:, j], w_out[:, row])
    assert count_parameters(student) < count_parameters(teacher)


def test_default_layers_take_every_third_ending_with_the_last(teacher):
    assert default_layers(6) == [2, 5] and default_layers(12) == [2, 5, 8, 11] and default_layers(1) == [0]
    student = build_student(StudentConfig(), teacher, ["neg", "pos"], 0)
    assert student.config.num_hidden_layers == 2  # the tiny teacher has 4 layers: [0, 3]
    assert student.config.intermediate_size == 32  # half of the teacher's 64 by default


def test_shrink_and_same_seed_same_init(teacher):
    cfg = StudentConfig(init="shrink", num_layers=1, hidden_size=16, num_heads=2)
    a = build_student(cfg, teacher, ["neg", "pos"], 7).state_dict()
    b = build_student(cfg, teacher, ["neg", "pos"], 7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["bert.embeddings.word_embeddings.weight"].shape[1] == 16


@pytest.mark.parametrize("cfg,needle", [
    (StudentConfig(init="teacher_layers", layers=[0, 9]), "out of range"),
    (StudentConfig(init="shrink", hidden_size=30, num_heads=4), "not divisible"),
])
def test_bad_student_configs(teacher, cfg, needle):
    with pytest.raises(TextDistillError, match=needle):
        build_student(cfg, teacher, ["neg", "pos"], 0)


def test_different_vocabularies_are_refused(teacher_dir, tmp_path):
    teacher_tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    other = write_tokenizer(tmp_path / "other", list(reversed(POSITIVE + NEGATIVE + FILLER)))
    with pytest.raises(TextDistillError, match="tokenizers differ"):
        check_same_vocabulary(teacher_tok, other, 100)
    check_same_vocabulary(teacher_tok, teacher_tok, len(teacher_tok))
    with pytest.raises(TextDistillError, match="embedding has"):
        check_same_vocabulary(teacher_tok, teacher_tok, 3)


def test_teacher_label_order():
    teacher = tiny_bert(20, layers=1, labels=("pos", "neg"))
    assert teacher_label_order(teacher, ["neg", "pos"]) == [1, 0]
    with pytest.raises(TextDistillError, match="differ from the data"):
        teacher_label_order(teacher, ["bad", "good"])
    with pytest.raises(TextDistillError, match="teacher has 2 labels"):
        teacher_label_order(teacher, ["a", "b", "c"])


def test_vocabulary_padding_only_is_accepted_with_shared_ids(teacher_dir, tmp_path):
    teacher_tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    n = len(teacher_tok)
    # the student's tokenizer adds tokens after the teacher's last id (a vocabulary padded to a round size)
    padded = write_tokenizer(tmp_path / "padded", POSITIVE + NEGATIVE + FILLER + ["[unused0]", "[unused1]"])
    assert check_same_vocabulary(teacher_tok, padded, n + 2) == n
    assert check_same_vocabulary(padded, teacher_tok, n + 2) == n  # teacher padded, student embedding covers it
    # equal tokenizers, embedding matrix padded with spare rows
    assert check_same_vocabulary(teacher_tok, teacher_tok, n + 30) == n


def test_vocabulary_with_swapped_ids_is_refused(teacher_dir, tmp_path):
    teacher_tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    words = POSITIVE + NEGATIVE + FILLER
    swapped = write_tokenizer(tmp_path / "swapped", [words[1], words[0]] + words[2:])  # same tokens, two ids swapped
    with pytest.raises(TextDistillError, match="2 of the .* shared ids disagree") as e:
        check_same_vocabulary(teacher_tok, swapped, len(teacher_tok))
    assert "'good'" in str(e.value) and "\n" not in str(e.value)


def test_custom_model_code_is_not_run_unless_trusted(tmp_path, monkeypatch):
    from textdistill.models import loading

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "evil", "auto_map": {"AutoConfig": "evil.Config"}}')
    (folder / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('code ran')\n")
    with pytest.raises(TextDistillError, match="trust_remote_code: true") as e:
        loading.load_classifier(folder, "teacher.path")
    assert "\n" not in str(e.value)
    with pytest.raises(TextDistillError, match="trust_remote_code"):
        loading.load_tokenizer(folder, "teacher")
    assert not (tmp_path / "ran").exists()
    # turned on, the setting reaches from_pretrained (which then may run the folder's code)
    seen = {}

    def fake(path, **kwargs):
        seen.update(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(loading.AutoConfig, "from_pretrained", fake)
    with pytest.raises(TextDistillError):
        loading.load_classifier(folder, "teacher.path", trust_remote_code=True)
    assert seen["trust_remote_code"] is True
