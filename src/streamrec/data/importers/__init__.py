"""Readers for public interaction datasets and generic CSV files.

:func:`open_source` checks a file's layout at once (raising
:class:`~streamrec.errors.ImportFormatError` when it is not the format it was given as) and
returns an :class:`ImportSource` whose ``records`` stream the rows lazily, so multi-GB files
never sit in memory. Rows are not validated here: a malformed row is yielded as a
:class:`RawRecord` holding what was read, and the bulk loader turns it into a dead letter
that names its line.

Formats (``FORMATS``)::

    movielens-100k   u.data (user item rating timestamp, tabs), titles and genres from
                     u.item (genre names from u.genre)
    movielens-1m     ratings.dat (UserID::MovieID::Rating::Timestamp), titles and genres
                     from movies.dat
    movielens-csv    ratings.csv (userId,movieId,rating,timestamp), titles and genres from
                     movies.csv
    lastfm-360k      usersha1-artmbid-artname-plays.tsv (user, mbid, name, plays; tabs)
    lastfm-hetrec    user_artists.dat (userID artistID weight), names from artists.dat
    csv              any CSV with a header: user,item[,weight,kind,timestamp,event_id]

Ids are read as each dataset defines them (:mod:`streamrec.data.importers.ids`): integer
ids as integers (``"042"`` is ``"42"``; a cell that is not an integer makes its row a
problem record), string ids trimmed of surrounding whitespace.

Layout quirks: a UTF-8 byte order mark and CRLF line ends are read through; blank and
whitespace-only lines are skipped; a header line in a format that has none is skipped
with a warning when no cell of it is a number, and a file of a headed format whose first
line is all numbers is read as data from line 1, with a warning.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.errors import ImportFormatError

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "ImportSource", "RawRecord", "open_source"]

FORMATS: tuple[str, ...] = (
    "movielens-100k",
    "movielens-1m",
    "movielens-csv",
    "lastfm-360k",
    "lastfm-hetrec",
    "csv",
)

_CHUNK = 1 << 20
# Data files are decoded with surrogateescape: an undecodable byte then makes its id
# non-printable, so validation dead-letters that one row instead of the whole import failing.
DATA_ENCODING = "utf-8-sig"
DATA_ERRORS = "surrogateescape"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One row as read from a file, not yet validated.

    Attributes:
        line: 1-based line number of the row in its file (the header is line 1).
        user: user id (str), or None when the row has no such column.
        item: item id (str), or None.
        weight: a float when the cell parses as a number, else the raw string; None if absent.
        kind: event kind (str), or None for the default (``play``).
        timestamp: epoch seconds as a float, an ISO 8601 string, or None (now).
        event_id: the row's event id, or None (the loader assigns one).
        problem: a defect validation cannot see (too many columns, an id that is not an
            integer where the format's ids are); such a record is dead-lettered as a whole.
        problem_field: the field ``problem`` is about (``user``, ``item``), or ``payload``
            when it is about the row.
    """

    line: int
    user: Any
    item: Any
    weight: Any
    kind: Any
    timestamp: Any
    event_id: Any = None
    problem: str | None = None
    problem_field: str = "payload"

    def as_payload(self) -> dict[str, Any]:
        """The record as a JSON-ready dict for a dead letter: ``line`` and the fields read."""
        payload: dict[str, Any] = {"line": self.line}
        for name in ("user", "item", "weight", "kind", "timestamp", "event_id"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                value = repr(value)  # JSON has no NaN or infinity
            if value is not None:
                payload[name] = value
        return payload


@dataclass
class ImportSource:
    """An opened dataset, ready to stream.

    Attributes:
        path: the main data file.
        fmt: one of ``FORMATS``.
        records: lazy iterator over the rows; it opens the file on first use.
        item_names: item id -> display name. For ``lastfm-360k`` the names are in the data
            file itself, so this dict fills up while ``records`` is consumed.
        digest: SHA-256 hex digest of the data file's bytes.
        size_hint: number of data rows (lines minus header, counted while hashing); a
            progress-bar total, off by the number of blank lines or quoted line breaks.
        names_file: the file the format's item names come from, beside the data file
            (None when the data file carries them itself).
        item_tags: item id -> the item's tags (MovieLens genres, in the file's order);
            items without tags are absent, and formats without tags leave it empty.
    """

    path: Path
    fmt: str
    records: Iterator[RawRecord]
    item_names: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    size_hint: int | None = None
    names_file: Path | None = None
    item_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def names_missing(self) -> bool:
        """True when the format keeps names in a separate file and that file is absent."""
        return self.names_file is not None and not self.names_file.is_file()


def open_source(path: str | Path, fmt: str) -> ImportSource:
    """Open a dataset file (or the folder holding it) in the given format.

    Args:
        path: the data file, or the folder that contains it and its names file.
        fmt: one of ``FORMATS``.

    Raises:
        ImportFormatError: unknown format, missing file, or a header or column layout that
            does not match the format.
    """
    # Imported here because the family modules import RawRecord and helpers from this one.
    from streamrec.data.importers import csvfile, lastfm, movielens

    openers: dict[str, Callable[[Path], ImportSource]] = {
        "movielens-100k": movielens.open_100k,
        "movielens-1m": movielens.open_1m,
        "movielens-csv": movielens.open_csv,
        "lastfm-360k": lastfm.open_360k,
        "lastfm-hetrec": lastfm.open_hetrec,
        "csv": csvfile.open_csv,
    }
    if fmt not in openers:
        raise ImportFormatError(
            f"unknown import format {fmt!r} for {path}; formats are {', '.join(FORMATS)}"
        )
    source = openers[fmt](Path(path).expanduser())
    logger.info(
        "import %s: %s, ~%s rows, %d item names, %d items with tags, sha256 %s",
        fmt,
        source.path,
        source.size_hint,
        len(source.item_names),
        len(source.item_tags),
        source.digest[:16],
    )
    return source


def locate(path: Path, fmt: str, filename: str) -> Path:
    """The data file: ``path`` itself, or ``path / filename`` when ``path`` is a folder.

    Raises:
        ImportFormatError: nothing usable at ``path``.
    """
    if not path.exists():
        raise ImportFormatError(
            f"{path} does not exist (format {fmt} expects the file {filename} or its folder)"
        )
    if not path.is_dir():
        return path
    candidate = path / filename
    if candidate.is_file():
        return candidate
    raise ImportFormatError(
        f"folder {path} has no {filename} (format {fmt}); it holds: {list_folder(path)}"
    )


def list_folder(path: Path, limit: int = 10) -> str:
    """A short listing of a folder's entries, for error messages."""
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:limit]) or "nothing"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def scan(path: Path) -> tuple[str, int]:
    """SHA-256 hex digest and line count of a file, read in 1 MiB chunks.

    Raises:
        ImportFormatError: the file cannot be read or is empty.
    """
    digest = hashlib.sha256()
    lines = 0
    last = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                lines += chunk.count(b"\n")
                last = chunk
    except OSError as exc:
        raise ImportFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not last:
        raise ImportFormatError(f"{path} is empty")
    if not last.endswith(b"\n"):
        lines += 1
    return digest.hexdigest(), lines


def first_line(path: Path, encoding: str = DATA_ENCODING) -> str:
    """The file's first line without its line break (a BOM is dropped)."""
    with path.open(encoding=encoding, errors="replace", newline="") as f:
        return f.readline().rstrip("\r\n").lstrip("\ufeff")


def require_columns(data: Path, fmt: str, separator: str, columns: Sequence[str]) -> None:
    """Check that the first non-blank line of a headerless file has one field per column.

    Raises:
        ImportFormatError: naming the file, the format, the expected and the found layout.
    """
    with data.open(encoding=DATA_ENCODING, errors="replace", newline="") as f:
        lines = ((n, text.rstrip("\r\n")) for n, text in enumerate(f, start=1))
        number, first = next(((n, text) for n, text in lines if text.strip()), (1, ""))
    found = len(first.split(separator))
    if found != len(columns):
        kind = "tab-separated columns" if separator == "\t" else f"{separator!r}-separated fields"
        raise ImportFormatError(
            f"{data} is not {fmt}: expected {len(columns)} {kind} ({', '.join(columns)}) "
            f"without a header, found {found} in line {number}: {first[:80]!r}"
        )


def require_header(data: Path, fmt: str, separator: str, header: Sequence[str]) -> bool:
    """Check that line 1 of ``data`` is exactly ``header``, or data without a header.

    Returns:
        True when line 1 is the header; False when the file has no header: line 1 has one
        number per column of ``header`` (a data row, so nothing is lost by reading it).

    Raises:
        ImportFormatError: naming the file, the format, the expected and the found header.
    """
    found = tuple(cell.strip() for cell in first_line(data).split(separator))
    if found == tuple(header):
        return True
    if len(found) == len(header) and all(isinstance(to_number(c), float) for c in found):
        logger.warning(
            "%s: line 1 is data, not the %s header %r; reading the file as headerless",
            data,
            fmt,
            " ".join(header),
        )
        return False
    joiner = " " if separator == "\t" else separator  # tabs print as spaces
    kind = "tab-separated " if separator == "\t" else ""
    raise ImportFormatError(
        f"{data} is not {fmt}: expected the {kind}header {joiner.join(header)!r}, "
        f"found {joiner.join(found)[:120]!r}"
    )


def read_rows(
    path: Path, separator: str, columns: tuple[str, ...], *, header: bool
) -> Iterator[tuple[int, Sequence[str | None], str | None]]:
    """Stream the data rows of a delimited file: (line number, padded cells, problem).

    Tab-separated files are read without quoting (Last.fm's files hold stray quotes);
    ``::`` (MovieLens 1M) is split by hand, as ``csv`` takes one-character delimiters only.
    """
    with path.open(encoding=DATA_ENCODING, errors=DATA_ERRORS, newline="") as f:
        if separator == "::":
            lines = (text.rstrip("\r\n").split("::") for text in f)
            numbered: Iterator[tuple[int, list[str]]] = enumerate(lines, start=1)
        else:
            if separator == "\t":
                reader = csv.reader(f, delimiter=separator, quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(f, delimiter=separator)
            numbered = ((reader.line_num, row) for row in reader)
        for number, row in numbered:
            if (header and number == 1) or not row:
                continue
            if not row[0].strip() and not any(cell.strip() for cell in row):
                continue  # a blank or whitespace-only line
            cells, problem = pad_row(row, columns)
            yield number, cells, problem


def to_number(text: str | None) -> float | str | None:
    """``text`` as a float when it parses, else unchanged (so validation can report it)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def is_header_row(cells: Sequence[str | None]) -> bool:
    """True when no cell of a headerless format's line 1 is a number: a stray header line."""
    return not any(isinstance(to_number(cell), float) for cell in cells)


def skip_header_row(path: Path, fmt: str, cells: Sequence[str | None]) -> None:
    """Log that line 1 of ``path`` is skipped as a header (the format has none)."""
    logger.warning(
        "%s: line 1 %r looks like a header, which %s files do not have; skipped it",
        path,
        "\t".join(cell or "" for cell in cells)[:120],
        fmt,
    )


def clean_name(name: str) -> str:
    """A display name safe to store: undecodable bytes become U+FFFD, spaces trimmed."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("utf-8", DATA_ERRORS).decode("utf-8", "replace")
    return name.strip()


def pad_row(row: list[str], columns: tuple[str, ...]) -> tuple[Sequence[str | None], str | None]:
    """The row's cells (padded with None to ``len(columns)``) and its problem if the count is off.

    A short row gets a problem too, so that it is dead-lettered even where a missing cell
    would otherwise take a default (a play's weight).
    """
    if len(row) == len(columns):
        return row, None
    cells: list[str | None] = list(row[: len(columns)])
    cells += [None] * (len(columns) - len(cells))
    return cells, f"row has {len(row)} columns, expected {len(columns)} ({', '.join(columns)})"
