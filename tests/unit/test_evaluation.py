"""Splits and ranking metrics of streamrec.models.evaluation on tiny hand-checked data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse

from streamrec.data.interactions import Interactions
from streamrec.data.splits import new_user_split, random_split
from streamrec.errors import ConfigError
from streamrec.models.evaluation import RankingMetrics, ranking_metrics


def _test_matrix(relevant: Sequence[Sequence[int]], n_items: int) -> scipy.sparse.csr_matrix:
    rows = [u for u, items in enumerate(relevant) for _ in items]
    cols = [i for items in relevant for i in items]
    shape = (len(relevant), n_items)
    return scipy.sparse.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=shape)


def _reference(recs: np.ndarray, relevant: Sequence[set[int]], k: int) -> dict[str, float]:
    """Per-user loops, straight from the definitions, for users with test items."""
    totals = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    evaluated = [u for u, rel in enumerate(relevant) if rel]
    for u in evaluated:
        rel, seen = relevant[u], set()
        gains = []
        for item in recs[u, :k]:
            gains.append(int(item in rel and item not in seen))
            seen.add(item)
        hits = sum(gains)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
        ap = sum(sum(gains[: i + 1]) / (i + 1) for i in range(k) if gains[i])
        totals["precision"] += hits / k
        totals["recall"] += hits / len(rel)
        totals["ndcg"] += sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / idcg
        totals["map"] += ap / min(k, len(rel))
    return {name: value / len(evaluated) for name, value in totals.items()}


def _interactions(
    users: Sequence[int],
    items: Sequence[int],
    timestamps: Sequence[float] | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
) -> Interactions:
    n = len(users)
    return Interactions(
        users=np.asarray(users),
        items=np.asarray(items),
        weights=np.arange(n, dtype=np.float32),  # row ids: lets tests recognise each row
        timestamps=np.arange(n, dtype=np.float64) if timestamps is None else np.asarray(timestamps),
        n_users=max(users, default=-1) + 1 if n_users is None else n_users,
        n_items=max(items, default=-1) + 1 if n_items is None else n_items,
    )


# --- ranking metrics ---------------------------------------------------------------------


def test_hand_computed_single_user() -> None:
    # rel = {1, 3}; hits at ranks 0 and 2; the 5th column lies beyond k and is ignored.
    metrics = ranking_metrics(np.array([[3, 0, 1, 5, 1]]), _test_matrix([[1, 3]], 6), k=4)
    assert metrics.precision == pytest.approx(2 / 4)
    assert metrics.recall == pytest.approx(2 / 2)
    assert metrics.ndcg == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    assert metrics.map == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert metrics.coverage == pytest.approx(4 / 6)
    assert metrics.users == 1


def test_means_over_users_and_empty_slots() -> None:
    # User 1: rel = {2}, one hit at rank 2 between empty slots.
    recs = np.array([[3, 0, 1, 5], [-1, -1, 2, -1]])
    metrics = ranking_metrics(recs, _test_matrix([[1, 3], [2]], 6), k=4)
    assert metrics.precision == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert metrics.recall == pytest.approx((1 + 1) / 2)
    assert metrics.ndcg == pytest.approx((1.5 / (1 + 1 / math.log2(3)) + 1 / 2) / 2)
    assert metrics.map == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert metrics.coverage == pytest.approx(5 / 6)


def test_precision_is_plain_not_implicits_variant() -> None:
    # implicit would report 1.0 here (hits / min(k, |rel|)); plain precision@10 is 1/10.
    recs = np.array([[4, *range(5, 14)]])
    metrics = ranking_metrics(recs, _test_matrix([[4]], 20), k=10)
    assert metrics.precision == pytest.approx(1 / 10)
    assert (metrics.recall, metrics.ndcg, metrics.map) == pytest.approx((1.0, 1.0, 1.0))


def test_all_empty_slots_score_zero() -> None:
    metrics = ranking_metrics(np.full((1, 3), -1), _test_matrix([[0]], 4), k=3)
    zeros = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "coverage": 0.0}
    assert metrics.as_dict() == {"k": 3, **zeros, "users": 1}


def test_users_without_test_items_are_skipped() -> None:
    test = _test_matrix([[1, 3], [], [2]], 6)
    recs = np.array([[3, 0, 1, 5], [0, 4, 5, 2], [-1, -1, 2, -1]])
    with_idle = ranking_metrics(recs, test, k=4)
    without = ranking_metrics(recs[[0, 2]], test, k=4, users=np.array([0, 2]))
    assert with_idle.users == without.users == 2
    # Coverage counts only evaluated users' lists: item 4 (user 1 only) is not in it.
    assert with_idle == without
    assert with_idle.coverage == pytest.approx(5 / 6)


def test_users_map_rows_to_test_rows() -> None:
    test = _test_matrix([[1, 3], [2]], 6)
    recs = np.array([[3, 0, 1, 5], [-1, -1, 2, -1]])
    swapped = ranking_metrics(recs[::-1], test, k=4, users=np.array([1, 0]))
    assert swapped == ranking_metrics(recs, test, k=4)


def test_no_evaluated_users_gives_zeros() -> None:
    metrics = ranking_metrics(np.array([[0, 1]]), _test_matrix([[]], 3), k=2)
    assert metrics == RankingMetrics(2, 0.0, 0.0, 0.0, 0.0, 0.0, 0)


def test_repeats_count_once_and_nonpositive_values_are_not_relevant() -> None:
    # Item 1 is relevant; item 2 holds an explicitly stored zero, item 3 a negative value.
    values = np.array([1.0, 0.0, -1.0], dtype=np.float32)
    test = scipy.sparse.csr_matrix((values, np.array([1, 2, 3]), np.array([0, 3])), shape=(1, 4))
    assert test.nnz == 3
    metrics = ranking_metrics(np.array([[1, 1, 2, 3]]), test, k=4)
    assert metrics.precision == pytest.approx(1 / 4)
    assert metrics.map == pytest.approx(1.0)
    assert metrics.coverage == pytest.approx(3 / 4)


def test_non_canonical_test_matrix_is_read_as_summed_and_left_untouched() -> None:
    # Row 0 lists item 3 twice (counted once) and its indices out of order.
    values = np.ones(3, dtype=np.float32)
    test = scipy.sparse.csr_matrix((values, np.array([3, 1, 3]), np.array([0, 3])), shape=(1, 4))
    assert not test.has_canonical_format
    metrics = ranking_metrics(np.array([[3, 0]]), test, k=2)
    assert (metrics.recall, metrics.map) == pytest.approx((1 / 2, 1 / 2))
    assert test.indices.tolist() == [3, 1, 3] and test.nnz == 3


def test_coverage_uses_given_catalogue_size() -> None:
    metrics = ranking_metrics(np.array([[0, 7]]), _test_matrix([[0]], 3), k=2, n_items=10)
    assert metrics.coverage == pytest.approx(2 / 10)
    assert metrics.precision == pytest.approx(1 / 2)


def test_matches_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, k = 60, 30, 7
    relevant = [
        set(rng.choice(n_items, rng.integers(0, 12), replace=False)) for _ in range(n_users)
    ]
    recs = rng.integers(-1, n_items, size=(n_users, k + 3))
    test = _test_matrix([sorted(r) for r in relevant], n_items)
    metrics = ranking_metrics(recs, test, k=k).as_dict()
    expected = _reference(recs, relevant, k)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)
    assert metrics["users"] == sum(1 for r in relevant if r)


def test_bad_arguments_raise() -> None:
    test = _test_matrix([[1]], 3)
    with pytest.raises(ConfigError, match="k must be"):
        ranking_metrics(np.array([[1]]), test, k=0)
    with pytest.raises(ValueError, match="shape"):
        ranking_metrics(np.array([[1, 2]]), test, k=3)
    with pytest.raises(ValueError, match="ints"):
        ranking_metrics(np.array([[1.0, 2.0]]), test, k=2)
    with pytest.raises(ValueError, match="lie in"):
        ranking_metrics(np.array([[1, 3]]), test, k=2)
    with pytest.raises(ValueError, match="users must be"):
        ranking_metrics(np.array([[1, 2]]), test, k=2, users=np.array([5]))


def test_to_csr_sums_duplicates_with_int32_indices() -> None:
    data = _interactions([0, 0, 2, 0], [1, 1, 0, 3], n_users=4, n_items=5)
    csr = data.to_csr()
    assert type(csr) is scipy.sparse.csr_matrix
    assert csr.shape == (4, 5) and csr.dtype == np.float32
    assert csr.indptr.dtype == np.int32 and csr.indices.dtype == np.int32
    assert csr.has_canonical_format and csr.nnz == 3
    assert csr[0, 1] == 0 + 1 and csr[0, 3] == 3 and csr[2, 0] == 2


def test_interactions_convert_and_check() -> None:
    data = _interactions([0, 1], [1, 0])
    assert data.users.dtype == np.int64 and data.weights.dtype == np.float32
    assert data.timestamps.dtype == np.float64
    sub = data.subset(np.array([False, True]))
    assert (sub.n_users, sub.n_items, sub.users.tolist()) == (2, 2, [1])
    with pytest.raises(ValueError, match="shape"):
        Interactions(np.array([0, 1]), np.array([0]), np.ones(2, np.float32), np.zeros(2), 2, 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        Interactions(np.array([0, 2]), np.array([0, 1]), np.ones(2, np.float32), np.zeros(2), 2, 2)


def test_random_split_is_seeded_disjoint_and_complete() -> None:
    rng = np.random.default_rng(3)
    data = _interactions(rng.integers(0, 50, 1_000).tolist(), rng.integers(0, 80, 1_000).tolist())
    split = random_split(data, test_fraction=0.2, seed=7)
    train_rows, test_rows = split.train.weights, split.test.weights
    assert len(split.test) == 200 and len(split.train) == 800
    assert np.intersect1d(train_rows, test_rows).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_rows, test_rows])), data.weights)
    assert np.array_equal(random_split(data, 0.2, seed=7).test.weights, test_rows)
    assert not np.array_equal(random_split(data, 0.2, seed=8).test.weights, test_rows)
    assert (split.test.n_users, split.test.n_items) == (data.n_users, data.n_items)
    with pytest.raises(ConfigError, match="test_fraction"):
        random_split(data, test_fraction=1.0)


def _per_user(part: Interactions) -> dict[int, np.ndarray]:
    return {int(u): part.timestamps[part.users == u] for u in np.unique(part.users)}


def test_new_user_split_partitions_users_and_orders_by_time() -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 12, size=40)  # includes users with a single interaction
    users = np.repeat(np.arange(40), counts)
    data = _interactions(users.tolist(), rng.integers(0, 30, users.size).tolist(), n_users=45)
    data = Interactions(  # shuffled timestamps, so time order differs from row order
        data.users, data.items, data.weights, rng.permutation(users.size).astype(np.float64), 45, 30
    )
    split = new_user_split(data, user_fraction=0.8, fold_in_fraction=0.8, seed=1)
    base_users = set(np.unique(split.base.users).tolist())
    new_users = set(split.new_users.tolist())
    assert split.new_users.dtype == np.int64 and len(base_users) == 32 and len(new_users) == 8
    assert base_users.isdisjoint(new_users) and base_users | new_users == set(range(40))
    assert len(split.base) == int(np.isin(users, sorted(base_users)).sum())
    assert set(split.fold_in.users.tolist()) | set(split.test.users.tolist()) <= new_users
    all_rows = np.concatenate([p.weights for p in (split.base, split.fold_in, split.test)])
    assert np.array_equal(np.sort(all_rows), data.weights)
    fold_in, test = _per_user(split.fold_in), _per_user(split.test)
    for user in new_users:
        count = int(counts[user])
        if count < 2:
            assert len(fold_in[user]) == count and user not in test
            continue
        expected = min(max(math.floor(0.8 * count + 0.5), 1), count - 1)
        assert len(fold_in[user]) == expected and len(test[user]) == count - expected
        assert fold_in[user].max() < test[user].min()
    same = new_user_split(data, 0.8, 0.8, seed=1)
    assert np.array_equal(same.test.weights, split.test.weights)


def test_new_user_split_nan_and_equal_timestamps_in_random_order() -> None:
    users = np.repeat(np.arange(300), 5)
    for timestamps in (np.full(users.size, np.nan), np.full(users.size, 5.0)):
        data = _interactions(users.tolist(), [0, 1, 2, 3, 4] * 300, timestamps.tolist())
        split = new_user_split(data, user_fraction=0.5, fold_in_fraction=0.8, seed=2)
        assert len(split.new_users) == 150 and len(split.fold_in) == 600
        test_counts = np.bincount(split.test.users, minlength=300)
        assert np.array_equal(test_counts[split.new_users], np.ones(150))
        # With no usable times the held-out item is drawn at random, not always the last row.
        assert len(set(split.test.items.tolist())) == 5


def test_new_user_split_mixed_nan_user_is_split_at_random() -> None:
    data = _interactions([0] * 4 + [1] * 4, [0, 1, 2, 3] * 2, [1, np.nan, 3, 4, 1, 2, 3, 4])
    held_out = set()
    for seed in range(30):
        split = new_user_split(data, user_fraction=0.5, seed=seed)
        assert len(split.fold_in) == 3 and len(split.test) == 1
        if split.new_users.tolist() == [0]:
            held_out.add(int(split.test.items[0]))
        else:
            assert split.test.items.tolist() == [3]  # user 1 has real times: latest held out
    assert len(held_out) > 1


def test_new_user_split_tiny_and_empty() -> None:
    empty = _interactions([], [], n_users=3, n_items=2)
    split = new_user_split(empty)
    assert len(split.base) == len(split.fold_in) == len(split.test) == split.new_users.size == 0
    assert len(random_split(empty).test) == 0
    two = _interactions([0, 1, 1], [0, 0, 1])
    for seed in range(5):
        split = new_user_split(two, user_fraction=0.5, seed=seed)
        if split.new_users.tolist() == [0]:  # one interaction: all of it is folded in
            assert (len(split.base), len(split.fold_in), len(split.test)) == (2, 1, 0)
        else:
            assert (len(split.base), len(split.fold_in), len(split.test)) == (1, 1, 1)
    with pytest.raises(ConfigError, match="fold_in_fraction"):
        new_user_split(two, fold_in_fraction=0.0)
