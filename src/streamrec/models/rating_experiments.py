"""Offline experiments of the rating model: RMSE of KernelMF under the two split protocols.

``random``: 20 % of the ratings held out at random; KernelMF trained on the rest predicts
them, next to the global mean of the train ratings (the floor any model must beat).
``new-users``: 20 % of the users are unknown to the model; it is trained on the others,
then ``update_users`` folds each new user in from their earliest 80 % of ratings (items
frozen), and their later ratings are predicted; against a model trained with those
earliest ratings from the start. Both return plain dicts (JSON-ready). Interactions'
``weights`` are the ratings (a file of ratings, e.g. MovieLens).

``RMSE = sqrt(mean((r̂ − r)²))`` and ``MAE = mean(|r̂ − r|)`` over the held-out ratings.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.data.interactions import Interactions
from streamrec.data.splits import new_user_split, random_split
from streamrec.models.evaluation import ratio
from streamrec.models.kernel_mf_params import KernelMFParams

if TYPE_CHECKING:
    from streamrec.models.kernel_mf import KernelMF

TEST_FRACTION = 0.2
KNOWN_USERS = 0.8
FOLD_IN_FRACTION = 0.8


def rating_errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``rmse`` and ``mae`` of predictions against the true ratings (both shape ``(n,)``)."""
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    if diff.size == 0:
        return {"rmse": 0.0, "mae": 0.0}
    return {"rmse": float(np.sqrt(np.mean(diff**2))), "mae": float(np.mean(np.abs(diff)))}


def evaluate_kmf_random(
    data: Interactions, params: KernelMFParams, seed: int = 42
) -> dict[str, Any]:
    """Random hold-out: KernelMF's RMSE on the held-out ratings, and the global mean's.

    Args:
        data: all ratings (``weights``).
        params: hyper-parameters (``seed`` is replaced by the split seed).
        seed: seed of the split and of the model.

    Returns:
        ``protocol``, ``seed``, ``params``, ``sizes``, ``rows`` (``["kmf", "global_mean"]``),
        per row ``rmse``, ``mae``, ``ratings``, ``fit_seconds``, and ``rmse_ratio`` = kmf /
        global mean.
    """
    split = random_split(data, TEST_FRACTION, seed)
    params = _seeded(params, seed)
    model, seconds = _fit(params, split.train)
    test = split.test
    ours = _scored(model.predict(test.users, test.items), test, seconds)
    mean = float(np.mean(split.train.weights)) if len(split.train) else 0.0
    floor = _scored(np.full(len(test), mean), test, 0.0)
    return {
        "protocol": "random",
        "seed": seed,
        "params": asdict(params),
        "sizes": {"train": len(split.train), "test": len(test)},
        "rows": ["kmf", "global_mean"],
        "kmf": ours,
        "global_mean": floor,
        "rmse_ratio": ratio(ours["rmse"], floor["rmse"]),
    }


def evaluate_kmf_new_users(
    data: Interactions, params: KernelMFParams, seed: int = 42
) -> dict[str, Any]:
    """New users: ``update_users`` against frozen items versus training with them.

    Args:
        data: all ratings (timestamps order each user's ratings).
        params: hyper-parameters of both models (``seed`` is replaced by the split seed).
        seed: seed of the split and of the models.

    Returns:
        ``protocol``, ``seed``, ``params``, ``sizes``, ``rows``
        (``["update_users", "trained_with_them"]``), per row ``rmse``, ``mae``, ``ratings``,
        ``fit_seconds`` (for ``update_users``: the fold-in time), and ``rmse_ratio`` =
        update_users / trained_with_them (the target is ≤ 1.02).
    """
    split = new_user_split(data, KNOWN_USERS, FOLD_IN_FRACTION, seed)
    params = _seeded(params, seed)
    test, users = split.test, split.new_users
    fold_in = split.fold_in.to_csr()

    base, _ = _fit(params, split.base)
    start = time.perf_counter()
    base.update_users(users, fold_in[users])
    update_seconds = time.perf_counter() - start
    updated = _scored(base.predict(test.users, test.items), test, update_seconds)

    both = Interactions(
        np.concatenate([split.base.users, split.fold_in.users]),
        np.concatenate([split.base.items, split.fold_in.items]),
        np.concatenate([split.base.weights, split.fold_in.weights]),
        np.concatenate([split.base.timestamps, split.fold_in.timestamps]),
        n_users=data.n_users,
        n_items=data.n_items,
    )
    retrained, seconds = _fit(params, both)
    trained = _scored(retrained.predict(test.users, test.items), test, seconds)
    return {
        "protocol": "new-users",
        "seed": seed,
        "params": asdict(params),
        "sizes": {
            "base": len(split.base),
            "fold_in": len(split.fold_in),
            "test": len(test),
            "new_users": len(users),
        },
        "rows": ["update_users", "trained_with_them"],
        "update_users": updated,
        "trained_with_them": trained,
        "rmse_ratio": ratio(updated["rmse"], trained["rmse"]),
    }


def _seeded(params: KernelMFParams, seed: int) -> KernelMFParams:
    return KernelMFParams(**{**asdict(params), "seed": seed})


def _fit(params: KernelMFParams, train: Interactions) -> tuple[KernelMF, float]:
    from streamrec.models.kernel_mf import KernelMF

    start = time.perf_counter()
    model = KernelMF(params).fit(train.to_csr())
    return model, time.perf_counter() - start


def _scored(predicted: np.ndarray, test: Interactions, seconds: float) -> dict[str, Any]:
    return {**rating_errors(predicted, test.weights), "ratings": len(test), "fit_seconds": seconds}
