"""Offline evaluation: top-k ranking metrics (numpy/scipy only).

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
