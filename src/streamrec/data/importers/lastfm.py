"""Last.fm play counts: the 360K users dump and the HetRec 2011 release.

Every row is a ``play`` event whose weight is the play count. Both files are tab-separated
and contain stray quote characters, so quoting is off.

Ids: the 360K file's users are SHA-1 digests of the users' mailboxes and its artists
MusicBrainz ids (UUIDs), both written as lower-case hex; they are trimmed and lower-cased
when they have that shape (so an upper-cased copy names the same users), and kept as
written otherwise. An artist without an MBID is identified by its name, trimmed. HetRec's
``userID`` and ``artistID`` are integers and read as such (``"051"`` is artist ``"51"``).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from streamrec.data.importers import (
    ImportSource,
    RawRecord,
    clean_name,
    is_header_row,
    locate,
    read_rows,
    require_columns,
    require_header,
    scan,
    skip_header_row,
    to_number,
)
from streamrec.data.importers.ids import hex_id, integer_id, integer_ids
from streamrec.errors import ImportFormatError

logger = logging.getLogger(__name__)

COLUMNS_360K = ("user-sha1", "artist-mbid", "artist-name", "plays")
_SHA1 = re.compile(r"[0-9a-f]{40}")
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
    header = require_header(data, "lastfm-hetrec", "\t", HETREC_HEADER)
    names = _read_artists(data.parent / "artists.dat")
    records = _plays_hetrec(data, header)
    return ImportSource(
        data,
        "lastfm-hetrec",
        records,
        names,
        digest,
        lines - 1 if header else lines,
        data.parent / "artists.dat",
    )


def _plays_360k(path: Path, names: dict[str, str]) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, "\t", COLUMNS_360K, header=False):
        user, mbid, name, plays = cells
        user = hex_id(user)
        if number == 1 and is_header_row(cells) and not _SHA1.fullmatch(user or ""):
            skip_header_row(path, "lastfm-360k", cells)
            continue
        item = hex_id(mbid) or hex_id(name)
        if item and name and item not in names:
            names[item] = clean_name(name)
        yield RawRecord(number, user, item, to_number(plays), "play", None, problem=problem)


def _plays_hetrec(path: Path, header: bool) -> Iterator[RawRecord]:
    for number, cells, problem in read_rows(path, "\t", HETREC_HEADER, header=header):
        user, item, weight = cells
        field = "payload"
        if problem is None:
            user, item, problem, field = integer_ids("lastfm-hetrec", user, item)
        yield RawRecord(number, user, item, to_number(weight), "play", None, None, problem, field)


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
            if len(row) >= 2 and row[1].strip():
                artist = integer_id(row[0])
                if artist is not None:
                    names[artist] = row[1].strip()
    return names
