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

from streamrec.errors import ImportFormatError
from streamrec.producer.importers import (
    DATA_ENCODING,
    DATA_ERRORS,
    ImportSource,
    RawRecord,
    first_line,
    locate,
    pad_row,
    scan,
    to_number,
)

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
    first = first_line(data)
    found = len(first.split("\t"))
    if found != len(COLUMNS):
        raise ImportFormatError(
            f"{data} is not movielens-100k: expected 4 tab-separated columns "
            f"(user item rating timestamp) without a header, found {found} in line 1: "
            f"{first[:80]!r}"
        )
    names = _read_u_item(data.parent / "u.item")
    records = _ratings(data, delimiter="\t", header=False)
    return ImportSource(data, "movielens-100k", records, names, digest, lines)


def open_csv(path: Path) -> ImportSource:
    """Open ``ratings.csv`` (header ``userId,movieId,rating,timestamp``).

    Raises:
        ImportFormatError: the file is missing or its header differs.
    """
    data = locate(path, "movielens-csv", "ratings.csv")
    digest, lines = scan(data)
    header = tuple(cell.strip() for cell in first_line(data).split(","))
    if header != CSV_HEADER:
        raise ImportFormatError(
            f"{data} is not movielens-csv: expected the header {','.join(CSV_HEADER)}, "
            f"found {','.join(header)[:120]!r}"
        )
    names = _read_movies_csv(data.parent / "movies.csv")
    records = _ratings(data, delimiter=",", header=True)
    return ImportSource(data, "movielens-csv", records, names, digest, lines - 1)


def open_1m(path: Path) -> ImportSource:
    """Open ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four ``::`` fields.
    """
    data = locate(path, "movielens-1m", "ratings.dat")
    digest, lines = scan(data)
    first = first_line(data)
    found = len(first.split("::"))
    if found != len(COLUMNS):
        raise ImportFormatError(
            f"{data} is not movielens-1m: expected UserID::MovieID::Rating::Timestamp "
            f"without a header, found {found} fields in line 1: {first[:80]!r}"
        )
    names = _read_dat_titles(data.parent / "movies.dat")
    return ImportSource(data, "movielens-1m", _double_colon_ratings(data), names, digest, lines)


def _double_colon_ratings(path: Path) -> Iterator[RawRecord]:
    with path.open(encoding=DATA_ENCODING, errors=DATA_ERRORS, newline="") as f:
        for number, text in enumerate(f, start=1):
            text = text.rstrip("\r\n")
            if not text:
                continue
            cells, problem = pad_row(text.split("::"), COLUMNS)
            user, item, rating, ts = cells
            yield RawRecord(
                number, user, item, to_number(rating), "rating", to_number(ts), problem=problem
            )


def _read_dat_titles(path: Path) -> dict[str, str]:
    """Titles from the 1M release's ``movies.dat``: ``MovieID::Title::Genres``, latin-1."""
    if not path.is_file():
        logger.info("movielens-1m: no %s, items will have no titles", path)
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="latin-1", newline="") as f:
        for text in f:
            fields = text.rstrip("\r\n").split("::")
            if len(fields) >= 2 and fields[0] and fields[1]:
                names[fields[0]] = fields[1].strip()
    return names


def _ratings(path: Path, delimiter: str, header: bool) -> Iterator[RawRecord]:
    with path.open(encoding=DATA_ENCODING, errors=DATA_ERRORS, newline="") as f:
        if delimiter == "\t":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f, delimiter=delimiter)
        if header:
            next(reader, None)
        for row in reader:
            if not row:
                continue
            cells, problem = pad_row(row, COLUMNS)
            user, item, rating, ts = cells
            yield RawRecord(
                reader.line_num,
                user,
                item,
                to_number(rating),
                "rating",
                to_number(ts),
                problem=problem,
            )


def _read_u_item(path: Path) -> dict[str, str]:
    """Titles from ``u.item``: ``id|title|release date|...``, latin-1 encoded."""
    if not path.is_file():
        logger.info("movielens-100k: no %s, items will have no titles", path)
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="latin-1", newline="") as f:
        for number, text in enumerate(f, start=1):
            fields = text.rstrip("\r\n").split("|")
            if len(fields) >= 2 and fields[0] and fields[1]:
                names[fields[0]] = fields[1].strip()
            elif number == 1 and text.strip():
                raise ImportFormatError(
                    f"{path} is not a MovieLens u.item file: expected pipe-separated "
                    f"id|title|..., found {text[:80]!r} in line 1"
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
