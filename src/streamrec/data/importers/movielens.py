"""MovieLens ratings: the 100K release (``u.data``), the 1M release (``ratings.dat``) and the
CSV releases (``ratings.csv``).

Every row is a ``rating`` event; titles come from ``u.item`` (latin-1, pipe-separated,
though the release's README calls it tab-separated), ``movies.dat`` (latin-1,
``::``-separated) or ``movies.csv`` (quoted CSV) in the same folder, when present. User and
movie ids are integers in every release, so they are read as integers (``"042"`` is movie
``"42"``), in the ratings and in the titles alike.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from streamrec.data.importers import (
    ImportSource,
    RawRecord,
    is_header_row,
    locate,
    read_rows,
    require_columns,
    require_header,
    scan,
    skip_header_row,
    to_number,
)
from streamrec.data.importers.ids import integer_id, integer_ids
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
    records = _ratings(data, "movielens-100k", separator="\t", header=False)
    return ImportSource(
        data, "movielens-100k", records, names, digest, lines, data.parent / "u.item"
    )


def open_csv(path: Path) -> ImportSource:
    """Open ``ratings.csv`` (header ``userId,movieId,rating,timestamp``).

    Raises:
        ImportFormatError: the file is missing or its header differs.
    """
    data = locate(path, "movielens-csv", "ratings.csv")
    digest, lines = scan(data)
    header = require_header(data, "movielens-csv", ",", CSV_HEADER)
    names = _read_movies_csv(data.parent / "movies.csv")
    records = _ratings(data, "movielens-csv", separator=",", header=header)
    return ImportSource(
        data,
        "movielens-csv",
        records,
        names,
        digest,
        lines - 1 if header else lines,
        data.parent / "movies.csv",
    )


def open_1m(path: Path) -> ImportSource:
    """Open ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four ``::`` fields.
    """
    data = locate(path, "movielens-1m", "ratings.dat")
    digest, lines = scan(data)
    require_columns(data, "movielens-1m", "::", COLUMNS)
    names = _read_titles(data.parent / "movies.dat", "movielens-1m", "::")
    records = _ratings(data, "movielens-1m", separator="::", header=False)
    return ImportSource(
        data, "movielens-1m", records, names, digest, lines, data.parent / "movies.dat"
    )


def _ratings(path: Path, fmt: str, separator: str, header: bool) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, separator, COLUMNS, header=header):
        if number == 1 and not header and is_header_row(cells):
            skip_header_row(path, fmt, cells)
            continue
        user, item, rating, ts = cells
        field = "payload"
        if problem is None:
            user, item, problem, field = integer_ids(fmt, user, item)
        yield RawRecord(
            number, user, item, to_number(rating), "rating", to_number(ts), None, problem, field
        )


def _read_titles(path: Path, fmt: str, separator: str) -> dict[str, str]:
    """Titles from a latin-1 ``id<sep>title<sep>...`` file: ``u.item`` (``|``) of the 100K
    release or ``movies.dat`` (``::``) of the 1M release. Missing file: no titles."""
    if not path.is_file():
        logger.info("%s: no %s, items will have no titles", fmt, path)
        return {}
    names: dict[str, str] = {}
    # The releases are latin-1; a copy saved as UTF-8 with a byte order mark is read as such.
    encoding = "utf-8-sig" if path.read_bytes()[:3] == b"\xef\xbb\xbf" else "latin-1"
    skipped = 0
    with path.open(encoding=encoding, errors="replace", newline="") as f:
        for number, text in enumerate(f, start=1):
            fields = text.rstrip("\r\n").split(separator)
            if len(fields) >= 2 and fields[0].strip() and fields[1].strip():
                item = integer_id(fields[0])
                if item is None:
                    skipped += 1
                else:
                    names[item] = fields[1].strip()
            elif number == 1 and text.strip():
                raise ImportFormatError(
                    f"{path} is not a MovieLens titles file for {fmt}: expected "
                    f"id{separator}title{separator}..., found {text[:80]!r} in line 1"
                )
    if skipped:
        logger.warning("%s: skipped %d titles whose movie id is not an integer", path, skipped)
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
            if len(row) >= 2 and row[1].strip():
                item = integer_id(row[0])
                if item is not None:
                    names[item] = row[1].strip()
    return names
