"""The built-in teacher is fine-tuned once and cached under a key of everything that produced it."""

from textdistill.config import load_config
from textdistill.data.labelled import load_classification_data
from textdistill.pipeline import teacher as teacher_mod


def _cfg(tiny_overrides, teacher_dir, **extra):
    return load_config(None, {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                              "teacher.finetune.max_steps": 2, "teacher.finetune.progress": False, **extra})


def test_builtin_teacher_is_cached_and_keyed(tiny_overrides, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tiny_overrides, teacher_dir)
    data = load_classification_data(cfg.data)
    calls = []
    real = teacher_mod.train  # the training loop, as the fine-tuning calls it
    monkeypatch.setattr(teacher_mod, "train", lambda *a, **k: calls.append(1) or real(*a, **k))

    folder, info = teacher_mod.builtin_teacher(cfg, data)
    assert not info["cached"] and (folder / "model.safetensors").is_file()
    assert folder.parent.parent == tmp_path / "cache"
    again, info2 = teacher_mod.builtin_teacher(cfg, data)
    assert again == folder and info2["cached"] and len(calls) == 1

    # a different training setting or different data gives a different key
    other = _cfg(tiny_overrides, teacher_dir, **{"teacher.finetune.learning_rate": 1e-3})
    assert teacher_mod.teacher_cache_key(other, data) != teacher_mod.teacher_cache_key(cfg, data)
    data.train.labels[0] = "neg" if data.train.labels[0] == "pos" else "pos"
    assert teacher_mod.teacher_cache_key(cfg, data) != teacher_mod.teacher_cache_key(_cfg(tiny_overrides, teacher_dir),
                                                                                   load_classification_data(cfg.data))
    # display settings do not
    quiet = _cfg(tiny_overrides, teacher_dir, **{"teacher.finetune.progress": True})
    assert teacher_mod.teacher_cache_key(quiet, data) == teacher_mod.teacher_cache_key(cfg, data)
