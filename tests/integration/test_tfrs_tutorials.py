"""A TFRS tutorial model trains on planted groups, and our numpy top-k accuracy of its vectors
matches what TFRS's own ``model.evaluate`` reports for ``FactorizedTopK``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ConfigError
from streamrec.models.tfrs_tutorials import RECIPES, fit_tutorial, tutorial_params
from streamrec.models.topk_accuracy import DEFAULT_KS, factorized_top_k, pair_ranks

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP, PER_USER = 8, 50, 20, 10
N_USERS, N_ITEMS = GROUPS * USERS_PER_GROUP, GROUPS * ITEMS_PER_GROUP


def planted() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Each user interacts with 10 of the 20 items of its group; 20 % of the pairs held out."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), PER_USER)
    items = np.concatenate(
        [
            rng.choice(ITEMS_PER_GROUP, PER_USER, replace=False)
            + (u // USERS_PER_GROUP) * ITEMS_PER_GROUP
            for u in range(N_USERS)
        ]
    )
    test = rng.random(users.size) < 0.2
    ones = np.ones(int((~test).sum()), dtype=np.float32)
    train = sp.csr_matrix((ones, (users[~test], items[~test])), shape=(N_USERS, N_ITEMS))
    return train, users[test], items[test]


def test_recipes_are_the_tutorials_settings() -> None:
    quick, basic = RECIPES["quickstart"], RECIPES["basic-retrieval"]
    assert (quick.embedding_dim, quick.learning_rate, quick.batch_size, quick.epochs) == (
        64,
        0.5,
        4096,
        3,
    )
    assert (basic.embedding_dim, basic.learning_rate, basic.batch_size, basic.epochs) == (
        32,
        0.1,
        8192,
        3,
    )
    assert tutorial_params("quickstart", epochs=5).epochs == 5
    with pytest.raises(ConfigError, match="'deep'"):
        tutorial_params("deep")
    with pytest.raises(ConfigError, match="got 0"):
        tutorial_params("quickstart", epochs=0)


@pytest.mark.slow
def test_quickstart_learns_the_groups_and_matches_tfrs_evaluate() -> None:
    train, test_users, test_items = planted()
    epochs_seen: list[int] = []
    model = fit_tutorial(
        train,
        "quickstart",
        epochs=10,  # the tutorial's 3 epochs are 3 steps on data this small
        seed=42,
        progress=lambda done, total, loss: epochs_seen.append(done),
        evaluate_on=(test_users, test_items),
    )
    assert epochs_seen == list(range(1, 11))
    assert model.user_vectors.shape == (N_USERS, 64)
    assert model.item_vectors.shape == (N_ITEMS, 64)
    assert model.fit_seconds > 0 and model.params.epochs == 10

    ours = factorized_top_k(model.user_vectors, model.item_vectors, test_users, test_items)
    # Chance: k / 160 items. Unfiltered, the user's own training items (8 of its group's 20)
    # crowd the very top, so the groups show at k = 50; filtered, at k = 10.
    assert ours["top_50"] >= 0.9
    seen_filtered = factorized_top_k(
        model.user_vectors, model.item_vectors, test_users, test_items, exclude=train
    )
    assert seen_filtered["top_10"] >= 0.5

    # TFRS scores the true item by reduce_sum and the catalogue by matmul: where rounding
    # lifts the item's own catalogue entry above it, the item outranks itself. So TFRS loses
    # at most the pairs ranked exactly k - 1, and never gains one (bar near-ties, hence 0.005).
    assert model.tfrs_top_k is not None
    ranks = pair_ranks(model.user_vectors, model.item_vectors, test_users, test_items)
    for k in DEFAULT_KS:
        lost = ours[f"top_{k}"] - model.tfrs_top_k[f"top_{k}"]
        assert -0.005 <= lost <= np.mean(ranks == k - 1) + 0.005, (k, ours, model.tfrs_top_k)
