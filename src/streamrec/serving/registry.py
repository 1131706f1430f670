"""The one registry of models: every other place (training, jobs, serving, forget, the CLI)
reads the list of models and what each needs from here.

A :class:`ModelSpec` says how a model is built from option values, trained from the state,
served online, evaluated offline, and which options the command line offers for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import redis
import scipy.sparse as sp

from streamrec.errors import ConfigError, NotFoundError
from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.experiments import evaluate_new_users, evaluate_random
from streamrec.models.gmf_experiments import evaluate_gmf_new_users, evaluate_gmf_random
from streamrec.models.gmf_params import GMFParams
from streamrec.models.kernel_mf_params import KERNELS, KernelMFParams
from streamrec.models.rating_experiments import evaluate_kmf_new_users, evaluate_kmf_random
from streamrec.models.rerank_experiments import (
    evaluate_gmf_rerank_new_users,
    evaluate_gmf_rerank_random,
)
from streamrec.models.retrieval_experiments import (
    evaluate_two_tower_new_users,
    evaluate_two_tower_random,
)
from streamrec.models.two_tower import TwoTowerParams
from streamrec.serving.served import (
    ServedALS,
    ServedGMF,
    ServedKernelMF,
    ServedModel,
    ServedTwoTower,
)
from streamrec.settings import Settings
from streamrec.state.matrices import HistoryRows

if TYPE_CHECKING:
    from streamrec.models.gmf import GMF
    from streamrec.models.kernel_mf import KernelMF
    from streamrec.models.two_tower import TwoTower


@dataclass(frozen=True)
class Option:
    """A hyper-parameter the command line offers (``--<name>``, a field of the params).

    Attributes:
        name: the params field (``_`` in it becomes ``-`` on the command line).
        help: one line for ``--help``.
        kind: ``int``, ``float``, or the allowed strings.
        low: lowest value of a number (None: unbounded).
        low_open: whether ``low`` itself is excluded.
    """

    name: str
    help: str
    kind: type | tuple[str, ...]
    low: float | None = 0
    low_open: bool = False


#: ``fit(params, rows)`` -> (trained model, interactions it learned from).
Fit = Callable[[Any, HistoryRows], tuple[Any, int]]
#: An offline protocol: (interactions or ratings, params, k, seed) -> results.
Protocol = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ModelSpec:
    """One model as streamrec knows it.

    Attributes:
        name: the model's name (cache keys, registry keys, ``--model``).
        summary: one line for humans.
        params: the hyper-parameter dataclass.
        options: the hyper-parameters offered on the command line.
        served: the served form (workers fold users in and cache their lists with it).
        fit: trains a model from the stored histories.
        metric: how ``evaluate`` scores it: ``ranking`` or ``rmse``.
        protocols: ``evaluate``'s protocols (``random``, ``new-users``).
        ratings_only: it learns from ratings only (its evaluation reads the rating rows).
        reranks: the model whose candidates it can re-rank in served lists
            (``STREAMREC_RERANK``) and in ``evaluate --rerank``, or None.
        rerank_protocols: ``evaluate --rerank``'s protocols: (interactions, their ratings,
            the re-ranked model's params, this model's params, k, seed, candidates,
            discount) -> results.
        explains: its model offers ``similar_items`` and ``explain`` (the CLI's ``similar``
            and ``explain`` commands).
    """

    name: str
    summary: str
    params: type
    options: tuple[Option, ...]
    served: Callable[[redis.Redis, Settings], ServedModel[Any]]
    fit: Fit
    metric: str
    protocols: Mapping[str, Protocol]
    ratings_only: bool = False
    explains: bool = True
    reranks: str | None = None
    rerank_protocols: Mapping[str, Protocol] = field(default_factory=dict)

    def make_params(self, settings: Settings, values: Mapping[str, Any] | None = None) -> Any:
        """The params from option values (missing or None values keep the defaults; a
        rating model gets the settings' rating scale).

        Raises:
            ConfigError: a value names no field of the params.
        """
        names = {f.name for f in fields(self.params)}
        given = {k: v for k, v in (values or {}).items() if v is not None}
        unknown = sorted(set(given) - names)
        if unknown:
            raise ConfigError(f"{self.name} has no parameter {', '.join(unknown)}")
        base = self.params()
        if "min_rating" in names:
            base = replace(base, min_rating=settings.rating_min, max_rating=settings.rating_max)
        return replace(base, **given)


def _interactions(rows: HistoryRows) -> sp.csr_matrix:
    """Every stored interaction.

    Raises:
        NotFoundError: there is none.
    """
    if rows.matrix.nnz == 0:
        raise NotFoundError("no interactions are stored: import or push some events first")
    return rows.matrix


def _ratings(rows: HistoryRows, model: str) -> sp.csr_matrix:
    """Every stored rating.

    Raises:
        NotFoundError: there is none.
    """
    if rows.ratings.nnz == 0:
        raise NotFoundError(
            f"no ratings are stored: {model} learns from 'rating' events (import or push some)"
        )
    return rows.ratings


def _fit_als(params: ALSParams, rows: HistoryRows) -> tuple[ImplicitALS, int]:
    matrix = _interactions(rows)
    return ImplicitALS(params).fit(matrix), int(matrix.nnz)


def _fit_kmf(params: KernelMFParams, rows: HistoryRows) -> tuple[KernelMF, int]:
    from streamrec.models.kernel_mf import KernelMF  # numba: only when training

    ratings = _ratings(rows, "kmf")
    return KernelMF(params).fit(ratings), int(ratings.nnz)


def _fit_gmf(params: GMFParams, rows: HistoryRows) -> tuple[GMF, int]:
    from streamrec.models.gmf_train import fit_gmf  # TensorFlow: only here

    ratings = _ratings(rows, "gmf")
    return fit_gmf(ratings, params), int(ratings.nnz)


def _fit_two_tower(params: TwoTowerParams, rows: HistoryRows) -> tuple[TwoTower, int]:
    """The item tower learns from the stored items' tags and names too (``rows.item_features``,
    read from the state by the retrain when ``params.item_features`` is set)."""
    from streamrec.models.two_tower_train import fit_two_tower  # TensorFlow: only here

    matrix = _interactions(rows)
    features = rows.item_features if params.item_features else None
    return fit_two_tower(matrix, params, item_features=features), int(matrix.nnz)


_FACTORS = Option("factors", "Latent dimensions.", int, low=1)
_EXACT_BELOW = Option(
    "exact_below",
    "Catalogues of fewer items are searched exactly; larger ones by ScaNN.",
    int,
    low=1,
)

REGISTRY: dict[str, ModelSpec] = {
    "als": ModelSpec(
        name="als",
        summary="implicit ALS on every interaction (plays, clicks, ratings as weights)",
        params=ALSParams,
        options=(
            _FACTORS,
            Option("regularization", "L2 weight λ.", float),
            Option("alpha", "Confidence scale of an observed pair.", float, low_open=True),
            Option("iterations", "ALS sweeps.", int, low=1),
            Option(
                "confidence",
                "Transform of raw weights: every pair once, or log1p(weight).",
                ("binary", "log"),
            ),
            _EXACT_BELOW,
        ),
        served=ServedALS,
        fit=_fit_als,
        metric="ranking",
        protocols={"random": evaluate_random, "new-users": evaluate_new_users},
    ),
    "kmf": ModelSpec(
        name="kmf",
        summary="KernelMF: biased matrix factorisation of ratings (SGD)",
        params=KernelMFParams,
        options=(
            _FACTORS,
            Option("kernel", "Kernel.", KERNELS),
            Option("epochs", "SGD passes.", int, low=1),
            Option("lr", "Learning rate.", float, low_open=True),
            Option("reg", "L2 weight of the factors.", float),
            _EXACT_BELOW,
        ),
        served=ServedKernelMF,
        fit=_fit_kmf,
        metric="rmse",
        protocols={"random": evaluate_kmf_random, "new-users": evaluate_kmf_new_users},
        ratings_only=True,
        explains=False,
    ),
    "two-tower": ModelSpec(
        name="two-tower",
        summary="TFRS two-tower retrieval: a history-pooling user tower, served in numpy",
        params=TwoTowerParams,
        options=(
            Option("dim", "Embedding dimensions of both towers.", int, low=1),
            Option("epochs", "Passes over the training pairs.", int, low=1),
            Option("batch_size", "Pairs per step (in-batch negatives).", int, low=1),
            Option("lr", "Learning rate.", float, low_open=True),
            Option("temperature", "Softmax temperature.", float, low_open=True),
            Option("pooling", "Weight of a history item when pooled.", ("binary", "log")),
            Option(
                "feature_min_count",
                "Items that must share a tag or name word for it to be embedded.",
                int,
                low=1,
            ),
            _EXACT_BELOW,
        ),
        served=ServedTwoTower,
        fit=_fit_two_tower,
        metric="topk-accuracy",
        protocols={"random": evaluate_two_tower_random, "new-users": evaluate_two_tower_new_users},
    ),
    "gmf": ModelSpec(
        name="gmf",
        summary="GMF: generalized matrix factorisation of ratings (TFRS Ranking task)",
        params=GMFParams,
        options=(
            _FACTORS,
            Option("epochs", "Passes over the ratings.", int, low=1),
            Option("batch_size", "Ratings per step.", int, low=1),
            Option("lr", "Adam learning rate.", float, low_open=True),
            Option("reg", "L2 weight of the embeddings, per rating.", float),
            _EXACT_BELOW,
        ),
        served=ServedGMF,
        fit=_fit_gmf,
        metric="rmse",
        protocols={"random": evaluate_gmf_random, "new-users": evaluate_gmf_new_users},
        ratings_only=True,
        explains=False,
        reranks="two-tower",
        rerank_protocols={
            "random": evaluate_gmf_rerank_random,
            "new-users": evaluate_gmf_rerank_new_users,
        },
    ),
}


def names() -> tuple[str, ...]:
    """Every model's name."""
    return tuple(REGISTRY)


def spec(name: str) -> ModelSpec:
    """The model called ``name``.

    Raises:
        ConfigError: there is no such model (the message lists them).
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"model must be one of {', '.join(REGISTRY)} (got {name!r})") from None
