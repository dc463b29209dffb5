"""The package's layout: one skeleton every task plugs into, modules named by concept, no reaching across tasks.

Each module's imports are read from its source (no import runs); the lists below are the layout the README
describes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "textdistill"

# What only one task uses. Everything else is shared by every task.
CLASSIFICATION = {
    "data.labelled", "data.augment", "data.builtin", "models.students", "models.vocab", "models.width",
    "models.onnx_teacher",
    "training.example_objectives", "training.intermediate", "training.ensemble", "evaluation.metrics",
    "evaluation.predict", "evaluation.speed", "pipeline.teacher", "pipeline.extra_teachers", "pipeline.evaluate",
    "pipeline.bench", "pipeline.representations", "tasks.classification",
}
GENERATION = {
    "data.pairs", "data.bible", "models.builtin_lm", "training.token_objectives", "evaluation.generative",
    "evaluation.decoding_speed", "evaluation.text_metrics", "pipeline.seq2seq_teacher", "tasks.generation",
}
# The run skeleton and what it is made of: written once, for every task.
SKELETON = {
    "pipeline.run", "pipeline.signal", "pipeline.phases", "pipeline.runs", "pipeline.teacher_cache",
    "training.loop", "training.objectives", "training.online", "training.checkpoints", "training.distributed", "training.stopping",
    "training.schedules", "data.batching", "models.inputs", "models.layers", "models.loading", "models.size",
    "models.onnx", "models.quantisation", "schema", "config", "config_checks", "hashing", "atomic", "packages", "cache", "losses",
    "precision", "tasks.base",
}


def modules() -> dict[str, set[str]]:
    """{module: textdistill modules it imports}, names relative to the package ('pipeline.run')."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textdistill"):
                base = node.module.removeprefix("textdistill").lstrip(".")
                for alias in node.names:  # `from textdistill.x import y` may name a module y
                    module = f"{base}.{alias.name}".lstrip(".")
                    imported.add(module if module in NAMES else base)
            elif isinstance(node, ast.Import):
                imported |= {a.name.removeprefix("textdistill.") for a in node.names if a.name.startswith("textdistill.")}
        out[name.removesuffix(".__init__")] = imported - {""}
    return out


NAMES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py")}


def test_the_lists_cover_real_modules():
    for name in CLASSIFICATION | GENERATION | SKELETON:
        assert name in NAMES, name
    assert not (CLASSIFICATION & GENERATION) and not (SKELETON & (CLASSIFICATION | GENERATION))


def test_no_task_module_reaches_into_the_other_task():
    graph = modules()
    for own, other in ((CLASSIFICATION, GENERATION), (GENERATION, CLASSIFICATION)):
        for name in own:
            assert not graph[name] & other, f"{name} imports {sorted(graph[name] & other)}"


def test_the_skeleton_imports_no_task_module():
    graph = modules()
    for name in SKELETON:
        task_specific = graph[name] & (CLASSIFICATION | GENERATION)
        assert not task_specific, f"{name} imports {sorted(task_specific)}"


def test_only_the_task_registry_and_the_commands_know_the_tasks():
    graph = modules()
    users = {name for name, imported in graph.items() if any(i == "tasks" or i.startswith("tasks.") for i in imported)}
    assert users <= {"tasks", "tasks.base", "tasks.classification", "tasks.generation", "pipeline.run",
                     "pipeline.commands"}, sorted(users)


def test_evaluation_does_not_import_training():
    graph = modules()
    for name, imported in graph.items():
        if name.startswith("evaluation"):
            assert not any(i.startswith("training") for i in imported), (name, imported)


def test_modules_are_named_for_a_concept_and_stay_small():
    files = list(PACKAGE.rglob("*.py"))
    named_generation = [p.relative_to(PACKAGE).as_posix() for p in files if p.stem == "generation"]
    assert named_generation == ["tasks/generation.py"]  # the task itself, in the package of tasks
    assert not [p for p in files if p.stem in ("utils", "helpers", "misc", "common")]
    # a few hundred lines each (losses.py, a list of small functions, is the longest and may be split next)
    long = {p.relative_to(PACKAGE).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
