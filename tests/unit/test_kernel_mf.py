"""KernelMF and BaselineModel beyond the shared contract: validation, determinism, online
updates, unknown ids, scores as predicted ratings, the baseline's two fitting methods."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ConfigError, InvalidRatingError
from streamrec.models.baseline import BaselineModel, BaselineParams
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams

KERNELS = ["linear", "sigmoid", "rbf"]
SMALL = {"factors": 4, "epochs": 30, "lr": 0.02, "min_rating": 1.0, "update_epochs": 30}


def ratings(n_users: int = 40, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    """Two user groups: a group rates its half of the items 4–5 and the other half 1–2."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.4
    likes = (np.arange(n_users)[:, None] < n_users // 2) == (np.arange(n_items) < n_items // 2)
    values = np.where(likes, rng.integers(4, 6, mask.shape), rng.integers(1, 3, mask.shape))
    return sp.csr_matrix(np.where(mask, values, 0).astype(np.float32))


def params(**overrides: object) -> KernelMFParams:
    return KernelMFParams(**{**SMALL, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> sp.csr_matrix:
    return ratings()


@pytest.fixture(scope="module", params=KERNELS)
def model(request: pytest.FixtureRequest, data: sp.csr_matrix) -> KernelMF:
    lr = 0.2 if request.param == "rbf" else 0.02
    return KernelMF(params(kernel=request.param, lr=lr)).fit(data)


def train_rmse(predicted: np.ndarray, data: sp.csr_matrix) -> float:
    return float(np.sqrt(np.mean((predicted - data.data) ** 2)))


def pairs(data: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(data.shape[0]), np.diff(data.indptr)), data.indices


@pytest.mark.parametrize(
    ("value", "shown"), [(5.5, "5.5"), (0.0, "0.0"), (np.nan, "nan"), (np.inf, "inf")]
)
def test_ratings_off_the_scale_are_refused_naming_the_value(value: float, shown: str) -> None:
    bad = ratings()
    bad.data[[3, 7]] = value  # stored entries, zeros included, are ratings
    with pytest.raises(InvalidRatingError, match=f"got {re.escape(shown)}") as caught:
        KernelMF(params()).fit(bad)
    assert caught.value.field == "ratings" and isinstance(caught.value, ValueError)
    assert caught.value.value == value or np.isnan(value)
    assert "2 of" in str(caught.value) and "[1, 5]" in str(caught.value)


def test_fold_in_checks_ratings_and_predict_checks_shapes(data: sp.csr_matrix) -> None:
    model = KernelMF(params(epochs=2)).fit(data)
    with pytest.raises(InvalidRatingError, match=r"got 9\.0"):
        model.fold_in_users(sp.csr_matrix(np.array([[9.0, 0.0]])))
    with pytest.raises(ValueError, match=r"\(3,\), \(2,\)"):
        model.predict(np.arange(3), np.arange(2))
    with pytest.raises(ValueError, match="one per row"):
        model.update_users(np.array([1, 2]), data[:3])
    with pytest.raises(ValueError, match=r"shape \(n, 5\) \(got \(2, 4\)\)"):
        model.recommend(np.zeros((2, 4)), 3)
    with pytest.raises(ConfigError, match="kernel"):
        KernelMFParams(kernel="logistic")  # type: ignore[arg-type]


def test_a_diverging_fit_says_to_lower_the_learning_rate(data: sp.csr_matrix) -> None:
    with pytest.raises(ConfigError, match="lower lr"):
        KernelMF(params(lr=50.0, init_sd=1.0)).fit(data)
    model = KernelMF(params()).fit(data)
    before = model.predict(*pairs(data))
    model.params = params(lr=50.0, init_sd=1.0)
    with pytest.raises(ConfigError):
        model.fit(data)
    np.testing.assert_array_equal(model.predict(*pairs(data)), before)  # left as it was


def test_same_seed_same_model_other_seed_other_model(data: sp.csr_matrix) -> None:
    a, b = (KernelMF(params(seed=7)).fit(data) for _ in range(2))
    c = KernelMF(params(seed=8)).fit(data)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(a.user_bias, b.user_bias)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_every_kernel_beats_the_global_mean(model: KernelMF, data: sp.csr_matrix) -> None:
    floor = train_rmse(np.full(data.nnz, model.global_mean), data)
    assert train_rmse(model.predict(*pairs(data)), data) < 0.8 * floor


def test_update_users_appends_and_leaves_items_bit_identical(data: sp.csr_matrix) -> None:
    model = KernelMF(params()).fit(data[:30])
    items, item_bias, users = model.item_factors.copy(), model.item_bias.copy(), model.n_users
    before = model.user_factors[:30].copy()
    vectors = model.update_users(np.array([3, 33]), data[[3, 33]])
    assert model.n_users == 34 and vectors.shape == (2, 5) and vectors.dtype == np.float32
    np.testing.assert_array_equal(model.item_factors, items)
    np.testing.assert_array_equal(model.item_bias, item_bias)
    assert users == 30 and not model.user_factors[30:33].any()  # gap rows: zero
    untouched = np.setdiff1d(np.arange(30), [3])
    np.testing.assert_array_equal(model.user_factors[untouched], before[untouched])
    np.testing.assert_allclose(
        np.hstack([model.user_factors[[3, 33]], model.user_bias[[3, 33], None]]), vectors, rtol=1e-6
    )


def test_a_users_solution_depends_only_on_their_history(data: sp.csr_matrix) -> None:
    model = KernelMF(params()).fit(data)
    alone = model.fold_in_users(data[[5]])
    in_batch = model.fold_in_users(data[[9, 5, 20]])[1]
    row = data[[5]]
    reordered = sp.csr_matrix((row.data[::-1], row.indices[::-1], row.indptr), shape=row.shape)
    assert not reordered.has_sorted_indices  # same history, stored in another order
    np.testing.assert_array_equal(alone[0], in_batch)
    np.testing.assert_array_equal(model.fold_in_users(reordered)[0], in_batch)
    model.update_users(np.array([5]), data[[5]])
    np.testing.assert_array_equal(model.update_users(np.array([5]), data[[5]])[0], in_batch)
    wide = sp.hstack([data[[5]], sp.csr_matrix(np.full((1, 3), 5.0))]).tocsr()
    np.testing.assert_array_equal(model.fold_in_users(wide)[0], in_batch)  # extra columns ignored


def test_update_items_adds_items_from_known_users_and_leaves_users_identical(
    data: sp.csr_matrix,
) -> None:
    model = KernelMF(params()).fit(data[:, :25])
    users, user_bias = model.user_factors.copy(), model.user_bias.copy()
    item_users = sp.csr_matrix(data[:, 25:].T)  # items 25..29, columns are users 0..39
    vectors = model.update_items(np.arange(25, 30), item_users)
    assert model.n_items == 30 and vectors.shape == (5, 5)
    np.testing.assert_array_equal(model.user_factors, users)
    np.testing.assert_array_equal(model.user_bias, user_bias)
    rated = item_users.toarray()
    fans = rated[0] >= 4
    predicted = model.predict(np.arange(40), np.full(40, 25))
    assert predicted[fans].mean() > predicted[(rated[0] > 0) & ~fans].mean() + 1.0
    # columns named by user id: unknown users (≥ n_users) are ignored
    same = model.update_items(
        np.array([25]),
        sp.hstack([item_users[0], item_users[0, :5]]).tocsr(),
        np.r_[np.arange(40), np.arange(90, 95)],
    )
    np.testing.assert_allclose(same, vectors[:1])


@pytest.mark.parametrize("kind", KERNELS)
def test_unknown_ids_predict_from_the_mean_and_the_known_bias(
    kind: str, data: sp.csr_matrix
) -> None:
    model = KernelMF(params(kernel=kind)).fit(data)
    mu, bu, bi = model.global_mean, model.user_bias, model.item_bias
    got = model.predict(np.array([-1, 99, 0, -5]), np.array([2, 2, 99, 99]))
    if kind == "rbf":
        expected = np.full(4, mu)
    else:
        z = model._kernel().offset + np.array([bi[2], bi[2], bu[0], 0.0])
        expected = z if kind == "linear" else 1.0 + 4.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(got, np.clip(expected, 1.0, 5.0))
    if kind == "linear":
        assert got[3] == pytest.approx(mu)


def test_recommend_scores_are_the_predicted_ratings_sorted(
    model: KernelMF, data: sp.csr_matrix
) -> None:
    users = np.array([0, 17, 25, 39])
    vectors = model.fold_in_users(data[users])
    model.update_users(users, data[users])
    ids, scores = model.recommend(vectors, 12, [data[u].indices for u in users])
    assert np.all(np.diff(scores, axis=1) <= 0)
    expected = model.predict(np.repeat(users, 12), ids.ravel()).reshape(ids.shape)
    np.testing.assert_allclose(scores, expected, atol=2e-4)


def test_gamma_defaults_to_one_over_factors(data: sp.csr_matrix) -> None:
    model = KernelMF(params(kernel="rbf")).fit(data)
    assert model._kernel().gamma == pytest.approx(1 / 4)


@pytest.mark.parametrize("method", ["sgd", "als"])
def test_baseline_beats_the_global_mean_and_ranks_by_item_bias(
    method: str, data: sp.csr_matrix, tmp_path: Path
) -> None:
    model = BaselineModel(BaselineParams(method=method, min_rating=1.0)).fit(data)
    floor = train_rmse(np.full(data.nnz, model.global_mean), data)
    assert train_rmse(model.predict(*pairs(data)), data) < floor
    vectors = model.fold_in_users(data[:3])
    assert vectors.shape == (3, 1)
    exclude = [
        np.array([int(np.argmax(model.item_bias))]),
        np.array([], dtype=np.int64),
        np.arange(28),
    ]
    ids, scores = model.recommend(vectors, 30, exclude)
    order = np.argsort(-model.item_bias, kind="stable")
    np.testing.assert_array_equal(ids[1], order)
    np.testing.assert_array_equal(ids[0][:29], order[1:])
    assert list(ids[2][2:]) == [-1] * 28 and set(ids[2][:2]) == {28, 29}
    model.save(tmp_path / "b")
    loaded = BaselineModel.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.recommend(vectors, 30, exclude)[1], scores)


def test_baseline_update_users_freezes_item_biases(data: sp.csr_matrix) -> None:
    model = BaselineModel(BaselineParams(method="als", min_rating=1.0)).fit(data[:30])
    item_bias = model.item_bias.copy()
    model.update_users(np.array([35]), data[[35]])
    assert model.n_users == 36 and model.user_bias[35] != 0
    np.testing.assert_array_equal(model.item_bias, item_bias)


def test_the_ingest_path_does_not_import_numba() -> None:
    code = (
        "import sys, streamrec, streamrec.worker.jobs, streamrec.cli, streamrec.producer\n"
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
