"""Train a :class:`~streamrec.models.gmf.GMF` with TensorFlow Recommenders, export it to numpy.

A ``tfrs.Model`` with a ``tfrs.tasks.Ranking`` task (MSE loss, RMSE metric): user and item
``Embedding``\\ s, their element-wise product through ``Dense(1)``, whose bias is the global
bias ``μ`` (initialised at the mean rating) and whose kernel ``h`` is constrained to unit
norm, plus user and item biases. Unconstrained, ``h`` and the embeddings trade scale freely
and the L2 term drives the product to zero: the model collapses to its biases (≈ 0.95 RMSE
on ML-100K). The L2 terms are per rating, added to each example's squared error, so
:meth:`GMF.fold_in_users`' ridge solves the same objective.

With the defaults, on ML-100K's ``random_split(data, 0.2, seed=42)``: test RMSE 0.906,
MAE 0.711 (global mean 1.124; KernelMF 0.899), about 9 s of training on 2 busy cores; the
new-users protocol (:mod:`~streamrec.models.gmf_experiments`) folds users in at 1.003× the
RMSE of training with them.

Only trainers import this module; TensorFlow comes from :mod:`streamrec.models.tf_runtime`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from streamrec.models import tf_runtime
from streamrec.models.gmf import GMF
from streamrec.models.gmf_params import GMFParams
from streamrec.models.kernel_mf_params import check_ratings

logger = logging.getLogger(__name__)

#: Called with ``("train", epochs done, epochs)`` after every epoch.
Progress = Callable[[str, int, int], None]

#: Adam steps per ``tf.function`` call: amortises Python's per-step cost on small batches.
STEPS_PER_EXECUTION = 32


def fit_gmf(
    ratings: sp.csr_matrix, params: GMFParams | None = None, progress: Progress | None = None
) -> GMF:
    """Train GMF on a users × items CSR in which every stored entry (zeros too) is a rating.

    Args:
        ratings: ``(n_users, n_items)`` CSR of ratings.
        params: hyper-parameters (default :class:`GMFParams`); ``seed`` seeds Python, NumPy
            and TensorFlow (initial weights, shuffles).
        progress: called with ``("train", epochs done, epochs)`` after every epoch.

    Returns:
        The trained model in numpy form; users and items without a rating get zero rows.

    Raises:
        InvalidRatingError: a stored value is NaN, infinite or off the rating scale.
        ValueError: ``ratings`` holds no rating.
        ConfigError: TensorFlow Recommenders is not installed.
    """
    p = params or GMFParams()
    csr = sp.csr_matrix(ratings)
    values = check_ratings(csr.data, p.min_rating, p.max_rating)
    if values.size == 0:
        raise ValueError(f"no ratings to train GMF on (a {csr.shape} matrix with none stored)")
    users = np.repeat(np.arange(csr.shape[0], dtype=np.int32), np.diff(csr.indptr))
    items = csr.indices.astype(np.int32)
    mean = float(values.mean())
    tf, tfrs = tf_runtime.tensorflow(), tf_runtime.recommenders()
    tf_runtime.seed(p.seed)
    model = _model(tf, tfrs, p, csr.shape, mean)
    model.compile(optimizer=tf.keras.optimizers.Adam(p.lr), steps_per_execution=STEPS_PER_EXECUTION)
    # arrays, batched and shuffled by Keras each epoch: a per-rating tf.data shuffle took
    # six times as long per epoch
    data = {"user": users, "item": items, "rating": values.astype(np.float32)}
    start = time.perf_counter()

    def epoch_end(epoch: int, logs: dict[str, float] | None) -> None:
        rmse = (logs or {}).get("root_mean_squared_error", float("nan"))
        logger.debug(
            "gmf epoch %d/%d: train rmse %.4f (%.1f s)",
            epoch + 1,
            p.epochs,
            rmse,
            time.perf_counter() - start,
        )
        if progress is not None:
            progress("train", epoch + 1, p.epochs)

    history = model.fit(
        data,
        batch_size=p.batch_size,
        epochs=p.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[tf.keras.callbacks.LambdaCallback(on_epoch_end=epoch_end)],
    )
    rmse = history.history.get("root_mean_squared_error", [float("nan")])[-1]
    logger.info(
        "gmf: fit %d ratings of %d users × %d items, %d epochs in %.1f s: train rmse %.4f",
        values.size,
        *csr.shape,
        p.epochs,
        time.perf_counter() - start,
        rmse,
    )
    return _export(model, p, users, items, csr.shape)


def _model(tf: Any, tfrs: Any, p: GMFParams, shape: tuple[int, int], mean: float) -> Any:
    """The Keras model (a class made here: ``tfrs.Model`` exists only once TF is imported)."""
    layers, init = tf.keras.layers, tf.keras.initializers
    n_users, n_items = shape

    class GMFModel(tfrs.models.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.user_embedding = layers.Embedding(
                n_users, p.factors, embeddings_initializer=init.RandomNormal(0.0, p.init_sd, p.seed)
            )
            self.item_embedding = layers.Embedding(
                n_items,
                p.factors,
                embeddings_initializer=init.RandomNormal(0.0, p.init_sd, p.seed + 1),
            )
            self.user_bias = layers.Embedding(n_users, 1, embeddings_initializer="zeros")
            self.item_bias = layers.Embedding(n_items, 1, embeddings_initializer="zeros")
            self.output_layer = layers.Dense(
                1,
                kernel_constraint=tf.keras.constraints.UnitNorm(axis=0),
                bias_initializer=init.Constant(mean),
            )
            self.task = tfrs.tasks.Ranking(
                loss=tf.keras.losses.MeanSquaredError(),
                metrics=[tf.keras.metrics.RootMeanSquaredError()],
            )

        def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
            user, item = (
                self.user_embedding(features["user"]),
                self.item_embedding(features["item"]),
            )
            bu, bi = self.user_bias(features["user"]), self.item_bias(features["item"])
            predicted = self.output_layer(user * item) + bu + bi
            labels = tf.expand_dims(features["rating"], -1)
            # per example, so a user's penalty grows with their ratings (as in the fold-in)
            penalty = p.reg * tf.reduce_sum(tf.square(user) + tf.square(item), axis=1)
            penalty += p.reg_bias * tf.reduce_sum(tf.square(bu) + tf.square(bi), axis=1)
            return self.task(labels=labels, predictions=predicted) + tf.reduce_mean(penalty)

    return GMFModel()


def _export(
    model: Any, p: GMFParams, users: np.ndarray, items: np.ndarray, shape: tuple[int, int]
) -> GMF:
    """The trained weights as a numpy :class:`GMF`; rows never trained are zeroed."""
    kernel, bias = (w.numpy() for w in model.output_layer.weights)
    rated_users = np.bincount(users, minlength=shape[0]) > 0
    rated_items = np.bincount(items, minlength=shape[1]) > 0

    def table(layer: Any, rated: np.ndarray) -> np.ndarray:
        return np.where(rated[:, None], layer.embeddings.numpy().astype(np.float64), 0.0)

    return GMF.from_arrays(
        p,
        float(bias[0]),
        table(model.user_bias, rated_users)[:, 0],
        table(model.item_bias, rated_items)[:, 0],
        table(model.user_embedding, rated_users),
        table(model.item_embedding, rated_items),
        kernel[:, 0],
    )
