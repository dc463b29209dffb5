"""Reading user data files into data frames, with one-line errors for every way a file can be wrong."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pandas as pd

from textdistill.errors import TextDistillError

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
}


def read_table(path: str | Path, role: str) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or Parquet file; `role` (e.g. 'data.train') names it in errors."""
    p = Path(path)
    if not p.exists():
        raise TextDistillError(f"{role}: file {str(p)!r} does not exist; check the path")
    if not p.is_file():
        raise TextDistillError(f"{role}: {str(p)!r} is not a file; give the path of a data file")
    kind = READERS.get(p.suffix.lower())
    if kind is None:
        raise TextDistillError(
            f"{role}: {p.name!r} has an unsupported extension; use one of {', '.join(READERS)}"
        )
    if p.stat().st_size == 0:
        raise TextDistillError(f"{role}: file {str(p)!r} is empty; give a file with a header and examples")
    try:
        if kind == "parquet":
            df = pd.read_parquet(p)
        else:
            _check_utf8(p, role)
            if kind == "jsonl":
                df = _read_jsonl(p, role)
            else:
                df = pd.read_csv(p, sep="\t" if kind == "tsv" else ",", encoding="utf-8", keep_default_na=False,
                                 na_values=[""], dtype=str)
    except TextDistillError:
        raise
    except PermissionError:
        raise TextDistillError(f"{role}: no permission to read {str(p)!r}; fix the file's permissions") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TextDistillError(f"{role}: could not parse {str(p)!r} as {kind} ({first}); fix the file") from None
    if len(df) == 0:
        raise TextDistillError(f"{role}: file {str(p)!r} has no examples; add rows below the header")
    df.columns = [str(c) for c in df.columns]
    return df


def _check_utf8(p: Path, role: str) -> None:
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TextDistillError(
            f"{role}: {str(p)!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} on line {line}); "
            "re-save the file as UTF-8"
        ) from None


def _read_jsonl(p: Path, role: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TextDistillError(f"{role}: line {number} of {str(p)!r} is not valid JSON ({e.msg}); fix that line") from None
        if not isinstance(row, dict):
            raise TextDistillError(f"{role}: line {number} of {str(p)!r} is not a JSON object; write one object per line")
        rows.append(row)
    return pd.DataFrame(rows)


def require_column(df: pd.DataFrame, column: str, role: str, option: str) -> None:
    """Fail with the closest existing column name when `column` is missing."""
    if column in df.columns:
        return
    close = difflib.get_close_matches(column, list(df.columns), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TextDistillError(
        f"{role}: column {column!r} not found{hint}; columns are {', '.join(map(repr, df.columns))}; "
        f"set {option}"
    )
