"""What only ImplicitALS does, on planted structure: similar items, explain, batched because.

The behaviour every model shares is in test_model_contract.py.
"""

from __future__ import annotations

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
