"""`distill --sweep`: a small grid of settings tried on validation within a time budget, then the full run.

The grid: student sizes x soft losses (with dkd's NCKD weights and adaptive_kl's gammas) x temperatures x alphas.

Every trial is built from the phases of an ordinary run (`run.prepare`, `run.train_student`) for one
setting and stops after the student phase, so trials train exactly as the final run does; the teacher is
fine-tuned and scored once (the caches serve every later trial and the final run). A short probe first
measures the seconds per step, per evaluation and of setting up a trial; the trials then all get the same
number of steps (the full run's, shortened to fit the budget, down to `sweep.min_trial_steps`), so their
validation accuracies compare. Trials that still do not fit are listed as skipped. The best setting (highest validation accuracy, the first on ties) is
then run in full, and the grid goes into its summary.json and report.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig

from textdistill.config import STUDENT_SIZES, RunConfig, replaced
from textdistill.errors import TextDistillError
from textdistill.models.loading import refuse_custom_code, resolve_model_dir
from textdistill.ownership import remove_owned
from textdistill.pipeline.run import Plan, prepare, run_distill, start_run, train_student
from textdistill.training.distributed import process_state

log = logging.getLogger("textdistill")
PROBE_STEPS = 10  # the loop logs elapsed time every 10 steps: the probe's last log is before its evaluation


# The option of each soft loss that the sweep varies: loss field, sweep field, name in labels.
SOFT_OPTIONS = {"dkd": ("dkd_beta", "dkd_betas", "NCKD weight"),
                "adaptive_kl": ("adaptive_gamma", "adaptive_gammas", "gamma")}


@dataclass(frozen=True)
class Setting:
    """One point of the grid; None keeps the configured value."""

    layers: int | None
    temperature: float
    alpha: float | None
    soft: str | None = None
    soft_option: float | None = None  # SOFT_OPTIONS[soft]'s value

    def label(self) -> str:
        student = "student as configured" if self.layers is None else \
            f"{self.layers} layer{'s' if self.layers != 1 else ''}"
        soft = "" if self.soft is None else f", {self.soft}"
        if self.soft_option is not None:
            soft += f" ({SOFT_OPTIONS[self.soft][2]} {self.soft_option:g})"
        alpha = "" if self.alpha is None else f", alpha {self.alpha:g} / beta {1 - self.alpha:g}"
        return f"{student}{soft}, T {self.temperature:g}{alpha}"


def spread_layers(count: int, n_teacher: int) -> list[int]:
    """`count` teacher layers evenly spread, ending with the last (the 'uniform' layer map): 2 of 6 -> [2, 5]."""
    return [round((i + 1) * n_teacher / count) - 1 for i in range(count)]


def soft_choices(cfg: RunConfig) -> list[tuple[str | None, float | None]]:
    """(soft loss, its option) pairs of `sweep.softs`: dkd once per `sweep.dkd_betas` value, adaptive_kl once
    per `sweep.adaptive_gammas` value (the configured one when the list is empty); [(None, None)] keeps loss.soft."""
    choices: list[tuple[str | None, float | None]] = []
    for soft in cfg.sweep.softs or [None]:
        values = getattr(cfg.sweep, SOFT_OPTIONS[soft][1]) if soft in SOFT_OPTIONS else ()
        choices += [(soft, v) for v in values] if values else [(soft, None)]
    return choices


def sweep_grid(cfg: RunConfig, n_teacher: int | None) -> list[Setting]:
    """Students x soft losses x temperatures x alphas, in that order; named student sizes resolved against the
    teacher."""
    sizes: list[int | None] = [None]
    if cfg.sweep.students:
        sizes = []
        for size in cfg.sweep.students:
            layers = max(1, round(STUDENT_SIZES[size] * n_teacher)) if isinstance(size, str) else size
            if cfg.student.init == "teacher_layers" and layers > n_teacher:
                raise TextDistillError(f"sweep.students entry {size!r} asks for {layers} layers but the teacher has "
                                       f"{n_teacher}; use at most {n_teacher}")
            if layers not in sizes:
                sizes.append(layers)
    temperatures = cfg.sweep.temperatures or [cfg.loss.temperature]
    alphas = cfg.sweep.alphas or [None]
    return [Setting(s, t, a, soft, option)
            for s, (soft, option), t, a in itertools.product(sizes, soft_choices(cfg), temperatures, alphas)]


def apply_setting(cfg: RunConfig, setting: Setting, n_teacher: int | None) -> RunConfig:
    """A copy of `cfg` with the setting's student size, soft loss (and its option), temperature and alpha
    (beta = 1 - alpha)."""
    changes: dict = {"loss.temperature": setting.temperature}
    if setting.soft is not None:
        changes["loss.soft"] = setting.soft
    if setting.soft_option is not None:
        changes[f"loss.{SOFT_OPTIONS[setting.soft][0]}"] = setting.soft_option
    if setting.layers is not None:
        if cfg.student.init == "teacher_layers":
            changes["student.layers"] = tuple(spread_layers(setting.layers, n_teacher))
        else:
            changes["student.num_layers"] = setting.layers
    if setting.alpha is not None:
        changes.update({"loss.alpha": setting.alpha, "loss.beta": 1.0 - setting.alpha})
    return replaced(cfg, changes)


def trial_seconds(steps: int, eval_every: int, per_step: float, per_eval: float, overhead: float) -> float:
    """Estimated wall seconds of one trial of `steps` steps (evaluations every `eval_every` and at the end)."""
    return overhead + steps * per_step + math.ceil(steps / eval_every) * per_eval


def plan_trials(n_trials: int, full_steps: int, min_steps: int, budget_s: float, cost) -> tuple[int, int]:
    """(steps per trial, trials that fit) so that the trials fit `budget_s`, given `cost(steps)` in seconds.

    Every trial gets the same steps: the full run's if all fit, else the most that let all fit, but not
    fewer than `min_steps` (or the full run's, if smaller); then only as many trials as fit are run.
    """
    if n_trials * cost(full_steps) <= budget_s:
        return full_steps, n_trials
    floor = min(min_steps, full_steps)
    if n_trials * cost(floor) > budget_s:
        fit = int(budget_s // cost(floor)) if budget_s > 0 else 0
        return floor, max(0, min(n_trials, fit))
    lo, hi = floor, full_steps  # n * cost(lo) fits, n * cost(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if n_trials * cost(mid) <= budget_s else (lo, mid)
    return lo, n_trials


def teacher_depth(cfg: RunConfig) -> int:
    """Layers of the teacher (of its base, for the built-in teacher: fine-tuning keeps the depth)."""
    builtin = cfg.teacher.path == "builtin"
    name, role = (cfg.teacher.base, "teacher.base") if builtin else (cfg.teacher.path, "teacher.path")
    path = resolve_model_dir(name, role)
    refuse_custom_code(path, role, cfg.trust_remote_code)
    return AutoConfig.from_pretrained(str(path), trust_remote_code=cfg.trust_remote_code).num_hidden_layers


def _trial(cfg: RunConfig, setting: Setting, n_teacher: int | None, folder: Path,
           steps: int | None) -> tuple[Plan, dict]:
    """One trial: a run of the setting in `folder`, no baseline, its student trained `steps` steps at most.
    Returns the run's plan and the student phase's result."""
    trial_cfg = replaced(apply_setting(cfg, setting, n_teacher), {"output_dir": str(folder), "report.baseline": False})
    run_folder, data = start_run(trial_cfg, overwrite=False, resume=False)
    with run_folder:
        plan = prepare(trial_cfg, run_folder.path, resume=False, data=data)
        return plan, train_student(plan, max_steps=steps)[1]


def _one_off_seconds(plan: Plan) -> float:
    """Teacher fine-tuning and scoring done by this trial: paid once, cached for every later run."""
    teacher = plan.teacher.info
    finetune = teacher.get("wall_seconds", 0.0) if not teacher.get("cached", True) else 0.0
    return plan.signal_seconds + finetune


def _probe_rates(student: dict) -> tuple[float, float]:
    """(seconds per step, seconds per evaluation) from the probe's training log."""
    logs = [h for h in student["history"] if "split" not in h and "elapsed_s" in h]
    if not logs:
        return student["seconds"] / max(student["steps"], 1), 0.0
    trained = logs[-1]["elapsed_s"]
    return trained / max(logs[-1]["step"], 1), max(student["seconds"] - trained, 0.0)


def run_sweep(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Try the grid of `cfg.sweep` on validation, then run the best setting in full; return its summary.

    The summary (and report) has a `sweep` section: each setting with its steps, validation accuracy
    and seconds, or marked skipped when it did not fit `sweep.time_budget_s`.
    """
    if process_state().num_processes > 1:
        raise TextDistillError("distill --sweep runs in one process (its trials are timed); run it without "
                               "accelerate or torchrun, then launch the chosen setting on several processes")
    folder, _ = start_run(cfg, overwrite, resume=False)  # refuse a bad output_dir before the budget is spent
    with folder:
        best, record = _sweep_trials(cfg, folder.path)
    return run_distill(best, overwrite=True, sweep=record)  # replaces the sweep's folder, ours


def _sweep_trials(cfg: RunConfig, run_dir: Path) -> tuple[RunConfig, dict]:
    """The trials of `run_sweep` in `run_dir/sweep`: the best setting's config and the sweep's record."""
    n_teacher = teacher_depth(cfg) if cfg.sweep.students else None
    grid = sweep_grid(cfg, n_teacher)
    budget = cfg.sweep.time_budget_s
    trials_dir = run_dir / "sweep"

    # the largest student, for a conservative estimate of a step's cost
    probe_setting = max(grid, key=lambda s: s.layers or 0)
    started = time.perf_counter()
    probe, student = _trial(cfg, probe_setting, n_teacher, trials_dir / "probe", PROBE_STEPS)
    probe_wall = time.perf_counter() - started
    one_off = _one_off_seconds(probe)
    spent = probe_wall - one_off
    per_step, per_eval = _probe_rates(student)
    overhead = max(probe_wall - one_off - student["seconds"], 0.0)
    full_steps, eval_every = probe.student_train.max_steps, probe.student_train.eval_every

    def cost(steps: int) -> float:
        return trial_seconds(steps, eval_every, per_step, per_eval, overhead)

    steps, n_fit = plan_trials(len(grid), full_steps, cfg.sweep.min_trial_steps, budget - spent, cost)
    log.info("sweep: %d settings; %d step(s) per trial (a full run has %d), about %.0f s each; %d fit in the "
             "%.0f s left of the budget", len(grid), steps, full_steps, cost(steps), n_fit, budget - spent)
    remove_owned(trials_dir / "probe")

    trials, took = [], []
    for i, setting in enumerate(grid):
        record = {"setting": setting.label(), "layers": setting.layers, "temperature": setting.temperature,
                  "alpha": setting.alpha, "soft": setting.soft, "soft_option": setting.soft_option, "steps": None,
                  "validation_score": None, "seconds": None}
        estimate = max(took) if took else cost(steps)
        if i >= n_fit or spent + estimate > budget:
            trials.append({**record, "status": "skipped: budget"})
            continue
        folder = trials_dir / f"trial-{i}"
        t0 = time.perf_counter()
        plan, student = _trial(cfg, setting, n_teacher, folder, steps)
        wall = time.perf_counter() - t0
        took.append(wall - _one_off_seconds(plan))
        spent += took[-1]
        one_off += _one_off_seconds(plan)
        remove_owned(folder)
        trials.append({**record, "steps": student["steps"], "validation_score": student["best_score"],
                       "seconds": wall, "status": "ran"})
        log.info("sweep %d/%d: %s: validation %s %.4f (%.0f s)", i + 1, len(grid), setting.label(),
                 probe.metric, student["best_score"], wall)

    ran = [i for i, t in enumerate(trials) if t["status"] == "ran"]
    if not ran:
        raise TextDistillError(
            f"no sweep trial fits sweep.time_budget_s ({budget:g} s; one trial of {steps} steps takes about "
            f"{cost(steps):.0f} s); raise the budget, lower sweep.min_trial_steps or try fewer settings")
    best = max(ran, key=lambda i: (trials[i]["validation_score"], -i))
    record = {"metric": probe.metric, "time_budget_s": budget, "seconds": spent, "one_off_seconds": one_off,
              "steps_per_trial": steps, "full_steps": full_steps, "trials": trials, "best": best}
    log.info("sweep: best %s (validation %s %.4f); the full run follows", trials[best]["setting"],
             probe.metric, trials[best]["validation_score"])
    return apply_setting(cfg, grid[best], n_teacher), record
