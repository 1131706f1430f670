"""Generic CSV files: a header naming ``user,item`` and any of ``weight,kind,timestamp,event_id``.

Columns may come in any order. Empty optional cells mean "use the default" (weight 1,
kind ``play``, timestamp now, an assigned event id). Timestamps are epoch seconds or ISO
8601 strings; the latter are passed on as text for the event validator to parse.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamrec.data.importers import (
    DATA_ENCODING,
    DATA_ERRORS,
    ImportSource,
    RawRecord,
    list_folder,
    pad_row,
    scan,
    to_number,
)
from streamrec.errors import ImportFormatError

logger = logging.getLogger(__name__)

REQUIRED = ("user", "item")
ALLOWED = ("user", "item", "weight", "kind", "timestamp", "event_id")


def open_csv(path: Path) -> ImportSource:
    """Open a CSV file, or the only ``*.csv`` file in a folder.

    Raises:
        ImportFormatError: no single CSV file at ``path``, or a header that lacks a required
            column, repeats one or has one that is not allowed.
    """
    data = _locate(path)
    digest, lines = scan(data)
    header = _read_header(data)
    unknown = [name for name in header if name not in ALLOWED]
    if unknown:
        raise ImportFormatError(
            f"{data} (format csv) has unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed columns are {', '.join(ALLOWED)} (user and item required)"
        )
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ImportFormatError(
            f"{data} (format csv) lacks the required column(s) {', '.join(missing)}; "
            f"found the header {','.join(header)!r}"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ImportFormatError(
            f"{data} (format csv) names column(s) {', '.join(repeated)} more than once"
        )
    return ImportSource(data, "csv", _records(data, header), {}, digest, lines - 1)


def _locate(path: Path) -> Path:
    if not path.exists():
        raise ImportFormatError(f"{path} does not exist (format csv expects a .csv file)")
    if not path.is_dir():
        return path
    found = sorted(path.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    what = "no .csv file" if not found else f"{len(found)} .csv files"
    raise ImportFormatError(
        f"folder {path} holds {what} (format csv needs exactly one, or the file's path); "
        f"it holds: {list_folder(path)}"
    )


def _read_header(path: Path) -> tuple[str, ...]:
    with path.open(encoding=DATA_ENCODING, errors="replace", newline="") as f:
        row = next(csv.reader(f), [])
    header = tuple(cell.strip().lower() for cell in row)
    if not any(header):
        raise ImportFormatError(
            f"{path} (format csv) must start with a header naming its columns "
            f"({', '.join(ALLOWED)}); found an empty first line"
        )
    return header


def _records(path: Path, header: tuple[str, ...]) -> Iterator[RawRecord]:
    at = {name: header.index(name) for name in header}
    with path.open(encoding=DATA_ENCODING, errors=DATA_ERRORS, newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            cells, problem = pad_row(row, header)
            values: dict[str, Any] = {}
            for name, index in at.items():
                cell = cells[index]
                values[name] = cell.strip() if cell is not None else None
            yield RawRecord(
                reader.line_num,
                values["user"],
                values["item"],
                _optional(values.get("weight"), number=True),
                _optional(values.get("kind")),
                _optional(values.get("timestamp"), number=True),
                _optional(values.get("event_id")),
                problem=problem,
            )


def _optional(cell: str | None, number: bool = False) -> float | str | None:
    """None for a missing or empty cell; a number when asked and it parses; else the text."""
    if not cell:
        return None
    return to_number(cell) if number else cell
