"""The two-tower retrieval model in its served form: numpy only, no TensorFlow.

Item tower: a vector per item, its id embedding plus the mean of its features' embeddings
(tags and name words, :mod:`streamrec.data.item_features`; an item with none has the id
part only), precomputed. User tower: the user's history pooled, then one dense layer::

    e_i      = v_i + Σ_f∈F(i) t_f / |F(i)|    (v: item id embeddings, t: feature embeddings)
    pooled_u = Σ_h w_uh x_h / Σ_h w_uh        (x: history embeddings, w: pooling weights)
    q_u      = pooled_u W + b                 (the query)
    score_ui = q_u · e_i                      (e: item vectors)

The tower is linear in the history, so a brand-new user's query is computed from their
plays exactly as for a trained user (no retraining, no TensorFlow), and a score splits
exactly into the share of each history item: ``w_uh / Σw · (x_h W) · e_i`` plus the bias
term ``b · e_i``; :meth:`TwoTower.because` names the largest shares. The trainer
(:mod:`streamrec.models.two_tower_train`, TensorFlow Recommenders) learns ``x``, ``W``,
``b``, ``v`` and ``t``; the model keeps ``t`` and its feature vocabulary, so an item it
never learned gets a vector from its features alone (:meth:`TwoTower.feature_vectors`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ConfigError
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
from streamrec.models.sparse import with_width

Pooling = Literal["binary", "log"]
Optimizer = Literal["adam", "adagrad"]


@dataclass(frozen=True)
class TwoTowerParams:
    """Hyper-parameters of the two-tower model (defaults: ML-100K, see the README).

    Attributes:
        dim: embedding dimensions of both towers.
        epochs: passes over the training pairs.
        batch_size: pairs per step (the other pairs of a batch are the negatives).
        lr: learning rate.
        optimizer: ``adam`` or ``adagrad`` (the TFRS tutorials' choice).
        temperature: softmax temperature of the retrieval loss.
        logq: correct the in-batch softmax for item popularity (logQ correction).
        pooling: weight of a history item in the pooled history: ``binary`` (1) or ``log``
            (``log1p`` of its raw weight).
        item_features: add the mean embedding of an item's features (tags, name words) to
            its id embedding in the item tower, when the items have features.
        feature_min_count: a feature is embedded when at least this many items have it.
        seed: seed of initialisation and shuffling.
        exact_below: catalogues of fewer items are searched exactly; larger ones through a
            ScaNN index (:func:`~streamrec.models.index.build_index`).
    """

    dim: int = 64
    epochs: int = 5
    batch_size: int = 1024
    lr: float = 0.003
    optimizer: Optimizer = "adam"
    temperature: float = 0.1
    logq: bool = True
    pooling: Pooling = "binary"
    item_features: bool = True
    feature_min_count: int = 2
    seed: int = 42
    exact_below: int = EXACT_BELOW

    def __post_init__(self) -> None:
        for name in ("dim", "epochs", "batch_size", "feature_min_count"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)!r})")
        for name in ("lr", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be positive (got {getattr(self, name)!r})")
        if self.optimizer not in ("adam", "adagrad"):
            raise ConfigError(f"optimizer must be 'adam' or 'adagrad' (got {self.optimizer!r})")
        if self.pooling not in ("binary", "log"):
            raise ConfigError(f"pooling must be 'binary' or 'log' (got {self.pooling!r})")


def feature_vocabulary(features: Sequence[Sequence[str]], min_count: int) -> tuple[str, ...]:
    """The features at least ``min_count`` items have (``features``: one sequence per
    item), sorted."""
    counts = Counter(f for item in features for f in set(item))
    return tuple(sorted(f for f, n in counts.items() if n >= min_count))


def feature_matrix(features: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> sp.csr_matrix:
    """Mean pooling of feature embeddings as a matrix: ``(len(features), len(vocabulary))``
    float32 CSR whose row ``i`` holds ``1 / k`` at the ``k`` features of item ``i`` in the
    vocabulary (others are ignored); an item with none has an empty row."""
    column = {f: n for n, f in enumerate(vocabulary)}
    indptr, indices = [0], []
    for item in features:
        indices += sorted({column[f] for f in item if f in column})
        indptr.append(len(indices))
    counts = np.diff(indptr)
    data = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
    shape = (len(features), len(vocabulary))
    return sp.csr_matrix((data, np.asarray(indices, dtype=np.int32), indptr), shape=shape)


def pooling_weights(rows: sp.csr_matrix, pooling: Pooling) -> sp.csr_matrix:
    """Rows of raw weights as pooling weights (``binary``: 1 each; ``log``: ``log1p``)."""
    out = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    out.data = np.ones_like(out.data) if pooling == "binary" else np.log1p(np.abs(out.data))
    return out


class TwoTower(SimilarByCosine):
    """A trained two-tower model, served in numpy.

    Args:
        params: the hyper-parameters it was trained with.
        history: history embeddings ``x``, ``(n_items, dim)``.
        projection: ``W``, ``(dim, dim)``.
        bias: ``b``, ``(dim,)``.
        items: item vectors ``e``, ``(n_items, dim)`` (feature part included).
        trained_items: items the towers learned (later ones were folded in).
        features: the feature vocabulary of the item tower (empty: ids only).
        feature_embeddings: ``t``, ``(len(features), dim)``.
        index: an index over ``items`` already built (a saved one); default: built here.
        similar_index: the ``similar`` index over ``items``' unit rows already built (a
            saved one); default: built here.
    """

    name = "two-tower"

    def __init__(
        self,
        params: TwoTowerParams,
        history: np.ndarray,
        projection: np.ndarray,
        bias: np.ndarray,
        items: np.ndarray,
        trained_items: int | None = None,
        features: Sequence[str] = (),
        feature_embeddings: np.ndarray | None = None,
        index: Index | None = None,
        similar_index: Index | None = None,
    ) -> None:
        self.params = params
        self.features = tuple(features)
        dim = np.shape(items)[1]
        if feature_embeddings is None:
            feature_embeddings = np.zeros((len(self.features), dim), dtype=np.float32)
        self.feature_embeddings = np.ascontiguousarray(feature_embeddings, dtype=np.float32)
        if self.feature_embeddings.shape != (len(self.features), dim):
            raise ValueError(
                f"feature_embeddings must be ({len(self.features)}, {dim}), one row per "
                f"feature (got {self.feature_embeddings.shape})"
            )
        self.history = np.ascontiguousarray(history, dtype=np.float32)
        self.projection = np.ascontiguousarray(projection, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.index: Index = (
            index if index is not None else build_index(items, exact_below=params.exact_below)
        )
        self.similar_index: Index = (
            similar_index
            if similar_index is not None
            else build_similar_index(items, params.exact_below)
        )
        self.trained_items = len(items) if trained_items is None else trained_items
        # x_h W for every item: a history item's contribution to the query, precomputed
        self._projected = self.history @ self.projection

    @property
    def n_items(self) -> int:
        """Items the model knows (trained and folded in)."""
        return self.index.n_items

    @property
    def item_vectors(self) -> np.ndarray:
        """The item tower's vectors ``e``."""
        return self.index.vectors

    def weights(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """Pooling weights of ``rows`` (raw weights, any width), normalised to sum 1 per user
        over the items the user tower knows (other items weigh 0); a row without such
        items is all zero. Built from the CSR arrays directly: this is the serving path."""
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != self.n_items:
            rows = with_width(rows, self.n_items)
        n = rows.shape[0]
        if self.params.pooling == "binary":
            w = np.ones(rows.nnz, dtype=np.float32)
        else:
            w = np.log1p(np.abs(rows.data)).astype(np.float32)
        w[rows.indices >= self.trained_items] = 0
        owner = np.repeat(np.arange(n), np.diff(rows.indptr))
        totals = np.bincount(owner, weights=w, minlength=n)
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        w *= scale[owner].astype(np.float32)
        return sp.csr_matrix((w, rows.indices, rows.indptr), shape=(n, self.n_items))

    def fold_in_users(self, rows: sp.csr_matrix) -> np.ndarray:
        """Query vectors of users from their histories (raw weights), ``(n, dim)``; a user
        with no item the user tower knows gets a zero vector."""
        return self.queries(self.weights(rows))

    def queries(self, w: sp.csr_matrix) -> np.ndarray:
        """Query vectors from pooling weights (:meth:`weights`), ``(n, dim)``."""
        queries = np.asarray(w @ self._projected, dtype=np.float32) + self.bias
        queries[np.asarray(w.sum(axis=1)).ravel() == 0] = 0
        return queries

    def recommend(
        self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query (see :meth:`ExactIndex.search`); zero queries get none."""
        ids, scores = self.index.search(queries, k, exclude)
        ids[~np.any(np.atleast_2d(queries) != 0, axis=1)] = -1
        return ids, scores

    def because(self, rows: sp.csr_matrix, ids: np.ndarray, n: int = 2) -> np.ndarray:
        """Per user and recommended item, the ``n`` history items with the largest share of
        the item's score, ``(users, k, n)``, ``-1`` padding."""
        return self.because_weighted(self.weights(rows), ids, n)

    def because_weighted(self, w: sp.csr_matrix, ids: np.ndarray, n: int = 2) -> np.ndarray:
        """:meth:`because` from pooling weights (:meth:`weights`) computed once for the
        queries and the explanations (the serving path)."""
        from streamrec.models.kernels import dot_because

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if n == 0 or w.nnz == 0:
            return np.full((*ids.shape, n), -1, dtype=np.int64)
        # share_ji = w_j (x_j W) · e_i: history slot j's part of item i's score
        return dot_because(w.indptr, w.indices, w.data, self._projected, self.item_vectors, ids, n)

    def explain(self, history: sp.csr_matrix, item: int, n: int = 5) -> list[tuple[int, float]]:
        """The ``n`` history items with the largest share of ``item``'s score for the user
        whose full history (a ``(1, n_items)`` CSR of raw weights) is ``history``; the shares
        and the bias term ``b · e_item`` sum to the score."""
        w = self.weights(history)
        known = w.data > 0
        hist = w.indices[known].astype(np.int64)
        shares = w.data[known] * (self._projected[hist] @ self.item_vectors[item])
        order = np.argsort(-shares, kind="stable")[:n]
        return [(int(hist[j]), float(shares[j])) for j in order]

    def similar_items(self, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by cosine similarity of item vectors, the query item excluded
        (through the ``similar`` index: :meth:`SimilarByCosine.similar_items`)."""
        return super().similar_items(item_ids, k)

    def fold_in_items(self, item_users: sp.csr_matrix, user_vectors: np.ndarray) -> np.ndarray:
        """Vectors for items first seen after training: the mean query of the users who
        have them, scaled to the trained items' mean norm (so they rank among those items
        for users like their fans)."""
        fans = sp.csr_matrix(item_users, dtype=np.float32)
        fans.data = np.ones_like(fans.data)
        counts = np.asarray(fans.sum(axis=1)).ravel()
        mean = np.asarray(fans @ user_vectors) / np.maximum(counts, 1)[:, None]
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        trained = self.item_vectors[: self.trained_items]
        target = float(np.linalg.norm(trained, axis=1).mean()) if len(trained) else 1.0
        out = np.zeros(mean.shape, dtype=np.float32)
        np.divide(mean * target, norms, out=out, where=norms > 0, casting="unsafe")
        return out

    def feature_vectors(self, features: Sequence[Sequence[str]]) -> np.ndarray:
        """Item-tower vectors of items from their features alone (the mean embedding of
        those in the model's vocabulary), ``(len(features), dim)`` float32; an item with
        none of them gets a zero vector. For items the towers never learned (their id
        part is unknown): give them to :meth:`add_items`."""
        return np.asarray(
            feature_matrix(features, self.features) @ self.feature_embeddings, dtype=np.float32
        )

    def add_items(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Give items ``ids`` (at or beyond the known ones) the item vectors ``vectors``;
        their history embeddings stay zero until the next training."""
        ids = np.asarray(ids, dtype=np.int64)
        size = max(self.n_items, int(ids.max(initial=-1)) + 1)
        grown = np.zeros((size, self.history.shape[1]), dtype=np.float32)
        grown[: len(self.history)] = self.history
        self.history = grown
        self._projected = self.history @ self.projection
        self.index.upsert(ids, np.asarray(vectors, dtype=np.float32))
        self.upsert_similar(ids, vectors)

    def save(self, path: Path) -> None:
        """Write ``model.npz`` (the towers) and ``params.json`` into the folder ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / "model.npz",
            history=self.history,
            projection=self.projection,
            bias=self.bias,
            items=self.item_vectors,
            trained_items=np.int64(self.trained_items),
            features=np.array(self.features, dtype=np.str_),
            feature_embeddings=self.feature_embeddings,
        )
        (path / "params.json").write_text(json.dumps(asdict(self.params)))
        save_index(self.index, path)
        save_index(self.similar_index, path, SIMILAR)

    @classmethod
    def load(cls, path: Path) -> TwoTower:
        """Read a model written by :meth:`save` (no pickle; a model saved before item
        features has none)."""
        params = TwoTowerParams(**json.loads((path / "params.json").read_text()))
        with np.load(path / "model.npz", allow_pickle=False) as a:
            features = a["features"].tolist() if "features" in a.files else []
            return cls(
                params,
                a["history"],
                a["projection"],
                a["bias"],
                a["items"],
                int(a["trained_items"]),
                features,
                a["feature_embeddings"] if "feature_embeddings" in a.files else None,
                index=load_index(a["items"], path, params.exact_below),
                similar_index=load_similar_index(a["items"], path, params.exact_below),
            )
