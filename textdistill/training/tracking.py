"""Experiment tracking through accelerate's trackers (`train.report_to: [tensorboard, mlflow]`).

A run's trackers get what `metrics.jsonl` gets, line for line (the loop's one `record` writes both), the
resolved run config at the start (flattened to dotted names) and the numbers of the final summary at the
end. Everything stays in the run folder unless the tracker's own settings say otherwise: TensorBoard event
files under `<output_dir>/tracking/<run name>/`, MLflow in a SQLite store `<output_dir>/tracking/mlflow.db`
(experiment 'textdistill', one MLflow run per distill run; `MLFLOW_TRACKING_URI` points it elsewhere).
Hosted trackers (wandb, comet_ml, ...) follow their own login and environment settings.

Only the main process tracks: on the other processes, and without `report_to`, `Tracking` holds no
tracker and every call does nothing. TensorBoard and MLflow are the optional extra
`pip install 'textdistill[tracking]'`; a tracker asked for but not installed stops the run before any
work with one line naming the package to install.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textdistill.errors import TextDistillError

# The package that provides each tracker accelerate knows, for the error that asks to install it.
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "comet_ml": "comet-ml",
            "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}
EXTRA = ("tensorboard", "mlflow")  # what `pip install 'textdistill[tracking]'` installs
MLFLOW_EXPERIMENT = "textdistill"


def known_trackers() -> tuple[str, ...]:
    """The tracker names accelerate knows (what `train.report_to` accepts)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return tuple(LOGGER_TYPE_TO_CLASS)


def check_installed(names: tuple[str, ...]) -> None:
    """One line naming the package to install for the first tracker in `names` that is not installed."""
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in available:
            how = "pip install 'textdistill[tracking]'" if name in EXTRA else f"pip install {PACKAGES.get(name, name)}"
            raise TextDistillError(f"train.report_to asks for {name!r} but it is not installed; {how}, or remove "
                                   f"{name!r} from train.report_to")


@dataclass
class Tracking:
    """The experiment trackers of one run (accelerate `GeneralTracker`s); none on other processes."""

    trackers: list = field(default_factory=list)
    restore: list = field(default_factory=list)  # undo steps run by `finish` (a global MLflow setting)

    def record(self, entry: Mapping[str, Any]) -> None:
        """One `metrics.jsonl` entry, its numbers named `<run>/<name>` (`<run>/validation/<name>` for an
        evaluation), at its step: `student/loss`, `baseline/validation/accuracy`."""
        if self.trackers:
            self.log(metric_names(entry), entry["step"])

    def log(self, values: Mapping[str, float], step: int | None = None) -> None:
        for tracker in self.trackers:
            tracker.log(dict(values), step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
        for undo in self.restore:
            undo()
        self.restore = []


def metric_names(entry: Mapping[str, Any]) -> dict[str, float]:
    """A metrics.jsonl entry as tracker metrics: its finite numbers, named by run (and split)."""
    prefix = entry["run"] + (f"/{entry['split']}" if "split" in entry else "")
    return {f"{prefix}/{k}": float(v) for k, v in entry.items()
            if k not in ("run", "split", "step") and _is_number(v)}


def flat_numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in nested dicts, named by its path: `results/student/accuracy`. Lists are left
    out (a confusion matrix is a table, not a metric)."""
    if isinstance(tree, Mapping):
        out: dict[str, float] = {}
        for k, v in tree.items():
            out.update(flat_numbers(v, f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/"): float(tree)} if _is_number(tree) else {}


def flat_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """A config as tracker parameters: dotted names, scalars as they are, lists and empty values as JSON text
    (what TensorBoard's hparams and MLflow's params accept)."""
    out: dict[str, str | int | float | bool] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (str, int, float, bool)) else json.dumps(v)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def start_tracking(names: tuple[str, ...], folder: Path, run_name: str, config: Mapping[str, Any],
                   main: bool = True) -> Tracking:
    """The trackers of `names`, started, with `config` (flattened) stored as the run's parameters; an empty
    `Tracking` without names or on a process other than the main one."""
    if not names or not main:
        return Tracking()
    check_installed(names)
    folder.mkdir(parents=True, exist_ok=True)
    tracking = Tracking()
    try:
        for name in names:
            tracker = _make_tracker(name, folder, run_name, tracking)
            with _quiet("mlflow"):  # 'Creating initial MLflow database tables...' says nothing to a user
                tracker.start()
            tracking.trackers.append(tracker)
        params = flat_config(config)
        for tracker in tracking.trackers:
            tracker.store_init_configuration(params)
    except BaseException:
        tracking.finish()
        raise
    return tracking


@contextlib.contextmanager
def _quiet(logger_name: str):
    """A library's logger held at WARNING for a moment."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _make_tracker(name: str, folder: Path, run_name: str, tracking: Tracking):
    """One accelerate tracker, constructed as `Accelerator.init_trackers` does, with local defaults."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls = LOGGER_TYPE_TO_CLASS[name]
    if name == "mlflow":
        import mlflow  # noqa: F401  (configures its loggers now, so `_quiet` holds them while the tracker starts)

        # artifacts beside a local store; a store named by MLFLOW_TRACKING_URI keeps its own artifact location
        local = _local_mlflow_store(folder, tracking)
        artifacts = str((folder / "mlflow-artifacts").resolve()) if local else None
        return cls(experiment_name=MLFLOW_EXPERIMENT, logging_dir=artifacts, run_name=run_name)
    return cls(run_name, str(folder)) if cls.requires_logging_directory else cls(run_name)


def _local_mlflow_store(folder: Path, tracking: Tracking) -> bool:
    """MLflow writes to a SQLite file in the run folder (True) unless `MLFLOW_TRACKING_URI` names a store
    (False). Its file store is retired. The URI is process-wide (MLflow also puts it into the environment),
    so it is unset again when the run's tracking finishes: a later run in the same process gets its own store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return False
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(folder / 'mlflow.db').resolve()}")
    tracking.restore.append(lambda: mlflow.set_tracking_uri(None))
    return True
