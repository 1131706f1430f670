"""Offline experiments of GMF re-ranking the two-tower's candidates, on the two-tower's splits.

Each protocol of :mod:`~streamrec.models.retrieval_experiments` runs as it does there (same
split, same trained two-tower, same rows) and gains a row: the same two-tower's lists
re-ranked by GMF (:mod:`~streamrec.models.rerank`). GMF learns from the ratings of the same
training part: a held-out pair is hidden from both models, and under ``new-users`` the new
users are folded into GMF from the ratings of their earliest interactions, as into the
two-tower. The ranking metrics re-rank the top ``candidates`` of each user's list (train
items filtered); top-k accuracy re-ranks the top ``candidates`` of the unfiltered list and
leaves the rest in place, so top-k for k ≥ ``candidates`` is the two-tower's own.

Every row also reports ``liked_precision`` and ``liked_ndcg`` (over ``liked_users``): the
ranking metrics at k with only the held-out ratings of at least ``max_rating − 1`` relevant
(4 on the 0.5–5 scale), which is what ordering by predicted rating aims at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from streamrec.data.interactions import Interactions
from streamrec.data.splits import new_user_split, random_split
from streamrec.models.evaluation import ranking_metrics, ratio
from streamrec.models.gmf import GMF
from streamrec.models.gmf_params import GMFParams
from streamrec.models.index.exact import ExactIndex
from streamrec.models.rerank import rerank_order
from streamrec.models.retrieval_experiments import (
    FOLD_IN_FRACTION,
    KNOWN_USERS,
    KS,
    TEST_FRACTION,
    Trainer,
    _default_trainer,
    evaluate_two_tower_new_users,
    evaluate_two_tower_random,
)
from streamrec.models.topk_accuracy import pair_ranks
from streamrec.models.two_tower import TwoTower, TwoTowerParams

#: Trains GMF on a users × items CSR of ratings (the TensorFlow trainer, or a stand-in).
GMFTrainer = Callable[[sp.csr_matrix, GMFParams], GMF]


def _default_gmf_trainer(ratings: sp.csr_matrix, params: GMFParams) -> GMF:
    from streamrec.models.gmf_train import fit_gmf  # TensorFlow: only here

    return fit_gmf(ratings, params)


@dataclass(frozen=True)
class Stage:
    """GMF re-ranking a retrieval model's lists.

    Attributes:
        model: the trained GMF.
        vectors: per user (rows as the retrieval queries), their GMF vector,
            ``(n_users, factors + 1)``; a zero row keeps the retrieval order.
        candidates: retrieved items re-ranked per user.
        discount: stars per place (:mod:`~streamrec.models.rerank`).
    """

    model: GMF
    vectors: np.ndarray
    candidates: int
    discount: float

    def order(self, ids: np.ndarray, users: npt.NDArray[np.int64]) -> np.ndarray:
        """Candidates ``ids`` (``(len(users), N)``, best first) of ``users``, re-ranked."""
        vectors = self.vectors[users]
        personal = np.any(vectors != 0, axis=1)
        if not personal.any():
            return ids
        order, _ = rerank_order(ids, self.model.rate(vectors, ids), self.discount)
        return np.where(personal[:, None], np.take_along_axis(ids, order, axis=1), ids)


def evaluate_gmf_rerank_random(
    data: Interactions,
    ratings: Interactions,
    params: TwoTowerParams,
    gmf_params: GMFParams,
    k: int = 10,
    seed: int = 42,
    candidates: int = 100,
    discount: float = 0.25,
    trainer: Trainer = _default_trainer,
    gmf_trainer: GMFTrainer = _default_gmf_trainer,
) -> dict[str, Any]:
    """:func:`~streamrec.models.retrieval_experiments.evaluate_two_tower_random` with a
    ``gmf_rerank`` row.

    Args:
        data: every interaction (what the two-tower learns from).
        ratings: the rating rows of ``data`` (what GMF learns from), same id spaces.
        params: the two-tower's hyper-parameters.
        gmf_params: GMF's (``seed`` replaced by ``seed``; its scale decides "liked").
        k: cut-off of the ranking metrics.
        seed: seed of the split and of both models.
        candidates: two-tower items re-ranked per user.
        discount: stars per place.
        trainer: trains the two-tower; ``gmf_trainer``: GMF.

    Returns:
        The two-tower protocol's result with rows ``["two_tower", "gmf_rerank",
        "popularity"]``, the liked metrics in every row, ``rerank`` (the stage's settings)
        and ``rerank_ndcg_ratio`` = gmf_rerank / two_tower.
    """
    kept: list[TwoTower] = []
    result = evaluate_two_tower_random(data, params, k, seed, _keeping(trainer, kept))
    split = random_split(data, TEST_FRACTION, seed)
    train, test = split.train.to_csr(), split.test.to_csr()
    gmf_params = replace(gmf_params, seed=seed)
    rated, liked = _ratings_split(ratings.to_csr(), test, gmf_params.max_rating - 1)
    start = time.perf_counter()
    gmf = gmf_trainer(rated, gmf_params)
    gmf_seconds = time.perf_counter() - start
    model, every = kept[0], np.arange(train.shape[0])
    queries = model.fold_in_users(train)
    stage = Stage(gmf, gmf.fold_in_users(rated), max(candidates, k), discount)
    row = reranked_scores(queries, model.item_vectors, train, test, liked, every, k, stage)
    row["fit_seconds"] = result["two_tower"]["fit_seconds"] + gmf_seconds
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    ones = np.ones((train.shape[0], 1), dtype=np.float32)
    result["two_tower"].update(liked_scores(queries, model.item_vectors, train, liked, every, k))
    result["popularity"].update(liked_scores(ones, counts[:, None], train, liked, every, k))
    return {
        **result,
        "rows": ["two_tower", "gmf_rerank", "popularity"],
        "gmf_rerank": row,
        "rerank": _described(gmf_params, candidates, discount, gmf_seconds),
        "rerank_ndcg_ratio": ratio(row["ndcg"], result["two_tower"]["ndcg"]),
    }


def evaluate_gmf_rerank_new_users(
    data: Interactions,
    ratings: Interactions,
    params: TwoTowerParams,
    gmf_params: GMFParams,
    k: int = 10,
    seed: int = 42,
    candidates: int = 100,
    discount: float = 0.25,
    trainer: Trainer = _default_trainer,
    gmf_trainer: GMFTrainer = _default_gmf_trainer,
) -> dict[str, Any]:
    """:func:`~streamrec.models.retrieval_experiments.evaluate_two_tower_new_users` with a
    ``fold_in_gmf_rerank`` row: the fold-in lists re-ranked by a GMF trained on the known
    users' ratings, the new users folded into it from their earliest ratings.

    Returns:
        Rows ``["fold_in", "fold_in_gmf_rerank", "trained_with_them"]`` (arguments and
        other keys as :func:`evaluate_gmf_rerank_random`; the ratio is to ``fold_in``).
    """
    kept: list[TwoTower] = []
    result = evaluate_two_tower_new_users(data, params, k, seed, _keeping(trainer, kept))
    split = new_user_split(data, KNOWN_USERS, FOLD_IN_FRACTION, seed)
    fold_in, test, users = split.fold_in.to_csr(), split.test.to_csr(), split.new_users
    gmf_params = replace(gmf_params, seed=seed)
    rated, liked = _ratings_split(ratings.to_csr(), test, gmf_params.max_rating - 1)
    known = np.ones(rated.shape[0], dtype=bool)
    known[users] = False
    start = time.perf_counter()
    gmf = gmf_trainer(_pairs(rated, known[rated.tocoo().row]), gmf_params)
    gmf_seconds = time.perf_counter() - start
    vectors = np.zeros((rated.shape[0], gmf_params.factors + 1), dtype=np.float32)
    vectors[users] = gmf.fold_in_users(rated[users])
    stage = Stage(gmf, vectors, max(candidates, k), discount)
    rows: dict[str, dict[str, Any]] = {}
    for name, model in zip(("fold_in", "trained_with_them"), kept, strict=True):
        queries = np.zeros((fold_in.shape[0], model.item_vectors.shape[1]), dtype=np.float32)
        queries[users] = model.fold_in_users(fold_in[users])
        result[name].update(liked_scores(queries, model.item_vectors, fold_in, liked, users, k))
        if name == "fold_in":
            rows[name] = reranked_scores(
                queries, model.item_vectors, fold_in, test, liked, users, k, stage
            )
            rows[name]["fit_seconds"] = result[name]["fit_seconds"] + gmf_seconds
    row = rows["fold_in"]
    return {
        **result,
        "rows": ["fold_in", "fold_in_gmf_rerank", "trained_with_them"],
        "fold_in_gmf_rerank": row,
        "rerank": _described(gmf_params, candidates, discount, gmf_seconds),
        "rerank_ndcg_ratio": ratio(row["ndcg"], result["fold_in"]["ndcg"]),
    }


def reranked_scores(
    queries: np.ndarray,
    items: np.ndarray,
    seen: sp.csr_matrix,
    test: sp.csr_matrix,
    liked: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    k: int,
    stage: Stage,
) -> dict[str, Any]:
    """:func:`~streamrec.models.retrieval_experiments.retrieval_scores` of the lists of
    ``queries`` re-ranked by ``stage`` (module docstring), and :func:`liked_scores`."""
    index = ExactIndex(items)
    test = sp.csr_matrix(test[:, : items.shape[0]])
    pairs = sp.csr_matrix(test[users]).tocoo()
    ranks = pair_ranks(queries, items, users[pairs.row], pairs.col)
    listed = np.unique(pairs.row)  # rows of users with a held-out pair
    found, _ = index.search(queries[users[listed]], stage.candidates)
    order = np.full((len(users), found.shape[1]), -1, dtype=np.int64)
    order[listed] = stage.order(found, users[listed])
    at = order[pairs.row] == pairs.col[:, None]
    ranks = np.where(at.any(axis=1), at.argmax(axis=1), ranks)
    out: dict[str, Any] = {f"top_{c}": float(np.mean(ranks < c)) for c in KS}
    scored = users[np.diff(test[users].indptr) > 0]
    found, _ = index.search(queries[scored], stage.candidates, [seen[u].indices for u in scored])
    top = stage.order(found, scored)[:, :k]
    out.update(ranking_metrics(top, test, k, users=scored).as_dict())
    out.update(_liked(top, liked, k, scored))
    return out


def liked_scores(
    queries: np.ndarray,
    items: np.ndarray,
    seen: sp.csr_matrix,
    liked: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    k: int,
) -> dict[str, Any]:
    """``liked_precision``, ``liked_ndcg`` and ``liked_users`` of the top ``k`` of
    ``queries[u] · items`` (``seen`` filtered) against the ``liked`` held-out pairs."""
    scored = users[np.diff(liked[users].indptr) > 0]
    top, _ = ExactIndex(items).search(queries[scored], k, [seen[u].indices for u in scored])
    return _liked(top, liked, k, scored)


def _liked(
    top: np.ndarray, liked: sp.csr_matrix, k: int, users: npt.NDArray[np.int64]
) -> dict[str, Any]:
    metrics = ranking_metrics(top, liked, k, users=users)
    return {
        "liked_precision": metrics.precision,
        "liked_ndcg": metrics.ndcg,
        "liked_users": metrics.users,
    }


def _ratings_split(
    ratings: sp.csr_matrix, test: sp.csr_matrix, threshold: float
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(ratings without the held-out pairs, the held-out pairs rated ≥ threshold)``."""
    r, t = ratings.tocoo(), test.tocoo()
    width = ratings.shape[1]
    held = np.isin(r.row.astype(np.int64) * width + r.col, t.row.astype(np.int64) * width + t.col)
    liked = _pairs(ratings, held & (r.data >= threshold))
    liked.data[:] = 1
    return _pairs(ratings, ~held), liked


def _pairs(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The stored entries of ``matrix`` (in COO order) where ``keep`` is True; no others,
    not even explicit zeros (a stored zero is a rating)."""
    c = matrix.tocoo()
    return sp.csr_matrix((c.data[keep], (c.row[keep], c.col[keep])), shape=matrix.shape)


def _keeping(trainer: Trainer, kept: list[TwoTower]) -> Trainer:
    """``trainer``, keeping each model it trains in ``kept``."""

    def train(*args: Any) -> TwoTower:
        model = trainer(*args)
        kept.append(model)
        return model

    return train


def _described(
    params: GMFParams, candidates: int, discount: float, seconds: float
) -> dict[str, Any]:
    return {
        "model": "gmf",
        "candidates": candidates,
        "discount": discount,
        "params": asdict(params),
        "fit_seconds": seconds,
    }
