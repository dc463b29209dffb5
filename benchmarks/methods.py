"""The named methods against the default recipe, over seeds, in one table (docs/guide/methods.md).

    python benchmarks/methods.py --config textdistill/configs/rotten_tomatoes.yaml --seeds 1 2 3
    python benchmarks/methods.py --smoke          # tiny random models and data, minutes: checks the script only

Every row is `textdistill distill --config CONFIG --train.seed S` plus the method's flags, in a fresh
process, with the recipe's student and budget (epochs, batch, learning rate); the teacher is fine-tuned once
and cached, the data split is fixed by `data.split_seed`. The no-teacher baseline is the same for every row of
a seed (same student, seed and step budget), so only the default recipe's run trains it
(`--report.baseline false` elsewhere) and every row of that seed is compared with it. Rows:
- default recipe (the config as it is);
- + dkd, + adaptive_kl: `loss.soft` replaced (on two classes DKD's non-target term is 0 and DKD is
  dkd_alpha x forward KL: docs/guide/methods.md);
- + vid: `loss.hidden_loss: vid` on the recipe's layer map (the recipe matches outputs only; with a hidden
  loss the teacher runs at every step for its hidden states);
- + contrastive: `loss.contrastive_weight`, with a memory bank of cached teacher representations;
- co-training: `online.mode: co_training` from the pretrained (not fine-tuned) teacher base, the teacher
  learning for the first quarter of the steps (one epoch of the four; the built-in fine-tune runs until its
  validation accuracy stops improving, several epochs), frozen
  after; hidden-state matching off (an online mode compares outputs only); on the labelled text alone
  (`data.augment_copies: 0`): a teacher in the loop learns only from the labelled examples of a batch (1 in
  9 with the recipe's 8 variants per text) and scores every variant live, so the transfer set would starve
  it of labels; its wall time is set against the teacher's fine-tune plus the default recipe's distill run;
- mutual: `online.mode: mutual`, teacher and student as peers, both from the pretrained base, on the
  labelled text alone like co-training;
- quantisation-aware: `quantisation.aware: true`; then `textdistill bench` on it and on the default
  recipe's run gives the int8 ONNX accuracy and batch-1 latency of both (today's dynamic int8 of the float
  student against the quantisation-aware student's).
Printed per row: student accuracy (mean over seeds, min-max), student minus the default recipe's student,
retention (student / the run's teacher), student minus the no-teacher baseline, `distill` wall time without
the baseline's training (so that the recipe's row, which trains it, compares with the others). The
issue's targets are printed beside the values, never asserted. A run whose folder already holds the summary
of the same command is reused (`--fresh` repeats it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = "default recipe"
METHODS = {
    RECIPE: [],
    "+ dkd": ["--loss.soft", "dkd"],
    "+ adaptive_kl": ["--loss.soft", "adaptive_kl"],
    "+ contrastive": ["--loss.contrastive_weight", "0.1", "--loss.contrastive_bank", "4096"],
    "quantisation-aware": ["--quantisation.aware", "true"],
    "+ vid (hidden states)": ["--loss.hidden_loss", "vid"],
    "co-training": ["--online.mode", "co_training", "--online.teacher_share", "0.25", "--loss.hidden_loss", "none",
                    "--data.augment_copies", "0"],
    "mutual (teacher + student)": ["--online.mode", "mutual", "--loss.hidden_loss", "none",
                                   "--loss.soft_weighting", "none", "--data.augment_copies", "0"],
}
ONLINE = ("co-training", "mutual (teacher + student)")
QAT = "quantisation-aware"


def run(config: str, output: Path, flags: list[str], fresh: bool, env: dict) -> tuple[dict, float]:
    """`textdistill distill` in a fresh process (or the earlier result of the same command); (summary, seconds)."""
    cmd = [sys.executable, "-m", "textdistill", "-q", "distill", "--config", config, "--output_dir", str(output),
           "--overwrite", "--train.progress", "false", *flags]
    done, stamp = output / "summary.json", output.parent / f"{output.name}.command.json"
    if not fresh and done.is_file() and stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous["cmd"] == cmd[1:]:
            return json.loads(done.read_text(encoding="utf-8")), previous["seconds"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps({"cmd": cmd[1:], "seconds": seconds}), encoding="utf-8")
    return json.loads(done.read_text(encoding="utf-8")), seconds


def bench(run_dir: Path, latency_examples: int, env: dict) -> dict:
    """`textdistill bench` of a finished run (PyTorch, ONNX float32 and int8), cached in its bench.json."""
    out = run_dir / "bench.json"
    if not out.is_file():
        subprocess.run([sys.executable, "-m", "textdistill", "-q", "bench", str(run_dir), "--latency_examples",
                        str(latency_examples)], check=True, stdout=subprocess.DEVNULL, env=env)
    return json.loads(out.read_text(encoding="utf-8"))


def own_seconds(summary: dict, seconds: float) -> float:
    """The run's wall time less the no-teacher baseline's training, where the run trained one."""
    return seconds - summary["results"].get("baseline", {}).get("train_seconds", 0.0)


def mean(values: list[float]) -> str:
    spread = f" ({min(values):.2f} to {max(values):.2f})" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}"


def smoke_setup(folder: Path) -> str:
    """A tiny random teacher, tiny synthetic data and a config of the recipe's shape made smaller: a check that
    every row runs, not a measurement."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import FILLER, NEGATIVE, POSITIVE, synthetic_frame, tiny_bert, write_tokenizer

    teacher = folder / "teacher"
    tok = write_tokenizer(teacher, POSITIVE + NEGATIVE + FILLER)
    tiny_bert(len(tok.get_vocab()), layers=6).save_pretrained(str(teacher))
    data = {}
    for name, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 40, 2)):
        data[name] = str(folder / f"{name}.csv")
        synthetic_frame(n, seed).to_csv(data[name], index=False)
    config = {"data": {**data, "max_length": 16, "augment_copies": 1},
              "teacher": {"path": str(teacher)},
              "student": {"init": "teacher_layers", "layers": [2, 5], "ffn_keep": 0.5, "vocab": "task",
                          "hidden_size": 16, "num_heads": 1},
              "loss": {"temperature": 4.0, "temperature_end": 1.0, "schedule": "linear",
                       "soft_weighting": "confidence", "hidden_loss": "mse"},
              "train": {"epochs": 1, "batch_size": 16, "freeze_embeddings": False},
              "report": {"latency_examples": 5, "throughput_batches": 1}}
    path = folder / "smoke.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="textdistill/configs/rotten_tomatoes.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                    help=f"rows to run (default all): {', '.join(METHODS)}; the default recipe always runs")
    ap.add_argument("--output", type=Path, default=Path("runs/methods"))
    ap.add_argument("--latency_examples", type=int, default=300, help="batch-1 examples timed by bench (QAT row)")
    ap.add_argument("--fresh", action="store_true", help="repeat runs whose results are already there")
    ap.add_argument("--smoke", action="store_true", help="tiny models and data: check the script, measure nothing")
    args, extra = ap.parse_known_args()
    env = dict(os.environ)
    config, seeds, latency = args.config, args.seeds, args.latency_examples
    if args.smoke:
        scratch = Path(tempfile.mkdtemp(prefix="textdistill-methods-smoke-"))
        env["TEXTDISTILL_CACHE"] = str(scratch / "cache")
        config, seeds, latency, args.output = smoke_setup(scratch), seeds[:1], 5, scratch / "runs"
    name = Path(config).stem
    methods = [RECIPE] + [m for m in args.methods if m != RECIPE]
    summaries: dict[str, list[tuple[dict, float]]] = {}
    for method in methods:
        for seed in seeds:
            folder = args.output / name / method.replace(" ", "_").replace("+", "plus").replace("(", "").replace(
                ")", "") / f"seed{seed}"
            own_baseline = [] if method == RECIPE else ["--report.baseline", "false"]
            summary, seconds = run(config, folder, [*METHODS[method], *own_baseline, "--train.seed", str(seed),
                                                    *extra], args.fresh, env)
            summaries.setdefault(method, []).append((summary, seconds))
            r = summary["results"]
            print(f"{method} seed {seed}: student {100 * r['student']['accuracy']:.2f}%, teacher "
                  f"{100 * r['teacher']['accuracy']:.2f}%, wall {seconds:.0f} s", flush=True)

    recipe = [s["results"]["student"]["accuracy"] for s, _ in summaries[RECIPE]]
    print(f"\n{name}, seeds {seeds}, each method with the default recipe's student and budget:\n")
    print("| method | student % | vs recipe (pt) | retention % | student - baseline (pt) | distill wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    baseline = [s["results"]["baseline"]["accuracy"] for s, _ in summaries[RECIPE] if "baseline" in s["results"]]
    for method, runs in summaries.items():
        r = [s["results"] for s, _ in runs]
        student = [100 * x["student"]["accuracy"] for x in r]
        versus = [100 * (x["student"]["accuracy"] - base) for x, base in zip(r, recipe)]
        retention = [100 * x["student"]["accuracy"] / x["teacher"]["accuracy"] for x in r]
        gain = [100 * (x["student"]["accuracy"] - base) for x, base in zip(r, baseline)]
        print(f"| {method} | {mean(student)} | {mean(versus)} | {mean(retention)} | "
              f"{mean(gain) if gain else '-'} | {mean([own_seconds(s, t) for s, t in runs])} |")

    print("\nTargets (issue 18): the best of vid, contrastive and dkd +0.5 pt over the recipe on the mean, or a "
          "report that none helps; co-training within 1 pt of the recipe at less total wall time than teacher "
          "fine-tune + offline distillation; quantisation-aware int8 within 0.2 pt of the float student.")
    recipe_seconds = [own_seconds(s, t) for s, t in summaries[RECIPE]]
    finetune = [s["results"]["teacher"].get("train_seconds") for s, _ in summaries[RECIPE]]
    for method in (m for m in ONLINE if m in summaries):
        online = [own_seconds(s, t) for s, t in summaries[method]]
        cost = f"{statistics.mean(finetune):.0f} s" if all(f is not None for f in finetune) else "not recorded"
        total = (f"{statistics.mean(f + s for f, s in zip(finetune, recipe_seconds)):.0f} s"
                 if all(f is not None for f in finetune) else "n/a")
        student_phase = [s["online"]["train_seconds"] for s, _ in summaries[method]]
        print(f"\n{method}: distill wall {statistics.mean(online):.0f} s (student phase, every model in the loop: "
              f"{statistics.mean(student_phase):.0f} s) against teacher fine-tune ({cost}, cached once per "
              f"machine) + default recipe distill ({statistics.mean(recipe_seconds):.0f} s) = {total}; the teacher "
              f"it trained: {mean([100 * s['results']['teacher']['accuracy'] for s, _ in summaries[method]])}% "
              "test accuracy.")
    if QAT in summaries:
        print("\nint8 (ONNX Runtime, `textdistill bench`), test accuracy % and batch-1 p50 ms:")
        print("| student | float32 PyTorch | int8 ONNX | int8 - float (pt) | int8 p50 ms |")
        print("|---|---:|---:|---:|---:|")
        for method, label in ((RECIPE, "default recipe, dynamic int8 (today)"), (QAT, "quantisation-aware")):
            rows = [bench(Path(s["export"]["folder"]).parent, latency, env) for s, _ in summaries[method]]
            float_acc = [100 * b["student pytorch fp32"]["accuracy"] for b in rows]
            int8_acc = [100 * b["student onnx int8"]["accuracy"] for b in rows]
            print(f"| {label} | {mean(float_acc)} | {mean(int8_acc)} | "
                  f"{mean([i - f for i, f in zip(int8_acc, float_acc)])} | "
                  f"{mean([b['student onnx int8']['latency_p50_ms'] for b in rows])} |")
        qat_int8 = [100 * bench(Path(s["export"]["folder"]).parent, latency, env)["student onnx int8"]["accuracy"]
                    for s, _ in summaries[QAT]]
        print(f"quantisation-aware int8 - default recipe float student (pt): "
              f"{mean([q - 100 * base for q, base in zip(qat_int8, recipe)])}")


if __name__ == "__main__":
    main()
