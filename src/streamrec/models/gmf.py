"""Generalized matrix factorisation (GMF, He et al. 2017, "Neural Collaborative Filtering")
of explicit ratings, in the numpy form a worker serves.

The prediction is the element-wise product of a user and an item embedding through a
one-unit dense layer, plus biases, clipped to the rating scale::

    r̂(u, i) = μ + b_u + b_i + Σ_f h_f P_uf Q_if

``h`` (the dense kernel) is unit-norm as trained: with a plain L2 on it the model collapses
to the biases (:mod:`streamrec.models.gmf_train` trains it in TensorFlow; this module never
imports TensorFlow). With the items frozen the score is linear in ``[p_u, b_u]``, so a user
is folded in exactly by one small ridge solve (:mod:`streamrec.models.ridge`): features
``x_i = [h ⊙ q_i, 1]``, target ``r − μ − b_i``, penalty ``|I(u)| · (fold_in_reg, reg_bias)``
— the per-rating L2 of training, so a user folded in from their training ratings lands at
the optimum of the training loss given the items. New items are solved the same way
against frozen users (features ``[h ⊙ p_u, 1]``, target ``r − μ − b_u``).

Ranking goes through an inner-product index: item ``[h ⊙ q_i, b_i]``, query ``[p_u, 1]``
(``μ + b_u`` is constant per user). A *user vector* (what :meth:`GMF.fold_in_users` returns)
is ``[p_u, b_u]``; an *item vector* (:meth:`GMF.fold_in_items`) is ``[q_i, b_i]``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import scipy.sparse as sp

from streamrec.models import ridge
from streamrec.models.gmf_params import GMFParams
from streamrec.models.index.scann import build_index
from streamrec.models.index.stored import Index, RebuildsIndex, save_index, saved_index
from streamrec.models.kernel_mf_params import check_ratings, check_width, trained_mask
from streamrec.models.sparse import grown, with_width

if TYPE_CHECKING:
    from streamrec.models.kernel_mf import KernelMF

logger = logging.getLogger(__name__)

_ARRAYS = ("user_bias", "item_bias", "user_factors", "item_factors", "output_weights")

__all__ = ["GMF", "GMFParams"]


class GMF(RebuildsIndex):
    """A trained GMF (from :func:`~streamrec.models.gmf_train.fit_gmf`, :meth:`from_arrays`
    or :meth:`load`).

    Args:
        params: hyper-parameters.
    """

    name = "gmf"

    def __init__(self, params: GMFParams | None = None) -> None:
        self.params = params or GMFParams()
        self.index: Index | None = None
        self._mean = math.nan
        d = self.params.factors
        self._bu, self._bi = np.zeros(0), np.zeros(0)
        self._p, self._q, self._h = np.zeros((0, d)), np.zeros((0, d)), np.zeros(d)

    @classmethod
    def from_arrays(
        cls,
        params: GMFParams,
        global_bias: float,
        user_bias: np.ndarray,
        item_bias: np.ndarray,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        output_weights: np.ndarray,
        *,
        index: Index | None = None,
    ) -> GMF:
        """A trained model from its parameters (shapes as the properties of the same names;
        ``index``: its item index when already built, as a saved one)."""
        self = cls(params)
        d = params.factors
        self._mean = float(global_bias)
        self._bu, self._bi = (np.array(b, dtype=np.float64).ravel() for b in (user_bias, item_bias))
        self._p = np.array(user_factors, dtype=np.float64).reshape(len(self._bu), d)
        self._q = np.array(item_factors, dtype=np.float64).reshape(len(self._bi), d)
        self._h = np.array(output_weights, dtype=np.float64).reshape(d)
        self.index = index or build_index(
            self._index_form(self._bi, self._q), exact_below=params.exact_below
        )
        return self

    @property
    def n_users(self) -> int:
        """Users the model holds parameters for."""
        return int(self._bu.shape[0])

    @property
    def n_items(self) -> int:
        """Items the model holds parameters for."""
        return int(self._bi.shape[0])

    @property
    def global_mean(self) -> float:
        """``μ``, the global bias (initialised at the mean training rating, then trained)."""
        self._require_fit()
        return self._mean

    @property
    def user_bias(self) -> np.ndarray:
        """``b_u``, shape ``(n_users,)`` float64."""
        self._require_fit()
        return self._bu

    @property
    def item_bias(self) -> np.ndarray:
        """``b_i``, shape ``(n_items,)`` float64."""
        self._require_fit()
        return self._bi

    @property
    def user_factors(self) -> np.ndarray:
        """``P``, shape ``(n_users, factors)`` float64 (zero rows: users never trained)."""
        self._require_fit()
        return self._p

    @property
    def item_factors(self) -> np.ndarray:
        """``Q``, shape ``(n_items, factors)`` float64 (zero rows: items never trained)."""
        self._require_fit()
        return self._q

    @property
    def output_weights(self) -> np.ndarray:
        """``h``, the dense layer's kernel, shape ``(factors,)`` float64, unit norm."""
        self._require_fit()
        return self._h

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of pairs, clipped to the rating scale, shape ``(n,)`` float64.

        Unknown ids (outside ``[0, n)`` or never trained) are predicted without the
        interaction term, from ``μ`` and the known side's bias.
        """
        self._require_fit()
        u, i = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        if u.shape != i.shape or u.ndim != 1:
            raise ValueError(
                f"users and items must be 1-d of one length (got {u.shape}, {i.shape})"
            )
        ku, ki = trained_mask(u, self._bu, self._p), trained_mask(i, self._bi, self._q)
        su, si = np.where(ku, u, 0), np.where(ki, i, 0)
        both = ku & ki
        pred = self._mean + np.where(ku, self._bu[su] if self.n_users else 0.0, 0.0)
        pred += np.where(ki, self._bi[si] if self.n_items else 0.0, 0.0)
        if both.any():
            pred[both] += np.sum(self._p[u[both]] * self._h * self._q[i[both]], axis=1)
        return self._clip(pred)

    def rate(self, user_vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of some items per folded-in user, clipped to the rating scale.

        Args:
            user_vectors: ``[p_u, b_u]`` rows (:meth:`fold_in_users`), shape
                ``(n, factors + 1)``.
            items: item ids per user, shape ``(n, m)``; ``-1`` is padding. An item the model
                holds no parameters for is rated ``μ + b_u``, as :meth:`predict` does.

        Returns:
            ``(n, m)`` float64 ratings, NaN at padding.
        """
        self._require_fit()
        uv = self._width(np.atleast_2d(np.asarray(user_vectors, dtype=np.float64)), "user vectors")
        ids = np.asarray(items, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] != uv.shape[0]:
            raise ValueError(f"items must have shape ({uv.shape[0]}, m) (got {ids.shape})")
        d = self.params.factors
        pred = np.broadcast_to(self._mean + uv[:, d : d + 1], ids.shape).copy()
        known = (ids >= 0) & (ids < self.n_items)
        if known.any():
            safe = np.where(known, ids, 0)
            term = np.einsum("nf,nmf->nm", uv[:, :d] * self._h, self._q[safe]) + self._bi[safe]
            pred += np.where(known, term, 0.0)
        return np.where(ids >= 0, self._clip(pred), np.nan)

    def fold_in_users(self, ratings: sp.csr_matrix) -> np.ndarray:
        """Solve users exactly against the frozen items (one ridge each); stores nothing.

        Args:
            ratings: each row one user's FULL rating history, shape ``(n, any)``; columns
                beyond ``n_items`` are ignored.

        Returns:
            User vectors ``[p_u, b_u]``, shape ``(n, factors + 1)`` float32.

        Raises:
            InvalidRatingError: a stored value is NaN, infinite or off the rating scale.
        """
        return self._solve_users(ratings).astype(np.float32)

    def update_users(self, user_ids: np.ndarray, ratings: sp.csr_matrix) -> np.ndarray:
        """Re-solve users from their full histories and store them (ids past the end append;
        rows in between get zero parameters). Item parameters are untouched.

        Args:
            user_ids: int ids, shape ``(n,)``, one per row of ``ratings``.
            ratings: full histories, ``(n, any)`` CSR.

        Returns:
            The stored user vectors (as :meth:`fold_in_users`).
        """
        ids = self._ids(user_ids, ratings)
        vectors = self._solve_users(ratings)
        d = self.params.factors
        self._bu, self._p = grown(self._bu, ids), grown(self._p, ids)
        self._p[ids], self._bu[ids] = vectors[:, :d], vectors[:, d]
        return vectors.astype(np.float32)

    def fold_in_items(self, item_users: sp.csr_matrix, user_vectors: np.ndarray) -> np.ndarray:
        """Solve new items exactly against frozen users (one ridge each); stores nothing.

        Args:
            item_users: each row one item's ratings, columns index ``user_vectors``' rows.
            user_vectors: ``[p_u, b_u]`` rows, shape ``(m, factors + 1)``.

        Returns:
            Item vectors ``[q_i, b_i]``, shape ``(n, factors + 1)`` float32.
        """
        self._require_fit()
        users = self._width(np.asarray(user_vectors, dtype=np.float64), "user vectors")
        d = self.params.factors
        features = np.hstack([users[:, :d] * self._h, np.ones((len(users), 1))])
        offsets = self._mean + users[:, d]
        return self._solve(item_users, features, offsets).astype(np.float32)

    def add_items(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store items solved by :meth:`fold_in_items` and make them recommendable.

        Args:
            ids: item ids, shape ``(n,)`` (ids past the end grow the model).
            vectors: ``[q_i, b_i]`` rows, shape ``(n, factors + 1)``.
        """
        self._require_fit()
        assert self.index is not None
        ids = np.asarray(ids, dtype=np.int64)
        v = self._width(np.atleast_2d(np.asarray(vectors, dtype=np.float64)), "item vectors")
        if v.shape[0] != ids.shape[0]:
            raise ValueError(f"need one vector per id (got {ids.shape} ids, {v.shape} vectors)")
        d = self.params.factors
        self._bi, self._q = grown(self._bi, ids), grown(self._q, ids)
        self._q[ids], self._bi[ids] = v[:, :d], v[:, d]
        self.index.upsert(ids, self._index_form(self._bi[ids], self._q[ids]))

    def recommend(
        self, user_vectors: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by predicted rating for each user vector.

        Args:
            user_vectors: ``[p_u, b_u]`` rows, shape ``(n, factors + 1)``.
            k: results per user.
            exclude: per user, item ids never to return (what they have seen).

        Returns:
            ``(ids, ratings)``, each ``(n, k)``: int64 ids (-1 padding) and float32 predicted
            ratings clipped to the scale (-inf padding), best first.
        """
        self._require_fit()
        assert self.index is not None
        uv = self._width(np.atleast_2d(np.asarray(user_vectors, dtype=np.float32)), "user vectors")
        d = self.params.factors
        query = np.hstack([uv[:, :d], np.ones((len(uv), 1), dtype=np.float32)])
        ids, raw = self.index.search(query, k, exclude)
        with np.errstate(invalid="ignore"):  # -inf on padded slots
            rating = self._clip(self._mean + uv[:, d : d + 1].astype(np.float64) + raw)
        return ids, np.where(ids >= 0, rating, -np.inf).astype(np.float32)

    def because(self, ratings: sp.csr_matrix, ids: np.ndarray, n: int = 2) -> np.ndarray:
        """``(users, k, n)`` ids of the rated items that explain recommendations ``ids``:
        the user's ratings above ``μ`` whose items are closest (cosine of ``h ⊙ q``) to the
        recommended item, as :mod:`~streamrec.models.kernel_mf_because` does for KernelMF;
        each item at most once per recommendation, ``-1`` padding."""
        from streamrec.models.kernel_mf_because import liked_and_alike

        self._require_fit()
        rows = with_width(sp.csr_matrix(ratings), self.n_items)
        # liked_and_alike reads only item_factors and global_mean: the h-weighted view
        view = _WeightedItems(self._q * self._h, self._mean)
        return liked_and_alike(cast("KernelMF", view), rows, np.asarray(ids), n)

    def save(self, path: Path) -> None:
        """Write ``model.npz`` (parameters) and ``params.json`` into the folder ``path``."""
        self._require_fit()
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / "model.npz",
            global_bias=np.float64(self._mean),
            user_bias=self._bu,
            item_bias=self._bi,
            user_factors=self._p,
            item_factors=self._q,
            output_weights=self._h,
        )
        (path / "params.json").write_text(json.dumps(asdict(self.params)))
        assert self.index is not None
        save_index(self.index, path)

    @classmethod
    def load(cls, path: Path) -> GMF:
        """Read a model written by :meth:`save` (no pickle)."""
        params = GMFParams(**json.loads((path / "params.json").read_text()))
        with np.load(path / "model.npz", allow_pickle=False) as a:
            mean, arrays = float(a["global_bias"]), [a[n] for n in _ARRAYS]
        return cls.from_arrays(params, mean, *arrays, index=saved_index(path))

    def _solve_users(self, ratings: sp.csr_matrix) -> np.ndarray:
        self._require_fit()
        rows = with_width(sp.csr_matrix(ratings), self.n_items)
        features = np.hstack([self._q * self._h, np.ones((self.n_items, 1))])
        return self._solve(rows, features, self._mean + self._bi)

    def _solve(self, rows: sp.csr_matrix, features: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[vector, bias]`` of each row by :func:`ridge.solve_rows`, ``(n, factors + 1)``."""
        csr = with_width(sp.csr_matrix(rows, dtype=np.float64), len(features))
        p = self.params
        check_ratings(csr.data, p.min_rating, p.max_rating)
        penalty = np.append(np.full(p.factors, p.fold_in_penalty), p.reg_bias)
        return ridge.solve_rows(csr, features, offsets, penalty)

    def _index_form(self, bias: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.hstack([q * self._h, bias[:, None]]).astype(np.float32)

    def _width(self, vectors: np.ndarray, name: str) -> np.ndarray:
        return check_width(vectors, self.params.factors, name)

    def _clip(self, ratings: np.ndarray) -> np.ndarray:
        lo, hi = self.params.min_rating, self.params.max_rating
        return np.asarray(np.clip(ratings, lo, hi), dtype=np.float64)

    def _ids(self, ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        self._require_fit()
        out = np.asarray(ids, dtype=np.int64)
        if out.shape != (rows.shape[0],) or (out.size and out.min() < 0):
            raise ValueError(f"need {rows.shape[0]} ids ≥ 0, one per row (got shape {out.shape})")
        return out

    def _require_fit(self) -> None:
        if self.index is None:
            raise RuntimeError("the model is not trained: call fit_gmf() or GMF.load() first")


@dataclass(frozen=True)
class _WeightedItems:
    """What :func:`~streamrec.models.kernel_mf_because.liked_and_alike` reads of a model."""

    item_factors: np.ndarray
    global_mean: float
