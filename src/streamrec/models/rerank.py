"""A re-ranking stage: a rating model re-orders a retrieval model's candidates (numpy only).

The two-tower model retrieves the items a user is likely to pick; GMF predicts how the user
would rate them. The stage keeps the retrieval model's top ``N`` candidates per user and
orders them by::

    score(u, i) = r̂(u, i) − discount · place(u, i)

``r̂`` is GMF's predicted rating and ``place`` the candidate's position in the retrieval
list (0 = its best): a candidate must be predicted ``discount`` stars better for every place
it climbs. ``discount = 0`` orders by predicted rating alone; a large ``discount`` keeps the
retrieval order. Ties keep the retrieval order. A user GMF could not fold in (a zero user
vector: no rating of an item it knows) keeps the candidates in their order, with their
retrieval scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from streamrec.models.gmf import GMF


def rerank_order(
    ids: np.ndarray, ratings: np.ndarray, discount: float
) -> tuple[np.ndarray, np.ndarray]:
    """The re-ranked order of each row's candidates (module docstring).

    Args:
        ids: candidate item ids per user, best first, ``(n, N)`` int, ``-1`` padding.
        ratings: predicted ratings of the candidates, ``(n, N)`` float (ignored at padding).
        discount: stars per place, ≥ 0.

    Returns:
        ``(order, scores)``: ``order`` ``(n, N)`` int64 positions into each row of ``ids``,
        best first (padding last); ``scores`` ``(n, N)`` float64, the blended score of each
        re-ranked slot (``-inf`` at padding).
    """
    ids = np.asarray(ids)
    place = np.arange(ids.shape[1], dtype=np.float64)[None, :]
    blended = np.where(ids >= 0, np.asarray(ratings, dtype=np.float64) - discount * place, -np.inf)
    order = np.argsort(-blended, axis=1, kind="stable").astype(np.int64)
    return order, np.take_along_axis(blended, order, axis=1)


def rerank(
    ids: np.ndarray,
    scores: np.ndarray,
    ratings: np.ndarray,
    personal: np.ndarray,
    k: int,
    discount: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of each row's candidates re-ranked by predicted rating (module docstring).

    Args:
        ids: candidate item ids per user, best first, ``(n, N)`` int, ``-1`` padding.
        scores: their retrieval scores, ``(n, N)``.
        ratings: predicted ratings of the candidates, ``(n, N)`` float.
        personal: ``(n,)`` bool; rows where it is False keep their order and scores.
        k: items kept per user (at most ``N``).
        discount: stars per place, ≥ 0.

    Returns:
        ``(ids, scores)``, each ``(n, min(k, N))``: int64 ids (``-1`` padding) and float32
        scores, the blended scores of re-ranked rows and the retrieval scores of the others.
    """
    ids = np.asarray(ids, dtype=np.int64)
    order, blended = rerank_order(ids, ratings, discount)
    top = order[:, :k]
    kept = np.asarray(personal, dtype=bool)[:, None]
    out_ids = np.where(kept, np.take_along_axis(ids, top, axis=1), ids[:, :k])
    out_scores = np.where(kept, blended[:, :k], np.asarray(scores, dtype=np.float64)[:, :k])
    return out_ids, out_scores.astype(np.float32)


def rerank_by_gmf(
    ids: np.ndarray,
    scores: np.ndarray,
    model: GMF,
    user_vectors: np.ndarray,
    k: int,
    discount: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rerank` with GMF's predicted ratings.

    Args:
        ids: candidate item ids per user, best first, ``(n, N)`` int, ``-1`` padding.
        scores: their retrieval scores, ``(n, N)``.
        model: a trained GMF.
        user_vectors: the users' GMF vectors (:meth:`GMF.fold_in_users`), ``(n, factors + 1)``;
            a zero vector keeps the user's retrieval order.
        k: items kept per user.
        discount: stars per place, ≥ 0.
    """
    vectors = np.atleast_2d(np.asarray(user_vectors))
    personal = np.any(vectors != 0, axis=1)
    ratings = model.rate(vectors, ids) if personal.any() else np.zeros(np.shape(ids))
    return rerank(ids, scores, ratings, personal, k, discount)
