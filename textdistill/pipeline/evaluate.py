"""`eval`: score any classifier folder on a split of the configured data."""

from __future__ import annotations

from pathlib import Path

from textdistill.config import RunConfig
from textdistill.data.labelled import encode_splits, load_classification_data
from textdistill.errors import TextDistillError
from textdistill.evaluation.metrics import classification_metrics
from textdistill.evaluation.predict import predict_logits
from textdistill.models.loading import load_classifier, load_tokenizer, resolve_model_dir, teacher_label_order
from textdistill.pipeline.runs import apply_threads

SPLITS = ("train", "validation", "test")


def run_eval(cfg: RunConfig, model: str | Path, split: str = "test", teacher: str | Path | None = None) -> dict:
    """Metrics of the model at `model` on `split`; with `teacher`, also the agreement with it."""
    if split not in SPLITS:
        raise TextDistillError(f"--split {split!r} is not a split; use one of {', '.join(SPLITS)}")
    apply_threads(cfg.train.threads)
    data = load_classification_data(cfg.data)
    folder = resolve_model_dir(str(model), "--model")
    tokenizer = load_tokenizer(folder, "--model", cfg.trust_remote_code)
    clf = load_classifier(folder, "--model", trust_remote_code=cfg.trust_remote_code)
    order = teacher_label_order(clf, data.label_names)
    splits = encode_splits(tokenizer, data, cfg.data.max_length, getattr(clf.config, "max_position_embeddings", None))
    encoded = getattr(splits, split)
    pred = predict_logits(clf, encoded)[:, order].argmax(-1)
    teacher_pred = None
    if teacher is not None:
        t_folder = resolve_model_dir(str(teacher), "--teacher")
        t_model = load_classifier(t_folder, "--teacher", trust_remote_code=cfg.trust_remote_code)
        t_order = teacher_label_order(t_model, data.label_names)
        # the teacher reads the text through its own tokenizer (a student may have a pruned vocabulary)
        t_tokenizer = load_tokenizer(t_folder, "--teacher", cfg.trust_remote_code)
        t_encoded = getattr(encode_splits(t_tokenizer, data, cfg.data.max_length,
                                          getattr(t_model.config, "max_position_embeddings", None)), split)
        teacher_pred = predict_logits(t_model, t_encoded)[:, t_order].argmax(-1)
    metrics = classification_metrics(pred, encoded.labels, data.label_names, teacher_pred)
    return {"model": str(folder), "split": split, **metrics}
