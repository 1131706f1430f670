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
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse as sp

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


class RatingModel(Protocol):
    """What the rating protocols need of a model."""

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) pairs."""
        ...

    def update_users(self, user_ids: np.ndarray, ratings: sp.csr_matrix) -> np.ndarray:
        """Fold users in from their ratings (items frozen) and keep them."""
        ...


#: Trains a rating model: (params, train ratings) -> model.
Fit = Callable[[Any, Interactions], RatingModel]


def evaluate_kmf_random(
    data: Interactions, params: KernelMFParams, seed: int = 42
) -> dict[str, Any]:
    """:func:`evaluate_rating_random` of KernelMF (row ``kmf``)."""
    return evaluate_rating_random(data, params, seed, _fit_kmf, "kmf")


def evaluate_kmf_new_users(
    data: Interactions, params: KernelMFParams, seed: int = 42
) -> dict[str, Any]:
    """:func:`evaluate_rating_new_users` of KernelMF."""
    return evaluate_rating_new_users(data, params, seed, _fit_kmf)


def evaluate_rating_random(
    data: Interactions, params: Any, seed: int, fit: Fit, name: str
) -> dict[str, Any]:
    """Random hold-out: a rating model's RMSE on the held-out ratings, and the global mean's.

    Args:
        data: all ratings (``weights``).
        params: hyper-parameters with a ``seed`` field (replaced by the split seed).
        seed: seed of the split and of the model.
        fit: trains the model.
        name: the model's row.

    Returns:
        ``protocol``, ``seed``, ``params``, ``sizes``, ``rows`` (``[name, "global_mean"]``),
        per row ``rmse``, ``mae``, ``ratings``, ``fit_seconds``, and ``rmse_ratio`` = model /
        global mean.
    """
    split = random_split(data, TEST_FRACTION, seed)
    params = replace(params, seed=seed)
    model, seconds = _timed(fit, params, split.train)
    test = split.test
    ours = _scored(model.predict(test.users, test.items), test, seconds)
    mean = float(np.mean(split.train.weights)) if len(split.train) else 0.0
    floor = _scored(np.full(len(test), mean), test, 0.0)
    return {
        "protocol": "random",
        "seed": seed,
        "params": asdict(params),
        "sizes": {"train": len(split.train), "test": len(test)},
        "rows": [name, "global_mean"],
        name: ours,
        "global_mean": floor,
        "rmse_ratio": ratio(ours["rmse"], floor["rmse"]),
    }


def evaluate_rating_new_users(
    data: Interactions, params: Any, seed: int, fit: Fit
) -> dict[str, Any]:
    """New users: ``update_users`` against frozen items versus training with them.

    Args:
        data: all ratings (timestamps order each user's ratings).
        params: hyper-parameters of both models (``seed`` is replaced by the split seed).
        seed: seed of the split and of the models.
        fit: trains the model.

    Returns:
        ``protocol``, ``seed``, ``params``, ``sizes``, ``rows``
        (``["update_users", "trained_with_them"]``), per row ``rmse``, ``mae``, ``ratings``,
        ``fit_seconds`` (for ``update_users``: the fold-in time), and ``rmse_ratio`` =
        update_users / trained_with_them.
    """
    split = new_user_split(data, KNOWN_USERS, FOLD_IN_FRACTION, seed)
    params = replace(params, seed=seed)
    test, users = split.test, split.new_users
    fold_in = split.fold_in.to_csr()

    base, _ = _timed(fit, params, split.base)
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
    retrained, seconds = _timed(fit, params, both)
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


def _fit_kmf(params: KernelMFParams, train: Interactions) -> KernelMF:
    from streamrec.models.kernel_mf import KernelMF  # numba: only when training

    return KernelMF(params).fit(train.to_csr())


def _timed(fit: Fit, params: Any, train: Interactions) -> tuple[RatingModel, float]:
    start = time.perf_counter()
    model = fit(params, train)
    return model, time.perf_counter() - start


def _scored(predicted: np.ndarray, test: Interactions, seconds: float) -> dict[str, Any]:
    return {**rating_errors(predicted, test.weights), "ratings": len(test), "fit_seconds": seconds}
