"""Resume: an interrupted run ends with the weights of an uninterrupted one; failures lose no work."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_config, write_tokenizer
from textdistill.config import LossConfig, TrainConfig, load_config
from textdistill.data.batching import bucketed_batches
from textdistill.data.labelled import TextSplit, encode
from textdistill.errors import TextDistillError
from textdistill.evaluation.predict import predict_logits
from textdistill.pipeline.run import run_distill
from textdistill.pipeline.teacher import cache_root
from textdistill.training import checkpoints as resume_mod
from textdistill.training.loop import train
from textdistill.training.example_objectives import classification_objective
from textdistill.training.checkpoints import checkpoint_problem, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


# --- the loop on its own: fast, crash simulated by an exception -----------------------------------------

@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    tok = write_tokenizer(folder / "tok", POSITIVE + NEGATIVE + FILLER)
    frame = synthetic_frame(60, seed=3)
    labels = [0 if label == "neg" else 1 for label in frame["label"]]
    enc = encode(tok, TextSplit(texts=list(frame["text"]), labels=list(frame["label"])), labels, 32, "train")
    enc.teacher_logits = predict_logits(tiny_bert(len(tok.get_vocab()), layers=4, seed=1), enc)
    return enc, len(tok.get_vocab())


class Crash(Exception):
    pass


def _train(run_dir, encoded, *, crash_at=None, resume=False, cfg=None, objective=None, data=None):
    """Train a tiny student with a projection-like extra module; `crash_at` raises at that objective call."""
    enc, vocab = encoded
    run_dir.mkdir(exist_ok=True)
    model = tiny_bert(vocab, layers=2, seed=2)
    extra = torch.nn.Linear(2, 2)
    torch.nn.init.eye_(extra.weight)
    kd = objective or classification_objective(LossConfig())
    calls = {"n": 0}

    def with_extra(m, batch, progress):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash
        terms = kd(m, batch, progress)
        logits = extra(m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)  # [B, 2]
        terms["extra"] = 0.1 * logits.pow(2).sum()
        return terms

    def evaluate(m):
        return {"accuracy": float((predict_logits(m, enc).argmax(-1) == enc.labels).float().mean())}

    cfg = cfg or TrainConfig(epochs=3, batch_size=8, grad_accum_steps=2, checkpoint_every=2, progress=False)
    result = train(model, data or enc, with_extra, cfg, name="student", run_dir=run_dir, evaluate=evaluate, extra=extra,
                   resume=resume)
    return model, extra, result


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, encoded):
    run_dir = tmp_path_factory.mktemp("reference")
    model, extra, result = _train(run_dir, encoded)
    return run_dir, model, extra, result


def test_resume_after_crash_matches_uninterrupted(tmp_path, encoded, uninterrupted):
    ref_dir, ref_model, ref_extra, ref_result = uninterrupted
    with pytest.raises(Crash):
        _train(tmp_path, encoded, crash_at=15)  # mid-way through the second epoch
    steps = [s for s, _ in list_checkpoints(tmp_path / "checkpoints", "student")]
    assert steps and steps[-1] < ref_result.steps and len(steps) <= 2  # keep_checkpoints
    model, extra, result = _train(tmp_path, encoded, resume=True)
    assert _same(model, ref_model) and _same(extra, ref_extra)
    assert (result.steps, result.best_step, result.best_score) == (ref_result.steps, ref_result.best_step,
                                                                   ref_result.best_score)
    assert _metrics(tmp_path / "metrics.jsonl") == _metrics(ref_dir / "metrics.jsonl")  # no duplicated lines
    assert [h["step"] for h in result.history] == [h["step"] for h in ref_result.history]


def test_resuming_a_finished_training_changes_nothing(tmp_path, encoded, uninterrupted):
    _, ref_model, _, ref_result = uninterrupted
    _train(tmp_path, encoded)
    model, _, result = _train(tmp_path, encoded, resume=True)
    assert _same(model, ref_model) and result.steps == ref_result.steps


def test_corrupt_checkpoint_is_never_loaded(tmp_path, encoded, uninterrupted, monkeypatch, caplog):
    _, ref_model, _, _ = uninterrupted
    with pytest.raises(Crash):
        _train(tmp_path, encoded, crash_at=15)
    (older, _), (newest_step, newest) = list_checkpoints(tmp_path / "checkpoints", "student")
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a full disk
    assert "checksum" in checkpoint_problem(newest)
    loaded = []
    real = resume_mod.load_file
    monkeypatch.setattr(resume_mod, "load_file", lambda path: loaded.append(Path(path).parent) or real(path))
    model, _, _ = _train(tmp_path, encoded, resume=True)
    assert newest not in loaded and loaded  # the older checkpoint was used ...
    assert _same(model, ref_model)  # ... and replaying from it still gives the same weights
    assert any("skipping checkpoint" in r.message for r in caplog.records)


def test_only_corrupt_checkpoints_is_an_error(tmp_path, encoded):
    with pytest.raises(Crash):
        _train(tmp_path, encoded, crash_at=15)
    for _, folder in list_checkpoints(tmp_path / "checkpoints", "student"):
        (folder / "optimizer.pt").write_bytes(b"garbage")
    with pytest.raises(TextDistillError, match="no sound checkpoint") as e:
        _train(tmp_path, encoded, resume=True)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied")])
def test_failed_checkpoint_write_stops_and_keeps_the_previous_one(tmp_path, encoded, monkeypatch, error):
    real_save, calls = torch.save, {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_bytes(b"half a file")
            raise error
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(resume_mod.torch, "save", failing_save)
    with pytest.raises(TextDistillError) as e:
        _train(tmp_path, encoded)
    message = str(e.value)
    assert "\n" not in message and error.strerror in message and "student-step00000002 is intact" in message
    folders = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()]
    assert folders == ["student-step00000002"]  # no half-written folder left behind
    assert checkpoint_problem(tmp_path / "checkpoints" / "student-step00000002") is None


def test_non_finite_loss_names_term_step_examples_and_keeps_last_good_checkpoint(tmp_path, encoded):
    enc, _ = encoded
    # from step 5 on (the second epoch: 4 steps of two micro-batches of 8), one example's teacher outputs are NaN
    poisoned = bucketed_batches(enc.lengths, 8, seed=42, epoch=1)[0][0]
    kd = classification_objective(LossConfig())

    def objective(m, batch, progress):
        if progress >= 4 / 12:
            rows = torch.tensor([i == poisoned for i in batch["index"].tolist()])
            batch = dict(batch, teacher_logits=batch["teacher_logits"].masked_fill(rows[:, None], float("nan")))
        return kd(m, batch, progress)

    class Indexed:  # the data, with each example's index in the batch
        lengths = enc.lengths

        def __len__(self):
            return len(enc)

        def collate(self, index):
            return {**enc.collate(index), "index": torch.tensor(index)}

    with pytest.raises(TextDistillError) as e:
        _train(tmp_path, encoded, objective=objective, data=Indexed())
    message = str(e.value)
    assert "\n" not in message and "at step 5 " in message and "term soft=nan" in message
    assert f" {poisoned}," in message or f" {poisoned} " in message or f" {poisoned};" in message
    saved = [s for s, _ in list_checkpoints(tmp_path / "checkpoints", "student")]
    assert saved == [2, 4] and "student-step00000004" in message
    weights = load_file(str(tmp_path / "checkpoints" / "student-step00000004" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint(tmp_path, encoded, uninterrupted):
    """What a cluster scheduler sends before it takes the machine back; handled like Ctrl-C."""
    from textdistill.training.stopping import Interrupted

    kd, calls = classification_objective(LossConfig()), {"n": 0}

    def objective(m, batch, progress):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 3 (two micro-batches per step)
            os.kill(os.getpid(), signal.SIGTERM)
        return kd(m, batch, progress)

    with pytest.raises(Interrupted) as e:
        _train(tmp_path, encoded, objective=objective)
    assert e.value.code == 128 + signal.SIGTERM and "stopped at step 3" in str(e.value)
    assert str(e.value).endswith("continue with --resume")
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints", "student")] == [2, 3]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after training
    model, extra, _ = _train(tmp_path, encoded, resume=True)
    assert _same(model, uninterrupted[1]) and _same(extra, uninterrupted[2])


def test_deferred_finite_check_finds_the_first_bad_step_without_a_sync_per_step():
    """The GPU / multi-process path: steps are only recorded on the device; check() reads them later."""
    from types import SimpleNamespace

    from textdistill.training.stopping import FiniteWatch

    accelerator = SimpleNamespace(num_processes=2, device=torch.device("cpu"), gather=lambda t: t)
    watch = FiniteWatch("student", accelerator)
    assert not watch.every_step
    for step in range(1, 10):
        bad = step in (7, 8)
        terms = {"ce": torch.tensor(0.5), "soft": torch.tensor(float("inf") if bad else 0.1)}
        watch.record(step, sum(terms.values()), terms, [[step * 10, step * 10 + 1]], "the last good checkpoint is X")
        if step == 5:
            watch.check(accelerator, "the last good checkpoint is X")  # nothing wrong yet
    with pytest.raises(TextDistillError) as e:
        watch.check(accelerator, "the last good checkpoint is X")
    assert "at step 7 " in str(e.value) and "soft=inf" in str(e.value) and "70, 71" in str(e.value)


def test_deterministic_mode_trains_to_the_same_weights_on_cpu(tmp_path, encoded, uninterrupted):
    cfg = TrainConfig(epochs=3, batch_size=8, grad_accum_steps=2, checkpoint_every=2, progress=False,
                      deterministic=True)
    try:
        model, _, _ = _train(tmp_path, encoded, cfg=cfg)
    finally:
        torch.use_deterministic_algorithms(False)
    assert _same(model, uninterrupted[1])


def test_changed_settings_are_refused_on_resume(tmp_path, encoded):
    with pytest.raises(Crash):
        _train(tmp_path, encoded, crash_at=9)
    other = TrainConfig(epochs=3, batch_size=4, grad_accum_steps=2, checkpoint_every=2, progress=False)
    with pytest.raises(TextDistillError, match="batch_size=8, this run has batch_size=4"):
        _train(tmp_path, encoded, resume=True, cfg=other)


# --- the whole command, killed for real --------------------------------------------------------------

def _start(args: list[str], pause_at: str) -> subprocess.Popen:
    """`textdistill -q distill ARGS`, paused after the checkpoint `pause_at` ('name:step') until signalled."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEXTDISTILL_PAUSE_AT": pause_at}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "pausing_cli.py"), "-q", "distill", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_when(process: subprocess.Popen, path: Path, signum: int) -> tuple[int, str]:
    """Send `signum` once `path` exists (a checkpoint folder appears by rename, complete); the run waits there."""
    deadline = time.time() + 600  # generous: on a loaded 2-core machine start-up alone can take minutes
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    if not path.exists():
        process.kill()
        raise AssertionError(process.communicate()[1][-3000:])
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()  # a failing test leaves no run behind
        process.communicate()
        raise
    return process.returncode, err


def test_killed_and_interrupted_run_resumes_to_identical_weights(tmp_path, tiny_overrides):
    overrides = {**tiny_overrides, "train.checkpoint_every": 3, "train.threads": 1}
    reference = run_distill(load_config(None, {**overrides, "output_dir": str(tmp_path / "reference")}))
    config = write_config(tmp_path / "tiny.yaml", overrides)
    run_dir = Path(overrides["output_dir"])

    # the baseline trains first. SIGKILL mid-way through its first epoch (10 steps), after its checkpoint of
    # step 6: no chance to clean up
    code, _ = _signal_when(_start(["--config", str(config)], "baseline:6"),
                           run_dir / "checkpoints" / "baseline-step00000006", signal.SIGKILL)
    assert code == -signal.SIGKILL
    # resumed, then Ctrl-C in the student's step 3 of 20: the step in progress (4) finishes, a checkpoint is
    # saved there, exit 130
    code, err = _signal_when(_start(["--resume", "--output_dir", str(run_dir)], "student:3"),
                             run_dir / "checkpoints" / "student-step00000003", signal.SIGINT)
    assert code == 130, err
    stopped = int(err.split("stopped at step ")[1].split()[0])
    assert stopped == 4 and f"student-step{stopped:08d}" in err and "--resume" in err
    assert checkpoint_problem(run_dir / "checkpoints" / f"student-step{stopped:08d}") is None
    # resumed again (in this process, as Python users call it): finishes, skipping the finished phases
    run_distill(load_config(run_dir / "config.yaml"), resume=True)

    for name in ("student", "baseline"):
        expected = load_file(str(tmp_path / "reference" / name / "model.safetensors"))
        got = load_file(str(run_dir / name / "model.safetensors"))
        assert all(torch.equal(expected[k], got[k]) for k in expected), name
    assert _metrics(run_dir / "metrics.jsonl") == _metrics(tmp_path / "reference" / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in ("student", "baseline"):
        assert summary["results"][name]["accuracy"] == reference["results"][name]["accuracy"]


# --- phases, caches and guards of the whole pipeline --------------------------------------------------

def _count_scored(distill_mod, monkeypatch) -> list[int]:
    """The sizes of the splits given to the teacher (PyTorch's predict_logits or ONNX Runtime's onnx_logits)."""
    scored = []
    for name in ("predict_logits", "onnx_logits"):
        real = getattr(distill_mod, name)
        monkeypatch.setattr(distill_mod, name, lambda m, d, *a, real=real, **k: scored.append(len(d)) or real(m, d, *a, **k))
    return scored


def test_resume_skips_finished_phases_and_reruns_one_whose_output_changed(tmp_path, tiny_overrides, monkeypatch):
    import textdistill.pipeline.run as run_mod
    import textdistill.tasks.classification as task_mod

    cfg = load_config(None, {**tiny_overrides, "train.max_steps": 3, "train.threads": 1})
    first = run_distill(cfg)
    run_dir = Path(cfg.output_dir)
    assert run_distill(cfg, resume=True) == first  # a finished run: nothing to do
    # the report phase and the baseline's saved model are lost; the cached teacher scores are gone
    (run_dir / "phases" / "report.json").unlink()
    (run_dir / "baseline" / "model.safetensors").write_bytes(b"truncated")
    shutil.rmtree(cache_root() / "scores")  # so the teacher must score again
    trained = []
    real_train = run_mod.train
    monkeypatch.setattr(run_mod, "train", lambda *a, **k: trained.append(k["name"]) or real_train(*a, **k))
    scored = _count_scored(task_mod, monkeypatch)
    second = run_distill(cfg, resume=True)
    assert trained == ["baseline"]  # the student phase was finished and intact
    assert first["sizes"]["train"] in scored  # the lost teacher scores were computed again
    for name in ("student", "baseline"):
        assert second["results"][name]["accuracy"] == first["results"][name]["accuracy"]


def test_a_second_run_reads_the_teacher_scores_from_the_cross_run_cache(tmp_path, tiny_overrides, monkeypatch):
    import textdistill.tasks.classification as task_mod

    overrides = {**tiny_overrides, "train.max_steps": 1, "report.baseline": False, "train.threads": 1}
    first = load_config(None, overrides)
    first_sizes = run_distill(first)["sizes"]["train"]
    scored = _count_scored(task_mod, monkeypatch)
    second = load_config(None, {**overrides, "output_dir": str(tmp_path / "second")})
    run_distill(second)
    assert first_sizes not in scored  # the teacher did not score the training split again
    # the cached scores are the same targets: the two runs train the same student
    a = load_file(str(Path(first.output_dir) / "student" / "model.safetensors"))
    b = load_file(str(Path(second.output_dir) / "student" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_config_and_nothing_to_resume(tmp_path, tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "train.max_steps": 1, "report.baseline": False, "train.threads": 1})
    with pytest.raises(TextDistillError, match="nothing to resume"):
        run_distill(cfg, resume=True)
    run_distill(cfg)
    changed = load_config(None, {**tiny_overrides, "train.max_steps": 1, "report.baseline": False,
                                 "loss.temperature": 4.0})
    with pytest.raises(TextDistillError, match="started with loss.temperature=2.0, now loss.temperature=4.0"):
        run_distill(changed, resume=True)
    with pytest.raises(TextDistillError, match="contradict"):
        run_distill(cfg, overwrite=True, resume=True)


def test_corrupt_cached_teacher_is_fine_tuned_again(tmp_path, tiny_overrides, teacher_dir, monkeypatch, caplog):
    from textdistill.data.labelled import load_classification_data
    from textdistill.pipeline.teacher import builtin_teacher
    from textdistill.hashing import file_digest

    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = load_config(None, {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                             "teacher.finetune.max_steps": 2, "teacher.finetune.progress": False,
                             "train.threads": 1})
    (Path(cfg.output_dir) / "checkpoints").mkdir(parents=True)
    data = load_classification_data(cfg.data)
    folder, info = builtin_teacher(cfg, data)
    assert not info["cached"] and builtin_teacher(cfg, data)[1]["cached"]
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated copy
    folder_again, info = builtin_teacher(cfg, data)
    assert folder_again == folder and not info["cached"]  # never loaded: fine-tuned again
    assert any("cached teacher" in r.message and "checksum" in r.message for r in caplog.records)
    assert file_digest(weights) == info["weights_sha256"]


def test_a_stopped_teacher_fine_tune_continues_on_the_next_run_without_resume(tmp_path, tiny_overrides, teacher_dir,
                                                                              monkeypatch, caplog):
    """The built-in teacher's fine-tune, crashed after its checkpoint of step 2 of 4, is continued by the next
    run that wants it (no --resume: the cache key fixes everything that trains it) to the weights of an
    uninterrupted fine-tune; a checkpoint that cannot be read is trained again from the start, with a warning."""
    from textdistill.data.labelled import load_classification_data
    from textdistill.hashing import file_digest
    from textdistill.pipeline import teacher as teacher_mod
    from textdistill.training import loop

    cfg = load_config(None, {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                             "teacher.finetune.max_steps": 4, "teacher.finetune.checkpoint_every": 2,
                             "teacher.finetune.progress": False, "train.threads": 1})
    data = load_classification_data(cfg.data)
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "reference"))
    reference = file_digest(teacher_mod.builtin_teacher(cfg, data)[0] / "model.safetensors")

    real_save, trained = loop.save_checkpoint, []

    def crash_after_step_2(root, name, progress, **kwargs):
        found = real_save(root, name, progress, **kwargs)
        if progress.step == 2:
            raise Crash
        return found

    def counting(model, batch, progress):
        trained.append(progress)  # the share of the steps done before this one
        return objective(model, batch, progress)

    def stop_after_step_2(cache: str) -> None:
        monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / cache))
        monkeypatch.setattr(loop, "save_checkpoint", crash_after_step_2)
        with pytest.raises(Crash):
            teacher_mod.builtin_teacher(cfg, data)
        monkeypatch.setattr(loop, "save_checkpoint", real_save)

    objective = teacher_mod.label_objective()
    monkeypatch.setattr(teacher_mod, "label_objective", lambda: counting)
    stop_after_step_2("cache")
    del trained[:]
    folder, info = teacher_mod.builtin_teacher(cfg, data)
    assert not info["cached"] and file_digest(folder / "model.safetensors") == reference
    assert min(trained) == 0.5, trained  # steps 3 and 4 only
    assert any("resuming from teacher-step00000002" in r.message for r in caplog.records)
    assert not folder.with_name(folder.name + ".work").exists()

    stop_after_step_2("cache2")
    work = next((tmp_path / "cache2" / "teachers").glob("*.work"))
    (next((work / "checkpoints").glob("teacher-step*")) / "model.safetensors").write_bytes(b"broken")
    del trained[:]
    folder, info = teacher_mod.builtin_teacher(cfg, data)
    assert file_digest(folder / "model.safetensors") == reference and min(trained) == 0.0, trained
    assert any("cannot be continued" in r.message and "starting it again" in r.message for r in caplog.records)


def test_a_signal_during_a_cached_teacher_fine_tune_says_the_next_run_continues_it(tmp_path, tiny_overrides,
                                                                                   teacher_dir, monkeypatch):
    """Not "continue with --resume": the cache continues a stopped teacher by itself."""
    from textdistill.data.labelled import load_classification_data
    from textdistill.pipeline import teacher as teacher_mod
    from textdistill.training.stopping import Interrupted

    cfg = load_config(None, {**tiny_overrides, "teacher.path": "builtin", "teacher.base": str(teacher_dir),
                             "teacher.finetune.max_steps": 4, "teacher.finetune.progress": False,
                             "train.threads": 1})
    monkeypatch.setenv("TEXTDISTILL_CACHE", str(tmp_path / "cache"))
    objective, calls = teacher_mod.label_objective(), {"n": 0}

    def terminated_in_step_2(model, batch, progress):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return objective(model, batch, progress)

    monkeypatch.setattr(teacher_mod, "label_objective", lambda: terminated_in_step_2)
    with pytest.raises(Interrupted) as e:
        teacher_mod.builtin_teacher(cfg, load_classification_data(cfg.data))
    assert "stopped at step" in str(e.value) and "--resume" not in str(e.value)
    assert str(e.value).endswith("the next run that wants this teacher continues from it")


def test_resume_is_refused_when_the_data_or_the_teacher_outputs_changed(tmp_path, tiny_overrides, teacher_dir,
                                                                         monkeypatch):
    import pandas as pd

    import textdistill.tasks.classification as task_mod

    train_file, teacher = tmp_path / "train.csv", tmp_path / "teacher"
    synthetic_frame(160).to_csv(train_file, index=False)
    shutil.copytree(teacher_dir, teacher)
    cfg = load_config(None, {**tiny_overrides, "data.train": str(train_file), "teacher.path": str(teacher),
                             "train.checkpoint_every": 2, "train.threads": 1, "report.baseline": False})
    real, calls = task_mod.classification_objective, []

    def crashing(*args, **kwargs):
        objective = real(*args, **kwargs)

        def crash_in_step_5(model, batch, progress):
            calls.append(1)
            if len(calls) == 5:
                raise Crash
            return objective(model, batch, progress)

        return crash_in_step_5

    monkeypatch.setattr(task_mod, "classification_objective", crashing)
    with pytest.raises(Crash):
        run_distill(cfg)  # stopped in step 5, with the checkpoints of steps 2 and 4
    monkeypatch.setattr(task_mod, "classification_objective", real)
    run_dir = Path(cfg.output_dir)
    assert list_checkpoints(run_dir / "checkpoints", "student")
    frame = pd.read_csv(train_file)
    frame.assign(label=frame["label"].map({"pos": "neg", "neg": "pos"})).to_csv(train_file, index=False)
    with pytest.raises(TextDistillError, match="trained on different data or teacher outputs than this run has now"):
        run_distill(cfg, resume=True)
    # the data as it was, but another teacher in the folder, scoring again (a cache entry of its own)
    frame.to_csv(train_file, index=False)
    tiny_bert(29, seed=11).save_pretrained(str(teacher))
    with pytest.raises(TextDistillError, match="trained on different data or teacher outputs than this run has now"):
        run_distill(cfg, resume=True)
    # everything as it was (the first teacher's scores read back from the cache): the run continues
    shutil.copytree(teacher_dir, teacher, dirs_exist_ok=True)
    assert run_distill(cfg, resume=True)["runs"]["student"]["steps"] == 20
