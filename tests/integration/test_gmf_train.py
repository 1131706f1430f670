"""GMF trained by TensorFlow Recommenders, on small ratings with planted groups: it learns
the groups, its numpy fold-in of held-out users matches training with them, and a seed
fixes the model.

Users of group g rate their group's items high and the others low (plus item biases and
noise); every fifth user is held out: 70 % of their ratings are history, 30 % test.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.models.gmf import GMF, GMFParams

pytestmark = pytest.mark.slow

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 30, 10
PARAMS = GMFParams(
    factors=8, epochs=30, batch_size=64, lr=0.01, reg=0.05, min_rating=1.0, max_rating=5.0, seed=3
)


def planted(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(train, test)`` ratings, users × items; test holds 30 % of every fifth user's."""
    rng = np.random.default_rng(seed)
    n_users, n_items = GROUPS * USERS_PER_GROUP, GROUPS * ITEMS_PER_GROUP
    same = (np.arange(n_users)[:, None] // USERS_PER_GROUP) == (
        np.arange(n_items)[None, :] // ITEMS_PER_GROUP
    )
    mean = 3.0 + rng.normal(0, 0.3, n_items)[None, :] + np.where(same, 1.5, -1.0)
    values = np.clip(np.round(mean + rng.normal(0, 0.3, mean.shape)), 1, 5)
    observed = rng.random(mean.shape) < 0.6
    held = (np.arange(n_users) % 5 == 0)[:, None] & (rng.random(mean.shape) < 0.3)
    train, test = (sp.csr_matrix(np.where(observed & m, values, 0)) for m in (~held, held))
    return train, test


def rmse(model: GMF, test: sp.csr_matrix) -> float:
    users = np.repeat(np.arange(test.shape[0]), np.diff(test.indptr))
    return float(np.sqrt(np.mean((model.predict(users, test.indices) - test.data) ** 2)))


@pytest.fixture(scope="module")
def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    return planted()


@pytest.fixture(scope="module")
def trained(data: tuple[sp.csr_matrix, sp.csr_matrix]) -> GMF:
    from streamrec.models.gmf_train import fit_gmf

    calls: list[tuple[str, int, int]] = []
    model = fit_gmf(data[0], PARAMS, lambda *call: calls.append(call))
    assert calls == [("train", e, PARAMS.epochs) for e in range(1, PARAMS.epochs + 1)]
    return model


def test_gmf_learns_the_groups_and_beats_the_global_mean(
    trained: GMF, data: tuple[sp.csr_matrix, sp.csr_matrix]
) -> None:
    train, test = data
    floor = float(np.sqrt(np.mean((test.data - train.data.mean()) ** 2)))
    assert rmse(trained, test) < 0.6 * floor
    assert np.linalg.norm(trained.output_weights) == pytest.approx(1.0, abs=1e-5)
    assert abs(trained.global_mean - train.data.mean()) < 0.5
    users = np.arange(0, GROUPS * USERS_PER_GROUP, USERS_PER_GROUP // 2)
    rows = train[users]
    ids, _ = trained.recommend(
        trained.fold_in_users(rows), 2, [rows[n].indices for n in range(len(users))]
    )
    assert np.all(ids // ITEMS_PER_GROUP == (users // USERS_PER_GROUP)[:, None])


def test_fold_in_of_held_out_users_matches_training_with_them(
    trained: GMF, data: tuple[sp.csr_matrix, sp.csr_matrix]
) -> None:
    from streamrec.models.gmf_train import fit_gmf

    train, test = data
    new = np.arange(0, train.shape[0], 5)
    keep = np.ones(train.shape[0])
    keep[new] = 0
    without = sp.csr_matrix(sp.diags(keep) @ train)
    without.eliminate_zeros()
    base = fit_gmf(without, PARAMS)
    assert np.all(base.user_factors[new] == 0) and np.all(base.user_bias[new] == 0)
    base.update_users(new, train[new])
    assert rmse(base, test) <= 1.05 * rmse(trained, test)


def test_the_same_seed_gives_the_same_model(
    trained: GMF, data: tuple[sp.csr_matrix, sp.csr_matrix]
) -> None:
    from streamrec.models.gmf_train import fit_gmf

    again = fit_gmf(data[0], PARAMS)
    for name in ("user_factors", "item_factors", "output_weights", "user_bias", "item_bias"):
        np.testing.assert_array_equal(getattr(again, name), getattr(trained, name))
