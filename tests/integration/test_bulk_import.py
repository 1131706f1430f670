"""Bulk import into a real embedded Redis: histories, names, idempotence, dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from streamrec.data.importers import RawRecord, open_source
from streamrec.events import Event
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader, ImportReport
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.histories import HistoryStore
from streamrec.state.vocab import ItemCatalog, Vocabulary

U_DATA = (
    "1\t10\t4\t881250949\n"
    "1\t20\t3\t881250950\n"
    "2\t10\t5\t881250951\n"
    "2\t30\t2\t881250952\n"
    "3\t20\t1\t881250953\n"
    "2\t30\t4\t881250952\n"  # same second as line 4: the later line wins
)
U_ITEM = "10|Café Society (1995)|x\n20|Heat (1995)|x\n30|Casino (1995)|x\n"


@pytest.fixture
def ml_folder(tmp_path: Path) -> Path:
    (tmp_path / "u.data").write_text(U_DATA)
    (tmp_path / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    return tmp_path


def histories(conn: redis.Redis, settings: Settings) -> dict[str, dict[str, float]]:
    store = HistoryStore(conn, settings)
    return {user: store.get(user).ratings for user in Vocabulary(conn, "users").all()}


def test_movielens_100k_import(
    redis_conn: redis.Redis, settings: Settings, ml_folder: Path
) -> None:
    seen: list[int] = []
    loader = BulkLoader(redis_conn, settings, chunk_size=2, pipeline_depth=2)
    report = loader.load(open_source(ml_folder, "movielens-100k"), progress=seen.append)

    assert (report.events, report.dead_letters, report.batches, report.skipped_batches) == (
        6,
        0,
        3,
        0,
    )
    assert report.rate > 0
    assert sum(seen) == 6
    assert len(Vocabulary(redis_conn, "users")) == 3
    assert len(Vocabulary(redis_conn, "items")) == 3
    assert histories(redis_conn, settings) == {
        "1": {"10": 4.0, "20": 3.0},
        "2": {"10": 5.0, "30": 4.0},
        "3": {"20": 1.0},
    }
    history = HistoryStore(redis_conn, settings).get("2")
    assert history.version == 3
    assert history.last_ts == 881250952.0
    assert ItemCatalog(redis_conn).names(["10", "20", "30"]) == {
        "10": "Café Society (1995)",
        "20": "Heat (1995)",
        "30": "Casino (1995)",
    }


def test_importing_twice_changes_nothing(
    redis_conn: redis.Redis, settings: Settings, ml_folder: Path
) -> None:
    loader = BulkLoader(redis_conn, settings, chunk_size=4)
    first = loader.load(open_source(ml_folder, "movielens-100k"))
    before = histories(redis_conn, settings)
    versions = {u: HistoryStore(redis_conn, settings).get(u).version for u in before}

    second = loader.load(open_source(ml_folder, "movielens-100k"))

    assert first.batches == second.batches == 2
    assert second.skipped_batches == second.batches
    assert (second.events, second.dead_letters) == (0, 0)
    assert histories(redis_conn, settings) == before
    assert {u: HistoryStore(redis_conn, settings).get(u).version for u in before} == versions


def test_malformed_rows_become_dead_letters(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "u.data").write_text(
        "1\t10\t4\t881250949\n"
        "1\t20\tabc\t881250950\n"  # line 2: weight is not a number
        "2\t10\t9\t881250951\n"  # line 3: rating out of range
        "2\t30\t3\n"  # line 4: a column short
        "3\t20\t1\t881250953\n"
    )
    report = BulkLoader(redis_conn, settings, chunk_size=2).load(
        open_source(tmp_path, "movielens-100k")
    )

    assert (report.events, report.dead_letters) == (2, 3)
    letters = {d.payload["line"]: d for d in DeadLetterStore(redis_conn).recent()}
    assert sorted(letters) == [2, 3, 4]
    assert letters[2].reason.startswith("line 2: weight must be a number")
    assert letters[2].field == "weight"
    assert letters[2].payload["weight"] == "abc"
    assert letters[3].reason.startswith("line 3: weight must be a rating between")
    assert (
        letters[4].reason == "line 4: row has 3 columns, expected 4 (user, item, rating, timestamp)"
    )
    assert letters[4].field == "payload"
    assert {d.batch_id for d in letters.values()} <= {
        f"import-{open_source(tmp_path, 'movielens-100k').digest[:16]}-{i}" for i in range(3)
    }
    assert histories(redis_conn, settings) == {"1": {"10": 4.0}, "3": {"20": 1.0}}


def test_lastfm_360k_plays_add_up_and_names_are_stored(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "usersha1-artmbid-artname-plays.tsv").write_text(
        "u1\tmbid-a\tBjörk\t120\nu1\t\tSome Band\t7\nu1\tmbid-a\tBjörk\t5\n"
    )
    report = BulkLoader(redis_conn, settings).load(open_source(tmp_path, "lastfm-360k"))

    assert report.events == 3
    history = HistoryStore(redis_conn, settings).get("u1")
    assert history.interactions == {"mbid-a": 125.0, "Some Band": 7.0}
    assert ItemCatalog(redis_conn).names(["mbid-a"]) == {"mbid-a": "Björk"}


def test_csv_with_iso_timestamps(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "events.csv").write_text(
        "user,item,weight,kind,timestamp\n"
        "alice,song-1,2,play,2024-05-01T12:00:00Z\n"
        "alice,song-2,,click,2024-05-01T13:00:00+00:00\n"
    )
    BulkLoader(redis_conn, settings).load(open_source(tmp_path, "csv"))

    history = HistoryStore(redis_conn, settings).get("alice")
    assert history.interactions == {"song-1": 2.0, "song-2": 1.0}
    assert history.last_ts == 1714568400.0


def test_load_events_mixes_events_and_records(redis_conn: redis.Redis, settings: Settings) -> None:
    items: list[Event | RawRecord] = [
        Event("u", "a", 2.0, "play", 1_700_000_000.0, "e-1"),
        RawRecord(1, "u", "b", 3.0, None, 1_700_000_001.0),
        RawRecord(2, "u", "", 1.0, "play", None),
    ]
    loader = BulkLoader(redis_conn, settings, chunk_size=2)
    first = loader.load_events(items, "synthetic-demo")
    again = loader.load_events(items, "synthetic-demo")

    assert first == ImportReport(2, 1, 2, 0, first.seconds, 1, 0, 2, 0)
    assert (again.events, again.skipped_batches) == (0, 2)
    assert (again.users_known, again.items_known, again.overlap) == (1, 2, "all")
    assert HistoryStore(redis_conn, settings).get("u").interactions == {"a": 2.0, "b": 3.0}
    assert DeadLetterStore(redis_conn).recent()[0].field == "item"
