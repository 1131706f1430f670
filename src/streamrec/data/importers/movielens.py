"""MovieLens ratings: the 100K release (``u.data``), the 1M release (``ratings.dat``) and the
CSV releases (``ratings.csv``).

Every row is a ``rating`` event; titles and genres come from ``u.item`` (latin-1,
pipe-separated, though the release's README calls it tab-separated; columns 6 to 24 are 0/1
genre flags named, in order, by ``u.genre``), ``movies.dat`` (latin-1,
``MovieID::Title::Genres``) or ``movies.csv`` (quoted CSV, ``movieId,title,genres``) in the
same folder, when present; the latter two join a movie's genres with ``|``, and write
``(no genres listed)`` for none. User and movie ids are integers in every release, so they
are read as integers (``"042"`` is movie ``"42"``), in the ratings and in the titles alike.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator, Sequence
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
#: The 100K release's genres in ``u.genre`` order (flag columns 6..24 of ``u.item``); used
#: when ``u.genre`` is absent.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: What the 1M and CSV releases write for a movie without genres.
NO_GENRES = "(no genres listed)"
#: The first genre flag's column of a ``u.item`` line (0-based).
FLAGS_COLUMN = 5

#: Reads a titles line's genres from its fields.
GenresOf = Callable[[Sequence[str]], tuple[str, ...]]


def open_100k(path: Path) -> ImportSource:
    """Open ``u.data`` (tab-separated ``user item rating timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four tab-separated
            columns.
    """
    data = locate(path, "movielens-100k", "u.data")
    digest, lines = scan(data)
    require_columns(data, "movielens-100k", "\t", COLUMNS)
    genres = _flagged_genres(_read_genre_names(data.parent / "u.genre"))
    names, tags = _read_titles(data.parent / "u.item", "movielens-100k", "|", genres)
    records = _ratings(data, "movielens-100k", separator="\t", header=False)
    return ImportSource(
        data, "movielens-100k", records, names, digest, lines, data.parent / "u.item", tags
    )


def open_csv(path: Path) -> ImportSource:
    """Open ``ratings.csv`` (header ``userId,movieId,rating,timestamp``).

    Raises:
        ImportFormatError: the file is missing or its header differs.
    """
    data = locate(path, "movielens-csv", "ratings.csv")
    digest, lines = scan(data)
    header = require_header(data, "movielens-csv", ",", CSV_HEADER)
    names, tags = _read_movies_csv(data.parent / "movies.csv")
    records = _ratings(data, "movielens-csv", separator=",", header=header)
    return ImportSource(
        data,
        "movielens-csv",
        records,
        names,
        digest,
        lines - 1 if header else lines,
        data.parent / "movies.csv",
        tags,
    )


def open_1m(path: Path) -> ImportSource:
    """Open ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, no header).

    Raises:
        ImportFormatError: the file is missing or its first line is not four ``::`` fields.
    """
    data = locate(path, "movielens-1m", "ratings.dat")
    digest, lines = scan(data)
    require_columns(data, "movielens-1m", "::", COLUMNS)
    names, tags = _read_titles(data.parent / "movies.dat", "movielens-1m", "::", _joined_genres)
    records = _ratings(data, "movielens-1m", separator="::", header=False)
    return ImportSource(
        data, "movielens-1m", records, names, digest, lines, data.parent / "movies.dat", tags
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


def _read_titles(
    path: Path, fmt: str, separator: str, genres_of: GenresOf
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Titles and genres from a latin-1 ``id<sep>title<sep>...`` file: ``u.item`` (``|``)
    of the 100K release or ``movies.dat`` (``::``) of the 1M release. Missing file: no
    titles and no genres."""
    if not path.is_file():
        logger.info("%s: no %s, items will have no titles", fmt, path)
        return {}, {}
    names: dict[str, str] = {}
    tags: dict[str, tuple[str, ...]] = {}
    encoding = _encoding(path)
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
                    if genres := genres_of(fields):
                        tags[item] = genres
            elif number == 1 and text.strip():
                raise ImportFormatError(
                    f"{path} is not a MovieLens titles file for {fmt}: expected "
                    f"id{separator}title{separator}..., found {text[:80]!r} in line 1"
                )
    if skipped:
        logger.warning("%s: skipped %d titles whose movie id is not an integer", path, skipped)
    return names, tags


def _read_movies_csv(path: Path) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Titles and genres from ``movies.csv`` (``movieId,title,genres``)."""
    if not path.is_file():
        logger.info("movielens-csv: no %s, items will have no titles", path)
        return {}, {}
    names: dict[str, str] = {}
    tags: dict[str, tuple[str, ...]] = {}
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
                    if genres := _joined_genres(row):
                        tags[item] = genres
    return names, tags


def _read_genre_names(path: Path) -> tuple[str, ...]:
    """The 100K release's genre names by flag column, from ``u.genre`` (``name|index``
    lines); the release's own list when the file is absent.

    Raises:
        ImportFormatError: a line is not ``name|index``, or the indices are not 0, 1, ….
    """
    if not path.is_file():
        logger.info("movielens-100k: no %s, genres are named as in the 100K release", path)
        return GENRES_100K
    found: dict[int, str] = {}
    with path.open(encoding=_encoding(path), errors="replace", newline="") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            name, _, index = text.rstrip("\r\n").rpartition("|")
            column = integer_id(index)
            if not name.strip() or column is None:
                raise ImportFormatError(
                    f"{path} is not a MovieLens u.genre file: expected name|index, "
                    f"found {text.strip()[:80]!r} in line {number}"
                )
            found[int(column)] = name.strip()
    if sorted(found) != list(range(len(found))):
        raise ImportFormatError(
            f"{path}: genre indices must be 0, 1, 2, … (found {sorted(found)[:30]})"
        )
    return tuple(found[n] for n in range(len(found)))


def _flagged_genres(genres: tuple[str, ...]) -> GenresOf:
    """Reads a ``u.item`` line's genres: those whose flag column holds ``1``."""

    def genres_of(fields: Sequence[str]) -> tuple[str, ...]:
        flags = fields[FLAGS_COLUMN : FLAGS_COLUMN + len(genres)]
        return tuple(g for g, flag in zip(genres, flags, strict=False) if flag.strip() == "1")

    return genres_of


def _joined_genres(fields: Sequence[str]) -> tuple[str, ...]:
    """The genres of a ``movies.dat`` or ``movies.csv`` line: its third field split at
    ``|`` (blank parts, repeats and ``(no genres listed)`` dropped)."""
    if len(fields) < 3:
        return ()
    parts = (part.strip() for part in fields[2].split("|"))
    return tuple(dict.fromkeys(p for p in parts if p and p != NO_GENRES))


def _encoding(path: Path) -> str:
    """The releases are latin-1; a copy saved as UTF-8 with a byte order mark is read as such."""
    with path.open("rb") as f:
        return "utf-8-sig" if f.read(3) == b"\xef\xbb\xbf" else "latin-1"
