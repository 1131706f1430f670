"""The models a worker serves: each keeps its active version and turns histories into entries.

:class:`ServedALS` serves implicit ALS from every interaction (plays, clicks, ratings as
weights); :class:`ServedKernelMF` serves the rating model from ratings only. Both load a
version only when the registry publishes a newer one, give items first seen after training
a vector from the users being served, and encode cache entries the same way
(:meth:`ServedModel.encode`). Model modules and numba (the compiled per-user kernels,
:mod:`~streamrec.models.kernels`) are imported when a version is first served. With
``settings.rerank`` set, :class:`ServedTwoTower` hands its top candidates to
:class:`ServedGMF` to re-order (:mod:`~streamrec.serving.reranking` links the two).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import redis
import scipy.sparse as sp

from streamrec import keys
from streamrec.models.als import ImplicitALS
from streamrec.models.sparse import with_width
from streamrec.settings import Settings
from streamrec.state.cache import Entry
from streamrec.state.encoding import NameTable
from streamrec.state.matrices import HistoryRows
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary

if TYPE_CHECKING:
    from streamrec.models.gmf import GMF
    from streamrec.models.kernel_mf import KernelMF
    from streamrec.models.two_tower import TwoTower

logger = logging.getLogger(__name__)


class Servable(Protocol):
    """What every served model offers: hyper-parameters, an artifact writer (for its
    trainer) and its item count."""

    @property
    def params(self) -> Any:
        """A dataclass of hyper-parameters."""
        ...

    @property
    def n_items(self) -> int:
        """Items the model knows."""
        ...

    def save(self, path: Path) -> None:
        """Write the model's files into the folder ``path``."""
        ...


M = TypeVar("M", bound=Servable)


class ServedModel(ABC, Generic[M]):
    """One model's active version and how it turns users' histories into cache entries.

    Args:
        connection: a redis-py client.
        settings: where the registry lives; ``top_k`` items per cached list.
        because: history items named per recommended item.
    """

    name: ClassVar[str]
    #: Whether only ratings change the model (its users are refreshed only after a rating).
    ratings_only: ClassVar[bool] = False

    def __init__(self, connection: redis.Redis, settings: Settings, because: int = 2) -> None:
        self.registry = ModelRegistry(connection, settings)
        self.item_vocab = Vocabulary(connection, "items")
        self.k = settings.top_k
        self.because = because
        self.model: M | None = None
        self.version: int | None = None
        self._names = NameTable(self.item_vocab.externals)  # read when first served

    def current(self) -> M | None:
        """The active model, reloaded if a newer version was published (None if untrained)."""
        return self.sync(self.registry.active_version(self.name))

    def sync(self, active: int | None) -> M | None:
        """The model for published version ``active``: reloaded when it is newer than the one
        held (None if never trained)."""
        if active is None:
            return None
        if self.version is None or active > self.version:
            version, folder = self.registry.active_folder(self.name)
            self.model = self.load(folder)
            self.version = version
            self.warm()
            logger.info("serving %s version %d", self.name, version)
        return self.model

    def warm(self) -> None:
        """Serve a one-item user once and drop the answer: the compiled kernels (models and
        entry encoding) load now, not in the first batch a worker serves."""
        model = self.model
        if model is not None and model.n_items:
            row = sp.csr_matrix(
                (np.ones(1, dtype=np.float32), ([0], [0])), shape=(1, model.n_items)
            )
            ids, scores, because = self.rank(row, [np.zeros(0, dtype=np.int64)])
            scores = np.where(ids >= 0, 0.0, scores)  # the kernel's path, whatever the scores
            self._names.encode(["warm"], self.name, self.version or 0, [0], ids, scores, because)

    def serve(self, model: M, version: int) -> None:
        """Use ``model`` as version ``version`` (a trainer that holds it skips the reload)."""
        self.model, self.version = model, version

    @abstractmethod
    def load(self, folder: Path) -> M:
        """Read a published version."""

    def add_new_items(self, rows: HistoryRows) -> int:
        """Give the items of ``rows`` first seen after training a vector, from these users
        (as serving does on the way); returns how many items the model knows now."""
        assert self.model is not None
        _add_new_items(self.model, self.source(rows))
        return int(self.model.n_items)

    @property
    def wants_ratings(self) -> bool:
        """Whether :meth:`rank` uses the users' ratings (a re-ranking stage does)."""
        return False

    def source(self, rows: HistoryRows) -> sp.csr_matrix:
        """The matrix of ``rows`` the model learns from: every interaction (additive
        weights plus ratings) unless the model learns from ratings only."""
        return rows.ratings if self.ratings_only else rows.matrix

    def rank(
        self,
        served: sp.csr_matrix,
        seen: list[np.ndarray],
        ratings: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k of users folded in from ``served`` (their rows of :meth:`source`, as wide as
        the model), never an item of ``seen``: ``(ids (n, k), scores (n, k), because
        (n, k, b))``, ``-1`` padding. The model folds users in (``fold_in_users``), ranks
        (``recommend``) and explains from the same rows (``because``). ``ratings``: the same
        users' ratings, for a re-ranking stage (:class:`ServedTwoTower`)."""
        model: Any = self.model
        assert model is not None
        ids, scores = model.recommend(model.fold_in_users(served), self.k, seen)
        return ids, scores, model.because(served, ids, self.because)

    def entries(self, rows: HistoryRows) -> list[Entry]:
        """Cache entries of the users in ``rows`` who have history the model can use (the
        others read the popular list). Items first seen after training get a vector from
        these users first."""
        model = self.model
        assert model is not None
        matrix = self.source(rows)
        _add_new_items(model, matrix)
        matrix = with_width(matrix, model.n_items)
        active = np.flatnonzero(np.diff(matrix.indptr) > 0)
        if len(active) == 0:
            return []
        every = len(active) == matrix.shape[0]
        served = matrix if every else matrix[active]
        history = rows.matrix if every else rows.matrix[active]  # all they played or rated
        seen = [
            history.indices[history.indptr[n] : history.indptr[n + 1]] for n in range(len(active))
        ]
        ratings = None
        if self.wants_ratings:  # sliced only for a model that re-ranks by them
            ratings = rows.ratings if every else rows.ratings[active]
        ids, scores, because = self.rank(served, seen, ratings)
        placed = np.any(ids >= 0, axis=1)  # users the model gave nothing read popular items
        if not placed.all():
            active, ids, scores, because = (a[placed] for a in (active, ids, scores, because))
        return self.encode(rows, active, ids, scores, because)

    def encode(
        self,
        rows: HistoryRows,
        active: np.ndarray,
        ids: np.ndarray,
        scores: np.ndarray,
        because: np.ndarray,
    ) -> list[Entry]:
        """Entries for rows ``active`` of ``rows`` from their top-k.

        Args:
            rows: the histories served.
            active: row numbers served, ``(n,)``.
            ids: recommended dense item ids per served row, ``(n, k)``, ``-1`` padding.
            scores: their scores, ``(n, k)``.
            because: ``(n, k, b)`` history item ids per recommendation, ``-1`` padding.
        """
        assert self.version is not None
        users = [rows.users[r] for r in active.tolist()]
        versions = rows.versions[active]
        encoded = self._names.encode(users, self.name, self.version, versions, ids, scores, because)
        return [
            (keys.recommendations_key(user, self.name), entry, user)
            for user, entry in zip(users, encoded, strict=True)
        ]


class ServedALS(ServedModel[ImplicitALS]):
    """Implicit ALS over every interaction; ``because`` is the exact score decomposition."""

    name = "als"

    def load(self, folder: Path) -> ImplicitALS:
        """Read a published version."""
        return ImplicitALS.load(folder)

    def rank(
        self,
        served: sp.csr_matrix,
        seen: list[np.ndarray],
        ratings: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact fold-in, top-k through the index, ``because`` from the same solve."""
        model = self.model
        assert model is not None
        systems = model.solve_users(served)
        ids, scores = model.recommend(systems.vectors, self.k, seen)
        # a user whose items all have zero factors (known to the vocabulary, never trained
        # on) solves to a zero vector: every score 0, no signal; they read the popular list
        ids[~np.any(systems.vectors != 0, axis=1)] = -1
        return ids, scores, model.because(systems, ids, self.because)


class ServedRatingModel(ServedModel[M]):
    """A rating model (KernelMF, GMF) over ratings only: users are folded in against the
    frozen items, scores are predicted ratings, and ``because`` names the user's ratings
    above the global mean whose items are closest (cosine) to the item."""

    ratings_only = True


class ServedKernelMF(ServedRatingModel["KernelMF"]):
    """KernelMF, folded in by SGD."""

    name = "kmf"

    def load(self, folder: Path) -> KernelMF:
        """Read a published version."""
        from streamrec.models.kernel_mf import KernelMF

        return KernelMF.load(folder)


class ServedGMF(ServedRatingModel["GMF"]):
    """GMF (trained with TensorFlow), folded in by an exact ridge solve in numpy; also the
    two-tower's optional re-ranking stage (:meth:`rerank`, ``settings.rerank``)."""

    name = "gmf"

    def __init__(self, connection: redis.Redis, settings: Settings, because: int = 2) -> None:
        super().__init__(connection, settings, because)
        self.discount = settings.rerank_discount

    def load(self, folder: Path) -> GMF:
        """Read a published version (numpy; TensorFlow is never imported)."""
        from streamrec.models.gmf import GMF

        return GMF.load(folder)

    def rerank(
        self, ratings: sp.csr_matrix, ids: np.ndarray, scores: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of candidates ``(ids, scores)`` (``(n, N)``, best first) re-ranked
        by the predicted ratings of the users whose ratings are ``ratings`` (``(n, any)``),
        :func:`~streamrec.models.rerank.rerank_by_gmf`; users without a rating GMF can use
        keep the candidates' order. Needs a version (:meth:`current`)."""
        from streamrec.models.rerank import rerank_by_gmf

        model = self.model
        assert model is not None
        vectors = model.fold_in_users(ratings)
        return rerank_by_gmf(ids, scores, model, vectors, k, self.discount)


class ServedTwoTower(ServedModel["TwoTower"]):
    """The two-tower retrieval model over every interaction, in numpy: a user's query is
    their pooled history through the user tower, so a new user is served at their first
    event; ``because`` names the history items with the largest share of the score."""

    name = "two-tower"

    def __init__(self, connection: redis.Redis, settings: Settings, because: int = 2) -> None:
        super().__init__(connection, settings, because)
        self.candidates = max(settings.rerank_candidates, self.k)
        self.reranker: ServedGMF | None = None
        self._sync_reranker = False

    def load(self, folder: Path) -> TwoTower:
        """Read a published version (the numpy export; TensorFlow is never imported)."""
        from streamrec.models.two_tower import TwoTower

        return TwoTower.load(folder)

    def rerank_with(self, reranker: ServedGMF, sync: bool) -> None:
        """Re-rank the top ``rerank_candidates`` of every list by ``reranker`` while it holds
        a version (before GMF is trained, lists keep the two-tower's order).

        Args:
            reranker: the served GMF.
            sync: reload it from the registry before each ranking; False when whoever
                serves both keeps it current (a worker's :class:`OnlineServing`).
        """
        self.reranker, self._sync_reranker = reranker, sync

    @property
    def wants_ratings(self) -> bool:
        """True with a re-ranking stage: it orders candidates by the users' ratings."""
        return self.reranker is not None

    def rank(
        self,
        served: sp.csr_matrix,
        seen: list[np.ndarray],
        ratings: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The two-tower's top-k, or its top candidates re-ranked by the re-ranker (given
        ``ratings``, once it holds a version); ``because`` from the two-tower either way."""
        model = self.model
        assert model is not None
        stage = self.reranker
        if stage is not None and self._sync_reranker:
            stage.current()
        weights = model.weights(served)  # once, for the queries and the explanations
        queries = model.queries(weights)
        if stage is None or stage.model is None or ratings is None:
            ids, scores = model.recommend(queries, self.k, seen)
        else:
            ids, scores = model.recommend(queries, self.candidates, seen)
            ids, scores = stage.rerank(ratings, ids, scores, self.k)
        return ids, scores, model.because_weighted(weights, ids, self.because)


def _add_new_items(model: Any, matrix: sp.csr_matrix) -> None:
    """Give items first seen after training a vector, from the users in ``matrix``.

    ``model`` is any served model (ALS, KernelMF, GMF, two-tower): each folds users
    in from rows of ``matrix`` and new items in from those users (``fold_in_items``,
    ``add_items``).
    """
    if matrix.shape[1] <= model.n_items:
        return
    known = with_width(matrix, model.n_items)
    fans = np.flatnonzero(np.diff(known.indptr) > 0)
    if len(fans) == 0:
        return
    user_vectors = model.fold_in_users(known[fans])
    item_users = sp.csr_matrix(matrix[fans][:, model.n_items :].T)
    new = np.flatnonzero(np.diff(item_users.indptr) > 0)
    if len(new):
        vectors = model.fold_in_items(item_users[new], user_vectors)
        model.add_items(new + model.n_items, vectors)
        logger.info("%s: folded in %d new items", model.name, len(new))
