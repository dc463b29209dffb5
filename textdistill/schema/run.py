"""The run itself: `report`, `sweep`, and `RunConfig`, which holds every section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textdistill.schema.fields import CLASSIFICATION, GENERATION_TASKS, doc, section
from textdistill.schema.data import DataConfig
from textdistill.schema.models import StudentConfig, TeacherConfig
from textdistill.schema.objectives import GenerationConfig, LossConfig, OnlineConfig, QuantisationConfig
from textdistill.schema.training import TrainConfig


@dataclass(frozen=True)
class ReportConfig:
    baseline: bool = doc(True, "Also train the same student without a teacher (labels only) for comparison.")
    latency_examples: int = doc(
        200,
        "Test examples timed one at a time: batch-1 latency of a forward pass (classification), or of greedy "
        "decoding (generation, 20 by default).",
        per_task={"causal_lm": 20, "seq2seq": 20},
    )
    throughput_batches: int = doc(10, "Batches of 32 timed for throughput.", tasks=CLASSIFICATION,
                                  instead="report.latency_examples times greedy decoding")


# Named student sizes for sweep.students: the share of the teacher's layers kept (at least one).
STUDENT_SIZES = {"quarter": 0.25, "third": 1 / 3, "half": 0.5}


@dataclass(frozen=True)
class SweepConfig:
    temperatures: tuple[float, ...] = doc(
        (1.0, 2.0, 4.0), "Values of loss.temperature tried by `distill --sweep`; empty keeps loss.temperature.",
        tasks=CLASSIFICATION,
    )
    alphas: tuple[float, ...] = doc(
        (0.2, 0.5, 0.8),
        "Values of loss.alpha tried by `distill --sweep`, each with loss.beta = 1 - alpha; empty keeps both.",
        tasks=CLASSIFICATION,
    )
    students: tuple[int | str, ...] = doc(
        (),
        "Student sizes tried by `distill --sweep`: layer counts (2) or names of a share of the teacher's "
        "layers ('quarter', 'third', 'half'). Sets student.layers (evenly spread, ending with the last "
        "teacher layer) or student.num_layers for 'shrink'. Empty keeps the configured student.",
        tasks=CLASSIFICATION,
    )
    softs: tuple[str, ...] = doc(
        (),
        "Values of loss.soft tried by `distill --sweep` (e.g. forward_kl, dkd, adaptive_kl); empty keeps loss.soft.",
        tasks=CLASSIFICATION,
    )
    dkd_betas: tuple[float, ...] = doc(
        (), "Values of loss.dkd_beta tried with soft 'dkd'; empty keeps loss.dkd_beta.", tasks=CLASSIFICATION,
    )
    adaptive_gammas: tuple[float, ...] = doc(
        (), "Values of loss.adaptive_gamma tried with soft 'adaptive_kl'; empty keeps loss.adaptive_gamma.",
        tasks=CLASSIFICATION,
    )
    time_budget_s: float = doc(
        1800.0,
        "Wall-clock seconds for the sweep's trials. Trials are shortened (fewer steps, the same for all) "
        "to fit; those that still do not fit are reported as skipped. Fine-tuning and scoring with the "
        "teacher are one-off costs, cached for the final run, and not counted.",
        tasks=CLASSIFICATION,
    )
    min_trial_steps: int = doc(
        20, "Fewest optimizer steps a trial may be shortened to; below that, trials are skipped instead.",
        tasks=CLASSIFICATION,
    )


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = doc("runs/default", "Run folder: config, metrics, checkpoints, models and report.")
    task: Literal["classification", "causal_lm", "seq2seq"] = doc(
        "classification",
        "Task family: 'classification', 'causal_lm' (decoder-only language model) or 'seq2seq' (encoder-decoder); "
        "see docs/guide/generation.md for the generation tasks.",
    )
    data: DataConfig = section(DataConfig, "Where the examples come from and how they are tokenised.")
    teacher: TeacherConfig = section(TeacherConfig, "The teacher model.")
    student: StudentConfig = section(StudentConfig, "How the student is built.")
    loss: LossConfig = section(LossConfig, "The distillation objective.")
    train: TrainConfig = section(TrainConfig, "Student training settings.")
    report: ReportConfig = section(ReportConfig, "What the final report measures.")
    sweep: SweepConfig = section(SweepConfig, "The grid tried by `distill --sweep` on validation.", CLASSIFICATION)
    online: OnlineConfig = section(OnlineConfig, "Online distillation: co-training and deep mutual learning.")
    quantisation: QuantisationConfig = section(
        QuantisationConfig, "Quantisation-aware distillation for the int8 ONNX export.", CLASSIFICATION)
    generation: GenerationConfig = section(
        GenerationConfig, "Decoding, sequence-level and on-policy KD, and the top-k teacher of the generation tasks.",
        GENERATION_TASKS,
    )
    trust_remote_code: bool = doc(
        False,
        "Let model folders run their own Python code (an `auto_map` in config.json). Off: such folders are "
        "refused. Turn on only for folders you trust.",
    )
