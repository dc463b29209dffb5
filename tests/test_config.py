"""Typed config: shipped files load, bad keys and values are errors that list the valid choices."""

from pathlib import Path

import pytest

from textdistill.cli import build_parser
from textdistill.config import RunConfig, iter_fields, load_config
from textdistill.errors import TextDistillError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def test_every_shipped_config_loads():
    # configs/accelerate/ holds launcher settings (accelerate's format), checked below
    files = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if "accelerate" not in p.relative_to(CONFIG_DIR).parts)
    assert files, "no config files found"
    for path in files:
        cfg = load_config(path)
        assert isinstance(cfg, RunConfig), path


def test_the_demo_runs_the_recipe_spelled_out_in_the_rotten_tomatoes_and_bbc_configs():
    import dataclasses

    from textdistill.pipeline.commands import DEMO_DEFAULTS
    from textdistill.models.layers import default_layers

    demo = load_config(None, DEMO_DEFAULTS)
    demo.student.layers = default_layers(6)  # empty means this rule; the file spells it out
    for name in ("rotten_tomatoes", "bbc_news"):
        shipped = load_config(CONFIG_DIR / f"{name}.yaml")
        for section in ("student", "loss", "train"):
            assert dataclasses.asdict(getattr(demo, section)) == dataclasses.asdict(getattr(shipped, section)), (name, section)
        assert demo.data.augment_copies == shipped.data.augment_copies


def test_every_shipped_accelerate_config_is_valid_for_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig

    files = sorted((CONFIG_DIR / "accelerate").rglob("*.yaml"))
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


def test_invalid_choice_lists_choices(tmp_path):
    msg = _error(tmp_path, "data:\n  dataset: rotten_tomatoes\nloss:\n  soft: cosine\n")
    assert "'cosine'" in msg and "'kl'" in msg and "'mse'" in msg


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
    assert cfg.teacher.finetune.epochs == 1.0


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
