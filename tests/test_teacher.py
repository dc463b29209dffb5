"""The built-in teacher is fine-tuned once and cached under a key of everything that produced it."""

from conftest import FILLER, NEGATIVE, POSITIVE
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


def test_two_runs_wanting_the_same_builtin_teacher_fine_tune_it_once(tiny_overrides, teacher_dir, tmp_path):
    import multiprocessing

    from cache_workers import teacher_race

    overrides = {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                 "teacher.finetune.max_steps": 2, "teacher.finetune.progress": False}
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=teacher_race, args=(overrides, str(tmp_path / "shared"), barrier, results))
               for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    # one fine-tuned it while the other waited for the lock, then read the cached copy: the same weights
    assert sorted(cached for cached, _, _ in got) == [False, True]
    assert len({digest for _, digest, _ in got} | {recorded for _, _, recorded in got}) == 1


def test_teacher_scores_are_computed_again_when_the_teachers_files_change(tiny_overrides, teacher_dir, tmp_path,
                                                                          monkeypatch):
    import shutil

    import torch

    import textdistill.tasks.classification as task_mod
    from conftest import tiny_bert, write_tokenizer
    from textdistill.hashing import folder_digest as teacher_folder_digest
    from textdistill.pipeline.run import run_distill

    folder = tmp_path / "teacher"
    shutil.copytree(teacher_dir, folder)
    digest = teacher_folder_digest(folder)
    (folder / "notes.md").write_text("not a model file")
    assert teacher_folder_digest(folder) == digest  # what cannot change the outputs does not count
    scored = {}  # split size -> the teacher's logits on it (PyTorch's predict_logits or ONNX Runtime's)

    def spy(real):
        def scoring(m, d, *a, **k):
            scored[len(d)] = real(m, d, *a, **k)
            return scored[len(d)]
        return scoring

    for name in ("predict_logits", "onnx_logits"):
        monkeypatch.setattr(task_mod, name, spy(getattr(task_mod, name)))
    base = {**tiny_overrides, "teacher.path": str(folder), "data.augment_copies": 0, "train.max_steps": 1,
            "report.baseline": False, "train.threads": 1}

    def run(name):
        scored.clear()
        summary = run_distill(load_config(None, {**base, "output_dir": str(tmp_path / name)}))
        n = summary["sizes"]["train"]
        return n in scored, {"train": scored.get(n)}

    first_scored, first = run("first")
    assert first_scored and run("again")[0] is False  # the cross-run cache served the second run
    tiny_bert(29, seed=9).save_pretrained(str(folder))  # new weights in the same folder
    assert teacher_folder_digest(folder) != digest
    new_scored, new = run("new_weights")
    assert new_scored and not torch.equal(first["train"], new["train"])
    digest = teacher_folder_digest(folder)
    config = folder / "config.json"
    config.write_text(config.read_text() + "\n")
    assert teacher_folder_digest(folder) != digest  # any byte of the config
    digest = teacher_folder_digest(folder)
    write_tokenizer(folder, POSITIVE + NEGATIVE + FILLER)  # the same vocabulary, written again: same bytes
    assert teacher_folder_digest(folder) == digest
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text().replace('"good"', '"gold"'))
    assert teacher_folder_digest(folder) != digest and run("new_tokenizer")[0]
