"""Offline evaluation: interaction splits and top-k ranking metrics (numpy/scipy only).

For an evaluated user with relevant (held-out) items ``rel`` and top-k list ``rec_k``,
where ``rel_i`` is 1 when the item at rank ``i`` (counting from 0) is relevant::

    precision@k = |rec_k ∩ rel| / k
    recall@k    = |rec_k ∩ rel| / |rel|
    NDCG@k      = DCG / IDCG,  DCG = Σ_{i<k} rel_i / log2(i + 2),  IDCG = DCG of min(k, |rel|) hits
    AP@k        = Σ_{i<k} P@(i+1) · rel_i / min(k, |rel|),  MAP@k = mean of AP@k
    coverage    = |distinct items in the top-k lists of evaluated users| / n_items

Precision, recall, NDCG and MAP are means over evaluated users: those with ≥ 1 test item.
Empty slots (-1) and repeats of an item already listed higher in the same row are misses.

``implicit.evaluation.ranking_metrics_at_k`` defines NDCG and MAP the same way, but its
"precision" is pooled and divided by ``min(k, |rel|)``: Σ hits / Σ min(k, |rel_u|), so a user
with one test item can score 1.0 there and at most 1/k here. It has no recall or coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from streamrec.errors import ConfigError

_DTYPES = {"users": np.int64, "items": np.int64, "weights": np.float32, "timestamps": np.float64}


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interactions as parallel arrays, one row per user-item pair (inputs converted, checked).

    Attributes:
        users: int64 dense user ids, shape (n,).
        items: int64 dense item ids, shape (n,).
        weights: float32 interaction strengths, shape (n,).
        timestamps: float64 epoch seconds, shape (n,); NaN where unknown.
        n_users: number of users (rows of the matrix).
        n_items: number of items (columns of the matrix).
    """

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    timestamps: npt.NDArray[np.float64]
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        n = np.shape(self.users)
        for name, dtype in _DTYPES.items():
            array = np.asarray(getattr(self, name), dtype=dtype)
            if len(n) != 1 or array.shape != n:
                raise ValueError(f"{name} must have shape (n,) like users {n} (got {array.shape})")
            object.__setattr__(self, name, array)  # frozen: store the converted array once
        for ids, bound in ((self.users, self.n_users), (self.items, self.n_items)):
            if ids.size and not 0 <= ids.min() <= ids.max() < bound:
                raise ValueError(f"ids must lie in [0, {bound}) (got {ids.min()}..{ids.max()})")

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def to_csr(self) -> scipy.sparse.csr_matrix:
        """Users × items float32 matrix, shape (n_users, n_items), duplicate pairs summed.

        A canonical ``scipy.sparse.csr_matrix`` (not ``csr_array``) with int32 ``indptr`` and
        ``indices``: the layout ``implicit`` expects.
        """
        if max(len(self), self.n_users, self.n_items) > np.iinfo(np.int32).max:
            raise ValueError(f"too large for int32 indices ({len(self)} interactions)")
        ids = (self.users.astype(np.int32), self.items.astype(np.int32))
        shape = (self.n_users, self.n_items)
        csr = scipy.sparse.csr_matrix((self.weights, ids), shape=shape, dtype=np.float32)
        csr.sum_duplicates()
        csr.indptr = csr.indptr.astype(np.int32, copy=False)
        csr.indices = csr.indices.astype(np.int32, copy=False)
        return csr

    def subset(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> Interactions:
        """The rows selected by ``mask`` (bool, shape (n,), or integer positions), same sizes."""
        parts = (self.users[mask], self.items[mask], self.weights[mask], self.timestamps[mask])
        return Interactions(*parts, n_users=self.n_users, n_items=self.n_items)


@dataclass(frozen=True, eq=False)
class RandomSplit:
    """Interactions held out uniformly at random; ``train`` and ``test`` partition the data."""

    train: Interactions
    test: Interactions


@dataclass(frozen=True, eq=False)
class NewUserSplit:
    """A split for folding in users the model was not trained on.

    Attributes:
        base: every interaction of the known users (train the model on these).
        fold_in: each new user's earliest interactions (fold these in).
        test: each new user's remaining, later interactions (evaluate on these).
        new_users: int64 ids of the new users, sorted, shape (n_new,).
    """

    base: Interactions
    fold_in: Interactions
    test: Interactions
    new_users: npt.NDArray[np.int64]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be strictly between 0 and 1 (got {value!r})")


def random_split(data: Interactions, test_fraction: float = 0.2, seed: int = 42) -> RandomSplit:
    """Hold out ``round(test_fraction * n)`` of the ``n`` interactions uniformly at random.

    ``test_fraction`` lies in (0, 1); same ``seed``, same split; both keep the row order.
    """
    _check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(seed)
    n_test = round(test_fraction * len(data))
    in_test = np.zeros(len(data), dtype=bool)
    in_test[rng.permutation(len(data))[:n_test]] = True
    return RandomSplit(train=data.subset(~in_test), test=data.subset(in_test))


def new_user_split(
    data: Interactions, user_fraction: float = 0.8, fold_in_fraction: float = 0.8, seed: int = 42
) -> NewUserSplit:
    """Split users into known and new; split each new user's history by time.

    ``round(user_fraction * u)`` of the ``u`` users that have interactions are drawn at random
    as known users. Each new user's interactions are ordered by timestamp (ties in random
    order; a user with any NaN timestamp is ordered entirely at random) and the first
    ``round(fold_in_fraction * c)`` of its ``c`` go to ``fold_in``, clipped so that a user
    with ``c ≥ 2`` keeps ≥ 1 in each part; a user with ``c < 2`` goes wholly to ``fold_in``.
    Fractions lie in (0, 1); same ``seed``, same split; all parts keep the row order.
    """
    _check_fraction("user_fraction", user_fraction)
    _check_fraction("fold_in_fraction", fold_in_fraction)
    rng = np.random.default_rng(seed)
    active = np.unique(data.users)
    known = rng.permutation(active)[: round(user_fraction * active.size)]
    row_known = np.isin(data.users, known)

    rows = np.flatnonzero(~row_known)
    users, times = data.users[rows], data.timestamps[rows]
    has_nan = np.bincount(users, weights=np.isnan(times), minlength=data.n_users) > 0
    time_key = np.where(has_nan[users], 0.0, times)
    # Last key sorts first: by user, then time, then a random tie-breaker.
    order = np.lexsort((rng.random(rows.size), time_key, users))
    sorted_users = users[order]
    counts = np.bincount(sorted_users, minlength=data.n_users)
    rank = np.arange(rows.size) - (np.cumsum(counts) - counts)[sorted_users]
    n_fold = np.floor(fold_in_fraction * counts + 0.5).astype(np.int64)
    n_fold = np.where(counts >= 2, np.clip(n_fold, 1, counts - 1), counts)
    in_fold = np.zeros(len(data), dtype=bool)
    in_fold[rows[order[rank < n_fold[sorted_users]]]] = True
    fold_in, test = data.subset(in_fold), data.subset(~row_known & ~in_fold)
    return NewUserSplit(data.subset(row_known), fold_in, test, np.setdiff1d(active, known))


@dataclass(frozen=True)
class RankingMetrics:
    """Metrics at ``k`` (see the module docstring): per-user means and catalogue coverage.

    ``users`` counts the evaluated users (≥ 1 test item); when it is 0, every metric is 0.0.
    """

    k: int
    precision: float
    recall: float
    ndcg: float
    map: float
    coverage: float
    users: int

    def as_dict(self) -> dict[str, float | int]:
        """The metrics by field name, e.g. for logging or a results table."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def ranking_metrics(
    recommended: npt.NDArray[np.integer],
    test: scipy.sparse.csr_matrix,
    k: int = 10,
    n_items: int | None = None,
    users: npt.NDArray[np.integer] | None = None,
) -> RankingMetrics:
    """Precision, recall, NDCG, MAP at ``k`` and coverage, over users with ≥ 1 test item.

    Args:
        recommended: int item ids, shape (n_eval, ≥ k), best first; -1 marks an empty slot.
        test: held-out interactions, users × items CSR; any positive value is relevant.
        k: cut-off; only the first ``k`` columns of ``recommended`` are read.
        n_items: catalogue size for coverage; defaults to ``test.shape[1]``.
        users: int user ids (rows of ``test``), shape (n_eval,); row ``i`` of ``recommended``
            belongs to ``users[i]``. Defaults to ``arange(n_eval)``.
    """
    rec = np.asarray(recommended)
    n_rows, n_cols = test.shape
    n_items = n_cols if n_items is None else n_items
    if k < 1:
        raise ConfigError(f"k must be ≥ 1 (got {k})")
    if rec.ndim != 2 or rec.shape[1] < k or not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must be ints, shape (n, ≥ {k}) (got {rec.dtype}{rec.shape})")
    rec = rec[:, :k].astype(np.int64)
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(f"recommended must lie in [-1, {n_items}) (got {rec.min()}..{rec.max()})")
    n_eval = rec.shape[0]
    eval_users = np.arange(n_eval) if users is None else np.asarray(users, dtype=np.int64)
    if eval_users.shape != (n_eval,) or np.any((eval_users < 0) | (eval_users >= n_rows)):
        raise ValueError(f"users must be {n_eval} ids in [0, {n_rows}), one per row of recommended")

    # Relevant pairs as keys row * n_cols + item: canonical CSR order is sorted and unique.
    sub = scipy.sparse.csr_matrix(test)[eval_users]
    sub.sum_duplicates()
    positive = sub.data > 0
    rows = np.repeat(np.arange(n_eval, dtype=np.int64), np.diff(sub.indptr))[positive]
    keys = rows * n_cols + sub.indices[positive]
    n_rel = np.bincount(rows, minlength=n_eval)
    evaluated = n_rel > 0
    rec, n_rel = rec[evaluated], n_rel[evaluated]
    if rec.shape[0] == 0:
        return RankingMetrics(k, 0.0, 0.0, 0.0, 0.0, 0.0, 0)

    # A repeat of an item already listed higher up in the row is a miss, like an empty slot.
    order = np.argsort(rec, axis=1, kind="stable")
    sorted_rec = np.take_along_axis(rec, order, axis=1)
    repeat = np.zeros(rec.shape, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], sorted_rec[:, 1:] == sorted_rec[:, :-1], axis=1)
    valid = (rec >= 0) & (rec < n_cols) & ~repeat
    query = np.flatnonzero(evaluated)[:, None] * n_cols + rec
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    hits = valid & (keys[pos] == query)

    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    n_hits = hits.sum(axis=1)
    ideal = np.minimum(n_rel, k)
    idcg = np.cumsum(discounts)[ideal - 1]
    ap = (np.cumsum(hits, axis=1) / np.arange(1, k + 1) * hits).sum(axis=1) / ideal
    per_user = (n_hits / k, n_hits / n_rel, hits @ discounts / idcg, ap)
    precision, recall, ndcg, map_at_k = (float(np.mean(m)) for m in per_user)
    coverage = np.count_nonzero(np.bincount(rec[rec >= 0])) / n_items if n_items else 0.0
    return RankingMetrics(k, precision, recall, ndcg, map_at_k, coverage, int(rec.shape[0]))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is not positive (a model
    that scored 0 cannot be a baseline)."""
    return numerator / denominator if denominator > 0 else None
