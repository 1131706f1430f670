"""Global mean plus user and item biases, ``r̂ = μ + b_u + b_i`` (``matrix-factorization``'s
``BaselineModel``): the floor the explicit-rating models are measured against
(``bench/kernel_mf.py``); nothing serves it.

``sgd`` is :class:`~streamrec.models.kernel_mf.KernelMF`'s linear kernel with no factors,
``b ← b − η (r̂ − r + λ b)`` per rating (the reference's rule). ``als`` alternates the exact
regularised solutions, once per epoch, all users then all items::

    b_u = Σ_{i∈I(u)} (r_ui − μ − b_i) / (λ + |I(u)|)
    b_i = Σ_{u∈U(i)} (r_ui − μ − b_u) / (λ + |U(i)|)

so ``λ`` means "pseudo-ratings at the mean" there and a per-step weight for ``sgd``: each
method has its own default. Like the reference, :meth:`BaselineModel.update_users` always
uses SGD with the item biases frozen, and :meth:`BaselineModel.recommend` gives every user
the same ranking, by item bias.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ConfigError
from streamrec.models.kernel_mf import KernelMF
from streamrec.models.kernel_mf_params import KernelMFParams, check_ratings

#: ``reg`` when none is given (tuned on a validation split of ML-100K's training part).
DEFAULT_REG = {"sgd": 0.02, "als": 5.0}


@dataclass(frozen=True)
class BaselineParams:
    """Hyper-parameters of :class:`BaselineModel`.

    Attributes:
        method: ``sgd`` or ``als``.
        epochs: passes over the ratings (sgd) or alternations (als).
        reg: L2 weight ``λ``; ``None`` means the method's ``DEFAULT_REG``.
        lr: SGD learning rate.
        min_rating: lowest valid rating.
        max_rating: highest valid rating.
        update_epochs: SGD passes over each user's ratings in ``update_users``.
        update_lr: learning rate of ``update_users``.
        seed: seed of the SGD shuffles.
    """

    method: Literal["sgd", "als"] = "sgd"
    epochs: int = 20
    reg: float | None = None
    lr: float = 0.01
    min_rating: float = 0.5
    max_rating: float = 5.0
    update_epochs: int = 20
    update_lr: float = 0.01
    seed: int = 42

    def __post_init__(self) -> None:
        if self.method not in DEFAULT_REG:
            raise ConfigError(f"method must be 'sgd' or 'als' (got {self.method!r})")

    def as_kernel_mf(self) -> KernelMFParams:
        """The equivalent :class:`KernelMFParams`: linear kernel, no factors."""
        reg = DEFAULT_REG[self.method] if self.reg is None else self.reg
        return KernelMFParams(
            factors=0,
            epochs=self.epochs,
            lr=self.lr,
            lr_decay=1.0,
            reg=reg,
            reg_bias=reg,
            init_sd=0.0,
            min_rating=self.min_rating,
            max_rating=self.max_rating,
            update_epochs=self.update_epochs,
            update_lr=self.update_lr,
            seed=self.seed,
        )


class BaselineModel:
    """Mean and biases, with the API of :class:`~streamrec.models.kernel_mf.KernelMF`.

    User vectors are ``[b_u]``, shape ``(n, 1)`` float32; item vectors ``[b_i]``.

    Args:
        params: hyper-parameters.
    """

    name = "baseline"

    def __init__(self, params: BaselineParams | None = None) -> None:
        self.params = params or BaselineParams()
        self._mf = KernelMF(self.params.as_kernel_mf())

    @property
    def n_users(self) -> int:
        """Users with a bias."""
        return self._mf.n_users

    @property
    def n_items(self) -> int:
        """Items with a bias."""
        return self._mf.n_items

    @property
    def global_mean(self) -> float:
        """``μ``, the mean training rating."""
        return self._mf.global_mean

    @property
    def user_bias(self) -> np.ndarray:
        """``b_u``, shape ``(n_users,)`` float64."""
        return self._mf.user_bias

    @property
    def item_bias(self) -> np.ndarray:
        """``b_i``, shape ``(n_items,)`` float64."""
        return self._mf.item_bias

    def fit(self, ratings: sp.csr_matrix) -> BaselineModel:
        """Train on a users × items CSR in which every stored entry is a rating.

        Raises:
            InvalidRatingError: a stored value is NaN, infinite or off the rating scale.
        """
        mf_params = self.params.as_kernel_mf()
        if self.params.method == "sgd":
            self._mf = KernelMF(mf_params).fit(ratings)
            return self
        csr = sp.csr_matrix(ratings)
        values = check_ratings(csr.data, mf_params.min_rating, mf_params.max_rating)
        n_users, n_items = csr.shape
        users = np.repeat(np.arange(n_users), np.diff(csr.indptr))
        items = csr.indices
        mean = (
            float(values.mean())
            if values.size
            else (mf_params.min_rating + mf_params.max_rating) / 2
        )
        user_norm = mf_params.reg + np.diff(csr.indptr)
        item_norm = mf_params.reg + np.bincount(items, minlength=n_items)
        bu, bi = np.zeros(n_users), np.zeros(n_items)
        for _ in range(self.params.epochs):
            bu = _ratio(np.bincount(users, values - mean - bi[items], n_users), user_norm)
            bi = _ratio(np.bincount(items, values - mean - bu[users], n_items), item_norm)
        self._mf = KernelMF.from_arrays(
            mf_params, mean, bu, bi, np.zeros((n_users, 0)), np.zeros((n_items, 0))
        )
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings, clipped to the scale (see :meth:`KernelMF.predict`)."""
        return self._mf.predict(users, items)

    def fold_in_users(self, ratings: sp.csr_matrix) -> np.ndarray:
        """User vectors ``[b_u]`` solved by SGD against the frozen item biases; stores nothing."""
        return self._mf.fold_in_users(ratings)

    def update_users(self, user_ids: np.ndarray, ratings: sp.csr_matrix) -> np.ndarray:
        """Re-solve and store users' biases (see :meth:`KernelMF.update_users`)."""
        return self._mf.update_users(user_ids, ratings)

    def recommend(
        self, user_vectors: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by item bias (one ranking for all), as predicted ratings."""
        return self._mf.recommend(user_vectors, k, exclude)

    def save(self, path: Path) -> None:
        """Write ``model.npz`` (mean and biases) and ``params.json`` into the folder ``path``."""
        mf = self._mf
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / "model.npz",
            global_mean=np.float64(mf.global_mean),
            user_bias=mf.user_bias,
            item_bias=mf.item_bias,
        )
        (path / "params.json").write_text(json.dumps(asdict(self.params)))

    @classmethod
    def load(cls, path: Path) -> BaselineModel:
        """Read a model written by :meth:`save` (no pickle)."""
        self = cls(BaselineParams(**json.loads((path / "params.json").read_text())))
        with np.load(path / "model.npz", allow_pickle=False) as a:
            bu, bi = a["user_bias"], a["item_bias"]
            self._mf = KernelMF.from_arrays(
                self.params.as_kernel_mf(),
                float(a["global_mean"]),
                bu,
                bi,
                np.zeros((len(bu), 0)),
                np.zeros((len(bi), 0)),
            )
        return self


def _ratio(total: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """``total / norm``, 0 where ``norm`` is 0 (no ratings and no regularisation)."""
    out = np.zeros_like(total, dtype=np.float64)
    np.divide(total, norm, out=out, where=norm > 0)
    return out
