"""Labelled texts from tables: TSV/CSV, JSONL and Parquet files whose columns name the text(s) and the label.

:func:`read_labelled` reads one file with given :class:`Columns`; :func:`read_task_file` picks the first of a task's
layouts (:data:`lit_lm.data.finetuning.registry.TASKS`) that fits the file, then reads it. Each returns a
:class:`~lit_lm.data.finetuning.examples.ReadResult` of :class:`~lit_lm.data.finetuning.examples.TextExample`.

==========  ========================================================================================================
``tsv``     split on tabs, with **no** quote handling (STS-B sentences hold unbalanced ``"``); UTF-8 with or without
            a byte-order mark, LF or CRLF, control characters inside fields kept, blank lines skipped. A row may have
            more (STS-B's licence columns) or fewer cells than the header as long as the wanted columns are there.
``csv``     the :mod:`csv` module (quoted fields, commas), with a header or column indices; errors name the physical
            line a record starts on.
``jsonl``   one JSON object per line; the columns are its keys.
``parquet`` a Parquet file (what the Hugging Face Hub stores datasets as; needs ``pyarrow``); errors and sources
            name ``row N`` (0-based, as pandas and pyarrow index rows).
==========  ========================================================================================================

``auto`` picks by the file name: ``.tsv``/``.txt`` -> tsv; ``.csv`` -> csv, unless its first line holds a tab
(STS-B's ``sts-*.csv`` are tab-separated) -> tsv; ``.jsonl``/``.json``/``.ndjson`` -> jsonl; ``.parquet``/``.pq``
-> parquet; any other name by its first bytes (Parquet magic, ``{``, a tab, a comma).

Labels: with a :class:`~lit_lm.data.finetuning.examples.LabelVocab`, a label is a name (any case) or its id; ``-``
and ``-1`` (GLUE's unlabelled test splits on the Hub) are "no gold label": skipped, counted and logged. With
``labels=None`` (regression) a label is a finite number inside ``score_range``; ``-`` and an out-of-range ``-1``
(the Hub's STS-B test split) are likewise no gold label.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lit_lm.data.core.io import decode_utf8, jsonl_records, read_bytes_checked, read_text_lines, require_file
from lit_lm.data.finetuning.examples import NO_GOLD_LABEL, LabelVocab, ReadResult, TextExample
from lit_lm.errors import DataError

__all__ = ["Columns", "TableFormat", "detect_table_format", "read_labelled", "read_task_file"]

TableFormat = Literal["auto", "tsv", "csv", "jsonl", "parquet"]


@dataclass(frozen=True)
class Columns:
    """Where the text(s) and the label are in a row.

    Attributes:
        text: The text column: its name in the header (or JSON key), or its 0-based index in a headerless file.
        text_pair: The second text's column, ``None`` for one-text tasks.
        label: The label (or score) column.
        header: Whether the file starts with a header line (TSV/CSV). JSONL and Parquet always name their columns.
    """

    text: str | int
    text_pair: str | int | None
    label: str | int
    header: bool = True


Loc = int | str  # where a record is: its line number, or "row N" in a Parquet file
_SUFFIXES = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
_PYARROW_HINT = "reading Parquet needs pyarrow: pip install 'lit_lm[parquet]'"


def located_error(message: str, path: str | Path, loc: Loc | None) -> DataError:
    """``path:line: message``, or ``path: row N: message`` for Parquet."""
    if isinstance(loc, str):
        return DataError(f"{loc}: {message}", path)
    return DataError(message, path, loc)


def _name(column: str | int) -> str:
    return f"column {column!r}" if isinstance(column, str) else f"column {column} (0-based)"


def _roles(columns: Columns) -> dict[str, str | int]:
    """The wanted columns by role; no ``text_pair`` for one-text tasks."""
    roles = {"text": columns.text, "text_pair": columns.text_pair, "label": columns.label}
    return {role: col for role, col in roles.items() if col is not None}


# --------------------------------------------------------------------------------------------------- formats
def _blank(line: str) -> bool:
    return not line.strip() and "\t" not in line  # a row of empty cells is not blank: it is an error


def _first_line(path: str | Path) -> str:
    """The first non-blank line of a text file (decoded, BOM and line end dropped)."""
    return next((line for line in read_text_lines(path) if not _blank(line)), "")


def detect_table_format(path: str | Path) -> TableFormat:
    """The format ``auto`` reads ``path`` as (see the module docstring)."""
    p = require_file(path)
    suffix = p.suffix.lower()
    if suffix in _SUFFIXES and suffix != ".csv":
        return _SUFFIXES[suffix]  # type: ignore[return-value]
    with open(p, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    line = _first_line(p)
    if suffix == ".csv":
        return "tsv" if "\t" in line else "csv"
    if line.lstrip().startswith("{"):
        return "jsonl"
    if "\t" in line or "," in line:
        return "tsv" if "\t" in line else "csv"
    raise DataError(
        "cannot tell the table format from the file name or first line; set format: tsv, csv, jsonl or parquet", p
    )


def _find(header: Sequence[str], column: str | int) -> int | None:
    """The index of ``column`` in a header: an index as it is, a name exactly or else ignoring case and spaces."""
    if isinstance(column, int):
        return column if 0 <= column < len(header) else None
    if column in header:
        return list(header).index(column)
    folded = [h.strip().lower() for h in header]
    key = column.strip().lower()
    return folded.index(key) if folded.count(key) == 1 else None


def _missing(found: Sequence[str], columns: Columns, path: str | Path, loc: Loc | None, what: str) -> DataError:
    wanted = list(_roles(columns).values())
    return located_error(
        f"{what} has columns {list(found)} but this layout wants {wanted}; name the columns "
        "(text_column, text_pair_column, label_column) as the file has them",
        path,
        loc,
    )


def _indices(header: Sequence[str] | None, columns: Columns, path: str | Path, loc: int) -> dict[str, int]:
    """Role -> cell index: looked up in the header line, or the layout's indices in a headerless file."""
    out: dict[str, int] = {}
    for role, col in _roles(columns).items():
        if header is not None:
            index = _find(header, col)
            if index is None:
                raise _missing(header, columns, path, loc, "the header")
            out[role] = index
        elif isinstance(col, int) and col >= 0:
            out[role] = col
        else:
            raise DataError(
                f"a headerless layout needs 0-based column indices, got {col!r} for {role}; set "
                "header: true if the file's first line names its columns",
                path,
            )
    return out


def _cells(
    rows: Iterator[tuple[int, list[str]]], columns: Columns, path: str | Path, kind: str
) -> Iterator[tuple[Loc, dict[str, Any]]]:
    """(line, role -> cell) for the rows of a TSV/CSV file; the first row is the header when there is one."""
    header: list[str] | None = None
    header_line = 0
    index: dict[str, int] | None = None
    for number, row in rows:
        if index is None:
            if columns.header:
                header, header_line = row, number
                index = _indices(header, columns, path, number)
                continue
            index = _indices(None, columns, path, number)
        if any(i >= len(row) for i in index.values()):
            need = max(index.values()) + 1
            seen = f"the header (line {header_line}) has {len(header)}" if header is not None else "no header"
            raise DataError(
                f"found {len(row)} {kind} cells, {seen}; this layout needs at least {need} "
                f"({', '.join(f'{r} in cell {i}' for r, i in index.items())})",
                path,
                number,
            )
        if header is not None and len(row) > len(header):  # cells would be read from the wrong columns
            sep = "tab" if kind.startswith("tab") else "comma"
            raise DataError(
                f"found {len(row)} {kind} cells, the header (line {header_line}) has {len(header)}: a {sep} inside "
                f"a text shifts the cells after it; remove it{' or quote the cell' if sep == 'comma' else ''}",
                path,
                number,
            )
        yield number, {role: row[i] for role, i in index.items()}


def _tsv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(read_text_lines(path), 1):
        if not _blank(line):
            yield number, line.split("\t")


def _csv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    p, data = read_bytes_checked(path)
    text = decode_utf8(data, p)
    # Only "\n" ends a line (as in read_text_lines): csv counts these, so a record starts one past the last count.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    reader = csv.reader(lines)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e}); check the quoting of the record starting here", p, start) from None
        if any(cell.strip() for cell in row) or len(row) > 1:
            yield start, row
        start = reader.line_num + 1


def _keys(names: Sequence[str], columns: Columns, path: str | Path, loc: Loc | None, kind: str) -> dict[str, str]:
    """Role -> key (JSON key or Parquet column), matched as in a header (:func:`_find`)."""
    roles = _roles(columns)
    if not all(isinstance(col, str) for col in roles.values()):
        raise DataError(f"{kind} names its columns: give column names, not indices (got {list(roles.values())})", path)
    index = {role: _find(names, col) for role, col in roles.items()}
    if any(i is None for i in index.values()):
        raise _missing(names, columns, path, loc, "this record" if kind == "JSONL" else "the file")
    return {role: names[i] for role, i in index.items() if i is not None}


def _jsonl_cells(path: str | Path, columns: Columns) -> Iterator[tuple[Loc, dict[str, Any]]]:
    keys: dict[str, str] | None = None
    for number, record in jsonl_records(read_text_lines(path), path):
        if keys is None or any(key not in record for key in keys.values()):
            keys = _keys(sorted(record), columns, path, number, "JSONL")
        yield number, {role: record[key] for role, key in keys.items()}


def parquet_columns(path: str | Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(_PYARROW_HINT, path) from None
    try:
        return list(pq.read_schema(require_file(path)).names)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"cannot read as Parquet ({e})", path) from None


def _parquet_cells(path: str | Path, columns: Columns) -> Iterator[tuple[Loc, dict[str, Any]]]:
    keys = _keys(parquet_columns(path), columns, path, None, "Parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=sorted(set(keys.values())))
    values = {role: table.column(key).to_pylist() for role, key in keys.items()}
    for n in range(table.num_rows):
        yield f"row {n}", {role: v[n] for role, v in values.items()}


# --------------------------------------------------------------------------------------------------- values
def _text(value: Any, column: str | int, path: str | Path, loc: Loc) -> str:
    if not isinstance(value, str):
        got = "null" if value is None else f"a {type(value).__name__} ({value!r})"
        raise located_error(f"{_name(column)} must hold text, got {got}", path, loc)
    text = value.strip()
    if not text:
        raise located_error(f"{_name(column)} is empty; every example needs its text", path, loc)
    return text


def _class_id(value: Any, labels: LabelVocab, column: str | int, path: str | Path, loc: Loc) -> int | None:
    line = loc if isinstance(loc, int) else 0
    try:
        return labels.lookup(value, path, line)
    except DataError as e:
        message = str(e).removeprefix(f"{path}:{line}: ")
        raise located_error(f"{_name(column)}: {message}", path, loc) from None


def _score(
    value: Any, score_range: tuple[float, float] | None, column: str | int, path: str | Path, loc: Loc
) -> float | None:
    score: float | None = None
    if isinstance(value, str):
        if value.strip() == "-":
            return None
        try:
            score = float(value.strip())
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        score = float(value)
    if score is None or not math.isfinite(score):
        raise located_error(
            f"{_name(column)}: score {value!r} is not a finite number; a regression task (labels: none) "
            "needs numeric scores; if the column holds class names, give the task's labels",
            path,
            loc,
        )
    if score_range is not None and not score_range[0] <= score <= score_range[1]:
        if score == -1:
            return None  # no gold label: the Hub's GLUE test splits mark it -1
        raise located_error(
            f"{_name(column)}: score {value!r} is outside the task's range [{score_range[0]}, "
            f"{score_range[1]}]; fix the row or the score_range",
            path,
            loc,
        )
    return score


def _vocab(labels: LabelVocab | Sequence[str] | None) -> LabelVocab | None:
    if labels is None or isinstance(labels, LabelVocab):
        return labels
    if isinstance(labels, str):
        raise DataError(f"labels must be a list of names, got the string {labels!r}")
    return LabelVocab(labels)


# --------------------------------------------------------------------------------------------------- readers
def read_labelled(
    path: str | Path,
    columns: Columns,
    labels: LabelVocab | Sequence[str] | None,
    *,
    score_range: tuple[float, float] | None = None,
    format: TableFormat = "auto",
) -> ReadResult[TextExample]:
    """Read the labelled texts of one table file (see the module docstring for the formats).

    Args:
        path: The file.
        columns: Where the text(s) and the label are.
        labels: The task's label list (a :class:`LabelVocab` or the names in id order); ``None`` for a regression
            task, whose label column holds float scores.
        score_range: A regression task's ``(min, max)`` score; a score outside it is a :class:`DataError`.
        format: ``auto`` (by file name, see :func:`detect_table_format`), ``tsv``, ``csv``, ``jsonl`` or ``parquet``.

    Each example's ``source`` is ``path:line`` (``path:row N`` for Parquet). Bad input raises :class:`DataError`
    naming the file and line (row); records without a gold label are skipped, counted and logged.
    """
    vocab = _vocab(labels)
    if vocab is not None and score_range is not None:
        raise DataError(f"score_range {score_range} is for regression (labels: none), but labels are given", path)
    kind = detect_table_format(path) if format == "auto" else format
    if kind == "tsv":
        cells = _cells(_tsv_rows(path), columns, path, "tab-separated")
    elif kind == "csv":
        cells = _cells(_csv_rows(path), columns, path, "comma-separated")
    elif kind == "jsonl":
        cells = _jsonl_cells(path, columns)
    elif kind == "parquet":
        cells = _parquet_cells(path, columns)
    else:
        raise DataError(f"unknown table format {format!r}; use auto, tsv, csv, jsonl or parquet", path)
    out: list[TextExample] = []
    skipped: dict[str, int] = {}
    for loc, row in cells:
        text = _text(row["text"], columns.text, path, loc)
        pair = None if columns.text_pair is None else _text(row["text_pair"], columns.text_pair, path, loc)
        if vocab is None:
            label: int | float | None = _score(row["label"], score_range, columns.label, path, loc)
        else:
            label = _class_id(row["label"], vocab, columns.label, path, loc)
        if label is None:
            skipped[NO_GOLD_LABEL] = skipped.get(NO_GOLD_LABEL, 0) + 1
            continue
        out.append(TextExample(text, pair, label, f"{path}:{loc}"))
    if not out:
        detail = f" (all {sum(skipped.values())} records skipped: {skipped})" if skipped else ""
        raise DataError(f"no examples{detail}", path)
    result = ReadResult(out, skipped, str(path))
    result.log_summary()
    return result


def _layout_format(layout: TableFormat, detected: TableFormat) -> TableFormat:
    """A layout's format, except that a JSONL or Parquet file (by name or magic) is read as what it is."""
    return detected if layout == "auto" or detected in ("jsonl", "parquet") else layout


def _first_columns(path: str | Path, kind: TableFormat) -> list[str]:
    """The column names (or first row's cells) a layout is matched against."""
    if kind == "parquet":
        return parquet_columns(path)
    if kind == "jsonl":
        return sorted(next(jsonl_records(read_text_lines(path), path))[1])
    rows = _tsv_rows(path) if kind == "tsv" else _csv_rows(path)
    return next(rows)[1]


def read_task_file(
    path: str | Path,
    layouts: Sequence[tuple[Columns, TableFormat]],
    labels: LabelVocab | Sequence[str] | None,
    score_range: tuple[float, float] | None = None,
) -> ReadResult[TextExample]:
    """Read a task's file with the first of its layouts that fits, as :func:`read_labelled` does.

    A layout with a header fits when all its columns are named by the file's first non-blank line (TSV/CSV), the
    first record's keys (JSONL) or the schema (Parquet); layouts with a header are tried first, in order. Otherwise
    the first headerless layout fits, if the first line has the cells it reads (TSV/CSV only). A JSONL or Parquet
    file is read as such whatever format the layout names (Hugging Face Hub files share GLUE's column names).
    """
    if not layouts:
        raise DataError("no layouts to read the file with; give the task's columns", path)
    detected = detect_table_format(path)
    found: dict[str, list[str]] = {}
    chosen: tuple[Columns, TableFormat] | None = None
    for want_header in (True, False):
        for columns, layout in layouts:
            kind = _layout_format(layout, detected)
            if columns.header != want_header or (not want_header and kind in ("jsonl", "parquet")):
                continue
            if kind not in found:
                found[kind] = _first_columns(path, kind)
            wanted = _roles(columns).values()
            named = kind not in ("jsonl", "parquet") or all(isinstance(col, str) for col in wanted)
            if named and all(_find(found[kind], col) is not None for col in wanted):
                chosen = (columns, kind)
                break
        if chosen is not None:
            break
    if chosen is None:
        tried = "; ".join(
            f"{_layout_format(f, detected)} {'with header columns' if c.header else 'headerless, cells'} "
            f"{list(_roles(c).values())}"
            for c, f in layouts
        )
        first = next(iter(found.values()), [])
        raise DataError(
            f"no layout fits this file: its first line (or schema) has {first}; tried {tried}; name the "
            "columns (text_column, text_pair_column, label_column) as the file has them",
            path,
        )
    return read_labelled(path, chosen[0], labels, score_range=score_range, format=chosen[1])
