"""Implicit-feedback ALS (Hu, Koren & Volinsky) on top of ``implicit`` 0.7, with fold-in.

Raw interaction weights (play counts, summed event weights, ratings) become confidences
through ``confidence``: ``binary`` (every observed pair counts once) or ``log``
(``log1p(weight)``); ``implicit`` then multiplies by ``alpha``. The same transform is used
for training, fold-in and explanations, so a folded-in user is solved exactly as a trained
one would be against the same item factors.

Traps of ``implicit`` handled here: ``AlternatingLeastSquares`` is a factory (we build
``implicit.cpu.als.AlternatingLeastSquares`` directly, CPU only); inputs must be
``scipy.sparse.csr_matrix`` (not ``csr_array``); BLAS must run single-threaded (limited
once per process with threadpoolctl, after numpy and implicit are loaded: a limit set
before the BLAS library is loaded has no effect, and one set per call costs
milliseconds); ``recommend``'s padding with id 0 and its ``-3.4e38`` scores for filtered
items are avoided by ranking through our own item index.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_solve
from threadpoolctl import threadpool_limits

from streamrec.models.index.scann import build_index
from streamrec.models.index.scann_params import EXACT_BELOW
from streamrec.models.index.stored import (
    SIMILAR,
    Index,
    SimilarByCosine,
    build_similar_index,
    load_index,
    load_similar_index,
    save_index,
)

logger = logging.getLogger(__name__)

Confidence = Literal["binary", "log"]


@dataclass(frozen=True)
class UserSystems:
    """Users solved by :meth:`~streamrec.models.als.ImplicitALS.solve_users`.

    Attributes:
        confidence: the users' confidence rows (before ``alpha``), ``(n, n_items)`` CSR.
        lower: Cholesky factors of the normal-equation matrices ``A_u``,
            ``(n, factors, factors)`` float64 (lower triangles).
        vectors: the solved user vectors, ``(n, factors)`` float32.
    """

    confidence: sp.csr_matrix
    lower: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class ALSParams:
    """Hyper-parameters of :class:`ImplicitALS` (defaults: ``streamrec evaluate`` on ML-100K).

    Attributes:
        factors: latent dimensions.
        regularization: L2 weight λ (implicit adds λI, unscaled by the number of ratings).
        alpha: confidence scale: an observed pair has confidence ``alpha * transform(w)``.
        iterations: ALS sweeps.
        confidence: ``binary`` or ``log`` transform of raw weights.
        random_state: seed of the factor initialisation.
        num_threads: OpenMP threads of the solver (0 = all cores).
        exact_below: catalogues of fewer items are searched exactly; larger ones through a
            ScaNN index (:func:`~streamrec.models.index.build_index`).
    """

    factors: int = 32
    regularization: float = 20.0
    alpha: float = 5.0
    iterations: int = 15
    confidence: Confidence = "log"
    random_state: int = 42
    num_threads: int = 0
    exact_below: int = EXACT_BELOW


class ImplicitALS(SimilarByCosine):
    """ALS model: item factors learned by ``implicit``, users solved on demand.

    Args:
        params: hyper-parameters.
    """

    name = "als"

    def __init__(self, params: ALSParams | None = None) -> None:
        self.params = params or ALSParams()
        self._model: Any = None
        self.index: Index | None = None
        self.similar_index: Index | None = None
        self._yty_cache: np.ndarray | None = None
        self._yty_rows = 0
        self._y64_cache: np.ndarray | None = None

    @property
    def item_factors(self) -> np.ndarray:
        """Item factors, shape ``(n_items, factors)`` float32."""
        self._require_fit()
        return np.asarray(self._model.item_factors)

    @property
    def user_factors(self) -> np.ndarray:
        """User factors of the training users, shape ``(n_users, factors)`` float32."""
        self._require_fit()
        return np.asarray(self._model.user_factors)

    @property
    def n_items(self) -> int:
        """Items the model knows (rows of ``item_factors``)."""
        return int(self.item_factors.shape[0])

    def confidence(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        """Apply the confidence transform (before ``alpha``) to a CSR of raw weights."""
        out = sp.csr_matrix(weights, dtype=np.float32, copy=True)
        out.data = (
            np.ones_like(out.data)
            if self.params.confidence == "binary"
            else np.log1p(np.maximum(out.data, 0))
        )
        out.eliminate_zeros()
        return out

    def fit(self, user_items: sp.csr_matrix, *, show_progress: bool = False) -> ImplicitALS:
        """Train from a users × items CSR of raw weights (float; zeros are "not seen")."""

        model = _implicit_model(self.params)
        model.fit(self.confidence(user_items), show_progress=show_progress)
        self._model = model
        self.index = build_index(model.item_factors, exact_below=self.params.exact_below)
        self.similar_index = build_similar_index(model.item_factors, self.params.exact_below)
        return self

    def fold_in_users(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Solve user vectors exactly against the frozen item factors (with
        :meth:`solve_users`: the one fold-in path, for serving and evaluation alike).

        Args:
            user_items: one row per user holding the user's FULL history (raw weights), shape
                ``(n, n_items)``; items beyond the model's are ignored.

        Returns:
            User vectors, shape ``(n, factors)`` float32. Nothing is stored.
        """
        return self.solve_users(user_items).vectors

    def fold_in_items(self, item_users: sp.csr_matrix, user_vectors: np.ndarray) -> np.ndarray:
        """Solve vectors for items first seen after training, against fixed user vectors.

        Args:
            item_users: one row per new item, columns index ``user_vectors`` rows, raw weights.
            user_vectors: vectors of the users who interacted, shape ``(m, factors)``.

        Returns:
            Item vectors, shape ``(n, factors)`` float32.
        """
        self._require_fit()
        conf = self.confidence(item_users) * self.params.alpha
        x = np.asarray(user_vectors, dtype=np.float64)
        reg = self.params.regularization * np.eye(x.shape[1])
        xtx = x.T @ x
        out = np.zeros((conf.shape[0], x.shape[1]), dtype=np.float32)
        for row in range(conf.shape[0]):
            lo, hi = conf.indptr[row], conf.indptr[row + 1]
            users, c = conf.indices[lo:hi], conf.data[lo:hi].astype(np.float64)
            if len(users) == 0:
                continue
            xu = x[users]
            a = xtx + (xu.T * (c - 1.0)) @ xu + reg
            out[row] = np.linalg.solve(a, xu.T @ c)
        return out

    def add_items(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Make folded-in items recommendable (grows the item factors and the index)."""
        self._require_fit()
        assert self.index is not None
        self.index.upsert(ids, vectors)
        self.upsert_similar(ids, vectors)
        self._model.item_factors = self.index.vectors
        self._model._YtY = None  # implicit caches YᵀY; it must see the new rows

    def recommend(
        self, user_vectors: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user vector (see :meth:`ExactIndex.search`)."""
        self._require_fit()
        assert self.index is not None
        return self.index.search(user_vectors, k, exclude)

    def similar_items(self, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by cosine similarity of factors, the query item itself excluded
        (through the ``similar`` index: :meth:`SimilarByCosine.similar_items`)."""
        self._require_fit()
        return super().similar_items(item_ids, k)

    def contributions(
        self, history: sp.csr_matrix, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """How much each history item adds to the scores of ``items`` for one user.

        With ``A = YᵀY + Σ_j (c_j - 1) y_j y_jᵀ + λI`` the user's solved vector is
        ``x = A⁻¹ Σ_j c_j y_j``, so ``score_i = Σ_j c_j y_jᵀ A⁻¹ y_i``: each term is history
        item j's contribution to item i (the decomposition ``implicit``'s explain uses).

        Args:
            history: the user's full history, a ``(1, n_items)`` CSR of raw weights.
            items: item ids to explain, shape ``(k,)``.

        Returns:
            ``(history item ids (h,), contributions (h, k))``; column sums are the scores.
        """
        systems = self.solve_users(history)
        conf = systems.confidence
        hist = conf.indices[conf.indptr[0] : conf.indptr[1]].astype(np.int64)
        y = self._y64()
        z = cho_solve((systems.lower[0], True), y[np.asarray(items, dtype=np.int64)].T)
        c = conf.data[conf.indptr[0] : conf.indptr[1]].astype(np.float64) * self.params.alpha
        return hist, (y[hist] @ z) * c[:, None]

    def solve_users(self, user_items: sp.csr_matrix) -> UserSystems:
        """Fold users in like :meth:`fold_in_users`, keeping what :meth:`because` needs.

        Builds ``A_u = YᵀY + Σ_j (c_j - 1) y_j y_jᵀ + λI`` and ``b_u = Σ_j c_j y_j`` once per
        user and solves through its Cholesky factor (a compiled kernel,
        :func:`~streamrec.models.kernels.solve_cholesky`); :meth:`because` reuses the
        factors to explain the recommendations (the serving hot path).

        Args:
            user_items: full histories, ``(n, n_items)`` CSR of raw weights.
        """
        from streamrec.models.kernels import solve_cholesky

        conf = self._clip(user_items)
        lower, vectors = solve_cholesky(
            conf.indptr, conf.indices, conf.data, self._y64(), self._base(), self.params.alpha
        )
        return UserSystems(conf, lower, vectors.astype(np.float32))

    def because(self, systems: UserSystems, items: np.ndarray, n: int = 2) -> np.ndarray:
        """For each user and each recommended item, the ``n`` history items that contribute
        most to that item's score (see :meth:`contributions`).

        Args:
            systems: from :meth:`solve_users`.
            items: recommended ids per user, ``(users, k)``; ``-1`` slots are skipped.
            n: history items per recommended item.

        Returns:
            ``(users, k, n)`` int64 history item ids, strongest first; ``-1`` where there
            are fewer than ``n`` history items or the slot is empty.
        """
        from streamrec.models.kernels import als_because

        conf = systems.confidence
        items = np.ascontiguousarray(items, dtype=np.int64)
        if conf.shape[0] == 0 or n == 0:
            return np.full((*items.shape, n), -1, dtype=np.int64)
        return als_because(
            conf.indptr, conf.indices, conf.data, self._y64(), systems.lower,
            self.params.alpha, items, n,
        )  # fmt: skip

    def explain(self, history: sp.csr_matrix, item: int, n: int = 5) -> list[tuple[int, float]]:
        """The history items that contributed most to ``item``'s score for this user.

        Args:
            history: the user's full history as a ``(1, n_items)`` CSR of raw weights.
            item: the recommended item.
            n: contributions to return.

        Returns:
            ``(item id, contribution)`` pairs, largest first; over the whole history they
            sum to ``item``'s score for the user solved from ``history``.
        """
        hist, contrib = self.contributions(history, np.array([item]))
        order = np.argsort(-contrib[:, 0])[:n]
        return [(int(hist[j]), float(contrib[j, 0])) for j in order]

    def _y64(self) -> np.ndarray:
        if self._y64_cache is None or self._y64_cache.shape[0] != self.n_items:
            self._y64_cache = self.item_factors.astype(np.float64)
        return self._y64_cache

    def _yty(self) -> np.ndarray:
        if self._yty_cache is None or self._yty_rows != self.n_items:  # new items change YᵀY
            y = self._y64()
            self._yty_cache, self._yty_rows = y.T @ y, self.n_items
        return self._yty_cache

    def _base(self) -> np.ndarray:
        """``YᵀY + λI``, float64."""
        yty = self._yty()
        base: np.ndarray = yty + self.params.regularization * np.eye(yty.shape[0])
        return base

    def save(self, path: Path) -> None:
        """Write ``model.npz`` (factors) and ``params.json`` into the folder ``path``."""
        self._require_fit()
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "model.npz", item_factors=self.item_factors, user_factors=self.user_factors)
        (path / "params.json").write_text(json.dumps(asdict(self.params)))
        assert self.index is not None and self.similar_index is not None
        save_index(self.index, path)
        save_index(self.similar_index, path, SIMILAR)

    @classmethod
    def load(cls, path: Path) -> ImplicitALS:
        """Read a model written by :meth:`save` (no pickle)."""

        params = ALSParams(**json.loads((path / "params.json").read_text()))
        with np.load(path / "model.npz", allow_pickle=False) as arrays:
            item_factors, user_factors = arrays["item_factors"], arrays["user_factors"]
        self = cls(params)
        model = _implicit_model(params)
        model.item_factors, model.user_factors = item_factors, user_factors
        self._model = model
        self.index = load_index(item_factors, path, params.exact_below)
        self.similar_index = load_similar_index(item_factors, path, params.exact_below)
        return self

    def _clip(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        self._require_fit()
        rows = sp.csr_matrix(user_items, dtype=np.float32)
        if rows.shape[1] != self.n_items:
            rows = (
                sp.csr_matrix(rows[:, : self.n_items])
                if rows.shape[1] > self.n_items
                else sp.csr_matrix(
                    (rows.data, rows.indices, rows.indptr), shape=(rows.shape[0], self.n_items)
                )
            )
        return self.confidence(rows)

    def _require_fit(self) -> None:
        if self._model is None:
            raise RuntimeError("the model is not trained: call fit() or load() first")


def _implicit_model(params: ALSParams) -> Any:
    """``implicit``'s CPU ALS for these parameters (the factory would pick a GPU if any)."""
    from implicit.cpu.als import AlternatingLeastSquares

    single_threaded_blas()
    return AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.random_state,
        num_threads=params.num_threads,
    )


_blas_limited = False


def single_threaded_blas() -> None:
    """Limit BLAS to one thread for this process (``implicit`` warns and slows down otherwise)."""
    global _blas_limited
    if not _blas_limited:
        import implicit.cpu.als  # noqa: F401 - load its BLAS before limiting it

        threadpool_limits(1, "blas")
        _blas_limited = True
