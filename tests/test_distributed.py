"""Data parallelism: two processes (gloo on CPU) train to the weights one process reaches on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer
from textdistill.config import load_config
import textdistill.tasks.classification as task_mod
from textdistill.pipeline.run import run_distill
from textdistill.training.distributed import process_share

ROOT = Path(__file__).resolve().parents[1]


def test_process_share_splits_every_micro_batch_between_processes():
    group = [[4, 9, 1, 7, 3], [8], [2, 6]]
    shares = [process_share(group, rank, 2) for rank in range(2)]
    assert shares == [[[4, 1, 3], [8], [2]], [[9, 7], [6]]]
    assert sorted(i for share in shares for index in share for i in index) == sorted(i for g in group for i in g)
    assert process_share(group, 0, 1) == group
    assert process_share([[5]], 1, 2) == []  # this process sits the step out (weighted 0)


COUNTING_CLI = """
import os, sys
import textdistill.tasks.classification as task

real = task.classification_objective

def counting(*args, **kwargs):
    objective = real(*args, **kwargs)

    def counted(model, batch, progress):
        with open(os.environ["COUNT_TO"] + "-" + os.environ["RANK"], "a") as f:
            f.write(str(batch["input_ids"].shape[0]) + "\\n")
        return objective(model, batch, progress)

    return counted

task.classification_objective = counting
from textdistill.cli import main
main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, data_files, monkeypatch):
    # dropout off: each process draws its own masks, so with dropout the runs differ by design
    teacher = tmp_path / "teacher"
    tok = write_tokenizer(teacher, POSITIVE + NEGATIVE + FILLER)
    model = tiny_bert(len(tok.get_vocab()))
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.save_pretrained(str(teacher))
    # 161 examples (and as many augmented variants) in micro-batches of 8: one odd micro-batch
    train_file = tmp_path / "train.csv"
    synthetic_frame(161, seed=5).to_csv(train_file, index=False)
    overrides = {
        "data": {"train": str(train_file), "validation": str(data_files["validation"]),
                 "test": str(data_files["test"]), "max_length": 16},
        "teacher": {"path": str(teacher)}, "student": {"layers": [0, 3]},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum_steps": 2, "learning_rate": 5e-4, "threads": 1,
                  "progress": False, "checkpoint_every": 4,
                  "mixed_precision": "no"},  # the comparison below is exact to float32 summation order
        "report": {"baseline": False, "latency_examples": 3, "throughput_batches": 1},
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(overrides))
    before = torch.get_num_threads()
    one_process = []
    real = task_mod.classification_objective

    def counting(*args, **kwargs):
        objective = real(*args, **kwargs)
        return lambda model, batch, progress: one_process.append(batch["input_ids"].shape[0]) or objective(
            model, batch, progress)

    monkeypatch.setattr(task_mod, "classification_objective", counting)
    try:
        run_distill(load_config(config, {"output_dir": str(tmp_path / "one")}))
    finally:
        torch.set_num_threads(before)

    # each process records the examples of every micro-batch it trains on
    counting = tmp_path / "counting_cli.py"
    counting.write_text(COUNTING_CLI)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), str(counting), "distill", "--config", str(config),
              "--output_dir", str(tmp_path / "two")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COUNT_TO": str(tmp_path / "trained")}
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the work was split: each process trained on its half of every micro-batch the one process trained on
    # (the same order of micro-batches), not on the whole job
    trained = {rank: [int(n) for n in (tmp_path / f"trained-{rank}").read_text().split()] for rank in (0, 1)}
    assert len(trained[0]) == len(trained[1]) == len(one_process) and max(one_process) == 8
    assert all(a + b == n and a - b in (0, 1) for a, b, n in zip(trained[0], trained[1], one_process))

    one = load_file(str(tmp_path / "one" / "student" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "student" / "model.safetensors"))
    # the same update up to float32 summation order (gradients summed across processes)
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-6
    lines_one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    lines_two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines_one) == len(lines_two)  # only the main process writes
    for a, b in zip(lines_one, lines_two):
        assert a["step"] == b["step"] and abs(a.get("loss", 0) - b.get("loss", 0)) < 1e-6
    # the teacher scored once, on the main process; only it reports
    assert done.stderr.count("teacher_scores") == 0 and done.stdout.count("report:") == 1


def test_sharded_engines_are_refused_with_a_pointer_to_ddp():
    from types import SimpleNamespace

    import pytest
    from accelerate.utils import DistributedType

    from textdistill.errors import TextDistillError
    from textdistill.training.distributed import check_data_parallel

    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(TextDistillError, match="configs/accelerate/multi_gpu.yaml"):
            check_data_parallel(SimpleNamespace(distributed_type=kind))
    check_data_parallel(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))


# Loaded by every process of the launched run (a `sitecustomize` on its PYTHONPATH): records each file or
# folder that the process creates, replaces or removes under WRITES_WATCH, in WRITES_LOG-<rank>.
WRITE_RECORDER = '''
import builtins, os
watch, log = os.environ["WRITES_WATCH"], os.environ["WRITES_LOG"] + "-" + os.environ.get("RANK", "0")
real = {"open": builtins.open, "os_open": os.open}
def note(path):
    path = os.path.abspath(os.fsdecode(path)) if isinstance(path, (str, bytes, os.PathLike)) else ""
    if path.startswith(watch):
        with real["open"](log, "a") as f:
            f.write(path + "\\n")
def opened(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
        note(file)
    return real["open"](file, mode, *args, **kwargs)
def os_opened(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        note(path)
    return real["os_open"](path, flags, *args, **kwargs)
builtins.open, os.open = opened, os_opened
for name in ("replace", "rename", "mkdir", "unlink", "remove", "rmdir", "link"):
    def wrapped(*args, _real=getattr(os, name), **kwargs):
        for path in args[:2]:
            note(path)
        return _real(*args, **kwargs)
    setattr(os, name, wrapped)
'''


def test_two_processes_match_one_process_on_a_generation_run_and_only_the_main_one_writes(tmp_path):
    from generation_fixtures import tiny_llama, word_tokenizer, write_corpora

    teacher = tmp_path / "teacher"
    tiny_llama(len(word_tokenizer(teacher)), layers=4).save_pretrained(str(teacher))
    files = write_corpora(tmp_path / "data", 41)
    # sequence-KD targets: a teacher signal the main process makes and sends to the other one
    overrides = {
        "task": "causal_lm",
        "data": {"train": str(files["prompt_response"]), "max_length": 40, "max_eval_examples": 6},
        "teacher": {"path": str(teacher), "batch_size": 8},
        "generation": {"sequence_kd": "greedy", "with_references": True, "max_new_tokens": 6},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum_steps": 2, "learning_rate": 3e-3, "threads": 1,
                  "progress": False, "checkpoint_every": 2, "freeze_embeddings": False, "mixed_precision": "no",
                  "report_to": ["tensorboard"]},  # experiment tracking too: the main process alone logs
        "report": {"latency_examples": 2},
    }
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(overrides))
    before = torch.get_num_threads()
    try:
        one = run_distill(load_config(config, {"output_dir": str(tmp_path / "one")}))
    finally:
        torch.set_num_threads(before)

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(WRITE_RECORDER)
    watched = tmp_path / "watched"  # the launched run's folder and teacher cache
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "textdistill", "distill", "--config", str(config),
              "--output_dir", str(watched / "two")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{hooks}", "OMP_NUM_THREADS": "1",
           "TEXTDISTILL_CACHE": str(watched / "cache"), "WRITES_WATCH": str(watched),
           "WRITES_LOG": str(tmp_path / "writes")}
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    for name in ("student", "baseline"):
        a = load_file(str(tmp_path / "one" / name / "model.safetensors"))
        b = load_file(str(watched / "two" / name / "model.safetensors"))
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6, name
    two = json.loads((watched / "two" / "summary.json").read_text())
    assert two["sizes"] == one["sizes"] and two["sizes"]["train_used"] == 2 * one["sizes"]["train"]
    for name in ("student", "baseline"):
        assert two["runs"][name]["steps"] == one["runs"][name]["steps"]
        assert abs(two["results"][name]["perplexity"] - one["results"][name]["perplexity"]) < 1e-4
    # every file, folder, checkpoint and cache entry was made by the main process; the other wrote nothing
    main_writes = (tmp_path / "writes-0").read_text().splitlines()
    assert any(p.endswith("/two/student") for p in main_writes)  # renamed into place, whole
    assert any("/cache/sequence_kd/" in p for p in main_writes)
    assert any("/checkpoints/" in p for p in main_writes) and any(p.endswith("summary.json") for p in main_writes)
    assert any(p.endswith("/two/tracking/two") for p in main_writes)
    assert len(list((watched / "two" / "tracking" / "two").glob("events.out.tfevents.*"))) == 1  # one writer
    assert not (tmp_path / "writes-1").exists(), (tmp_path / "writes-1").read_text()[:2000]
    assert done.stdout.count("report:") == 1
