"""The behavioural contract every recommendation model satisfies (ImplicitALS, KernelMF).

Planted structure: users of group g rate most items of group g high and a few items of
other groups low. KernelMF learns from the ratings; ImplicitALS gets the same matrix as
implicit weights (a low rating is a weaker interaction).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 30, 10
HIGH, LOW = 5.0, 1.0


def planted(seed: int = 0) -> sp.csr_matrix:
    """Each user rates 7 of their group's 10 items HIGH and 3 items of other groups LOW."""
    rng = np.random.default_rng(seed)
    n_items = GROUPS * ITEMS_PER_GROUP
    rows, cols, values = [], [], []
    for user in range(GROUPS * USERS_PER_GROUP):
        g = user // USERS_PER_GROUP
        own = rng.choice(ITEMS_PER_GROUP, size=7, replace=False) + g * ITEMS_PER_GROUP
        others = np.setdiff1d(np.arange(n_items), np.arange(ITEMS_PER_GROUP) + g * ITEMS_PER_GROUP)
        low = rng.choice(others, size=3, replace=False)
        rows += [user] * 10
        cols += [*own, *low]
        values += [HIGH] * 7 + [LOW] * 3
    shape = (GROUPS * USERS_PER_GROUP, n_items)
    return sp.csr_matrix((np.array(values, dtype=np.float32), (rows, cols)), shape=shape)


def group(item: int) -> int:
    return item // ITEMS_PER_GROUP


def seen(rows: sp.csr_matrix) -> list[np.ndarray]:
    return [rows[r].indices for r in range(rows.shape[0])]


def _als() -> ImplicitALS:
    return ImplicitALS(ALSParams(factors=8, iterations=15, regularization=10.0, alpha=5.0))


def _kmf() -> KernelMF:
    return KernelMF(
        KernelMFParams(
            factors=8,
            epochs=100,
            lr=0.03,
            lr_decay=1.0,
            reg=0.02,
            init_sd=0.1,
            min_rating=1.0,
            update_epochs=100,
            update_lr=0.03,
            seed=0,
        )
    )


def _als_trained(model: Any, users: np.ndarray) -> np.ndarray:
    return np.asarray(model.user_factors[users])


def _kmf_trained(model: Any, users: np.ndarray) -> np.ndarray:
    return np.hstack([model.user_factors[users], model.user_bias[users, None]])


#: name -> (unfitted model factory, the trained users' vectors in fold_in_users' form)
MODELS: dict[str, tuple[Callable[[], Any], Callable[[Any, np.ndarray], np.ndarray]]] = {
    "als": (_als, _als_trained),
    "kmf": (_kmf, _kmf_trained),
}


@pytest.fixture(scope="module")
def data() -> sp.csr_matrix:
    return planted()


@pytest.fixture(scope="module", params=sorted(MODELS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def model(kind: str, data: sp.csr_matrix) -> Any:
    return MODELS[kind][0]().fit(data)


def test_recommends_unseen_items_of_the_users_group(model: Any, data: sp.csr_matrix) -> None:
    users = np.arange(0, data.shape[0], 7)
    ids, scores = model.recommend(model.fold_in_users(data[users]), 3, seen(data[users]))
    for u, row in zip(users, ids, strict=True):
        assert all(group(i) == u // USERS_PER_GROUP for i in row)
        assert not set(row) & set(data[u].indices)
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 0)


def test_excluded_items_never_come_back_and_k_beyond_the_candidates_pads(
    model: Any, data: sp.csr_matrix
) -> None:
    rows = data[:3]
    k = data.shape[1] + 5
    ids, scores = model.recommend(model.fold_in_users(rows), k, seen(rows))
    assert ids.shape == scores.shape == (3, k) and ids.dtype == np.int64
    for r, banned in enumerate(seen(rows)):
        found = ids[r][ids[r] >= 0]
        assert len(found) == data.shape[1] - len(banned) == len(set(found))
        assert not set(found) & set(banned)
        assert np.all(ids[r][len(found) :] == -1) and np.all(np.isneginf(scores[r][len(found) :]))


def test_a_new_user_with_a_few_ratings_gets_their_groups_items(model: Any) -> None:
    history = sp.csr_matrix(([HIGH] * 3, ([0, 0, 0], [20, 21, 22])), shape=(1, model.n_items))
    ids, _ = model.recommend(model.fold_in_users(history), 5, [history.indices])
    assert all(group(i) == 2 for i in ids[0]) and not {20, 21, 22} & set(ids[0])


def test_folding_in_a_trained_user_reproduces_training(
    kind: str, model: Any, data: sp.csr_matrix
) -> None:
    users = np.arange(0, data.shape[0], 11)
    folded = model.fold_in_users(data[users])
    trained = MODELS[kind][1](model, users)
    cos = np.sum(folded * trained, axis=1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(trained, axis=1)
    )
    assert np.all(cos > 0.95)


def test_a_folded_in_item_lands_in_its_group_and_becomes_recommendable(
    kind: str, data: sp.csr_matrix
) -> None:
    model = MODELS[kind][0]().fit(data)
    fans = np.arange(USERS_PER_GROUP, 2 * USERS_PER_GROUP)  # group 1
    fan_vectors = model.fold_in_users(data[fans])
    item_users = sp.csr_matrix(np.full((1, len(fans)), HIGH, dtype=np.float32))
    vector = model.fold_in_items(item_users, fan_vectors)
    assert vector.shape == (1, fan_vectors.shape[1])
    new_id = data.shape[1]
    model.add_items(np.array([new_id]), vector)
    assert model.n_items == new_id + 1
    # each user has 3 unseen items of their own group: for fans the new item joins that
    # block (top 4), for the others it comes after their own group's block
    scores = {}
    for users, in_group in ((fans[:10], True), (np.arange(10), False)):
        ids, ranked = model.recommend(
            model.fold_in_users(data[users]), new_id + 1, seen(data[users])
        )
        ranks = np.argmax(ids == new_id, axis=1)
        assert np.all(ids[np.arange(len(users)), ranks] == new_id)
        assert np.all(ranks < 4) if in_group else np.all(ranks >= 3)
        scores[in_group] = ranked[np.arange(len(users)), ranks].mean()
    assert scores[True] > scores[False]


def test_save_and_load_round_trip_without_pickle(
    kind: str, model: Any, data: sp.csr_matrix, tmp_path: Path
) -> None:
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    assert loaded.params == model.params
    rows = data[:5]
    vectors = model.fold_in_users(rows)
    np.testing.assert_allclose(loaded.fold_in_users(rows), vectors, rtol=1e-5, atol=1e-6)
    before, after = (
        model.recommend(vectors, 6, seen(rows)),
        loaded.recommend(vectors, 6, seen(rows)),
    )
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    with np.load(tmp_path / "m" / "model.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_an_unfitted_model_says_so(kind: str) -> None:
    with pytest.raises(RuntimeError, match="not trained"):
        MODELS[kind][0]().fold_in_users(sp.csr_matrix((1, 3)))
