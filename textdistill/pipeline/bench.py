"""`bench`: teacher and student of a finished run in PyTorch and in ONNX Runtime (float32 and int8).

Latency at batch 1 (p50, p95), throughput at batch 32, the size of each model file, and test accuracy
(so the cost of int8 quantisation is visible), measured interleaved in one process. Writes `bench.json`
into the run and adds it to the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from textdistill.config import load_config
from textdistill.data.batching import sequential_batches
from textdistill.data.labelled import Encoded, encode_splits, load_classification_data
from textdistill.errors import TextDistillError
from textdistill.evaluation.speed import measure_speed
from textdistill.models.loading import load_classifier, load_tokenizer, teacher_label_order
from textdistill.models.onnx import OnnxClassifier, export_classifier_onnx
from textdistill.models.size import folder_weights_bytes
from textdistill.pipeline.export import PROBES
from textdistill.atomic import write_json
from textdistill.report.render import write_report
from textdistill.models.inputs import model_inputs


@torch.inference_mode()
def _accuracy(model, data: Encoded, order: list[int] | None, batch_size: int = 64) -> float:
    correct = 0
    for index in sequential_batches(data.lengths, batch_size):
        logits = model(**model_inputs(data.collate(index))).logits  # [B, C], the model's label order
        if order is not None:
            logits = logits[:, order]
        correct += int((logits.argmax(-1) == data.labels[index]).sum())
    return correct / len(data)


def run_bench(run_dir: str | Path, latency_examples: int = 100, throughput_batches: int = 5) -> dict:
    """Benchmark a finished distill run; returns and writes `bench.json`."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "student" / "config.json").is_file():
        raise TextDistillError(f"{str(run_dir)!r} is not a finished distill run (no summary.json or student/); "
                               "give the output_dir of a finished run")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    cfg = load_config(str(run_dir / "config.yaml"), {})
    data = load_classification_data(cfg.data)
    teacher_dir = Path(summary["teacher"]["path"])
    folders = {"teacher": teacher_dir, "student": run_dir / "student"}
    torch_models = {role: load_classifier(folder, role, trust_remote_code=cfg.trust_remote_code)
                    for role, folder in folders.items()}
    # each model reads the test text through its own tokenizer (the student's may be a pruned vocabulary)
    tokenizers = {role: load_tokenizer(folder, role, cfg.trust_remote_code) for role, folder in folders.items()}
    tests = {role: encode_splits(tokenizers[role], data, cfg.data.max_length,
                                 getattr(torch_models[role].config, "max_position_embeddings", None)).test
             for role in folders}
    threads = torch.get_num_threads()
    models, sizes, orders, data_of = {}, {}, {}, {}
    for role, model in torch_models.items():
        model.eval()
        folder = run_dir / "onnx" / role
        folder.mkdir(parents=True, exist_ok=True)
        export_classifier_onnx(model, tokenizers[role], folder, PROBES)
        order = teacher_label_order(model, data.label_names)
        models[f"{role} pytorch fp32"] = model
        sizes[f"{role} pytorch fp32"] = folder_weights_bytes(folders[role])
        for file, label in (("model.onnx", "onnx fp32"), ("model.int8.onnx", "onnx int8")):
            models[f"{role} {label}"] = OnnxClassifier(folder / file, threads)
            sizes[f"{role} {label}"] = (folder / file).stat().st_size
        for name in models:
            if name.startswith(role):
                orders[name] = order
                data_of[name] = tests[role]
    speed = measure_speed(models, data_of, latency_examples, throughput_batches)
    bench = {name: {**speed[name], "model_bytes": sizes[name],
                    "accuracy": _accuracy(models[name], data_of[name], orders[name])}
             for name in models}
    write_json(run_dir / "bench.json", bench)
    summary["bench"] = bench
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary)
    return bench
