"""Splits of interactions for offline evaluation: random, and new users by time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamrec.data.interactions import Interactions
from streamrec.errors import ConfigError


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
