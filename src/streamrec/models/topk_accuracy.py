"""Top-k accuracy of held-out (user, item) pairs, as TFRS's ``FactorizedTopK`` measures it.

For each pair the user's score of every item is the dot product of the two vectors; the
pair is a hit at ``k`` when fewer than ``k`` items score *strictly* higher than the held-out
item. The accuracy at ``k`` is the mean over pairs (a user with several held-out items
counts once per pair). Nothing is filtered: items the user trained on compete too, unless
``exclude`` names them.

This is TFRS's score-based protocol (``tensorflow_recommenders/metrics/factorized_top_k.py``,
0.7.7, no ``true_candidate_ids``): it retrieves the top ``max(ks)`` scores over every
candidate, prepends the true item's score and asks ``tf.math.in_top_k(target=0, k)``, which
counts the predictions strictly above the target's (ties at the boundary are hits, and a
non-finite target score is a miss). Since the retrieved list holds the ``max(ks)`` highest
scores, "fewer than ``k`` of them above the target" equals "fewer than ``k`` of all items
above the target" for every ``k ≤ max(ks)``. One difference, by design: TFRS computes the
target's score with ``reduce_sum(q * c)`` and the list with a matmul, so when rounding puts
the target's own copy in the list a hair above it, the item outranks itself and a pair
ranked exactly ``k - 1`` becomes a miss at ``k`` (TFRS then reports a little less, most
visibly at small ``k``). Here both come from one matmul: an item never outranks itself.

NumPy only: workers may import this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse

from streamrec.errors import ConfigError

#: The cut-offs TFRS's ``FactorizedTopK`` reports by default.
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50, 100)

# Score cells per chunk (pairs × items): ~64 MB of float32 scores plus as many comparisons.
_CHUNK_CELLS = 1 << 24


def pair_ranks(
    user_vectors: npt.ArrayLike,
    item_vectors: npt.ArrayLike,
    pairs_users: npt.ArrayLike,
    pairs_items: npt.ArrayLike,
    exclude: scipy.sparse.csr_matrix | None = None,
) -> npt.NDArray[np.int64]:
    """For each (user, item) pair, how many items the user scores strictly above the item.

    Args:
        user_vectors: float, shape (n_users, d).
        item_vectors: float, shape (n_items, d); the same ``d``.
        pairs_users: int user ids (rows of ``user_vectors``), shape (n_pairs,).
        pairs_items: int item ids (rows of ``item_vectors``), shape (n_pairs,).
        exclude: optional users × items matrix (shape (n_users, n_items)); a user's stored
            entries are removed from the competition (e.g. the items it trained on). The
            pair's own item is always scored, even when the user's row lists it.

    Returns:
        int64, shape (n_pairs,): 0 means the item is the user's best. A pair whose score is
        not finite gets ``n_items`` (a miss at every ``k``, as ``tf.math.in_top_k``).

    Scores are computed in the inputs' float type (float32 stays float32, as in TFRS), a
    chunk of pairs at a time (about 2**24 score cells), so memory stays bounded for large
    catalogues.
    """
    users_matrix, items_matrix, users, items = _checked(
        user_vectors, item_vectors, pairs_users, pairs_items
    )
    n_items = items_matrix.shape[0]
    if exclude is not None and exclude.shape != (users_matrix.shape[0], n_items):
        raise ValueError(
            f"exclude must have shape {(users_matrix.shape[0], n_items)} (got {exclude.shape})"
        )
    excluded = None if exclude is None else scipy.sparse.csr_matrix(exclude)
    ranks = np.empty(users.shape[0], dtype=np.int64)
    chunk = max(1, _CHUNK_CELLS // max(n_items, 1))
    items_t = np.ascontiguousarray(items_matrix.T)
    for start in range(0, users.shape[0], chunk):
        stop = min(start + chunk, users.shape[0])
        ranks[start:stop] = _chunk_ranks(
            users_matrix, items_t, users[start:stop], items[start:stop], excluded
        )
    return ranks


def factorized_top_k(
    user_vectors: npt.ArrayLike,
    item_vectors: npt.ArrayLike,
    pairs_users: npt.ArrayLike,
    pairs_items: npt.ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    exclude: scipy.sparse.csr_matrix | None = None,
) -> dict[str, float]:
    """Share of held-out pairs whose item is in the user's top ``k`` over all items.

    The protocol of TFRS's ``FactorizedTopK`` (see the module docstring): dot-product scores
    over the whole catalogue, nothing filtered unless ``exclude`` is given, ties at the
    boundary counted as hits.

    Args:
        user_vectors: float, shape (n_users, d).
        item_vectors: float, shape (n_items, d).
        pairs_users: int user ids, shape (n_pairs,), n_pairs ≥ 1.
        pairs_items: int item ids, shape (n_pairs,).
        ks: cut-offs, each ≥ 1.
        exclude: optional users × items matrix of items each user does not compete with
            (see :func:`pair_ranks`).

    Returns:
        ``{"top_1": ..., "top_5": ...}``: one float in [0, 1] per ``k``, in the order of ``ks``.
    """
    cutoffs = [int(k) for k in ks]
    if not cutoffs or min(cutoffs) < 1:
        raise ConfigError(f"ks must be one or more integers ≥ 1 (got {list(ks)!r})")
    ranks = pair_ranks(user_vectors, item_vectors, pairs_users, pairs_items, exclude)
    if ranks.size == 0:
        raise ValueError("no (user, item) pairs to evaluate (got 0)")
    return {f"top_{k}": float(np.mean(ranks < k)) for k in cutoffs}


def _checked(
    user_vectors: npt.ArrayLike,
    item_vectors: npt.ArrayLike,
    pairs_users: npt.ArrayLike,
    pairs_items: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    users_matrix = np.asarray(user_vectors)
    items_matrix = np.asarray(item_vectors)
    dtype = np.result_type(users_matrix, items_matrix, np.float32)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"vectors must be real numbers (got {dtype})")
    users_matrix, items_matrix = users_matrix.astype(dtype), items_matrix.astype(dtype)
    if users_matrix.ndim != 2 or items_matrix.ndim != 2:
        raise ValueError(
            f"vectors must be 2-D (got users {users_matrix.shape}, items {items_matrix.shape})"
        )
    if users_matrix.shape[1] != items_matrix.shape[1]:
        raise ValueError(
            "user and item vectors must have the same width "
            f"(got {users_matrix.shape[1]} and {items_matrix.shape[1]})"
        )
    users, items = np.asarray(pairs_users), np.asarray(pairs_items)
    if users.ndim != 1 or users.shape != items.shape:
        raise ValueError(
            f"pairs must be two 1-D arrays of one length (got {users.shape}, {items.shape})"
        )
    for name, ids, bound in (
        ("pairs_users", users, users_matrix.shape[0]),
        ("pairs_items", items, items_matrix.shape[0]),
    ):
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must be integer ids (got {ids.dtype})")
        if ids.size and not 0 <= ids.min() <= ids.max() < bound:
            raise ValueError(f"{name} must lie in [0, {bound}) (got {ids.min()}..{ids.max()})")
    return users_matrix, items_matrix, users.astype(np.int64), items.astype(np.int64)


def _chunk_ranks(
    users_matrix: np.ndarray,
    items_t: np.ndarray,
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    exclude: scipy.sparse.csr_matrix | None,
) -> npt.NDArray[np.int64]:
    # One matmul row per distinct user of the chunk, then copied out to one row per pair.
    distinct, row_of_pair = np.unique(users, return_inverse=True)
    scores = (users_matrix[distinct] @ items_t)[row_of_pair]
    positions = np.arange(users.shape[0])
    target = scores[positions, items].copy()
    if exclude is not None:
        sub = exclude[users]
        rows = np.repeat(positions, np.diff(sub.indptr))
        scores[rows, sub.indices] = -np.inf  # the target's own cell is compared against `target`
    above = np.count_nonzero(scores > target[:, None], axis=1)
    ranks: npt.NDArray[np.int64] = np.where(np.isfinite(target), above, items_t.shape[1])
    return ranks.astype(np.int64, copy=False)
