"""Experiment tracking (train.report_to): what a run logs is read back from TensorBoard's event files and
MLflow's local store, for real (scripts/setup.sh installs the `tracking` extra)."""

import json
import os
from pathlib import Path

import pytest
import yaml

from textdistill.config import load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline import commands
from textdistill.training.tracking import flat_config, flat_numbers, metric_names


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _expected(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every number metrics.jsonl holds, as tracker metric name -> {step: value}."""
    out: dict[str, dict[int, float]] = {}
    for entry in _jsonl(run_dir):
        for name, value in metric_names(entry).items():
            out.setdefault(name, {})[entry["step"]] = value
    return out


def test_a_run_logs_every_metric_its_config_and_its_summary_to_tensorboard_and_mlflow(tiny_overrides):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, {**tiny_overrides, "train.report_to": ["tensorboard", "mlflow"]})
    summary = commands.distill(cfg)
    run_dir = Path(cfg.output_dir)
    expected = _expected(run_dir)
    assert {"student/loss", "student/loss_soft", "student/lr", "baseline/loss",
            "student/validation/accuracy", "baseline/validation/macro_f1"} <= set(expected)
    final = {"results/student/accuracy": summary["results"]["student"]["accuracy"],
             "results/baseline/macro_f1": summary["results"]["baseline"]["macro_f1"],
             "results/teacher/latency_p50_ms": summary["results"]["teacher"]["latency_p50_ms"],
             "runs/student/steps": summary["runs"]["student"]["steps"], "wall_seconds": summary["wall_seconds"]}
    last = summary["runs"]["student"]["steps"]

    # TensorBoard: scalars in <output_dir>/tracking/<run name>, the config as hparams beside them
    board = run_dir / "tracking" / run_dir.name
    events = EventAccumulator(str(board), size_guidance={"scalars": 0})
    events.Reload()
    for name, by_step in expected.items():
        logged = {e.step: e.value for e in events.Scalars(name)}
        assert logged == pytest.approx(by_step, rel=1e-6), name  # TensorBoard stores float32
    for name, value in final.items():
        assert [(e.step, e.value) for e in events.Scalars(name)] == [(last, pytest.approx(value, rel=1e-6))], name
    hparams = [yaml.safe_load(p.read_text()) for p in board.glob("*/hparams.yml")]
    assert len(hparams) == 1 and hparams[0]["loss.temperature"] == cfg.loss.temperature
    assert hparams[0]["student.layers"] == "[0, 3]" and hparams[0]["train.report_to"] == '["tensorboard", "mlflow"]'

    # MLflow: a SQLite store in the run folder, one run named after it, the config as params
    client = MlflowClient(f"sqlite:///{run_dir.resolve() / 'tracking' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("textdistill")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["loss.temperature"] == str(cfg.loss.temperature)
    assert run.data.params["data.train"] == tiny_overrides["data.train"]
    for name, by_step in expected.items():
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
        assert logged == pytest.approx(by_step), name
    for name, value in final.items():
        assert run.data.metrics[name] == pytest.approx(value), name
    # the store stays the run's own: a later run in this process does not write into it
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_mlflow_tracking_uri_sends_the_run_to_that_store(tiny_overrides, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    cfg = load_config(None, {**tiny_overrides, "train.report_to": ["mlflow"]})
    summary = commands.distill(cfg)
    assert not (Path(cfg.output_dir) / "tracking" / "mlflow.db").exists()
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("textdistill").experiment_id])
    assert run.data.metrics["results/student/accuracy"] == pytest.approx(summary["results"]["student"]["accuracy"])
    assert os.environ["MLFLOW_TRACKING_URI"] == store  # the user's setting is left as it was


def test_without_report_to_nothing_is_tracked(tiny_overrides):
    cfg = load_config(None, tiny_overrides)
    commands.distill(cfg)
    assert not (Path(cfg.output_dir) / "tracking").exists()


def test_a_tracker_that_is_not_installed_stops_the_run_before_any_work(tiny_overrides, monkeypatch):
    import accelerate.tracking

    cfg = load_config(None, {**tiny_overrides, "train.report_to": ["tensorboard", "aim"]})
    with pytest.raises(TextDistillError, match=r"asks for 'aim' but it is not installed; pip install aim"):
        commands.distill(cfg)
    assert not Path(cfg.output_dir).exists()
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    with pytest.raises(TextDistillError, match=r"'tensorboard' but it is not installed; pip install 'textdistill\[tracking\]'"):
        commands.distill(load_config(None, {**tiny_overrides, "train.report_to": ["tensorboard"]}))


@pytest.mark.parametrize("overrides,message", [
    ({"train.report_to": ["tensorbord"]}, "'tensorbord' is not a tracker accelerate knows; use any of"),
    ({"train.report_to": ["mlflow", "mlflow"]}, "names a tracker twice"),
    ({"teacher.finetune.report_to": ["mlflow"]}, "teacher.finetune.report_to is not used"),
])
def test_report_to_is_checked_with_the_config(tiny_overrides, overrides, message):
    with pytest.raises(TextDistillError, match=message):
        load_config(None, {**tiny_overrides, **overrides})


def test_names_of_metrics_config_and_summary():
    assert metric_names({"run": "student", "step": 10, "epoch": 0.5, "loss": 1.5, "loss_soft": 0.25}) == {
        "student/epoch": 0.5, "student/loss": 1.5, "student/loss_soft": 0.25}
    assert metric_names({"run": "baseline", "step": 4, "split": "validation", "accuracy": 0.75,
                         "perplexity": float("inf")}) == {"baseline/validation/accuracy": 0.75}
    assert flat_config({"loss": {"temperature": 2.0, "soft": "forward_kl"}, "student": {"layers": [2, 5]},
                        "data": {"test": None}}) == {
        "loss.temperature": 2.0, "loss.soft": "forward_kl", "student.layers": "[2, 5]", "data.test": "null"}
    assert flat_numbers({"results": {"student": {"accuracy": 0.8, "confusion_matrix": [[1]], "name": "x",
                                                 "ok": True}}, "wall_seconds": 3}) == {
        "results/student/accuracy": 0.8, "wall_seconds": 3.0}
