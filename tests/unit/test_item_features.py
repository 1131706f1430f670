"""Item metadata: MovieLens genres as the readers find them, and the features made of them
and of titles (tiny files written by each test; no Redis, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.data.importers import open_source
from streamrec.data.interactions import Interactions, read_interactions
from streamrec.data.item_features import features_of, item_features, name_words
from streamrec.data.splits import new_user_split, random_split
from streamrec.errors import ImportFormatError
from streamrec.settings import Settings

U_GENRE = "unknown|0\nAction|1\nComedy|2\nDrama|3\n\n"


def flags(*on: int, n: int = 4) -> str:
    return "|".join("1" if g in on else "0" for g in range(n))


def ml100k(folder: Path, genre: str | None = U_GENRE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(
        "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t30\t5\t881250951\n"
    )
    lines = [
        f"10|Café Society (1995)|01-Jan-1995||http://x|{flags(2, 3)}",
        f"020|Heat (1995)|01-Jan-1995||http://y|{flags(1)}",
        f"30|Nothing Flagged (1996)|01-Jan-1996||http://z|{flags()}",
        "40|No Flag Columns (1997)",
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    if genre is not None:
        (folder / "u.genre").write_text(genre)
    return folder


def test_movielens_100k_genres_are_the_flagged_columns_named_by_u_genre(tmp_path: Path) -> None:
    source = open_source(ml100k(tmp_path), "movielens-100k")
    assert source.item_tags == {"10": ("Comedy", "Drama"), "20": ("Action",)}
    assert source.item_names["40"] == "No Flag Columns (1997)"  # names as before


def test_movielens_100k_without_u_genre_names_the_release_genres(tmp_path: Path) -> None:
    source = open_source(ml100k(tmp_path, genre=None), "movielens-100k")
    assert source.item_tags == {"10": ("Adventure", "Animation"), "20": ("Action",)}


@pytest.mark.parametrize(
    ("genre", "found"),
    [("Action\n", "'Action' in line 1"), ("Action|0\nComedy|x\n", "'Comedy|x' in line 2"),
     ("Action|0\nComedy|2\n", r"indices must be 0, 1, 2, … \(found \[0, 2\]\)")],
)  # fmt: skip
def test_a_malformed_u_genre_names_the_file_and_the_line(
    tmp_path: Path, genre: str, found: str
) -> None:
    with pytest.raises(ImportFormatError, match=f"u.genre.*{found}"):
        open_source(ml100k(tmp_path, genre=genre), "movielens-100k")


def test_movielens_1m_genres_are_the_third_field_split_at_pipes(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::Amélie (2001)::Comedy|Romance\n2::Jumanji (1995)::\n3::Heat (1995)\n"
        "4::Repeats (1999)::Drama| |Drama\n".encode("latin-1")
    )
    source = open_source(tmp_path, "movielens-1m")
    assert source.item_tags == {"1193": ("Comedy", "Romance"), "4": ("Drama",)}
    assert source.item_names["3"] == "Heat (1995)"


def test_movielens_csv_genres_skip_the_no_genres_placeholder(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4,1100000000\n")
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n"
        '010,"Heat, The (1995)",Action|Crime|Thriller\n'
        "20,Some Film (2015),(no genres listed)\n"
    )
    source = open_source(tmp_path, "movielens-csv")
    assert source.item_tags == {"10": ("Action", "Crime", "Thriller")}
    assert source.item_names == {"10": "Heat, The (1995)", "20": "Some Film (2015)"}


def test_formats_without_tags_have_none(tmp_path: Path) -> None:
    (tmp_path / "plays.csv").write_text("user,item\nu,i\n")
    assert open_source(tmp_path / "plays.csv", "csv").item_tags == {}


@pytest.mark.parametrize(
    ("name", "words"),
    [("Shawshank Redemption, The (1994)", ("shawshank", "redemption")),
     ("Schindler's List (1993)", ("schindlers", "list")),
     ("2001: A Space Odyssey (1968)", ("2001", "space", "odyssey")),
     ("Toy Story 2 (1999)", ("toy", "story", "2")),
     ("Cité des enfants perdus, La (1995)", ("cité", "enfants", "perdus")),
     ("Sherlock (2010– )", ("sherlock",)),
     ("Star Trek: Star Trek (1982)", ("star", "trek")),
     ("  ", ())],
)  # fmt: skip
def test_name_words_are_lower_case_without_years_punctuation_or_articles(
    name: str, words: tuple[str, ...]
) -> None:
    assert name_words(name) == words


def test_features_are_tags_then_name_words() -> None:
    assert features_of("Heat (1995)", ["Action", " Crime ", "", "action"]) == (
        "tag:action", "tag:crime", "word:heat",
    )  # fmt: skip
    assert features_of(None, []) == ()
    names, tags = {"a": "Heat (1995)"}, {"b": ("Drama",)}
    assert item_features(["a", "b", "c"], names, tags) == (("word:heat",), ("tag:drama",), ())


def test_read_interactions_gives_each_dense_item_its_features(tmp_path: Path) -> None:
    loaded = read_interactions(open_source(ml100k(tmp_path), "movielens-100k"), Settings())
    assert loaded.items == ["10", "20", "30"]
    assert loaded.data.item_features == (
        ("tag:comedy", "tag:drama", "word:café", "word:society"),
        ("tag:action", "word:heat"),
        ("word:nothing", "word:flagged"),
    )
    # the splits keep them (the experiments train on the parts)
    assert random_split(loaded.data, 0.5, 1).train.item_features == loaded.data.item_features
    parts = new_user_split(loaded.data, 0.5, 0.5, 1)
    assert parts.fold_in.item_features == loaded.data.item_features


def test_interactions_refuse_features_that_do_not_match_the_items() -> None:
    one = np.zeros(1)
    with pytest.raises(ValueError, match=r"one entry per item, 2 \(got 1\)"):
        Interactions(one, one, one, one, 1, 2, item_features=((),))
