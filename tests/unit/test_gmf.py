"""GMF's numpy side (no TensorFlow): exact ridge fold-in of users and items, prediction,
top-k, because, save/load and parameter checks, on a model built from planted arrays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ConfigError, InvalidRatingError
from streamrec.models.gmf import GMF, GMFParams

D, USERS, ITEMS = 4, 40, 30
SCALE = {"min_rating": 1.0, "max_rating": 5.0}


def planted(seed: int = 0, **overrides: object) -> GMF:
    """Random parameters around μ = 3, ``h`` unit norm."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=D)
    values: dict[str, Any] = {"factors": D, "reg": 0.05, "reg_bias": 0.01, "fold_in_reg": None}
    params = GMFParams(**{**values, **SCALE, **overrides})
    return GMF.from_arrays(
        params,
        3.0,
        rng.normal(0, 0.3, USERS),
        rng.normal(0, 0.3, ITEMS),
        rng.normal(0, 0.6, (USERS, D)),
        rng.normal(0, 0.6, (ITEMS, D)),
        h / np.linalg.norm(h),
    )


def rated(model: GMF, density: float = 0.5, noise: float = 0.3, seed: int = 1) -> sp.csr_matrix:
    """The model's own ratings of a random half of the pairs, plus noise, on the scale."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((model.n_users, model.n_items)) < density)
    values = model.predict(users, items) + rng.normal(0, noise, len(users))
    values = np.clip(values, 1.0, 5.0)
    return sp.csr_matrix((values, (users, items)), shape=(model.n_users, model.n_items))


def closed_form(
    features: np.ndarray, offsets: np.ndarray, row: sp.csr_matrix, penalty: np.ndarray
) -> np.ndarray:
    """argmin_w Σ_j (r_j − o_j − x_jᵀw)² + n Σ_f λ_f w_f², by the dense normal equations."""
    x, y = features[row.indices], row.data - offsets[row.indices]
    return np.linalg.solve(x.T @ x + row.nnz * np.diag(penalty), x.T @ y)


@pytest.fixture(scope="module")
def model() -> GMF:
    return planted()


@pytest.fixture(scope="module")
def data(model: GMF) -> sp.csr_matrix:
    return rated(model)


def test_a_folded_in_user_is_the_closed_form_ridge_solution(
    model: GMF, data: sp.csr_matrix
) -> None:
    users = np.array([0, 7, 19, 33])
    folded = model.fold_in_users(data[users])
    assert folded.shape == (4, D + 1) and folded.dtype == np.float32
    features = np.hstack([model.item_factors * model.output_weights, np.ones((ITEMS, 1))])
    offsets = model.global_mean + model.item_bias
    penalty = np.array([0.05] * D + [0.01])
    for row, u in zip(folded, users, strict=True):
        np.testing.assert_allclose(row, closed_form(features, offsets, data[u], penalty), rtol=1e-5)


def test_a_users_solution_depends_on_their_history_only(model: GMF, data: sp.csr_matrix) -> None:
    together = model.fold_in_users(data)
    alone = np.vstack([model.fold_in_users(data[u]) for u in (3, 11, 25)])
    np.testing.assert_allclose(alone, together[[3, 11, 25]], rtol=1e-5, atol=1e-6)
    empty = model.fold_in_users(sp.csr_matrix((2, ITEMS)))
    assert np.all(empty == 0)


def test_noise_free_ratings_recover_the_planted_user_exactly() -> None:
    model = planted(fold_in_reg=1e-9, reg_bias=0.0)
    exact = rated(model, density=0.6, noise=0.0, seed=2)
    assert np.all((exact.data > 1.0) & (exact.data < 5.0)), "unclipped ratings"
    folded = model.fold_in_users(exact[:5])
    np.testing.assert_allclose(folded[:, :D], model.user_factors[:5], atol=1e-4)
    np.testing.assert_allclose(folded[:, D], model.user_bias[:5], atol=1e-4)


def test_fold_in_reg_replaces_reg_in_the_fold_in(model: GMF, data: sp.csr_matrix) -> None:
    looser = planted(fold_in_reg=0.5)
    assert looser.params.fold_in_penalty == 0.5 and model.params.fold_in_penalty == 0.05
    tight, loose = model.fold_in_users(data[:5]), looser.fold_in_users(data[:5])
    assert np.all(np.linalg.norm(loose[:, :D], axis=1) < np.linalg.norm(tight[:, :D], axis=1))


def test_update_users_stores_the_fold_in_and_predict_uses_it(
    model: GMF, data: sp.csr_matrix
) -> None:
    fresh = planted()
    stored = fresh.update_users(np.array([2, USERS + 1]), data[[2, 5]])
    np.testing.assert_array_equal(stored, model.fold_in_users(data[[2, 5]]))
    assert fresh.n_users == USERS + 2 and np.all(fresh.user_factors[USERS] == 0)
    np.testing.assert_array_equal(fresh.item_factors, model.item_factors)
    p, b = stored[1, :D].astype(np.float64), float(stored[1, D])
    expect = 3.0 + b + model.item_bias + (model.item_factors * model.output_weights) @ p
    got = fresh.predict(np.full(ITEMS, USERS + 1), np.arange(ITEMS))
    np.testing.assert_allclose(got, np.clip(expect, 1.0, 5.0), rtol=1e-6)


def test_unknown_ids_predict_from_the_mean_and_the_known_bias(model: GMF) -> None:
    got = model.predict(np.array([-1, USERS, 4, -1]), np.array([3, 3, ITEMS, ITEMS + 9]))
    expect = [3.0 + model.item_bias[3], 3.0 + model.item_bias[3], 3.0 + model.user_bias[4], 3.0]
    np.testing.assert_allclose(got, expect)
    with pytest.raises(ValueError, match=r"\(3,\), \(2,\)"):
        model.predict(np.arange(3), np.arange(2))


def test_recommend_scores_are_predicted_ratings_and_never_seen_items(
    model: GMF, data: sp.csr_matrix
) -> None:
    users = np.arange(6)
    seen = [data[u].indices for u in users]
    vectors = model.fold_in_users(data[users])
    k = ITEMS + 3
    ids, scores = model.recommend(vectors, k, seen)
    assert ids.shape == scores.shape == (6, k) and ids.dtype == np.int64
    stored = planted()
    stored.update_users(users, data[users])
    for u, banned in zip(users, seen, strict=True):
        found = ids[u][ids[u] >= 0]
        assert len(found) == ITEMS - len(banned) == len(set(found))
        assert not set(found) & set(banned)
        assert np.all(ids[u][len(found) :] == -1) and np.all(np.isneginf(scores[u][len(found) :]))
        want = stored.predict(np.full(len(found), u), found)
        np.testing.assert_allclose(scores[u][: len(found)], want, rtol=1e-5)
        assert np.all(np.diff(scores[u][: len(found)]) <= 0)
    with pytest.raises(ValueError, match=rf"shape \(n, {D + 1}\) \(got \(2, {D}\)\)"):
        model.recommend(np.zeros((2, D)), 3)


def test_because_names_distinct_liked_history_items(model: GMF, data: sp.csr_matrix) -> None:
    users = np.arange(8)
    rows = data[users]
    ids, _ = model.recommend(model.fold_in_users(rows), 5, [r.indices for r in rows])
    ids[0, 4] = -1
    why = model.because(rows, ids, 3)
    assert why.shape == (8, 5, 3) and np.all(why[0, 4] == -1)
    for u in users:
        liked = set(rows[u].indices[rows[u].data > model.global_mean])
        for reasons in why[u]:
            named = reasons[reasons >= 0]
            assert len(set(named)) == len(named) and set(named) <= liked
            assert np.all(reasons[len(named) :] == -1)  # padding only at the end


def test_because_ranks_by_cosine_of_the_weighted_item_factors(model: GMF) -> None:
    weighted = model.item_factors * model.output_weights
    unit = weighted / np.linalg.norm(weighted, axis=1, keepdims=True)
    target = 0
    history = np.array([5, 9, 17])
    row = sp.csr_matrix((np.full(3, 5.0), ([0, 0, 0], history)), shape=(1, ITEMS))
    why = model.because(row, np.array([[target]]), 3)[0, 0]
    cosine = unit[history] @ unit[target]
    expect = history[np.argsort(-cosine)]
    np.testing.assert_array_equal(why[why >= 0], expect[cosine[np.argsort(-cosine)] > 0])


def test_a_folded_in_item_is_the_closed_form_and_becomes_recommendable(
    data: sp.csr_matrix,
) -> None:
    model = planted()
    fans = np.arange(10)
    user_vectors = model.fold_in_users(data[fans]).astype(np.float64)
    item_users = sp.csr_matrix(np.array([[5.0, 4.5, 5.0, 0, 0, 4.0, 0, 5.0, 0, 4.5]]))
    item_users.eliminate_zeros()
    vector = model.fold_in_items(item_users, user_vectors)
    features = np.hstack([user_vectors[:, :D] * model.output_weights, np.ones((10, 1))])
    offsets = model.global_mean + user_vectors[:, D]
    np.testing.assert_allclose(
        vector[0], closed_form(features, offsets, item_users[0], np.array([0.05] * D + [0.01])),
        rtol=1e-5,
    )  # fmt: skip
    model.add_items(np.array([ITEMS]), vector)
    assert model.n_items == ITEMS + 1
    ids, _ = model.recommend(user_vectors[:3], ITEMS + 1)
    assert np.all(np.any(ids == ITEMS, axis=1))
    np.testing.assert_allclose(model.item_factors[ITEMS], vector[0, :D], rtol=1e-6)


def test_save_and_load_round_trip_without_pickle(
    model: GMF, data: sp.csr_matrix, tmp_path: Path
) -> None:
    model.save(tmp_path / "m")
    loaded = GMF.load(tmp_path / "m")
    assert loaded.params == model.params and loaded.name == "gmf"
    for name in ("user_factors", "item_factors", "output_weights", "user_bias", "item_bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.global_mean == model.global_mean
    vectors = model.fold_in_users(data[:4])
    np.testing.assert_array_equal(loaded.fold_in_users(data[:4]), vectors)
    for before, after in zip(
        model.recommend(vectors, 5), loaded.recommend(vectors, 5), strict=True
    ):
        np.testing.assert_array_equal(after, before)
    with np.load(tmp_path / "m" / "model.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_ratings_off_the_scale_are_refused(model: GMF) -> None:
    with pytest.raises(InvalidRatingError, match=r"got 9\.0"):
        model.fold_in_users(sp.csr_matrix(np.array([[9.0, 0.0]])))
    with pytest.raises(InvalidRatingError, match="got nan"):
        model.fold_in_items(sp.csr_matrix(np.array([[np.nan]])), np.zeros((1, D + 1)))


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("factors", 0, "factors must be an integer ≥ 1 (got 0)"),
        ("epochs", 2.5, "epochs must be an integer ≥ 1 (got 2.5)"),
        ("batch_size", True, "batch_size must be an integer ≥ 1 (got True)"),
        ("lr", 0.0, "lr must be > 0 (got 0.0)"),
        ("lr", float("nan"), "lr must be a finite number (got nan)"),
        ("reg", -0.1, "reg must be ≥ 0 (got -0.1)"),
        ("reg_bias", "0.1", "reg_bias must be a finite number (got '0.1')"),
        ("fold_in_reg", 0.0, "fold_in_reg must be > 0 (got 0.0)"),
        ("max_rating", 0.5, "min_rating must be below max_rating (got 0.5 and 0.5)"),
        ("seed", None, "seed must be an integer (got None)"),
    ],
)
def test_bad_params_are_refused_naming_field_and_value(
    field: str, value: object, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        GMFParams(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == says


def test_reg_zero_needs_a_fold_in_reg() -> None:
    with pytest.raises(ConfigError, match="fold_in_reg must be given"):
        GMFParams(reg=0.0, fold_in_reg=None)
    assert GMFParams(reg=0.0, fold_in_reg=0.1).fold_in_penalty == 0.1


def test_an_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not trained"):
        GMF().fold_in_users(sp.csr_matrix((1, 3)))


def test_the_numpy_model_never_imports_tensorflow() -> None:
    code = (
        "import sys, streamrec.models.gmf, streamrec.models.gmf_experiments\n"
        "print(sorted(m for m in ('tensorflow', 'tensorflow_recommenders') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
