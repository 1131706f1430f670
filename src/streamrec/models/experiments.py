"""Offline experiments: ImplicitALS against baselines under two split protocols.

``random``: 20 % of the interactions held out at random; streamrec's ALS (users solved
against the final item factors, as when serving) against ``implicit``'s ALS with its
default parameters fitted on the same raw weights and recommending through its own
``recommend``. ``new-users``: 20 % of the users are unknown to the model; each is folded in
from the earliest 80 % of its history and scored on the rest, against a full retrain that
also saw those earliest interactions. Both return plain dicts (JSON-ready, see
:func:`evaluate_random` and :func:`evaluate_new_users`); metrics are defined in
:mod:`streamrec.models.evaluation`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from streamrec.data.interactions import Interactions
from streamrec.data.splits import new_user_split, random_split
from streamrec.models.als import ALSParams, ImplicitALS, single_threaded_blas
from streamrec.models.evaluation import ranking_metrics, ratio

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2
KNOWN_USERS = 0.8
FOLD_IN_FRACTION = 0.8


def evaluate_random(
    data: Interactions, params: ALSParams, k: int = 10, seed: int = 42
) -> dict[str, Any]:
    """Random hold-out: streamrec's ALS against ``implicit``'s ALS with default parameters.

    Both models train on the same train matrix of raw weights and recommend, for every user
    with a test interaction, ``k`` items outside that user's train items.

    Args:
        data: all interactions (weights are raw: counts, ratings).
        params: streamrec's hyper-parameters (``random_state`` is replaced by ``seed``).
        k: list length and metric cut-off.
        seed: seed of the split and of both models' initialisation.

    Returns:
        ``protocol``, ``k``, ``seed``, ``params``, ``sizes`` (interaction counts),
        ``rows`` (``["streamrec", "implicit"]``), one metrics dict per row (``precision``,
        ``recall``, ``ndcg``, ``map``, ``coverage``, ``users``, ``k``, ``fit_seconds``) and
        ``ndcg_ratio`` = streamrec NDCG / implicit NDCG (None when the latter is 0).
    """
    split = random_split(data, TEST_FRACTION, seed)
    train, test = split.train.to_csr(), split.test.to_csr()
    users = np.flatnonzero(np.diff(test.indptr)).astype(np.int64)
    seen = [train[u].indices for u in users]

    params = _seeded(params, seed)
    model, seconds = _fit(params, train)
    ids, _ = model.recommend(model.fold_in_users(train[users]), k, seen)
    ours = _metrics(ids, test, k, users, seconds)

    baseline_ids, baseline_seconds = _implicit_default(train, users, k, seed)
    theirs = _metrics(baseline_ids, test, k, users, baseline_seconds)
    return {
        "protocol": "random",
        "k": k,
        "seed": seed,
        "params": asdict(params),
        "sizes": {"train": len(split.train), "test": len(split.test), "users": len(users)},
        "rows": ["streamrec", "implicit"],
        "streamrec": ours,
        "implicit": theirs,
        "ndcg_ratio": ratio(ours["ndcg"], theirs["ndcg"]),
    }


def evaluate_new_users(
    data: Interactions, params: ALSParams, k: int = 10, seed: int = 42
) -> dict[str, Any]:
    """New users: fold-in against frozen item factors versus a full retrain.

    ``fold_in``: trained on the known users only; each new user's vector is solved from its
    full fold-in history. ``retrain``: trained on the known users plus every new user's
    fold-in history; the new users' vectors are solved the same way against the retrained
    item factors (as serving would). Both recommend ``k`` items outside the fold-in history
    and are scored on the new users' later interactions.

    Args:
        data: all interactions (weights are raw; timestamps order each user's history).
        params: hyper-parameters of both models (``random_state`` is replaced by ``seed``).
        k: list length and metric cut-off.
        seed: seed of the split and of the models' initialisation.

    Returns:
        ``protocol``, ``k``, ``seed``, ``params``, ``sizes``, ``rows``
        (``["fold_in", "retrain"]``), one metrics dict per row (as in
        :func:`evaluate_random`) and ``ndcg_ratio`` = fold-in NDCG / retrain NDCG.
    """
    split = new_user_split(data, KNOWN_USERS, FOLD_IN_FRACTION, seed)
    base, fold_in, test = split.base.to_csr(), split.fold_in.to_csr(), split.test.to_csr()
    users = split.new_users
    history = fold_in[users]
    seen = [history[row].indices for row in range(len(users))]
    params = _seeded(params, seed)

    results: dict[str, dict[str, Any]] = {}
    for name, train in (("fold_in", base), ("retrain", (base + fold_in).tocsr())):
        model, seconds = _fit(params, train)
        ids, _ = model.recommend(model.fold_in_users(history), k, seen)
        results[name] = _metrics(ids, test, k, users, seconds)
    sizes = {
        "base": len(split.base),
        "fold_in": len(split.fold_in),
        "test": len(split.test),
        "new_users": len(users),
    }
    return {
        "protocol": "new-users",
        "k": k,
        "seed": seed,
        "params": asdict(params),
        "sizes": sizes,
        "rows": ["fold_in", "retrain"],
        **results,
        "ndcg_ratio": ratio(results["fold_in"]["ndcg"], results["retrain"]["ndcg"]),
    }


def _seeded(params: ALSParams, seed: int) -> ALSParams:
    return ALSParams(**{**asdict(params), "random_state": seed})


def _fit(params: ALSParams, train: sp.csr_matrix) -> tuple[ImplicitALS, float]:
    start = time.perf_counter()
    model = ImplicitALS(params).fit(train)
    seconds = time.perf_counter() - start
    logger.info("fitted %s on %d interactions in %.2f s", params, train.nnz, seconds)
    return model, seconds


def _implicit_default(
    train: sp.csr_matrix, users: npt.NDArray[np.int64], k: int, seed: int
) -> tuple[npt.NDArray[np.int64], float]:
    """Top-k of ``implicit``'s ALS with its default parameters, used as its docs show."""
    from implicit.cpu.als import AlternatingLeastSquares

    single_threaded_blas()  # implicit warns and slows down with multithreaded BLAS
    start = time.perf_counter()
    model = AlternatingLeastSquares(random_state=seed)
    model.fit(train, show_progress=False)
    seconds = time.perf_counter() - start
    n = min(k, train.shape[1])  # implicit cannot return more items than it has
    raw_ids, scores = model.recommend(users, train[users], N=n, filter_already_liked_items=True)
    ids = np.full((len(users), k), -1, dtype=np.int64)
    # Filtered items come back with a score of -3.4e38 (float32 lowest): those are empty slots.
    ids[:, :n] = np.where(scores > np.finfo(np.float32).min, raw_ids, -1)
    return ids, seconds


def _metrics(
    ids: npt.NDArray[np.int64],
    test: sp.csr_matrix,
    k: int,
    users: npt.NDArray[np.int64],
    seconds: float,
) -> dict[str, Any]:
    metrics: dict[str, Any] = ranking_metrics(ids, test, k, users=users).as_dict()
    metrics["fit_seconds"] = seconds
    return metrics
