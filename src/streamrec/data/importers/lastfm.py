"""Last.fm play counts: the 360K users dump and the HetRec 2011 release.

Every row is a ``play`` event whose weight is the play count. Both files are tab-separated
and contain stray quote characters, so quoting is off.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from streamrec.data.importers import (
    ImportSource,
    RawRecord,
    clean_name,
    locate,
    read_rows,
    require_columns,
    require_header,
    scan,
    to_number,
)
from streamrec.errors import ImportFormatError

logger = logging.getLogger(__name__)

COLUMNS_360K = ("user-sha1", "artist-mbid", "artist-name", "plays")
HETREC_HEADER = ("userID", "artistID", "weight")
ARTISTS_HEADER = ("id", "name", "url", "pictureURL")


def open_360k(path: Path) -> ImportSource:
    """Open ``usersha1-artmbid-artname-plays.tsv`` (no header).

    The item id is the artist's MusicBrainz id, or its name where the id is empty. The
    names live in the data file, so ``item_names`` fills up while the records are read.

    Raises:
        ImportFormatError: the file is missing or its first line is not four tab-separated
            columns.
    """
    data = locate(path, "lastfm-360k", "usersha1-artmbid-artname-plays.tsv")
    digest, lines = scan(data)
    require_columns(data, "lastfm-360k", "\t", COLUMNS_360K)
    names: dict[str, str] = {}
    return ImportSource(data, "lastfm-360k", _plays_360k(data, names), names, digest, lines)


def open_hetrec(path: Path) -> ImportSource:
    """Open ``user_artists.dat`` (header ``userID artistID weight``), names from ``artists.dat``.

    Raises:
        ImportFormatError: the file is missing or a header differs.
    """
    data = locate(path, "lastfm-hetrec", "user_artists.dat")
    digest, lines = scan(data)
    require_header(data, "lastfm-hetrec", "\t", HETREC_HEADER)
    names = _read_artists(data.parent / "artists.dat")
    return ImportSource(data, "lastfm-hetrec", _plays_hetrec(data), names, digest, lines - 1)


def _plays_360k(path: Path, names: dict[str, str]) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, "\t", COLUMNS_360K, header=False):
        user, mbid, name, plays = cells
        item = mbid or name
        if item and name and item not in names:
            names[item] = clean_name(name)
        yield RawRecord(number, user, item, to_number(plays), "play", None, problem=problem)


def _plays_hetrec(path: Path) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, "\t", HETREC_HEADER, header=True):
        user, item, weight = cells
        yield RawRecord(number, user, item, to_number(weight), "play", None, problem=problem)


def _read_artists(path: Path) -> dict[str, str]:
    """Artist names from ``artists.dat`` (``id name url pictureURL``, tab-separated)."""
    if not path.is_file():
        logger.info("lastfm-hetrec: no %s, artists will have no names", path)
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = tuple(cell.strip() for cell in next(reader, []))
        if header[:2] != ARTISTS_HEADER[:2]:
            raise ImportFormatError(
                f"{path} is not a HetRec artists.dat: expected the tab-separated header "
                f"{' '.join(ARTISTS_HEADER)}, found {' '.join(header)[:120]!r}"
            )
        for row in reader:
            if len(row) >= 2 and row[0] and row[1].strip():
                names[row[0].strip()] = row[1].strip()
    return names
