"""The run configuration's schema: one set of frozen dataclasses, by concept, for every task.

Every field carries its documentation in `metadata["doc"]`, the tasks that use it in `metadata["tasks"]`,
what to set instead under the other tasks in `metadata["instead"]` and defaults that differ by task in
`metadata["per_task"]`; the CLI builds its `--section.field` flags and their `--help` text from them, so
the file, the flags and the help can never drift apart. Reading and writing YAML is `config.py`.

Sections are concepts, not tasks: one `data`, `teacher`, `student`, `loss`, `train` and `report` section
serves classification, causal LMs and encoder-decoders; `generation` holds what only generation has
(decoding, sequence-level and on-policy KD, the top-k teacher). A field that its run's task does not use
must stay at its default: set, it is an error naming the field to use instead (`config_checks.py`).
"""

from textdistill.schema.data import DataConfig
from textdistill.schema.fields import AUGMENT_KINDS, CLASSIFICATION, GENERATION_TASKS, TASK_NAMES, doc, section
from textdistill.schema.models import TEACHER_MAX_EPOCHS, StudentConfig, TeacherArchitecture, TeacherConfig
from textdistill.schema.objectives import GenerationConfig, LossConfig, OnlineConfig, QuantisationConfig
from textdistill.schema.run import STUDENT_SIZES, ReportConfig, RunConfig, SweepConfig
from textdistill.schema.training import TrainConfig

__all__ = ["AUGMENT_KINDS", "CLASSIFICATION", "GENERATION_TASKS", "STUDENT_SIZES", "TASK_NAMES", "TEACHER_MAX_EPOCHS",
           "DataConfig", "GenerationConfig", "LossConfig", "OnlineConfig", "QuantisationConfig", "ReportConfig",
           "RunConfig", "StudentConfig", "SweepConfig", "TeacherArchitecture", "TeacherConfig", "TrainConfig", "doc",
           "section"]
