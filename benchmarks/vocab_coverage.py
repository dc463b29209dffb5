"""How much of the test text a pruned student vocabulary (`student.vocab: task`) keeps, with and without the
texts a causal LM writes (`data.generated_texts`).

    python benchmarks/vocab_coverage.py --config textdistill/configs/csv_template.yaml --train FILE [--test FILE]
                                        [--common N]

The task vocabulary keeps the teacher tokens of the training, unlabelled and validation text, and the
`student.vocab_common` most common tokens (`--common` sets it). Test text is read with the teacher's
tokenizer; a token outside the kept set is one the student's pruned tokenizer splits into shorter kept
pieces or reads as unknown. Prints that share of the test tokens for the config as given and with
`data.generated_texts` set to 0 (the written texts are read from the cache, or written once). `--train`
and `--test` set `data.train` and `data.test`.
"""

from __future__ import annotations

import argparse
import dataclasses

from textdistill.config import load_config
from textdistill.models.loading import load_tokenizer, resolve_model_dir
from textdistill.tasks.classification import ClassificationTask, task_vocabulary


def outside_share(cfg) -> tuple[float, int]:
    """The share of the test text's teacher tokens outside the task vocabulary, and the vocabulary's size."""
    data = ClassificationTask().load_data(cfg)
    source = cfg.teacher.base if cfg.teacher.path == "builtin" else cfg.teacher.path  # fine-tuning keeps the tokenizer
    tokenizer = load_tokenizer(resolve_model_dir(source, "teacher"), "teacher", cfg.trust_remote_code)
    kept = set(task_vocabulary(tokenizer, data, cfg.student.vocab_common))
    test = [i for t in data.test.texts for i in tokenizer(t, add_special_tokens=False).input_ids]
    return sum(i not in kept for i in test) / len(test), len(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--train", help="data.train")
    ap.add_argument("--test", help="data.test")
    ap.add_argument("--common", type=int, help="student.vocab_common")
    args = ap.parse_args()
    cfg = load_config(args.config, {k: v for k, v in (("data.train", args.train), ("data.test", args.test),
                                                      ("student.vocab_common", args.common)) if v is not None})
    without = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, generated_texts=0))
    for name, c in (("without written texts", without), (f"with {cfg.data.generated_texts} written texts", cfg)):
        share, size = outside_share(c)
        print(f"{name}: {100 * share:.2f}% of the test tokens outside the task vocabulary ({size} tokens kept)")


if __name__ == "__main__":
    main()
