"""Training the two-tower model with TensorFlow Recommenders (the only TensorFlow in it).

Each training row is one (user, item) pair of the history matrix. The user tower pools the
user's history **without the target item** (``(S_u − w_ui x_i) / (T_u − w_ui)`` with
``S = H X`` one sparse product per step, ``T`` the pooling weight sums), so it learns to
predict an item from the others, as it will for a user it never saw. The item tower is the
item's id embedding plus the mean embedding of its features (tags, name words: those at
least ``feature_min_count`` items have; one sparse product ``F T`` per step, ``F`` the
mean-pooling matrix of :func:`~streamrec.models.two_tower.feature_matrix`), or the id
embedding alone when ``item_features`` is off or no item has such a feature. The loss is
TFRS's in-batch softmax ``Retrieval`` task, with the logQ correction (each item's share of
the pairs as its sampling probability: without it the in-batch negatives over-punish
popular items) and accidental hits removed. The result is exported to
:class:`~streamrec.models.two_tower.TwoTower` (numpy, the item vectors precomputed), which
is what serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from streamrec.models import tf_runtime
from streamrec.models.two_tower import (
    TwoTower,
    TwoTowerParams,
    feature_matrix,
    feature_vocabulary,
    pooling_weights,
)

logger = logging.getLogger(__name__)


def fit_two_tower(
    train: sp.csr_matrix,
    params: TwoTowerParams | None = None,
    progress: tf_runtime.EpochProgress | None = None,
    item_features: Sequence[Sequence[str]] | None = None,
) -> TwoTower:
    """Train both towers on the pairs of ``train`` (users × items, raw weights).

    Args:
        train: the histories learned from; every nonzero is a training pair.
        params: hyper-parameters (default :class:`TwoTowerParams`).
        progress: called after each epoch.
        item_features: per item column of ``train``, its features
            (:mod:`streamrec.data.item_features`); None: ids only.

    Raises:
        ValueError: ``item_features`` does not have one entry per item column.
    """
    params = params or TwoTowerParams()
    train = sp.csr_matrix(train)
    if item_features is not None and len(item_features) != train.shape[1]:
        raise ValueError(
            f"item_features must have one entry per item column of train, {train.shape[1]} "
            f"(got {len(item_features)})"
        )
    vocabulary: tuple[str, ...] = ()
    if params.item_features and item_features is not None:
        vocabulary = feature_vocabulary(item_features, params.feature_min_count)
    pooling = feature_matrix(item_features, vocabulary) if vocabulary and item_features else None
    tf = tf_runtime.tensorflow()
    tf_runtime.seed(params.seed)
    model = _build(tf, tf_runtime.recommenders(), train, params, pooling)
    pairs = _pairs(train, params)
    data = (
        tf.data.Dataset.from_tensor_slices(pairs)
        .shuffle(len(pairs["item"]), seed=params.seed, reshuffle_each_iteration=True)
        .batch(params.batch_size)
        .prefetch(2)
    )
    optimizers = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad}
    model.compile(optimizer=optimizers[params.optimizer](learning_rate=params.lr))
    callbacks = [tf_runtime.epoch_callback(progress, params.epochs)] if progress is not None else []
    start = time.perf_counter()
    model.fit(data, epochs=params.epochs, verbose=0, callbacks=callbacks)
    logger.info(
        "two-tower: %d pairs, %d item features, %.1f s",
        len(pairs["item"]),
        len(vocabulary),
        time.perf_counter() - start,
    )
    items = model.item_embedding.embeddings.numpy()
    embedded = model.feature_embeddings.numpy() if pooling is not None else None
    if pooling is not None:
        items = items + np.asarray(pooling @ embedded, dtype=np.float32)
    return TrainedTwoTower(
        params,
        model.history_embeddings.numpy(),
        model.dense.kernel.numpy(),
        model.dense.bias.numpy(),
        items,
        features=vocabulary,
        feature_embeddings=embedded,
    )


class TrainedTwoTower(TwoTower):
    """A freshly trained model: :meth:`save` also writes a TensorFlow SavedModel."""

    def save(self, path: Path) -> None:
        """The numpy export (what workers load), plus ``saved_model/`` for TF Serving: its
        ``query`` and ``recommend`` signatures take a batch of histories as dense item ids
        (``-1`` padding) and raw weights, and ``recommend`` returns the top
        :data:`SAVED_TOP_K` dense item ids and scores (TFRS ``BruteForce``, nothing
        filtered); ``streamrec:vocab:items:reverse`` maps ids to items."""
        super().save(path)
        save_tf_model(self, path / "saved_model")


#: Items the SavedModel's ``recommend`` signature returns.
SAVED_TOP_K = 100


def save_tf_model(model: TwoTower, path: Path) -> None:
    """Write ``model``'s user tower and a brute-force index as a SavedModel at ``path``."""
    tf, tfrs = tf_runtime.tensorflow(), tf_runtime.recommenders()
    history = tf.constant(model.history)
    kernel, bias = tf.constant(model.projection), tf.constant(model.bias)
    index = tfrs.layers.factorized_top_k.BruteForce(k=min(SAVED_TOP_K, model.n_items))
    index.index(tf.constant(model.item_vectors))
    binary = model.params.pooling == "binary"
    spec = [tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.float32)]

    class UserTower(tf.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.index = index

        @tf.function(input_signature=spec)  # type: ignore[untyped-decorator]
        def query(self, items: Any, weights: Any) -> Any:
            known = (items >= 0) & (items < model.trained_items)
            w = tf.where(known, tf.ones_like(weights) if binary else tf.math.log1p(weights), 0.0)
            x = tf.gather(history, tf.where(known, items, 0))
            total = tf.reduce_sum(w, axis=1, keepdims=True)
            pooled = tf.reduce_sum(w[..., None] * x, axis=1) / tf.maximum(total, 1e-12)
            return tf.where(total > 0, tf.matmul(pooled, kernel) + bias, 0.0)

        @tf.function(input_signature=spec)  # type: ignore[untyped-decorator]
        def recommend(self, items: Any, weights: Any) -> Any:
            scores, ids = self.index(self.query(items, weights))
            return {"items": ids, "scores": scores}

    tower = UserTower()
    tf.saved_model.save(
        tower, str(path), signatures={"query": tower.query, "recommend": tower.recommend}
    )


def _pairs(train: sp.csr_matrix, params: TwoTowerParams) -> dict[str, np.ndarray]:
    """One row per nonzero: user, item, the pair's pooling weight and the item's share."""
    w = pooling_weights(train, params.pooling).tocoo()
    counts = np.bincount(w.col, minlength=train.shape[1]).astype(np.float64)
    share = counts / max(len(w.col), 1)
    return {
        "user": w.row.astype(np.int64),
        "item": w.col.astype(np.int64),
        "weight": w.data.astype(np.float32),
        "probability": share[w.col].astype(np.float32),
    }


def _build(
    tf: Any,
    tfrs: Any,
    train: sp.csr_matrix,
    params: TwoTowerParams,
    pooling: sp.csr_matrix | None,
) -> Any:
    """The Keras model (built here so that TensorFlow is imported only when training);
    ``pooling``: the items' feature mean-pooling matrix, or None for ids only."""
    w = pooling_weights(train, params.pooling).tocoo()
    order = np.lexsort((w.col, w.row))
    history = tf.sparse.SparseTensor(
        indices=np.stack([w.row[order], w.col[order]], axis=1).astype(np.int64),
        values=w.data[order].astype(np.float32),
        dense_shape=train.shape,
    )
    totals = tf.constant(np.asarray(w.tocsr().sum(axis=1)).ravel().astype(np.float32))
    n_items, dim = train.shape[1], params.dim
    mean_of_features = None
    if pooling is not None:
        p = pooling.tocoo()
        mean_of_features = tf.sparse.SparseTensor(
            indices=np.stack([p.row, p.col], axis=1).astype(np.int64),
            values=p.data.astype(np.float32),
            dense_shape=pooling.shape,
        )

    class Towers(tfrs.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            init = tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=params.seed)
            self.history_embeddings = tf.Variable(init((n_items, dim)), name="history")
            self.dense = tf.keras.layers.Dense(dim, name="projection")
            self.item_embedding = tf.keras.layers.Embedding(
                n_items, dim, embeddings_initializer=tf.keras.initializers.RandomUniform(
                    -0.05, 0.05, seed=params.seed + 1
                ), name="items",
            )  # fmt: skip
            if pooling is not None:
                self.feature_embeddings = tf.Variable(
                    tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=params.seed + 2)(
                        (pooling.shape[1], dim)
                    ),
                    name="features",
                )
            self.task = tfrs.tasks.Retrieval(
                temperature=params.temperature, remove_accidental_hits=True
            )

        def query(self, users: Any, items: Any, weights: Any) -> Any:
            """Queries of ``users`` from their histories without ``items`` (the targets)."""
            summed = tf.gather(
                tf.sparse.sparse_dense_matmul(history, self.history_embeddings), users
            )
            rest = tf.gather(totals, users) - weights
            pooled = summed - weights[:, None] * tf.gather(self.history_embeddings, items)
            pooled = tf.where(rest[:, None] > 1e-6, pooled / tf.maximum(rest, 1e-6)[:, None], 0.0)
            return self.dense(pooled)

        def candidates(self, items: Any) -> Any:
            """Item-tower vectors of ``items``: id embedding (+ mean feature embedding)."""
            vectors = self.item_embedding(items)
            if mean_of_features is None:
                return vectors
            pooled = tf.sparse.sparse_dense_matmul(mean_of_features, self.feature_embeddings)
            return vectors + tf.gather(pooled, items)

        def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
            queries = self.query(features["user"], features["item"], features["weight"])
            candidates = self.candidates(features["item"])
            return self.task(
                queries,
                candidates,
                candidate_sampling_probability=features["probability"] if params.logq else None,
                candidate_ids=features["item"],
                compute_metrics=False,
                compute_batch_metrics=False,
            )

    return Towers()
