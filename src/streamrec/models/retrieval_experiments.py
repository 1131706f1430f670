"""Offline experiments of the two-tower retrieval model under the two split protocols.

Every row reports TFRS's ``FactorizedTopK`` protocol (for each held-out (user, item) pair:
is the item in the user's top-k over all items, k = 1, 5, 10, 50, 100; nothing filtered, as
TFRS measures it) beside the ranking metrics ALS reports (P/R/NDCG/MAP@k, the user's train
items filtered). ``random``: 20 % of the interactions held out, against the popularity list.
``new-users``: 20 % of the users unknown to the model, their queries pooled from their
earliest 80 % (no retraining), against a model trained with those interactions. Item
features (tags, name words) are those the data carries (``Interactions.item_features``, from
the dataset's files); the params decide whether the item tower uses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from streamrec.data.interactions import Interactions
from streamrec.data.item_features import ItemFeatures
from streamrec.data.splits import new_user_split, random_split
from streamrec.models.evaluation import ranking_metrics, ratio
from streamrec.models.index.exact import ExactIndex
from streamrec.models.topk_accuracy import factorized_top_k
from streamrec.models.two_tower import TwoTower, TwoTowerParams

TEST_FRACTION = 0.2
KNOWN_USERS = 0.8
FOLD_IN_FRACTION = 0.8
KS = (1, 5, 10, 50, 100)

#: Trains a model on a users × items matrix and the items' features (the TensorFlow
#: trainer, or a stand-in).
Trainer = Callable[[sp.csr_matrix, TwoTowerParams, ItemFeatures | None], TwoTower]


def _default_trainer(
    train: sp.csr_matrix, params: TwoTowerParams, item_features: ItemFeatures | None
) -> TwoTower:
    from streamrec.models.two_tower_train import fit_two_tower  # TensorFlow: only here

    return fit_two_tower(train, params, item_features=item_features)


def evaluate_two_tower_random(
    data: Interactions,
    params: TwoTowerParams,
    k: int = 10,
    seed: int = 42,
    trainer: Trainer = _default_trainer,
) -> dict[str, Any]:
    """Random hold-out: the two-tower model against the popularity list.

    Returns:
        ``protocol``, ``k``, ``seed``, ``params``, ``sizes``, ``rows``
        (``["two_tower", "popularity"]``), per row ``top_1`` … ``top_100``, the ranking
        metrics and ``fit_seconds``; ``ndcg_ratio`` and ``top_100_ratio`` = two-tower /
        popularity.
    """
    split = random_split(data, TEST_FRACTION, seed)
    train, test = split.train.to_csr(), split.test.to_csr()
    params = replace(params, seed=seed)
    start = time.perf_counter()
    model = trainer(train, params, data.item_features)
    seconds = time.perf_counter() - start
    every = np.arange(train.shape[0])
    ours = retrieval_scores(model.fold_in_users(train), model.item_vectors, train, test, every, k)
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)
    ones = np.ones((train.shape[0], 1), dtype=np.float32)
    popular = retrieval_scores(ones, counts[:, None], train, test, every, k)
    ours["fit_seconds"], popular["fit_seconds"] = seconds, 0.0
    return {
        "protocol": "random",
        "k": k,
        "seed": seed,
        "params": asdict(params),
        "sizes": {"train": len(split.train), "test": len(split.test), "users": ours["users"]},
        "rows": ["two_tower", "popularity"],
        "two_tower": ours,
        "popularity": popular,
        "ndcg_ratio": ratio(ours["ndcg"], popular["ndcg"]),
        "top_100_ratio": ratio(ours["top_100"], popular["top_100"]),
    }


def evaluate_two_tower_new_users(
    data: Interactions,
    params: TwoTowerParams,
    k: int = 10,
    seed: int = 42,
    trainer: Trainer = _default_trainer,
) -> dict[str, Any]:
    """New users: queries pooled with frozen towers versus towers trained with them.

    Returns:
        as :func:`evaluate_two_tower_random`, with rows ``["fold_in",
        "trained_with_them"]`` and the ratios fold-in / trained with them.
    """
    split = new_user_split(data, KNOWN_USERS, FOLD_IN_FRACTION, seed)
    base, fold_in, test = split.base.to_csr(), split.fold_in.to_csr(), split.test.to_csr()
    users = split.new_users
    params = replace(params, seed=seed)
    results: dict[str, dict[str, Any]] = {}
    for name, train in (("fold_in", base), ("trained_with_them", (base + fold_in).tocsr())):
        start = time.perf_counter()
        model = trainer(train, params, data.item_features)
        seconds = time.perf_counter() - start
        queries = np.zeros((fold_in.shape[0], model.item_vectors.shape[1]), dtype=np.float32)
        queries[users] = model.fold_in_users(fold_in[users])
        results[name] = retrieval_scores(queries, model.item_vectors, fold_in, test, users, k)
        results[name]["fit_seconds"] = seconds
    mine, theirs = results["fold_in"], results["trained_with_them"]
    return {
        "protocol": "new-users",
        "k": k,
        "seed": seed,
        "params": asdict(params),
        "sizes": {
            "base": len(split.base),
            "fold_in": len(split.fold_in),
            "test": len(split.test),
            "new_users": len(users),
        },
        "rows": ["fold_in", "trained_with_them"],
        **results,
        "ndcg_ratio": ratio(mine["ndcg"], theirs["ndcg"]),
        "top_100_ratio": ratio(mine["top_100"], theirs["top_100"]),
    }


def retrieval_scores(
    queries: np.ndarray,
    items: np.ndarray,
    seen: sp.csr_matrix,
    test: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    k: int,
) -> dict[str, Any]:
    """Top-k accuracy (k in :data:`KS`) over the test pairs of ``users``, scored by
    ``queries[u] · items[i]`` over all items, and the ranking metrics at ``k`` with each
    user's ``seen`` items filtered."""
    test = sp.csr_matrix(test[:, : items.shape[0]])
    pairs = sp.csr_matrix(test[users]).tocoo()
    out: dict[str, Any] = factorized_top_k(queries, items, users[pairs.row], pairs.col, KS)
    scored = users[np.diff(test[users].indptr) > 0]
    excluded = [seen[u].indices for u in scored]
    top = _top(queries[scored], items, k, excluded)
    out.update(ranking_metrics(top, test, k, users=scored).as_dict())
    return out


def _top(
    queries: np.ndarray, items: np.ndarray, k: int, exclude: list[np.ndarray]
) -> npt.NDArray[np.int64]:
    ids, _ = ExactIndex(items).search(queries, k, exclude)
    return ids
