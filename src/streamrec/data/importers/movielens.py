"""MovieLens ratings: the 100K release (``u.data``), the 1M release (``ratings.dat``) and the
CSV releases (``ratings.csv``).

Every row is a ``rating`` event; titles come from ``u.item`` (latin-1, pipe-separated),
``movies.dat`` (latin-1, ``::``-separated) or ``movies.csv`` (quoted CSV) in the same
folder, when present.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from streamrec.data.importers import (
    ImportSource,
    RawRecord,
    locate,
    read_rows,
    require_columns,
    require_header,
    scan,
    to_number,
)
from streamrec.errors import ImportFormatError

logger = logging.getLogger(__name__)

COLUMNS = ("user", "item", "rating", "timestamp")
CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIES_HEADER = ("movieId", "title", "genres")


def open_100k(path: Path) -> ImportSource:
    """Open ``u.data`` (tab-separated ``user item rating timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four tab-separated
            columns.
    """
    data = locate(path, "movielens-100k", "u.data")
    digest, lines = scan(data)
    require_columns(data, "movielens-100k", "\t", COLUMNS)
    names = _read_titles(data.parent / "u.item", "movielens-100k", "|")
    records = _ratings(data, separator="\t", header=False)
    return ImportSource(data, "movielens-100k", records, names, digest, lines)


def open_csv(path: Path) -> ImportSource:
    """Open ``ratings.csv`` (header ``userId,movieId,rating,timestamp``).

    Raises:
        ImportFormatError: the file is missing or its header differs.
    """
    data = locate(path, "movielens-csv", "ratings.csv")
    digest, lines = scan(data)
    require_header(data, "movielens-csv", ",", CSV_HEADER)
    names = _read_movies_csv(data.parent / "movies.csv")
    records = _ratings(data, separator=",", header=True)
    return ImportSource(data, "movielens-csv", records, names, digest, lines - 1)


def open_1m(path: Path) -> ImportSource:
    """Open ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four ``::`` fields.
    """
    data = locate(path, "movielens-1m", "ratings.dat")
    digest, lines = scan(data)
    require_columns(data, "movielens-1m", "::", COLUMNS)
    names = _read_titles(data.parent / "movies.dat", "movielens-1m", "::")
    records = _ratings(data, separator="::", header=False)
    return ImportSource(data, "movielens-1m", records, names, digest, lines)


def _ratings(path: Path, separator: str, header: bool) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, separator, COLUMNS, header=header):
        user, item, rating, ts = cells
        yield RawRecord(
            number, user, item, to_number(rating), "rating", to_number(ts), problem=problem
        )


def _read_titles(path: Path, fmt: str, separator: str) -> dict[str, str]:
    """Titles from a latin-1 ``id<sep>title<sep>...`` file: ``u.item`` (``|``) of the 100K
    release or ``movies.dat`` (``::``) of the 1M release. Missing file: no titles."""
    if not path.is_file():
        logger.info("%s: no %s, items will have no titles", fmt, path)
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="latin-1", newline="") as f:
        for number, text in enumerate(f, start=1):
            fields = text.rstrip("\r\n").split(separator)
            if len(fields) >= 2 and fields[0] and fields[1]:
                names[fields[0]] = fields[1].strip()
            elif number == 1 and text.strip():
                raise ImportFormatError(
                    f"{path} is not a MovieLens titles file for {fmt}: expected "
                    f"id{separator}title{separator}..., found {text[:80]!r} in line 1"
                )
    return names


def _read_movies_csv(path: Path) -> dict[str, str]:
    """Titles from ``movies.csv`` (``movieId,title,genres``)."""
    if not path.is_file():
        logger.info("movielens-csv: no %s, items will have no titles", path)
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = tuple(cell.strip() for cell in next(reader, []))
        if header != MOVIES_HEADER:
            raise ImportFormatError(
                f"{path} is not a MovieLens movies.csv: expected the header "
                f"{','.join(MOVIES_HEADER)}, found {','.join(header)[:120]!r}"
            )
        for row in reader:
            if len(row) >= 2 and row[0] and row[1]:
                names[row[0].strip()] = row[1].strip()
    return names
