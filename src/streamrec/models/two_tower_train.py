"""Training the two-tower model with TensorFlow Recommenders (the only TensorFlow in it).

Each training row is one (user, item) pair of the history matrix. The user tower pools the
user's history **without the target item** (``(S_u − w_ui x_i) / (T_u − w_ui)`` with
``S = H X`` one sparse product per step, ``T`` the pooling weight sums), so it learns to
predict an item from the others, as it will for a user it never saw. The item tower is the
item's embedding. The loss is TFRS's in-batch softmax ``Retrieval`` task, with the logQ
correction (each item's share of the pairs as its sampling probability: without it the
in-batch negatives over-punish popular items) and accidental hits removed. The result is
exported to :class:`~streamrec.models.two_tower.TwoTower` (numpy), which is what serves.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from streamrec.models import tf_runtime
from streamrec.models.two_tower import TwoTower, TwoTowerParams, pooling_weights

logger = logging.getLogger(__name__)


def fit_two_tower(
    train: sp.csr_matrix,
    params: TwoTowerParams | None = None,
    progress: tf_runtime.EpochProgress | None = None,
) -> TwoTower:
    """Train both towers on the pairs of ``train`` (users × items, raw weights).

    Args:
        train: the histories learned from; every nonzero is a training pair.
        params: hyper-parameters (default :class:`TwoTowerParams`).
        progress: called after each epoch.
    """
    params = params or TwoTowerParams()
    tf = tf_runtime.tensorflow()
    tf_runtime.seed(params.seed)
    model = _build(tf, tf_runtime.recommenders(), sp.csr_matrix(train), params)
    pairs = _pairs(sp.csr_matrix(train), params)
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
    logger.info("two-tower: %d pairs, %.1f s", len(pairs["item"]), time.perf_counter() - start)
    return TrainedTwoTower(
        params,
        model.history_embeddings.numpy(),
        model.dense.kernel.numpy(),
        model.dense.bias.numpy(),
        model.item_embedding.embeddings.numpy(),
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


def _build(tf: Any, tfrs: Any, train: sp.csr_matrix, params: TwoTowerParams) -> Any:
    """The Keras model (built here so that TensorFlow is imported only when training)."""
    w = pooling_weights(train, params.pooling).tocoo()
    order = np.lexsort((w.col, w.row))
    history = tf.sparse.SparseTensor(
        indices=np.stack([w.row[order], w.col[order]], axis=1).astype(np.int64),
        values=w.data[order].astype(np.float32),
        dense_shape=train.shape,
    )
    totals = tf.constant(np.asarray(w.tocsr().sum(axis=1)).ravel().astype(np.float32))
    n_items, dim = train.shape[1], params.dim

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

        def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
            queries = self.query(features["user"], features["item"], features["weight"])
            candidates = self.item_embedding(features["item"])
            return self.task(
                queries,
                candidates,
                candidate_sampling_probability=features["probability"] if params.logq else None,
                candidate_ids=features["item"],
                compute_metrics=False,
                compute_batch_metrics=False,
            )

    return Towers()
