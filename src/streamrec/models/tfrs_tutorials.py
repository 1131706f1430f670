"""The two TensorFlow Recommenders tutorial retrieval models, fed from streamrec's data.

Baselines for streamrec's own two-tower model: the TFRS quickstart
(https://www.tensorflow.org/recommenders/examples/quickstart) and the basic retrieval
tutorial (https://www.tensorflow.org/recommenders/examples/basic_retrieval), with the
tutorials' settings as defaults:

* towers: an id lookup + ``Embedding(n + 1, d)``; d = 64 (quickstart), 32 (basic retrieval);
* user vocabulary: the users of the training rows (quickstart: the lookup is adapted on the
  training ratings), every user (basic retrieval: the ids of all ratings);
* item vocabulary: every item (both: the movies table);
* optimizer: ``Adagrad(0.5)`` (quickstart), ``Adagrad(learning_rate=0.1)`` (basic retrieval);
* batch size and epochs: 4096 and 3 (quickstart), 8192 and 3 (basic retrieval; its
  evaluation batches hold 4096 rows).

Both: a lookup with ``mask_token=None`` and one OOV index (0), so an id outside the
vocabulary shares one untrained embedding row; ``tfrs.tasks.Retrieval`` with its default
in-batch softmax loss (``CategoricalCrossentropy(from_logits=True)``, summed over the
batch); ``FactorizedTopK`` over every item, candidates embedded 128 at a time. The
tutorials' string ids (user-id strings, movie titles) become streamrec's dense integer ids
through ``IntegerLookup``, which has the same OOV handling as ``StringLookup``.

Row order: the quickstart reads the TFDS ratings in their stored (shuffled) order and
``basic_retrieval`` shuffles once and then ``.cache()``\\s the batches, so both see one
order in every epoch. Here the training rows (one per stored entry of the train matrix:
every interaction is an implicit positive) are permuted once by ``seed`` and kept in that
order for every epoch.

One deliberate difference: the tutorials let the task compute ``FactorizedTopK`` on every
training batch (``compute_metrics`` defaults to True). That changes no weight but scores
the whole catalogue per batch, so ``fit_seconds`` would measure the metric, not training;
it is off unless :attr:`TutorialParams.metrics_in_fit` is set.

TensorFlow comes only through :mod:`streamrec.models.tf_runtime`; the trained model leaves
as numpy vectors (:class:`TutorialModel`), scored by dot product without TensorFlow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse

from streamrec.errors import ConfigError
from streamrec.models import tf_runtime
from streamrec.models.topk_accuracy import DEFAULT_KS

logger = logging.getLogger(__name__)

Recipe = Literal["quickstart", "basic-retrieval"]


_METRIC = "factorized_top_k"


@dataclass(frozen=True)
class TutorialParams:
    """Settings of one tutorial model (defaults: :data:`RECIPES`).

    Attributes:
        recipe: ``quickstart`` or ``basic-retrieval``.
        embedding_dim: width of both embeddings (the score is their dot product).
        learning_rate: Adagrad's learning rate.
        batch_size: training rows per step (in-batch negatives come from the same batch).
        epochs: passes over the training rows.
        user_vocabulary: ``train``: only users with training rows get their own embedding
            (the quickstart adapts its lookup on the training ratings); ``all``: every user
            row of the matrix (the basic retrieval tutorial's vocabulary of all ratings).
        candidate_batch: items embedded per step of the ``FactorizedTopK`` candidate stream.
        eval_batch_size: held-out rows per step of ``model.evaluate``.
        metrics_in_fit: also compute ``FactorizedTopK`` on every training batch, as the
            tutorials do (slow; changes no weight).
    """

    recipe: Recipe
    embedding_dim: int
    learning_rate: float
    batch_size: int
    epochs: int
    user_vocabulary: Literal["train", "all"]
    candidate_batch: int = 128
    eval_batch_size: int = 4096
    metrics_in_fit: bool = False

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "batch_size", "epochs", "candidate_batch", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1 (got {getattr(self, name)})")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.user_vocabulary not in ("train", "all"):
            raise ConfigError(
                f"user_vocabulary must be 'train' or 'all' (got {self.user_vocabulary!r})"
            )


#: The tutorials' settings, by recipe name.
RECIPES: dict[str, TutorialParams] = {
    "quickstart": TutorialParams("quickstart", 64, 0.5, 4096, 3, "train"),
    "basic-retrieval": TutorialParams("basic-retrieval", 32, 0.1, 8192, 3, "all"),
}


@dataclass(frozen=True, eq=False)
class TutorialModel:
    """A trained tutorial model as numpy vectors; the score of (u, i) is their dot product.

    Attributes:
        user_vectors: float32, shape (n_users, d): what the user tower returns for each user
            id (users outside its vocabulary get the shared OOV row).
        item_vectors: float32, shape (n_items, d).
        fit_seconds: wall time of training (building the input pipeline and the model, and
            ``fit``), excluding TensorFlow's import and any evaluation.
        params: the settings it was trained with (``epochs`` as run).
        tfrs_top_k: what TFRS's own ``model.evaluate`` reported for ``FactorizedTopK`` on the
            ``evaluate_on`` pairs given to :func:`fit_tutorial` (``{"top_1": ...}``), else None.
            It can sit a little below :func:`~streamrec.models.topk_accuracy.factorized_top_k`
            of these vectors: TFRS's rounding lets a pair ranked exactly ``k - 1`` outrank
            itself (see :mod:`streamrec.models.topk_accuracy`).
    """

    user_vectors: npt.NDArray[np.float32]
    item_vectors: npt.NDArray[np.float32]
    fit_seconds: float
    params: TutorialParams
    tfrs_top_k: dict[str, float] | None = None

    def scores(self, users: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores of every item for ``users`` (int ids, shape (n,)): float32, (n, n_items)."""
        rows = self.user_vectors[np.asarray(users, dtype=np.int64)]
        return np.asarray(rows @ self.item_vectors.T, dtype=np.float32)


def tutorial_params(recipe: str | TutorialParams, epochs: int | None = None) -> TutorialParams:
    """The tutorial's settings for ``recipe`` (or ``recipe`` itself when it is settings),
    with ``epochs`` replaced when given."""
    if isinstance(recipe, TutorialParams):
        params = recipe
    elif recipe in RECIPES:
        params = RECIPES[recipe]
    else:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)} (got {recipe!r})")
    return params if epochs is None else replace(params, epochs=epochs)


def fit_tutorial(
    train: scipy.sparse.csr_matrix,
    recipe: str | TutorialParams,
    epochs: int | None = None,
    seed: int = 42,
    progress: tf_runtime.EpochProgress | None = None,
    *,
    evaluate_on: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> TutorialModel:
    """Train a tutorial retrieval model on the interactions of ``train``.

    Args:
        train: users × items, shape (n_users, n_items); every stored entry is one
            training row (an implicit positive), whatever its value.
        recipe: ``quickstart`` or ``basic-retrieval`` (settings: :data:`RECIPES`), or
            settings of one's own.
        epochs: passes over the rows; None keeps the tutorial's (3).
        seed: seeds the row order, the initial embeddings and TensorFlow.
        progress: called after each epoch (see :data:`tf_runtime.EpochProgress`).
        evaluate_on: held-out ``(users, items)`` int arrays; when given, TFRS's own
            ``model.evaluate`` runs on them after training, as the basic retrieval
            tutorial evaluates its test set, and fills :attr:`TutorialModel.tfrs_top_k`.

    Returns:
        The trained vectors, training time and settings.

    Raises:
        ConfigError: unknown recipe, epochs < 1, or TensorFlow is not installed.
        ValueError: ``train`` has no interactions.
    """
    params = tutorial_params(recipe, epochs)
    matrix = scipy.sparse.csr_matrix(train)
    if matrix.nnz == 0:
        raise ValueError(f"train holds no interactions (shape {matrix.shape}, 0 stored)")
    n_users, n_items = matrix.shape
    held_out = None if evaluate_on is None else _pairs(evaluate_on, n_users, n_items)
    coo = matrix.tocoo()
    order = np.random.default_rng(seed).permutation(coo.nnz)
    users, items = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)

    tf = tf_runtime.tensorflow()
    tfrs = tf_runtime.recommenders()
    start = time.perf_counter()
    tf_runtime.seed(seed)
    if params.user_vocabulary == "train":
        user_vocab = np.unique(users)
    else:
        user_vocab = np.arange(n_users, dtype=np.int64)
    model = _build(tf, tfrs, params, user_vocab, n_items, with_metric=held_out is not None)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=params.learning_rate))
    rows = tf.data.Dataset.from_tensor_slices({"user_id": users, "item_id": items})
    callbacks = [] if progress is None else [tf_runtime.epoch_callback(progress, params.epochs)]
    model.fit(
        rows.batch(params.batch_size).cache(),
        epochs=params.epochs,
        verbose=0,
        callbacks=callbacks,
    )
    user_vectors = _embed(tf, model.user_model, n_users)
    item_vectors = _embed(tf, model.item_model, n_items)
    seconds = time.perf_counter() - start
    logger.info(
        "tutorial %s: %d rows, %d epochs, %.2f s", params.recipe, coo.nnz, params.epochs, seconds
    )
    tfrs_top_k = None if held_out is None else _evaluate(tf, model, params, held_out)
    return TutorialModel(user_vectors, item_vectors, seconds, params, tfrs_top_k)


def _build(
    tf: Any,
    tfrs: Any,
    params: TutorialParams,
    user_vocab: npt.NDArray[np.int64],
    n_items: int,
    *,
    with_metric: bool,
) -> Any:
    """The tutorial's ``tfrs.Model``: two lookup + embedding towers and a Retrieval task."""

    def tower(vocabulary: npt.NDArray[np.int64]) -> Any:
        return tf.keras.Sequential(
            [
                tf.keras.layers.IntegerLookup(vocabulary=vocabulary, mask_token=None),
                # The extra row is the OOV index 0, as in the tutorials.
                tf.keras.layers.Embedding(len(vocabulary) + 1, params.embedding_dim),
            ]
        )

    user_model = tower(user_vocab)
    item_model = tower(np.arange(n_items, dtype=np.int64))
    metrics = []
    if with_metric or params.metrics_in_fit:
        candidates = tf.data.Dataset.from_tensor_slices(np.arange(n_items, dtype=np.int64))
        metrics.append(
            tfrs.metrics.FactorizedTopK(
                candidates=candidates.batch(params.candidate_batch).map(item_model),
                ks=DEFAULT_KS,
                name=_METRIC,
            )
        )
    task = tfrs.tasks.Retrieval(metrics=metrics)
    in_fit = params.metrics_in_fit

    class TutorialRetrieval(tfrs.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.user_model = user_model
            self.item_model = item_model
            self.task = task

        def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
            return self.task(
                self.user_model(features["user_id"]),
                self.item_model(features["item_id"]),
                compute_metrics=in_fit or not training,
            )

    return TutorialRetrieval()


def _embed(tf: Any, tower: Any, n: int) -> npt.NDArray[np.float32]:
    vectors = tower(tf.constant(np.arange(n, dtype=np.int64))).numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _pairs(
    pairs: tuple[npt.ArrayLike, npt.ArrayLike], n_users: int, n_items: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    users, items = np.asarray(pairs[0]), np.asarray(pairs[1])
    if users.ndim != 1 or users.shape != items.shape or users.size == 0:
        raise ValueError(
            "evaluate_on must be two 1-D int arrays of one length ≥ 1 "
            f"(got {users.shape}, {items.shape})"
        )
    for name, ids, bound in (("users", users, n_users), ("items", items, n_items)):
        if not np.issubdtype(ids.dtype, np.integer) or not 0 <= ids.min() <= ids.max() < bound:
            raise ValueError(
                f"evaluate_on {name} must be int ids in [0, {bound}) "
                f"(got {ids.dtype} {ids.min()}..{ids.max()})"
            )
    return users.astype(np.int64), items.astype(np.int64)


def _evaluate(
    tf: Any,
    model: Any,
    params: TutorialParams,
    pairs: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> dict[str, float]:
    rows = tf.data.Dataset.from_tensor_slices({"user_id": pairs[0], "item_id": pairs[1]})
    logs = model.evaluate(rows.batch(params.eval_batch_size), verbose=0, return_dict=True)
    return {f"top_{k}": float(logs[f"{_METRIC}/top_{k}_categorical_accuracy"]) for k in DEFAULT_KS}
