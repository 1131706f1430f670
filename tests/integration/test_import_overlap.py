"""Imports into a real embedded Redis: quirky files give the clean file's state, the report
counts the ids already known, and ``prefix`` keeps two datasets' ids apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from streamrec.cli import cli
from streamrec.data.importers import open_source
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from streamrec.state.bulk import BulkLoader, ImportReport
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.histories import HistoryStore
from streamrec.state.vocab import ItemCatalog, Vocabulary
from tests.unit.test_import_quirks import ratings, write_u_data


@pytest.fixture
def movielens(tmp_path: Path) -> Path:
    """A MovieLens 100K folder: 12 users (1-12) rating 15 movies (1-15), with titles."""
    folder = tmp_path / "ml"
    write_u_data(folder / "u.data", ratings(), quirks=False)
    (folder / "u.item").write_text("".join(f"{i}|Movie {i}|x\n" for i in range(1, 16)))
    return folder


@pytest.fixture
def hetrec(tmp_path: Path) -> Path:
    """A HetRec folder: users 1-5 (MovieLens has them too) and 13-17; artists 10-20
    (MovieLens has movies 10-15)."""
    folder = tmp_path / "hetrec"
    folder.mkdir()
    users = [*range(1, 6), *range(13, 18)]
    rows = [f"{u}\t{a}\t{u * a}\n" for u in users for a in range(10, 21) if (u + a) % 2 == 0]
    rows += [f"{u}\t{10 + u % 2}\t1\n" for u in users]  # every user and artist 10..20 appears
    rows = list(dict.fromkeys(rows))
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\n" + "".join(rows))
    (folder / "artists.dat").write_text(
        "id\tname\turl\tpictureURL\n" + "".join(f"{a}\tArtist {a}\tu\tp\n" for a in range(10, 21))
    )
    return folder


def snapshot(conn: redis.Redis, settings: Settings) -> dict[str, tuple[object, ...]]:
    store = HistoryStore(conn, settings)
    state = {}
    for user in Vocabulary(conn, "users").all():
        history = store.get(user)
        state[user] = (history.ratings, history.interactions, history.version)
    return state


def counts(report: ImportReport) -> tuple[int, int, int, int]:
    return report.users_seen, report.users_known, report.items_seen, report.items_known


def test_a_quirky_file_imports_to_the_clean_files_state(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    rows = ratings()
    clean = write_u_data(tmp_path / "clean" / "u.data", rows, quirks=False)
    odd = write_u_data(tmp_path / "odd" / "u.data", rows, quirks=True)
    loader = BulkLoader(redis_conn, settings, chunk_size=16)

    first = loader.load(open_source(clean, "movielens-100k"))
    expected = snapshot(redis_conn, settings)
    redis_conn.flushdb()
    second = loader.load(open_source(odd, "movielens-100k"))

    assert (second.events, second.dead_letters) == (first.events, 0) == (len(rows), 0)
    assert counts(second) == counts(first) == (12, 0, 15, 0)
    assert snapshot(redis_conn, settings) == expected
    assert len(Vocabulary(redis_conn, "users")) == 12
    assert len(Vocabulary(redis_conn, "items")) == 15


def test_non_integer_ids_are_dead_letters_naming_field_and_line(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n1\t1O\t4\t881250950\n")
    report = BulkLoader(redis_conn, settings).load(open_source(tmp_path, "movielens-100k"))

    assert (report.events, report.dead_letters) == (1, 1)
    (letter,) = DeadLetterStore(redis_conn).recent()
    assert letter.field == "item"
    assert letter.reason.startswith("line 2: item id '1O' is not an integer")
    assert Vocabulary(redis_conn, "items").all().keys() == {"10"}


def test_a_second_dataset_with_the_same_ids_shows_the_overlap(
    redis_conn: redis.Redis, settings: Settings, movielens: Path, hetrec: Path
) -> None:
    loader = BulkLoader(redis_conn, settings, chunk_size=8, pipeline_depth=2)
    first = loader.load(open_source(movielens, "movielens-100k"))
    second = loader.load(open_source(hetrec, "lastfm-hetrec"))

    assert (counts(first), first.overlap) == ((12, 0, 15, 0), "none")
    assert (counts(second), second.overlap) == ((10, 5, 11, 6), "partial")
    assert len(Vocabulary(redis_conn, "users")) == 12 + 5  # users 1-5 were merged
    assert ItemCatalog(redis_conn).names(["12"]) == {"12": "Artist 12"}  # a title overwritten


def test_prefixes_keep_two_datasets_apart(
    redis_conn: redis.Redis, settings: Settings, movielens: Path, hetrec: Path
) -> None:
    loader = BulkLoader(redis_conn, settings, chunk_size=8)
    first = loader.load(open_source(movielens, "movielens-100k"), prefix="ml100k:")
    second = loader.load(open_source(hetrec, "lastfm-hetrec"), prefix="hetrec:")

    assert (counts(first), counts(second)) == ((12, 0, 15, 0), (10, 0, 11, 0))
    assert second.overlap == "none"
    users = Vocabulary(redis_conn, "users").all()
    assert len(users) == 22
    assert {"ml100k:1", "hetrec:1", "ml100k:12", "hetrec:17"} <= users.keys()
    items = Vocabulary(redis_conn, "items").all()
    assert len(items) == 26 and all(i.startswith(("ml100k:", "hetrec:")) for i in items)
    assert ItemCatalog(redis_conn).names(["ml100k:12", "hetrec:12", "12"]) == {
        "ml100k:12": "Movie 12",
        "hetrec:12": "Artist 12",
    }
    assert HistoryStore(redis_conn, settings).get("hetrec:1").interactions.keys() <= {
        f"hetrec:{a}" for a in range(10, 21)
    }


def test_a_reimport_reports_every_id_known_and_changes_nothing(
    redis_conn: redis.Redis, settings: Settings, movielens: Path
) -> None:
    loader = BulkLoader(redis_conn, settings, chunk_size=8)
    first = loader.load(open_source(movielens, "movielens-100k"), prefix="ml:")
    before = snapshot(redis_conn, settings)
    again = loader.load(open_source(movielens, "movielens-100k"), prefix="ml:")

    assert (again.events, again.skipped_batches) == (0, again.batches)
    assert (counts(again), again.overlap) == ((12, 12, 15, 15), "all")
    assert snapshot(redis_conn, settings) == before
    # Under another prefix the same file is new data, not a re-import.
    other = loader.load(open_source(movielens, "movielens-100k"), prefix="ml-b:")
    assert (other.events, other.skipped_batches, other.overlap) == (first.events, 0, "none")


@pytest.mark.parametrize("prefix", ["tab\t", "x" * 256])
def test_a_prefix_must_leave_room_for_valid_ids(
    redis_conn: redis.Redis, settings: Settings, movielens: Path, prefix: str
) -> None:
    with pytest.raises(ConfigError, match="prefix must be printable text of at most 255"):
        BulkLoader(redis_conn, settings).load(
            open_source(movielens, "movielens-100k"), prefix=prefix
        )
    assert len(Vocabulary(redis_conn, "users")) == 0


def test_a_prefixed_id_over_the_length_limit_is_a_dead_letter(
    redis_conn: redis.Redis, settings: Settings, movielens: Path
) -> None:
    report = BulkLoader(redis_conn, settings).load(
        open_source(movielens, "movielens-100k"), prefix="p" * 255
    )
    # "p"*255 + "9" fits in 256 characters; "p"*255 + "10" and longer do not.
    assert report.events > 0 and report.dead_letters > 0
    assert all(len(u) <= 256 for u in Vocabulary(redis_conn, "users").all())
    assert DeadLetterStore(redis_conn).recent()[0].reason.startswith("line ")


def test_cli_prints_the_overlap_and_warns_on_a_partial_one(
    redis_conn: redis.Redis, movielens: Path, hetrec: Path
) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[str, str]:
        result = runner.invoke(cli, ["import", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return " ".join(result.stdout.split()), " ".join(result.stderr.split())

    out, err = run(str(movielens), "--format", "movielens-100k")
    assert "ids: none of the file's 12 users and 15 items existed before" in out
    assert "warning" not in err

    out, err = run(str(movielens), "--format", "movielens-100k")
    assert "ids: all 12 users and 15 items were already known: this file was imported" in out
    assert "warning" not in err

    out, err = run(str(hetrec), "--format", "lastfm-hetrec")
    assert "ids: 5 of 10 users and 6 of 11 items already existed" in out
    assert "use --prefix" in out
    assert "warning: 5 of 10 users and 6 of 11 items of user_artists.dat already existed" in err
    assert "--prefix" in err and "ids:" not in err

    out, err = run(str(hetrec), "--format", "lastfm-hetrec", "--prefix", "hetrec:")
    assert "ids: none of the file's 10 users and 11 items existed before" in out
    assert "warning" not in err
    assert ItemCatalog(redis_conn).names(["hetrec:20"]) == {"hetrec:20": "Artist 20"}


def test_cli_warns_when_the_names_file_is_missing(redis_conn: redis.Redis, movielens: Path) -> None:
    (movielens / "u.item").unlink()
    result = CliRunner().invoke(
        cli, ["import", str(movielens), "--format", "movielens-100k"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert f"warning: no {movielens / 'u.item'}: the items of u.data will have no names" in err
    assert "warning" not in result.stdout
    assert ItemCatalog(redis_conn).names(["1"]) == {}
