"""factorized_top_k: hand-computed cases, ties, exclusions, chunking, and TFRS's own metric."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ConfigError
from streamrec.models import topk_accuracy
from streamrec.models.topk_accuracy import factorized_top_k, pair_ranks

# One-dimensional vectors make every score easy to read: score = user * item.
USERS = np.array([[1.0], [-1.0]], dtype=np.float32)
ITEMS = np.array([[3.0], [2.0], [1.0], [0.0]], dtype=np.float32)


def test_hand_computed_ranks_and_accuracy() -> None:
    # User 0 scores items 3, 2, 1, 0; user 1 scores them -3, -2, -1, 0.
    users, items = np.array([0, 0, 1, 1]), np.array([0, 2, 3, 0])
    assert pair_ranks(USERS, ITEMS, users, items).tolist() == [0, 2, 0, 3]
    assert factorized_top_k(USERS, ITEMS, users, items, ks=(1, 2, 3, 4)) == {
        "top_1": 0.5,
        "top_2": 0.5,
        "top_3": 0.75,
        "top_4": 1.0,
    }


def test_ties_at_the_boundary_are_hits_as_in_tf_in_top_k() -> None:
    items = np.array([[1.0], [1.0], [1.0], [0.0]], dtype=np.float32)
    # Three items share the best score: each is "in the top 1" (nothing scores strictly
    # higher); the last has three items above it.
    ranks = pair_ranks(USERS[:1], items, np.zeros(4, dtype=np.int64), np.arange(4))
    assert ranks.tolist() == [0, 0, 0, 3]
    result = factorized_top_k(
        USERS[:1], items, np.zeros(4, dtype=np.int64), np.arange(4), (1, 3, 4)
    )
    assert result == {"top_1": 0.75, "top_3": 0.75, "top_4": 1.0}


def test_exclude_removes_competitors_but_never_the_pair_itself() -> None:
    users, items = np.array([0, 0]), np.array([2, 0])
    # User 0 excludes items 0 and 1 (say, seen in training) and item 2 of user 1.
    exclude = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [0, 1, 2])), shape=(2, 4))
    assert pair_ranks(USERS, ITEMS, users, items).tolist() == [2, 0]
    # Item 2 now has nothing above it; item 0, though excluded, is still scored for its pair.
    assert pair_ranks(USERS, ITEMS, users, items, exclude=exclude).tolist() == [0, 0]


def test_non_finite_scores_are_misses() -> None:
    users = np.array([[np.nan], [1.0]], dtype=np.float32)
    ranks = pair_ranks(users, ITEMS, np.array([0, 1]), np.array([0, 0]))
    assert ranks.tolist() == [4, 0]


def test_chunks_agree_with_a_full_argsort(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    user_vectors = rng.normal(size=(40, 6))
    item_vectors = rng.normal(size=(70, 6))
    users, items = rng.integers(0, 40, size=300), rng.integers(0, 70, size=300)
    scores = user_vectors @ item_vectors.T
    expected = (scores[users] > scores[users, items][:, None]).sum(axis=1)

    monkeypatch.setattr(topk_accuracy, "_CHUNK_CELLS", 70 * 7)  # 7 pairs per chunk
    ranks = pair_ranks(user_vectors, item_vectors, users, items)
    assert ranks.tolist() == expected.tolist()
    accuracy = factorized_top_k(user_vectors, item_vectors, users, items, ks=(1, 10, 70))
    assert accuracy["top_10"] == pytest.approx(np.mean(expected < 10))
    assert accuracy["top_70"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ks": ()}, ConfigError, "ks must be"),
        ({"ks": (0, 5)}, ConfigError, "ks must be"),
        (
            {"pairs_users": np.array([0, 2]), "pairs_items": np.array([0, 0])},
            ValueError,
            r"\[0, 2\)",
        ),
        ({"pairs_users": np.array([0]), "pairs_items": np.array([0, 1])}, ValueError, "one length"),
        (
            {"pairs_users": np.array([], dtype=int), "pairs_items": np.array([], dtype=int)},
            ValueError,
            "no",
        ),
        ({"item_vectors": np.ones((4, 2))}, ValueError, "same width"),
        ({"pairs_users": np.array([0.0]), "pairs_items": np.array([0])}, ValueError, "integer"),
    ],
)
def test_bad_input_names_the_value(kwargs: dict[str, object], error: type, message: str) -> None:
    arguments: dict[str, object] = {
        "user_vectors": USERS,
        "item_vectors": ITEMS,
        "pairs_users": np.array([0]),
        "pairs_items": np.array([0]),
        **kwargs,
    }
    with pytest.raises(error, match=message):
        factorized_top_k(**arguments)  # type: ignore[arg-type]


def _tfrs_factorized_top_k(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    ks: tuple[int, ...],
) -> dict[str, float]:
    """TFRS's own metric, fed as the tutorials feed it: candidates streamed in batches."""
    from streamrec.models import tf_runtime

    tf = tf_runtime.tensorflow()
    tfrs = tf_runtime.recommenders()
    candidates = tf.data.Dataset.from_tensor_slices(item_vectors).batch(16)
    metric = tfrs.metrics.FactorizedTopK(candidates=candidates, ks=ks)
    metric.update_state(tf.constant(user_vectors[users]), tf.constant(item_vectors[items]))
    return {f"top_{k}": float(value) for k, value in zip(ks, metric.result(), strict=True)}


@pytest.mark.slow
def test_equals_tfrs_factorized_top_k_when_scores_are_exact() -> None:
    # Small integers: every dot product is exact in float32 in any summation order, so TFRS's
    # two score computations agree, and ties (frequent here) are the only subtlety.
    rng = np.random.default_rng(1)
    user_vectors = rng.integers(-2, 3, size=(30, 4)).astype(np.float32)
    item_vectors = rng.integers(-2, 3, size=(60, 4)).astype(np.float32)
    users, items = rng.integers(0, 30, size=400), rng.integers(0, 60, size=400)
    ks = (1, 5, 10, 50, 100)
    theirs = _tfrs_factorized_top_k(user_vectors, item_vectors, users, items, ks)
    ours = factorized_top_k(user_vectors, item_vectors, users, items, ks)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert 0.0 < ours["top_1"] < ours["top_10"] < 1.0  # the case is not trivial


@pytest.mark.slow
def test_differs_from_tfrs_only_by_its_rounding_at_the_boundary() -> None:
    # With continuous scores TFRS computes the true item's score by reduce_sum and the
    # retrieved list by matmul; when rounding lifts the item's own list entry above it, the
    # item outranks itself. So TFRS can only lose hits, and only pairs ranked exactly k - 1.
    rng = np.random.default_rng(2)
    user_vectors = rng.normal(size=(50, 16)).astype(np.float32)
    item_vectors = rng.normal(size=(300, 16)).astype(np.float32)
    users, items = rng.integers(0, 50, size=2000), rng.integers(0, 300, size=2000)
    ks = (1, 5, 10, 50, 100)
    theirs = _tfrs_factorized_top_k(user_vectors, item_vectors, users, items, ks)
    ours = factorized_top_k(user_vectors, item_vectors, users, items, ks)
    ranks = pair_ranks(user_vectors, item_vectors, users, items)
    for k in ks:
        lost = ours[f"top_{k}"] - theirs[f"top_{k}"]
        assert -1e-6 <= lost <= np.mean(ranks == k - 1) + 1e-6, k
