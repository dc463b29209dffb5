"""`distill --sweep`: the budget plan, the grid, and whole sweeps on tiny models through Python and the CLI."""

import json
from pathlib import Path

import pytest
import yaml

from textdistill.cli import main, run
from textdistill.config import load_config
from textdistill.errors import TextDistillError
from textdistill.pipeline.run import run_distill
from textdistill.pipeline import sweep as sweep_mod
from textdistill.pipeline.sweep import Setting, apply_setting, plan_trials, run_sweep, spread_layers, sweep_grid


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest.py)


def test_plan_trials_shortens_then_skips():
    def cost(steps):  # 10 s of setup, 1 s a step
        return 10 + steps

    assert plan_trials(4, 100, 20, 1000, cost) == (100, 4)  # all fit at full length
    steps, n = plan_trials(4, 100, 20, 300, cost)  # shortened, all four still run
    assert n == 4 and steps == 65 and 4 * cost(steps) <= 300 < 4 * cost(steps + 1)
    assert plan_trials(4, 100, 20, 70, cost) == (20, 2)  # at the floor only two fit
    assert plan_trials(4, 100, 20, 5, cost) == (20, 0)
    assert plan_trials(4, 100, 20, -1, cost) == (20, 0)  # the probe alone used the budget up
    assert plan_trials(4, 8, 20, 30, cost) == (8, 1)  # a full run shorter than the floor is not lengthened


def test_grid_and_settings(tiny_overrides):
    assert spread_layers(2, 6) == [2, 5] and spread_layers(3, 4) == [0, 2, 3] and spread_layers(1, 4) == [3]
    cfg = load_config(None, {**tiny_overrides, "sweep.students": [1, "half", 2], "sweep.temperatures": [1, 4],
                             "sweep.alphas": [0.25]})
    grid = sweep_grid(cfg, n_teacher=4)
    assert len(grid) == 4  # 'half' of 4 layers is 2: the same size is tried once
    assert grid[0] == Setting(1, 1.0, 0.25) and grid[-1] == Setting(2, 4.0, 0.25)
    out = apply_setting(cfg, grid[-1], 4)
    assert out.student.layers == (1, 3) and out.loss.temperature == 4.0
    assert (out.loss.alpha, out.loss.beta) == (0.25, 0.75)
    assert cfg.student.layers == (0, 3)  # the original is untouched (configs are frozen)
    shrink = load_config(None, {**tiny_overrides, "student.init": "shrink"})
    assert apply_setting(shrink, Setting(3, 2.0, None), 4).student.num_layers == 3
    kept = sweep_grid(load_config(None, {**tiny_overrides, "sweep.alphas": [], "sweep.temperatures": []}), None)
    assert kept == [Setting(None, 2.0, None)]
    with pytest.raises(TextDistillError, match="teacher has 4"):
        sweep_grid(load_config(None, {**tiny_overrides, "sweep.students": [6]}), 4)


@pytest.mark.parametrize("extra,needle", [
    ({"sweep.students": ["huge"]}, "quarter, third, half"),
    ({"sweep.alphas": [1.5]}, r"in \[0, 1\]"),
    ({"sweep.temperatures": [0]}, "positive"),
    ({"sweep.time_budget_s": 0}, "positive"),
])
def test_sweep_settings_are_checked(tiny_overrides, extra, needle):
    with pytest.raises(TextDistillError, match=needle):
        load_config(None, {**tiny_overrides, **extra})


def test_sweep_from_python_runs_the_best_setting(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "sweep.students": [1, "half"], "sweep.temperatures": [1, 4],
                             "sweep.alphas": [0.5], "train.epochs": 1})
    summary = run_sweep(cfg)
    run_dir = Path(cfg.output_dir)
    sweep = summary["sweep"]
    trials = sweep["trials"]
    assert [t["setting"] for t in trials] == [s.label() for s in sweep_grid(cfg, 4)]
    assert all(t["status"] == "ran" and 0 <= t["validation_score"] <= 1 and t["seconds"] > 0 for t in trials)
    assert all(t["steps"] == sweep["full_steps"] for t in trials)  # a generous budget shortens nothing
    best = sweep["best"]
    assert trials[best]["validation_score"] == max(t["validation_score"] for t in trials)
    assert all(t["validation_score"] < trials[best]["validation_score"] for t in trials[:best])  # first on ties
    # the final run is an ordinary run of the best setting, with the grid added to its summary and report
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["student"]["layers"] == spread_layers(trials[best]["layers"], 4)
    assert saved["loss"]["temperature"] == trials[best]["temperature"] and saved["loss"]["beta"] == 0.5
    assert set(summary["results"]) == {"teacher", "student", "baseline"}
    assert json.loads((run_dir / "summary.json").read_text())["sweep"] == sweep
    assert "## Sweep" in (run_dir / "report.md").read_text() and not (run_dir / "sweep").exists()
    assert "Sweep" in (run_dir / "report.html").read_text()
    # the final run resumes like any other (its config.yaml holds the best setting) and keeps the grid
    (run_dir / "phases" / "report.json").unlink()
    resumed = run_distill(load_config(run_dir / "config.yaml"), resume=True)
    assert resumed["sweep"] == sweep and resumed["results"]["student"] == summary["results"]["student"] | {
        k: resumed["results"]["student"][k] for k in resumed["results"]["student"] if "latency" in k or "throughput" in k}


def test_sweep_through_the_cli_lists_skipped_trials(tmp_path, tiny_overrides, monkeypatch, capsys):
    # the plan decides from measured times; fixing it to "one trial fits" makes the skipping deterministic
    monkeypatch.setattr(sweep_mod, "plan_trials", lambda n, full, floor, budget, cost: (min(full, 4), 1))
    flags = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in tiny_overrides.items()]
    assert run(["-q", "distill", "--sweep", *flags, "--sweep.temperatures=[1, 3]", "--sweep.alphas=[0.5]"]) == 0
    run_dir = Path(tiny_overrides["output_dir"])
    trials = json.loads((run_dir / "summary.json").read_text())["sweep"]["trials"]
    assert [t["status"] for t in trials] == ["ran", "skipped: budget"]
    assert trials[0]["steps"] == 4 and trials[1]["validation_score"] is None
    report = (run_dir / "report.md").read_text()
    assert "| best |" in report and "skipped: budget" in report
    with pytest.raises(SystemExit):
        main(["distill", "--sweep", "--resume", "--output_dir", str(run_dir)])
    assert "--sweep and --resume cannot be combined" in capsys.readouterr().err


def test_a_budget_too_small_for_any_trial_is_an_error(tiny_overrides):
    cfg = load_config(None, {**tiny_overrides, "sweep.time_budget_s": 1e-6})
    with pytest.raises(TextDistillError, match="no sweep trial fits sweep.time_budget_s"):
        run_sweep(cfg)
