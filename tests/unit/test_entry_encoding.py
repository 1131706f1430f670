"""The bulk entry encoder (NameTable.encode) writes what the reference encode_entry writes."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.state.cache import encode_entry
from streamrec.state.encoding import NameTable

NAMES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
SCORES = st.floats(width=32, allow_nan=True, allow_infinity=True)
FINITE = st.floats(min_value=-1e9, max_value=1e9, width=32)


def reference(
    users: list[str],
    versions: list[int],
    ids: np.ndarray,
    scores: np.ndarray,
    because: np.ndarray,
    name: dict[int, str],
) -> list[str]:
    """The entries written one by one through encode_entry (scores rounded as served)."""
    out = []
    for r, user in enumerate(users):
        found = ids[r] >= 0
        rounded = np.round(scores[r].astype(np.float64), 6)[found].tolist()
        why = [[name[w] for w in ws if w >= 0] for ws in because[r][found].tolist()]
        items = [name[i] for i in ids[r][found].tolist()]
        out.append(encode_entry(user, "als", 4, versions[r], items, rounded, why, 12.5))
    return out


@st.composite
def batches(draw: st.DrawFn, scores: st.SearchStrategy[float] = FINITE) -> dict[str, object]:
    n_items = draw(st.integers(1, 30))
    names = draw(st.lists(st.one_of(st.none(), NAMES), min_size=n_items, max_size=n_items))
    n, k, b = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(0, 3))
    item = st.integers(-1, n_items - 1)
    ids = np.array(draw(st.lists(item, min_size=n * k, max_size=n * k))).reshape(n, k)
    because = np.array(draw(st.lists(item, min_size=n * k * b, max_size=n * k * b)))
    values = draw(st.lists(scores, min_size=n * k, max_size=n * k))
    return {
        "names": names,
        "users": draw(st.lists(NAMES, min_size=n, max_size=n)),
        "versions": draw(st.lists(st.integers(0, 2**53), min_size=n, max_size=n)),
        "ids": ids,
        "because": because.reshape(n, k, b),
        "scores": np.array(values, dtype=np.float32).reshape(n, k),
    }


def check(batch: dict[str, object]) -> None:
    names: list[str | None] = batch["names"]  # type: ignore[assignment]
    table = NameTable(lambda ids: [names[i] for i in ids])
    users: list[str] = batch["users"]  # type: ignore[assignment]
    versions: list[int] = batch["versions"]  # type: ignore[assignment]
    ids, scores, because = batch["ids"], batch["scores"], batch["because"]
    got = table.encode(users, "als", 4, versions, ids, scores, because, 12.5)  # type: ignore[arg-type]
    shown = {i: n if n is not None else str(i) for i, n in enumerate(names)}
    want = reference(users, versions, ids, scores, because, shown)  # type: ignore[arg-type]
    assert [json.loads(e) for e in got] == [json.loads(e) for e in want]


@given(batches())
@settings(max_examples=300, deadline=None)
def test_the_bulk_encoder_writes_what_encode_entry_writes(batch: dict[str, object]) -> None:
    check(batch)


@given(batches(SCORES))
@settings(max_examples=100, deadline=None)
def test_scores_that_are_not_finite_or_huge_are_written_as_the_reference_does(
    batch: dict[str, object],
) -> None:
    check(batch)


@given(st.floats(min_value=-1e11, max_value=1e11))
def test_a_score_parses_to_exactly_the_rounded_value(score: float) -> None:
    table = NameTable(lambda ids: ["x" for _ in ids])
    (entry,) = table.encode(
        ["u"], "m", 1, [1], np.array([[0]]), np.array([[score]]), np.full((1, 1, 0), -1)
    )
    assert json.loads(entry)["items"][0]["score"] == float(np.round(score, 6))


def test_each_name_is_looked_up_once_and_the_table_grows() -> None:
    asked: list[int] = []

    def lookup(ids: list[int]) -> list[str]:
        asked.extend(ids)
        return [f"{'long name ' * 40}{i}" for i in ids]

    table = NameTable(lookup)
    rng = np.random.default_rng(0)
    for _ in range(5):  # names of 5,000 items: past the first buffer and id capacity
        ids = rng.integers(0, 5_000, (50, 20))
        entries = table.encode(
            [f"u{n}" for n in range(50)],
            "m",
            1,
            [0] * 50,
            ids,
            np.zeros((50, 20)),
            np.full((50, 20, 1), -1),
        )
        assert json.loads(entries[7])["items"][3]["item"] == f"{'long name ' * 40}{ids[7, 3]}"
    assert len(asked) == len(set(asked))


def test_a_refresh_that_placed_nobody_encodes_nothing() -> None:
    table = NameTable(lambda ids: ["x" for _ in ids])
    empty = table.encode(
        [],
        "als",
        1,
        [],
        np.zeros((0, 20), np.int64),
        np.zeros((0, 20)),
        np.zeros((0, 20, 2), np.int64),
    )
    assert empty == []
