"""The drift measures (overlap, NDCG against the retrain's list, score correlations) and the
scores a retrain gives the served items: the ones its ``recommend`` gives them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import pearsonr, spearmanr

from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.serving.drift import correlations, item_scores, ndcg, overlap
from tests.unit.test_kernel_mf import ratings


def test_overlap_counts_shared_items_of_the_longer_list() -> None:
    assert overlap(["a", "b", "c", "d"], ["d", "c", "b", "a"]) == 1.0
    assert overlap(["a", "b", "c", "d"], ["b", "c", "e", "f"]) == 0.5
    assert overlap(["a", "b"], ["a", "b", "c", "d"]) == 0.5
    assert overlap([], []) == 1.0 and overlap(["a"], []) == 0.0


def test_ndcg_takes_the_retrains_list_as_the_ideal_ranking() -> None:
    ideal = ["a", "b", "c", "d"]
    assert ndcg(ideal, ideal) == pytest.approx(1.0)
    assert ndcg(["x", "y", "z", "w"], ideal) == 0.0
    swapped, reversed_ = ndcg(["b", "a", "c", "d"], ideal), ndcg(ideal[::-1], ideal)
    assert 1.0 > swapped > reversed_ > 0.0
    assert ndcg(["a", "x", "b", "c"], ideal) < ndcg(["a", "b", "c", "x"], ideal)


def test_correlations_match_scipy_and_skip_what_is_undefined() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    b = a + rng.normal(size=12)
    b[3] = b[5]  # a tie
    rho, r = correlations(a, b)
    assert rho == pytest.approx(spearmanr(a, b).statistic)
    assert r == pytest.approx(pearsonr(a, b).statistic)
    with_nan = np.append(b, np.nan)
    assert correlations(np.append(a, 1.0), with_nan) == (rho, r)  # unknown items left out
    assert correlations(a[:2], b[:2]) == (None, None)
    assert correlations(a, np.ones_like(a)) == (None, None)


def served_scores_agree(model: object, matrix: sp.csr_matrix, k: int = 5) -> None:
    vectors = model.fold_in_users(matrix)  # type: ignore[attr-defined]
    ids, scores = model.recommend(vectors, k)  # type: ignore[attr-defined]
    again = item_scores(model, vectors, ids)
    assert again is not None
    np.testing.assert_allclose(again, scores, rtol=1e-4, atol=1e-4)
    unknown = item_scores(model, vectors, np.full_like(ids, -1))
    assert unknown is not None and np.isnan(unknown).all()


def test_kernel_mf_scores_items_as_it_recommends_them() -> None:
    data = ratings()
    for kernel in ("linear", "sigmoid", "rbf"):
        params = KernelMFParams(factors=4, epochs=10, kernel=kernel, min_rating=1.0)
        served_scores_agree(KernelMF(params).fit(data), data[:6])


def test_als_scores_items_as_it_recommends_them() -> None:
    data = ratings()
    model = ImplicitALS(ALSParams(factors=4, iterations=3, num_threads=1)).fit(data)
    served_scores_agree(model, data[:6])
