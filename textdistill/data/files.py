"""Reading user data files into data frames, with one-line errors for every way a file can be wrong."""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import sys
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
            text = _check_utf8(p, role)
            if kind == "jsonl":
                df = _read_jsonl(p, role)
            else:
                sep = "\t" if kind == "tsv" else ","
                _check_quotes(text, sep, p, role)
                df = pd.read_csv(p, sep=sep, encoding="utf-8", keep_default_na=False, na_values=[""], dtype=str)
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


def _check_utf8(p: Path, role: str) -> str:
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TextDistillError(
            f"{role}: {str(p)!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} on line {line}); "
            "re-save the file as UTF-8"
        ) from None


@contextlib.contextmanager
def _any_field_size():
    """The csv module refuses fields over 128 KiB by default; one long text is data, not an error."""
    before = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _check_quotes(text: str, sep: str, p: Path, role: str) -> None:
    """Refuse rows merged by a quote that is never closed.

    pandas reads `"an unclosed quote<TAB>pos` by swallowing every following line up to the next quote
    character into one field, silently. A quote that ends a field must be followed by the separator or the
    line end (the csv module's strict mode), which catches most such runs. A TSV field cannot hold tabs or
    line breaks at all, so a TSV row that has them inside one field is refused too; in CSV a quoted field
    may hold line breaks (a review in paragraphs) and is kept.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    start = 1
    with _any_field_size():
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                raise TextDistillError(
                    f"{role}: the row starting on line {start} of {str(p)!r} has a quote (\") that is not closed "
                    f"where its field ends (lines {start} to {reader.line_num} read as one field); close the quote, or "
                    "remove it if it belongs to the text"
                ) from None
            if sep == "\t" and any("\t" in f or "\n" in f or "\r" in f for f in row):
                raise TextDistillError(
                    f"{role}: the row starting on line {start} of {str(p)!r} holds tabs or line breaks inside one "
                    f"field (lines {start} to {reader.line_num} read as one example), as when a quote (\") is not "
                    "closed; close or remove the quote, or save the data as .jsonl if the text has tabs or line breaks"
                )
            start = reader.line_num + 1


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
