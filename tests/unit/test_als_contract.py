"""ImplicitALS on planted structure: recommend, fold-in, similar items, explain, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.models.als import ALSParams, ImplicitALS

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 30, 10


def planted(seed: int = 0) -> sp.csr_matrix:
    """Users of group g interact with most items of group g and nothing else."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for g in range(GROUPS):
        for u in range(USERS_PER_GROUP):
            items = rng.choice(ITEMS_PER_GROUP, size=7, replace=False) + g * ITEMS_PER_GROUP
            rows += [g * USERS_PER_GROUP + u] * len(items)
            cols += list(items)
    shape = (GROUPS * USERS_PER_GROUP, GROUPS * ITEMS_PER_GROUP)
    return sp.csr_matrix((np.full(len(rows), 3.0, dtype=np.float32), (rows, cols)), shape=shape)


def group(item: int) -> int:
    return item // ITEMS_PER_GROUP


@pytest.fixture(scope="module")
def data() -> sp.csr_matrix:
    return planted()


@pytest.fixture(scope="module")
def model(data: sp.csr_matrix) -> ImplicitALS:
    return ImplicitALS(ALSParams(factors=8, iterations=15, regularization=0.1, alpha=20.0)).fit(
        data
    )


def test_recommends_unseen_items_of_the_users_group(
    model: ImplicitALS, data: sp.csr_matrix
) -> None:
    users = np.arange(0, data.shape[0], 7)
    vectors = model.fold_in_users(data[users])
    ids, scores = model.recommend(vectors, 3, [data[u].indices for u in users])
    for u, row in zip(users, ids, strict=True):
        assert all(group(i) == u // USERS_PER_GROUP for i in row)
        assert not set(row) & set(data[u].indices)
    assert np.all(np.isfinite(scores))


def test_fold_in_of_a_trained_user_matches_training(
    model: ImplicitALS, data: sp.csr_matrix
) -> None:
    folded = model.fold_in_users(data[:10])
    cos = np.sum(folded * model.user_factors[:10], axis=1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(model.user_factors[:10], axis=1)
    )
    assert np.all(cos > 0.95)


def test_a_new_user_with_a_few_plays_gets_their_groups_items(model: ImplicitALS) -> None:
    plays = sp.csr_matrix(([1.0] * 3, ([0, 0, 0], [20, 21, 22])), shape=(1, model.n_items))
    ids, _ = model.recommend(model.fold_in_users(plays), 5, [plays.indices])
    assert all(group(i) == 2 for i in ids[0]) and not {20, 21, 22} & set(ids[0])


def test_fold_in_items_places_a_new_item_in_its_group(
    model: ImplicitALS, data: sp.csr_matrix
) -> None:
    fans = np.arange(USERS_PER_GROUP, 2 * USERS_PER_GROUP)  # group 1
    user_vectors = model.fold_in_users(data[fans])
    item_users = sp.csr_matrix(np.ones((1, len(fans)), dtype=np.float32))
    vector = model.fold_in_items(item_users, user_vectors)
    assert vector.shape == (1, model.item_factors.shape[1])
    scores = model.fold_in_users(data[fans[:5]]) @ vector[0]
    others = model.fold_in_users(data[:5]) @ vector[0]
    assert scores.mean() > others.mean()


def test_similar_items_share_a_group_and_exclude_the_query(model: ImplicitALS) -> None:
    ids, scores = model.similar_items(np.array([0, 35]), 4)
    assert 0 not in ids[0] and all(group(i) == 0 for i in ids[0])
    assert 35 not in ids[1] and all(group(i) == 3 for i in ids[1])
    assert np.all(scores <= 1.0001)


def test_explain_names_history_items(model: ImplicitALS, data: sp.csr_matrix) -> None:
    history = data[0]
    item = int(model.recommend(model.fold_in_users(history), 1, [history.indices])[0][0, 0])
    reasons = model.explain(history, item, n=3)
    assert reasons and all(i in set(history.indices) for i, _ in reasons)
    assert [s for _, s in reasons] == sorted((s for _, s in reasons), reverse=True)


def test_new_items_added_become_recommendable(data: sp.csr_matrix) -> None:
    model = ImplicitALS(ALSParams(factors=8, iterations=5)).fit(data)
    vector = model.item_factors[3] * 5
    model.add_items(np.array([model.n_items]), vector[None, :])
    plays = data[0]
    assert model.n_items == data.shape[1] + 1
    ids, _ = model.recommend(model.fold_in_users(plays), 1, [plays.indices])
    assert ids[0, 0] == data.shape[1]


def test_save_and_load_round_trip_without_pickle(
    model: ImplicitALS, tmp_path: Path, data: sp.csr_matrix
) -> None:
    model.save(tmp_path / "m")
    loaded = ImplicitALS.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.params == model.params
    np.testing.assert_allclose(
        loaded.fold_in_users(data[:3]), model.fold_in_users(data[:3]), rtol=1e-5
    )


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not trained"):
        ImplicitALS().fold_in_users(sp.csr_matrix((1, 3)))


def test_solve_users_matches_fold_in_and_because_matches_contributions(
    model: ImplicitALS, data: sp.csr_matrix
) -> None:
    rows = data[:6]
    ids, _ = model.recommend(model.fold_in_users(rows), 4, [rows[r].indices for r in range(6)])
    ids[2, 3] = -1  # an empty slot is skipped
    systems = model.solve_users(rows)
    np.testing.assert_allclose(systems.vectors, model.fold_in_users(rows), rtol=1e-3, atol=1e-5)
    batched = model.because(systems, ids, n=2)
    for r in range(6):
        valid = ids[r][ids[r] >= 0]
        hist, contrib = model.contributions(rows[r], valid)
        expected = [
            [int(hist[j]) for j in np.argsort(-contrib[:, c])[:2]] for c in range(len(valid))
        ]
        assert batched[r][ids[r] >= 0].tolist() == expected
        assert (batched[r][ids[r] < 0] == -1).all()
