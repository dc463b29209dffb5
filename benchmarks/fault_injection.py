"""Kill distillation runs at random moments (SIGKILL), resume them, and compare the final weights.

    python benchmarks/fault_injection.py --runs 10 --kills 2 --seed 0
    python benchmarks/fault_injection.py --mode cache --runs 20 --seed 0

Training mode (the default) builds a small setting in a temporary folder (a random 4-layer BERT teacher,
3,000 synthetic labelled examples, a 2-layer student copied from it, the no-teacher baseline, 376 steps
each with a checkpoint every 10 steps and an evaluation every 50), runs
it once uninterrupted, then `--runs` times: started, killed with SIGKILL a random 0-1 s after a random
checkpoint of the student or the baseline has appeared (so the kill lands mid-training whatever the
machine's load; when that checkpoint is already behind, the kill lands during start-up or in the first
steps), resumed with `distill --resume` (and killed again, `--kills` times in all), then resumed to
the end. Reports how many runs end with student and baseline weights bit-identical to the
uninterrupted run (target: all), and where each kill landed.

Cache mode kills and races the teacher-output cache instead: 10,000 training examples and as many token
variants scored by the teacher in chunks of 128 (2 x 79 journal lines), then 40 student steps. A quiet
run with an empty cache gives the reference student. Then `--runs` runs, each with an empty cache of its
own, are killed with SIGKILL once a random number of chunks is journalled (plus a random 0-50 ms), and
resumed; and `--runs` pairs of runs started together share one empty cache. Every run must end with
student weights bit-identical to the quiet run's and a sealed cache whose files match their checksums.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import transformers
import yaml
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2 * -(-3000 // 16)  # optimizer steps of each training (2 epochs of 3,000 examples, batch 16)
WORDS = ["good", "great", "fine", "superb", "bad", "awful", "dull", "weak", "the", "film", "plot", "was", "very",
         "actors", "and", "story", "really", "a", "it", "music"]


def build_setting(folder: Path, train_rows: int = 3000, **sections) -> Path:
    """A tiny teacher folder, three CSV files and a run config (`sections` update its sections); returns the
    config path."""
    teacher = folder / "teacher"
    teacher.mkdir(parents=True)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)})
    tok.save_pretrained(str(teacher))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(str(teacher))
    rng = random.Random(0)
    for name, n in (("train", train_rows), ("validation", 200), ("test", 200)):
        rows = []
        for _ in range(n):
            label = rng.choice(["neg", "pos"])
            cue = rng.choice(WORDS[:4] if label == "pos" else WORDS[4:8])
            rows.append({"text": " ".join(rng.sample(WORDS[8:], 5) + [cue]), "label": label})
        pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    run = {
        "data": {"train": str(folder / "train.csv"), "validation": str(folder / "validation.csv"),
                 "test": str(folder / "test.csv"), "max_length": 16},
        "teacher": {"path": str(teacher)},
        "student": {"layers": [0, 3]},
        "train": {"epochs": 2, "batch_size": 16, "eval_every": 50, "checkpoint_every": 10, "threads": 1,
                  "progress": False},
        "report": {"latency_examples": 10, "throughput_batches": 2},
    }
    for section, values in sections.items():
        run.setdefault(section, {}).update(values)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def start(args: list[str], cache: Path | None = None, quiet: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if cache is not None:
        env["TEXTDISTILL_CACHE"] = str(cache)
    return subprocess.Popen([sys.executable, "-m", "textdistill", *(["-q"] if quiet else []), "distill", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def where(run_dir: Path) -> str:
    """Which phase the run was in, from the files it had written."""
    done = {p.stem for p in (run_dir / "phases").glob("*.json")}
    if "report" in done:
        return "finished"
    steps = {}
    for folder in (run_dir / "checkpoints").glob("*-step*"):
        if folder.name.startswith(".") or folder.name.endswith(".partial"):
            continue  # a checkpoint being written when the kill landed: not a checkpoint yet
        name, step = folder.name.split("-step")
        steps[name] = max(steps.get(name, 0), int(step))
    for phase in ("baseline", "student"):
        if phase in done:
            return "evaluation/report" if phase == "baseline" else "baseline, before its first checkpoint"
        if phase in steps:
            return f"{phase}, after checkpoint {steps[phase]}"
    return "teacher scoring" if (run_dir / "config.yaml").exists() else "start-up"


def wait_for(run_dir: Path, phase: str, step: int, process: subprocess.Popen) -> bool:
    """Wait until `phase` has a checkpoint at `step` or later (or has finished); False if the run ended first."""
    while process.poll() is None:
        if (run_dir / "phases" / f"{phase}.json").exists():
            return True
        for folder in (run_dir / "checkpoints").glob(f"{phase}-step*"):
            if not folder.name.endswith(".partial") and int(folder.name.split("-step")[1]) >= step:
                return True
        time.sleep(0.02)
    return False


def metrics(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in path.read_text().splitlines()]


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


CACHE_ROWS, CACHE_CHUNK = 10_000, 4 * 32  # the teacher scores in chunks of 4 batches of teacher.batch_size 32


def build_progress(cache: Path) -> int:
    """Chunks journalled so far by the cache builds of a run: a sealed cache counts all of its chunks."""
    done = 0
    for folder in cache.glob("scores/*/"):
        try:
            if (folder / "complete.json").is_file():
                done += -(-json.loads((folder / "meta.json").read_text())["count"] // CACHE_CHUNK)
            elif (folder / "rows.jsonl").is_file():
                done += (folder / "rows.jsonl").read_bytes().count(b"\n")
        except (OSError, ValueError):
            pass  # sealed (and its journal removed) between the two looks: counted on the next poll
    return done


def cache_problem(cache: Path, expected: int) -> str | None:
    """None when the run's `expected` teacher caches are sealed and their files match the seals."""
    folders = [f for f in cache.glob("scores/*") if f.is_dir()]
    sealed = [f for f in folders if (f / "complete.json").is_file()]
    if len(folders) != expected or len(sealed) != expected:
        return f"{len(sealed)} of {len(folders)} cache folders sealed, {expected} expected"
    for folder in sealed:
        sums = json.loads((folder / "complete.json").read_text())
        bad = [name for name, digest in sums.items()
               if hashlib.sha256((folder / f"{name}.bin").read_bytes()).hexdigest() != digest]
        if bad:
            return f"{folder.name}: {bad} do not match the seal"
    return None


def cache_mode(args, rng: random.Random, folder: Path) -> int:
    config = build_setting(folder, CACHE_ROWS, teacher={"batch_size": 32},
                           train={"max_steps": 40, "eval_every": 20, "checkpoint_every": 20},
                           report={"baseline": False, "latency_examples": 2, "throughput_batches": 1})
    reference = folder / "reference"
    t0 = time.perf_counter()
    process = start(["--config", str(config), "--output_dir", str(reference)], folder / "cache-reference")
    _, err = process.communicate()
    if process.returncode != 0:
        print(err)
        return 1
    builds = len([f for f in (folder / "cache-reference").glob("scores/*") if f.is_dir()])
    chunks = builds * -(-CACHE_ROWS // CACHE_CHUNK)
    print(f"quiet run: {time.perf_counter() - t0:.1f} s; the teacher scores {builds} x {CACHE_ROWS} examples (the "
          f"training texts and their token variants) in {chunks} chunks, each journalled; the student trains 40 steps")
    student = reference / "student" / "model.safetensors"

    def verdict(run_dir: Path, cache: Path) -> tuple[bool, str]:
        same = same_weights(student, run_dir / "student" / "model.safetensors")
        problem = cache_problem(cache, builds)
        return same and problem is None, f"{'identical' if same else 'DIFFERENT'} weights, cache " \
            f"{'sealed and verified' if problem is None else problem}"

    good_kills, landed_in_build = 0, 0
    for run in range(args.runs):
        run_dir, cache = folder / f"kill{run}", folder / f"cache-kill{run}"
        target, extra = rng.randrange(chunks), rng.uniform(0.0, 0.05)
        process = start(["--config", str(config), "--output_dir", str(run_dir)], cache)
        while process.poll() is None and build_progress(cache) < target:
            time.sleep(0.005)
        time.sleep(extra)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        process.wait()
        done = build_progress(cache)
        where = f"after {done} of {chunks} chunks" if killed else "finished before the kill"
        inside = killed and done < chunks
        landed_in_build += inside
        if killed and not inside:
            where += " (all sealed)"
        if killed:
            process = start(["--resume", "--output_dir", str(run_dir)], cache)
            _, err = process.communicate()
            if process.returncode != 0:
                last = err.strip().splitlines()[-1] if err.strip() else process.returncode
                print(f"kill {run}: resume failed: {last}")
                continue
        ok, text = verdict(run_dir, cache)
        good_kills += ok
        print(f"kill {run}: target chunk {target} + {extra * 1000:.0f} ms, landed {where}; {text}", flush=True)

    good_pairs, waited = 0, 0
    for pair in range(args.runs):
        cache = folder / f"cache-pair{pair}"
        dirs = [folder / f"pair{pair}-{side}" for side in "ab"]
        processes = [start(["--config", str(config), "--output_dir", str(d)], cache, quiet=False) for d in dirs]
        errs = [p.communicate()[1] for p in processes]
        if any(p.returncode != 0 for p in processes):
            print(f"pair {pair}: a run failed: {[e.strip().splitlines()[-1:] for e in errs]}")
            continue
        computed = [sum(int(n) for n in re.findall(r"teacher scores: [^(\n]*\((\d+) examples", e)) for e in errs]
        waits = sum("waiting for process" in e for e in errs)
        waited += waits > 0
        results = [verdict(d, cache) for d in dirs]
        good_pairs += all(ok for ok, _ in results)
        print(f"pair {pair}: examples scored by each run {computed}, "
              f"{'one waited for the other' if waits else 'no wait'}; {'; '.join(text for _, text in results)}",
              flush=True)

    print(f"\n{good_kills}/{args.runs} runs killed during the cache build ({landed_in_build} kills landed inside it) "
          f"resumed to student weights bit-identical to the quiet run, with a verified sealed cache")
    print(f"{good_pairs}/{args.runs} pairs of concurrent runs on one empty cache ended with both students "
          f"bit-identical to the quiet run and a verified sealed cache ({waited} pairs overlapped: one waited for "
          "the other's build)")
    return 0 if good_kills == args.runs and good_pairs == args.runs else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["training", "cache"], default="training",
                        help="kill runs during training (and resume), or kill and race the teacher-output cache")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLs per run before it may finish")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="fault-injection-"))
    if args.mode == "cache":
        return cache_mode(args, rng, folder)
    config = build_setting(folder)

    reference = folder / "reference"
    t0 = time.perf_counter()
    process = start(["--config", str(config), "--output_dir", str(reference)])
    while not (reference / "config.yaml").exists() and process.poll() is None:
        time.sleep(0.01)
    startup = time.perf_counter() - t0
    _, err = process.communicate()
    total = time.perf_counter() - t0
    if process.returncode != 0:
        print(err)
        return 1
    print(f"uninterrupted run: {total:.1f} s ({startup:.1f} s start-up); each kill lands a random 0-1 s after "
          f"a random checkpoint (every 10 of {STEPS} steps) of the student or the baseline")

    identical = 0
    for run in range(args.runs):
        run_dir = folder / f"run{run}"
        landed = []
        for kill in range(args.kills):
            process = start(["--config", str(config), "--output_dir", str(run_dir)] if kill == 0 else
                            ["--resume", "--output_dir", str(run_dir)])
            # The kill is tied to the run's progress, not to a wall-clock guess (a loaded machine would make
            # the guess land after the end): wait for a random training checkpoint, then a random extra delay.
            phase, step = rng.choice(["student", "baseline"]), 10 * rng.randint(1, STEPS // 10 - 1)
            extra = rng.uniform(0.0, 1.0)
            if not wait_for(run_dir, phase, step, process):
                landed.append("finished before the kill")
                break
            time.sleep(extra)
            if process.poll() is not None:
                landed.append("finished before the kill")
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
            landed.append(f"{phase} step {step} + {extra:.2f} s: {where(run_dir)}")
        if where(run_dir) != "finished":
            process = start(["--resume", "--output_dir", str(run_dir)])
            _, err = process.communicate()
            if process.returncode != 0:
                last = err.strip().splitlines()[-1] if err.strip() else process.returncode
                print(f"run {run}: resume failed: {last}")
                continue
        same = all(same_weights(reference / m / "model.safetensors", run_dir / m / "model.safetensors")
                   for m in ("student", "baseline"))
        same_log = metrics(reference / "metrics.jsonl") == metrics(run_dir / "metrics.jsonl")
        identical += same and same_log
        print(f"run {run}: {'identical' if same else 'DIFFERENT'} weights, metrics.jsonl "
              f"{'identical' if same_log else 'DIFFERENT'}; kills: {'; '.join(landed)}")
    print(f"\n{identical}/{args.runs} runs killed {args.kills}x at random and resumed ended with weights (student and "
          "baseline) and metrics bit-identical to the uninterrupted run")
    return 0 if identical == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
