"""Typed config: shipped files load, bad keys and values are errors that list the valid choices."""

import re
from pathlib import Path

import pytest

from textdistill.cli import build_parser
from textdistill.config import RunConfig, iter_fields, load_config
from textdistill.errors import TextDistillError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "textdistill" / "configs"  # package data: `textdistill demo` reads the recipe from it
ACCELERATE_DIR = ROOT / "configs" / "accelerate"  # launcher settings (accelerate's format), checked below


def test_every_shipped_config_loads():
    files = sorted(CONFIG_DIR.rglob("*.yaml"))
    assert files, "no config files found"
    for path in files:
        cfg = load_config(path)
        assert isinstance(cfg, RunConfig), path


def test_the_demo_runs_the_shipped_recipe_file_and_the_transfer_recipe_is_spelled_out_once_more_for_bbc():
    import dataclasses

    from textdistill.pipeline.commands import demo_config, shipped_config

    # the recipe lives in one YAML file, found through the installed package
    assert shipped_config("rotten_tomatoes.yaml").resolve() == (CONFIG_DIR / "rotten_tomatoes.yaml").resolve()
    demo = demo_config()
    assert demo.output_dir == "runs/demo" and demo.data.dataset == "rotten_tomatoes"
    assert dataclasses.replace(demo, output_dir="x") == dataclasses.replace(
        load_config(CONFIG_DIR / "rotten_tomatoes.yaml"), output_dir="x")
    transfer = load_config(CONFIG_DIR / "rotten_tomatoes_transfer.yaml")
    bbc = load_config(CONFIG_DIR / "bbc_news.yaml")
    for section in ("student", "loss", "train"):
        assert getattr(transfer, section) == getattr(bbc, section), section
    assert demo.student == transfer.student and demo.loss == transfer.loss  # the demo only trains shorter
    assert demo.data.augment_copies == transfer.data.augment_copies == bbc.data.augment_copies


def test_every_shipped_accelerate_config_is_valid_for_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig

    files = sorted(ACCELERATE_DIR.rglob("*.yaml"))
    assert files, "no accelerate configs found"
    for path in files:
        cluster = ClusterConfig.from_yaml_file(str(path))  # refuses unknown keys
        # the loop refuses sharded engines (FSDP, DeepSpeed): no shipped config may select one
        assert cluster.distributed_type.value in ("NO", "MULTI_GPU", "MULTI_CPU"), path
        assert cluster.num_processes >= 1, path


def _error(tmp_path, text: str, overrides=None) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(TextDistillError) as e:
        load_config(path, overrides)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_unknown_key_suggests_and_lists(tmp_path):
    msg = _error(tmp_path, "data:\n  dataset: rotten_tomatoes\ntrain:\n  epoch: 3\n")
    assert "unknown key 'epoch'" in msg and "did you mean 'epochs'" in msg and "batch_size" in msg


def test_unknown_section(tmp_path):
    msg = _error(tmp_path, "trian:\n  epochs: 3\n")
    assert "did you mean 'train'" in msg


def test_wrong_type(tmp_path):
    msg = _error(tmp_path, "data:\n  dataset: rotten_tomatoes\ntrain:\n  batch_size: large\n")
    assert "train.batch_size" in msg and "expected int" in msg


def test_numbers_in_exponent_form_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 5e-5 as text; a learning rate written that way is meant as a number
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: rotten_tomatoes\ntrain:\n  learning_rate: 5e-5\nteacher:\n  learning_rates: [3e-5, 1E-4]\n")
    cfg = load_config(path, {"loss.temperature": "2e0"})
    assert cfg.train.learning_rate == 5e-5 and cfg.teacher.learning_rates == (3e-5, 1e-4)
    assert cfg.loss.temperature == 2.0
    assert "expected float" in _error(tmp_path, "data:\n  dataset: rotten_tomatoes\ntrain:\n  learning_rate: fast\n")


def test_invalid_choice_lists_choices(tmp_path):
    msg = _error(tmp_path, "data:\n  dataset: rotten_tomatoes\nloss:\n  soft: cosine\n")
    assert "'cosine'" in msg and "'forward_kl'" in msg and "'mse'" in msg


@pytest.mark.parametrize("text,needle", [
    ("loss:\n  temperature: 0\n", "temperature must be positive"),
    ("loss:\n  alpha: 0\n  beta: 0\n", "both 0"),
    ("train:\n  batch_size: 0\n", "batch_size must be at least 1"),
    ("student:\n  ffn_keep: 1.5\n", "ffn_keep must be in (0, 1]"),
    ("student:\n  layers: []\n", "empty list"),
    ("train:\n  checkpoint_every: -1\n", "checkpoint_every must be 0 or positive"),
    ("train:\n  keep_checkpoints: 0\n", "keep_checkpoints must be at least 1"),
    ("loss:\n  temperature: .nan\n", "expected a finite number"),
    ("train:\n  learning_rate: .inf\n", "expected a finite number"),
    ("train:\n  epochs: 1" + "0" * 400 + "\n", "expected a finite number"),
])
def test_out_of_range_values(tmp_path, text, needle):
    assert needle in _error(tmp_path, "data:\n  dataset: rotten_tomatoes\n" + text)


def test_yaml_cannot_execute_code(tmp_path):
    msg = _error(tmp_path, "output_dir: !!python/object/apply:os.system ['echo hacked']\n")
    assert "not valid YAML" in msg


def test_precedence_defaults_file_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: rotten_tomatoes\ntrain:\n  epochs: 5\n  batch_size: 8\n")
    cfg = load_config(path, {"train.batch_size": 64})
    assert cfg.train.epochs == 5.0 and cfg.train.batch_size == 64 and cfg.train.learning_rate == 3e-4
    # a section keeps its own defaults for keys the file leaves out
    assert cfg.teacher.finetune.epochs == 10.0 and cfg.teacher.finetune.early_stopping_patience == 2


def test_cli_flags_cover_every_field_with_help():
    parser = build_parser()
    distill = parser._subparsers._group_actions[0].choices["distill"]
    flags = {a.dest: a.help for a in distill._actions}
    for dotted, _, _ in iter_fields():
        assert dotted in flags and flags[dotted], dotted


def test_cli_flag_values_are_typed_by_field():
    from textdistill.cli import _overrides

    args = build_parser().parse_args(["distill", "--data.train", "2024", "--train.epochs", "2",
                                      "--student.layers", "[0, 2]", "--data.text_pair_column", "null",
                                      "--train.freeze_embeddings", "true"])
    got = _overrides(args)
    assert got == {"data.train": "2024", "train.epochs": 2, "student.layers": [0, 2],
                   "data.text_pair_column": None, "train.freeze_embeddings": True}


# The smallest valid configuration of each task.
BASE = {"classification": {"data.dataset": "rotten_tomatoes"},
        "causal_lm": {"task": "causal_lm", "data.dataset": "bible_en"},
        "seq2seq": {"task": "seq2seq", "data.dataset": "bible_en_es", "teacher.path": "train"}}


def _another_value(tp, default):
    """A value of type `tp` that differs from `default`."""
    import typing

    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return next(a for a in typing.get_args(tp) if a != default)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return [[0, 1]] if typing.get_origin(item) is tuple else [{"str": "span"}.get(getattr(item, "__name__", ""), 1)]
    if args and tp not in (bool, int, float, str):  # an optional value
        return _another_value(args[0], None if default is None else default)
    if tp is bool:
        return not default
    if tp is int:
        return (default or 0) + 3
    if tp is float:
        return (default or 0.0) + 0.25
    return "something-else"


@pytest.mark.parametrize("task", list(BASE))
def test_every_field_a_task_does_not_use_is_an_error_when_set(task):
    from textdistill.config import defaults, field_tasks, get

    unused = [(dotted, tp) for dotted, tp, _ in iter_fields() if task not in field_tasks(dotted)]
    assert unused, task
    for dotted, tp in unused:
        value = _another_value(tp, get(defaults(task), dotted))
        with pytest.raises(TextDistillError, match=rf"^{re.escape(dotted)} is not used by task '{task}'"):
            load_config(None, {**BASE[task], dotted: value})
        load_config(None, {**BASE[task], dotted: get(defaults(task), dotted)})  # at its default it is fine


@pytest.mark.parametrize("task,dotted,value,instead", [
    ("classification", "student.encoder_layers", [1], "student.layers lists the layers kept"),
    ("classification", "generation.topk", 8, "remove it"),
    ("causal_lm", "student.ffn_keep", 0.25, "student.layers"),
    ("causal_lm", "teacher.base", "mpnet", "teacher.path"),
    ("causal_lm", "data.label_column", "y", "responses or targets in data.train"),
    ("seq2seq", "report.throughput_batches", 3, "report.latency_examples"),
    ("seq2seq", "data.augment_copies", 4, "generation.sequence_kd"),
])
def test_an_unused_field_names_the_field_to_use_instead(task, dotted, value, instead):
    with pytest.raises(TextDistillError) as e:
        load_config(None, {**BASE[task], dotted: value})
    assert str(e.value).startswith(f"{dotted} is not used by task {task!r}") and instead in str(e.value)


def test_fields_of_the_old_generation_section_say_where_they_live_now(tmp_path):
    msg = _error(tmp_path, "task: causal_lm\ngeneration:\n  dataset: bible_en\n  ce_weight: 0.3\n")
    assert msg == "generation.dataset is now data.dataset; move the setting there"
    msg = _error(tmp_path, "task: causal_lm\ndata:\n  dataset: bible_en\ngeneration:\n  student_layers: [2]\n")
    assert "generation.student_layers is now student.layers" in msg


def test_configs_are_immutable_after_validation():
    import dataclasses

    cfg = load_config(None, {"data.dataset": "rotten_tomatoes", "student.layers": [2, 5]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 9
    assert cfg.student.layers == (2, 5)  # lists become tuples: nothing inside can change either


def test_a_choice_that_yaml_reads_as_a_boolean_is_that_choice(tmp_path):
    """YAML 1.1 reads `no` as false. `mixed_precision: no`, the spelling the docs and the CPU hint give, is
    the choice 'no' in a file and as a flag; a boolean that names no choice is still an error."""
    from textdistill.cli import _config, build_parser

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: rotten_tomatoes\ntrain:\n  mixed_precision: no\n")
    assert load_config(path).train.mixed_precision == "no"
    args = build_parser().parse_args(["distill", "--config", str(path), "--train.mixed_precision", "no"])
    assert _config(args).train.mixed_precision == "no"
    text = "data:\n  dataset: rotten_tomatoes\ntrain:\n  mixed_precision: yes\n"
    assert "not a valid choice" in _error(tmp_path, text)
