"""The behavioural contract every item index satisfies; ExactIndex is the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.index import ExactIndex, ItemIndex, ScannIndex

#: ScannIndex on these tiny catalogues: ScaNN's scoring without a tree, forced
INDEXES = [ExactIndex, ScannIndex]


@pytest.fixture(params=INDEXES, ids=lambda cls: cls.__name__)
def make_index(request: pytest.FixtureRequest) -> type[ItemIndex]:
    return request.param  # type: ignore[no-any-return]


def vectors(n: int = 50, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_returns_the_true_top_k_best_first(make_index: type) -> None:
    items, queries = vectors(), vectors(5, seed=1)
    ids, scores = make_index(items).search(queries, 7)
    truth = np.argsort(-(queries @ items.T), axis=1)[:, :7]
    np.testing.assert_array_equal(ids, truth)
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ items.T, truth, axis=1), rtol=1e-5
    )


def test_excluded_items_never_come_back(make_index: type) -> None:
    items, queries = vectors(), vectors(3, seed=2)
    index = make_index(items)
    best, _ = index.search(queries, 5)
    ids, _ = index.search(queries, 5, [best[0], np.array([], dtype=np.int64), best[2][:2]])
    assert not set(ids[0]) & set(best[0])
    np.testing.assert_array_equal(ids[1], best[1])
    assert not set(ids[2]) & set(best[2][:2])


def test_k_beyond_the_items_pads_with_minus_one(make_index: type) -> None:
    ids, scores = make_index(vectors(4)).search(
        vectors(2, seed=3), 6, [np.array([0]), np.array([])]
    )
    assert ids.shape == (2, 6)
    assert list(ids[0][3:]) == [-1, -1, -1] and sorted(ids[0][:3]) == [1, 2, 3]
    assert list(ids[1][4:]) == [-1, -1] and np.all(np.isneginf(scores[0][3:]))
    assert 0 not in ids[0]  # no id-0 padding, unlike implicit's recommend


def test_a_single_vector_query_and_k_zero(make_index: type) -> None:
    index = make_index(vectors())
    assert index.search(vectors(1)[0], 3)[0].shape == (1, 3)
    assert index.search(vectors(2), 0)[0].shape == (2, 0)


def test_upsert_adds_items_beyond_the_end(make_index: type) -> None:
    items = vectors(10)
    index = make_index(items)
    query = np.ones((1, 8), dtype=np.float32)
    index.upsert(np.array([14]), query * 10)
    assert index.n_items == 15
    ids, _ = index.search(query, 3)
    assert ids[0][0] == 14 and not set(ids[0]) & {10, 11, 12, 13}  # gaps are never returned
