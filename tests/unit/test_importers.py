"""The dataset readers, on tiny files written by each test (no Redis)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.data.importers import FORMATS, RawRecord, open_source
from streamrec.errors import ImportFormatError, InvalidEventError
from streamrec.events import EventValidator
from streamrec.settings import Settings

U_DATA = "1\t10\t4\t881250949\n1\t20\tabc\t881250950\n\n2\t10\t5\n2\t30\t3\t881250951\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def ml100k(folder: Path) -> Path:
    write(folder / "u.data", U_DATA)
    write(
        folder / "u.item",
        "10|Café Society (1995)|01-Jan-1995||http://x|0|1\n20|Heat (1995)|01-Jan-1995||http://y|1|0\n",
        encoding="latin-1",
    )
    return folder


def test_every_fetchable_dataset_has_an_importer() -> None:
    from streamrec.data.datasets import DATASETS

    assert {spec.import_format for spec in DATASETS.values()} <= set(FORMATS)


def test_movielens_100k_folder(tmp_path: Path) -> None:
    folder = ml100k(tmp_path / "ml")
    source = open_source(folder, "movielens-100k")
    assert source.path == folder / "u.data"
    assert source.fmt == "movielens-100k"
    assert source.digest == hashlib.sha256((folder / "u.data").read_bytes()).hexdigest()
    assert source.size_hint == 5  # lines, the blank one included
    assert source.item_names == {"10": "Café Society (1995)", "20": "Heat (1995)"}
    assert isinstance(source.records, Iterator)
    records = list(source.records)
    assert [r.line for r in records] == [1, 2, 4, 5]
    assert records[0] == RawRecord(1, "1", "10", 4.0, "rating", 881250949.0)
    assert records[1].weight == "abc"  # kept raw for validation to report
    assert records[1].timestamp == 881250950.0
    short = records[2]
    assert (short.user, short.item, short.weight, short.timestamp) == ("2", "10", 5.0, None)
    assert short.problem == "row has 3 columns, expected 4 (user, item, rating, timestamp)"
    assert records[3].problem is None


def test_file_path_equals_folder_path(tmp_path: Path) -> None:
    folder = ml100k(tmp_path)
    by_file = open_source(str(folder / "u.data"), "movielens-100k")
    by_folder = open_source(folder, "movielens-100k")
    assert by_file.digest == by_folder.digest
    assert list(by_file.records) == list(by_folder.records)


def test_malformed_row_is_yielded_not_raised_and_fails_validation(tmp_path: Path) -> None:
    records = list(open_source(ml100k(tmp_path), "movielens-100k").records)
    validator = EventValidator(Settings())
    bad = records[1]
    with pytest.raises(InvalidEventError) as info:
        validator.make(bad.user, bad.item, bad.weight, bad.kind, bad.timestamp)
    assert info.value.field == "weight"
    assert "'abc'" in str(info.value)


def test_undecodable_bytes_make_only_their_row_invalid(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_bytes(b"1\t10\t4\t881250949\n\xff\xfe\t10\t4\t881250949\n")
    records = list(open_source(tmp_path, "movielens-100k").records)
    assert len(records) == 2
    with pytest.raises(InvalidEventError) as info:
        EventValidator(Settings()).make(records[1].user, "10", 4.0, "rating", 881250949.0)
    assert info.value.field == "user"
    json.dumps(records[1].as_payload())  # a dead letter can still be stored


def test_movielens_100k_without_u_item_has_no_names(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t10\t4\t881250949\n")
    assert open_source(tmp_path, "movielens-100k").item_names == {}


@pytest.mark.parametrize(
    ("text", "found"),
    [("userId,movieId,rating,timestamp\n1,10,4,881250949\n", "found 1"), ("1\t2\n", "found 2")],
)
def test_movielens_100k_bad_layout(tmp_path: Path, text: str, found: str) -> None:
    data = write(tmp_path / "u.data", text)
    with pytest.raises(ImportFormatError) as info:
        open_source(data, "movielens-100k")
    message = str(info.value)
    assert str(data) in message
    assert "movielens-100k" in message
    assert "4 tab-separated columns" in message
    assert found in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match=r"does not exist.*movielens-100k.*u\.data"):
        open_source(tmp_path / "nope", "movielens-100k")
    write(tmp_path / "other.txt", "x")
    with pytest.raises(ImportFormatError, match=r"has no u\.data.*holds: other\.txt"):
        open_source(tmp_path, "movielens-100k")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="is empty"):
        open_source(write(tmp_path / "u.data", ""), "movielens-100k")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match=r"unknown import format 'parquet'.*movielens-100k"):
        open_source(tmp_path, "parquet")


def test_movielens_csv(tmp_path: Path) -> None:
    write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,4.5,1100000000\n1,20,,1100000001\n2,10\n",
    )
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n10,"American President, The (1995)",Comedy\n20,Heat (1995),Action\n',
    )
    source = open_source(tmp_path, "movielens-csv")
    assert source.size_hint == 3
    assert source.item_names == {"10": "American President, The (1995)", "20": "Heat (1995)"}
    first, empty, short = source.records
    assert first == RawRecord(2, "1", "10", 4.5, "rating", 1100000000.0)
    assert empty.weight == ""
    assert short.line == 4
    assert short.weight is None
    assert short.problem is not None


def test_movielens_csv_bad_header(tmp_path: Path) -> None:
    write(tmp_path / "ratings.csv", "user,item,rating,timestamp\n1,10,4,1\n")
    with pytest.raises(ImportFormatError) as info:
        open_source(tmp_path, "movielens-csv")
    assert "userId,movieId,rating,timestamp" in str(info.value)
    assert "user,item,rating,timestamp" in str(info.value)


def test_lastfm_360k(tmp_path: Path) -> None:
    write(
        tmp_path / "usersha1-artmbid-artname-plays.tsv",
        "u1\tmbid-a\tBjörk\t120\n"
        'u1\t\t"Weird Al" Yankovic\t7\n'
        "u2\tmbid-a\tbjork\tlots\n"
        "u2\tmbid-b\n",
    )
    source = open_source(tmp_path, "lastfm-360k")
    assert source.item_names == {}  # the names are in the data file
    records = list(source.records)
    assert records[0] == RawRecord(1, "u1", "mbid-a", 120.0, "play", None)
    assert records[1].item == '"Weird Al" Yankovic'  # empty mbid: the name is the id
    assert records[2].weight == "lots"
    assert records[3].problem is not None
    assert records[3].weight is None
    assert source.item_names == {"mbid-a": "Björk", '"Weird Al" Yankovic': '"Weird Al" Yankovic'}


def test_lastfm_360k_bad_layout(tmp_path: Path) -> None:
    data = write(tmp_path / "plays.csv", "user,artist,plays\n")
    with pytest.raises(ImportFormatError, match=r"not lastfm-360k.*found 1 in line 1"):
        open_source(data, "lastfm-360k")


def test_lastfm_hetrec(tmp_path: Path) -> None:
    write(tmp_path / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t-1\n")
    (tmp_path / "artists.dat").write_bytes(
        b'id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://a\thttp://p\n52\tMor\xe9 "x\tu\tp\n'
    )
    source = open_source(tmp_path, "lastfm-hetrec")
    assert source.size_hint == 2
    assert source.item_names == {"51": "Duran Duran", "52": 'Mor\ufffd "x'}
    records = list(source.records)
    assert records == [
        RawRecord(2, "2", "51", 13883.0, "play", None),
        RawRecord(3, "2", "52", -1.0, "play", None),
    ]


def test_lastfm_hetrec_bad_header(tmp_path: Path) -> None:
    write(tmp_path / "user_artists.dat", "user\tartist\tplays\n2\t51\t1\n")
    with pytest.raises(ImportFormatError, match=r"userID artistID weight.*user artist plays"):
        open_source(tmp_path, "lastfm-hetrec")


def test_csv_any_order_iso_timestamps_and_defaults(tmp_path: Path) -> None:
    data = write(
        tmp_path / "events.csv",
        "\ufeffItem,user,timestamp,weight,kind,event_id\n"
        "song-1,alice,2024-05-01T12:00:00+00:00,3,play,e1\n"
        "song-2, bob,1714564800,,,\n"
        "song-3,carol,not a date,x,click,\n",
    )
    records = list(open_source(data, "csv").records)
    assert records[0] == RawRecord(
        2, "alice", "song-1", 3.0, "play", "2024-05-01T12:00:00+00:00", "e1"
    )
    assert records[1] == RawRecord(3, "bob", "song-2", None, None, 1714564800.0, None)
    assert (records[2].timestamp, records[2].weight) == ("not a date", "x")
    event = EventValidator(Settings()).make(
        records[0].user, records[0].item, records[0].weight, records[0].kind, records[0].timestamp
    )
    assert event.timestamp == 1714564800.0


def test_csv_only_required_columns(tmp_path: Path) -> None:
    data = write(tmp_path / "x.csv", "user,item\nu,i\nu,i,extra\n")
    first, extra = open_source(data, "csv").records
    assert first == RawRecord(2, "u", "i", None, None, None, None)
    assert extra.problem == "row has 3 columns, expected 2 (user, item)"


def test_csv_unknown_column(tmp_path: Path) -> None:
    data = write(tmp_path / "x.csv", "user,item,rating\nu,i,4\n")
    with pytest.raises(ImportFormatError) as info:
        open_source(data, "csv")
    assert "'rating'" in str(info.value)
    assert "user, item, weight, kind, timestamp, event_id" in str(info.value)


@pytest.mark.parametrize(
    ("header", "match"),
    [("user,weight", "lacks the required column"), ("user,item,user", "more than once")],
)
def test_csv_bad_header(tmp_path: Path, header: str, match: str) -> None:
    with pytest.raises(ImportFormatError, match=match):
        open_source(write(tmp_path / "x.csv", header + "\n"), "csv")


def test_csv_folder(tmp_path: Path) -> None:
    data = write(tmp_path / "only.csv", "user,item\nu,i\n")
    assert open_source(tmp_path, "csv").path == data
    write(tmp_path / "second.csv", "user,item\n")
    with pytest.raises(ImportFormatError, match=r"2 \.csv files"):
        open_source(tmp_path, "csv")


def test_as_payload_is_json_ready() -> None:
    record = RawRecord(7, "u", None, math.nan, "rating", None)
    payload = record.as_payload()
    assert payload == {"line": 7, "user": "u", "weight": "nan", "kind": "rating"}
    json.dumps(payload, allow_nan=False)


def test_movielens_1m_double_colon_ratings_and_latin1_titles(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3\n2::1193::4::978298413\n")
    (folder / "movies.dat").write_bytes("1193::Amélie (2001)::Comedy\n".encode("latin-1"))
    source = open_source(folder, "movielens-1m")
    records = list(source.records)
    assert [(r.user, r.item, r.weight, r.kind, r.timestamp) for r in records[::2]] == [
        ("1", "1193", 5.0, "rating", 978300760.0),
        ("2", "1193", 4.0, "rating", 978298413.0),
    ]
    assert records[1].problem is not None and records[1].line == 2
    assert source.item_names == {"1193": "Amélie (2001)"}
    assert source.size_hint == 3
