"""Full retrains: build the matrix from state, fit, publish, refresh every cache entry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from streamrec.models.als import ALSParams
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.serving.online import OnlineServing
from streamrec.serving.registry import spec
from streamrec.serving.reranking import reranked_by
from streamrec.serving.served import M, ServedModel
from streamrec.settings import Settings
from streamrec.state.cache import RecommendationCache, popular_size
from streamrec.state.matrices import HistoryRows, MatrixReader
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import ItemCatalog, Vocabulary

logger = logging.getLogger(__name__)

#: Users folded in per step of the post-publish cache refresh.
REFRESH_CHUNK = 1000


@dataclass(frozen=True)
class TrainReport:
    """What a retrain did."""

    model: str
    version: int
    users: int
    items: int
    interactions: int
    fit_seconds: float
    refreshed: int
    refresh_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def train_model(
    connection: redis.Redis,
    settings: Settings,
    name: str,
    params: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainReport:
    """Retrain the model ``name`` on every stored history, publish it, then refresh every
    user's entry.

    The refresh reads each user's history after the publish, so events applied while the
    model was training are folded in; workers switch to the new version on their next
    batch. A model whose params have ``item_features`` set (the two-tower) also gets the
    stored items' names and tags, as features (``HistoryRows.item_features``).

    Args:
        connection: a redis-py client.
        settings: registry location and rating scale.
        name: a model of the registry (``als``, ``kmf``).
        params: its hyper-parameters (default: the registry's, on the settings' scale).
        progress: called with (stage, done, total).

    Raises:
        ConfigError: no such model.
        NotFoundError: nothing is stored that the model learns from.
    """
    model_spec = spec(name)
    chosen = params if params is not None else model_spec.make_params(settings)
    served = model_spec.served(connection, settings)
    # Item features are read only for a model whose params ask for them (the two-tower's).
    features = bool(getattr(chosen, "item_features", False))
    return _train(
        connection, settings, served, lambda rows: model_spec.fit(chosen, rows), progress, features
    )


def train_als(
    connection: redis.Redis,
    settings: Settings,
    params: ALSParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainReport:
    """:func:`train_model` of ``als``."""
    return train_model(connection, settings, "als", params, progress)


def train_kmf(
    connection: redis.Redis,
    settings: Settings,
    params: KernelMFParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainReport:
    """:func:`train_model` of ``kmf``."""
    return train_model(connection, settings, "kmf", params, progress)


def training_rows(connection: redis.Redis, item_features: bool = False) -> HistoryRows:
    """Every stored history, as wide as the item vocabulary: what a retrain learns from.

    Args:
        connection: a redis-py client.
        item_features: read the items' names and tags too (``HistoryRows.item_features``),
            for a model whose params ask for them (the two-tower's).
    """
    reader = MatrixReader(connection)
    n_items = Vocabulary(connection, "items").capacity()
    rows = reader.rows(reader.all_users(), n_items)
    if item_features:
        rows = replace(rows, item_features=ItemCatalog(connection).features(n_items))
    return rows


def _train(
    connection: redis.Redis,
    settings: Settings,
    served: ServedModel[M],
    fit: Callable[[HistoryRows], tuple[M, int]],
    progress: Callable[[str, int, int], None] | None,
    item_features: bool = False,
) -> TrainReport:
    rows = training_rows(connection, item_features)
    users, n_items = rows.users, rows.matrix.shape[1]
    start = time.perf_counter()
    model, interactions = fit(rows)
    fit_seconds = time.perf_counter() - start
    metadata = {
        "params": asdict(model.params),
        "users": len(users),
        "items": n_items,
        "interactions": interactions,
        "fit_seconds": fit_seconds,
    }
    version = ModelRegistry(connection, settings).publish(served.name, model.save, metadata)
    assert version is not None  # published unconditionally
    served.serve(model, version)
    # a re-ranker's new version re-orders the lists it re-ranks: they are refreshed too
    followers = reranked_by(served.name, connection, settings)
    online = OnlineServing(connection, settings, models=[served, *followers])
    refreshed = 0
    start = time.perf_counter()
    for offset in range(0, len(users), REFRESH_CHUNK):
        refreshed += online.refresh(users[offset : offset + REFRESH_CHUNK])
        if progress is not None:
            progress("refresh", min(offset + REFRESH_CHUNK, len(users)), len(users))
    cache = RecommendationCache(connection)
    cache.write_popular(cache.popular_from_counts(popular_size(online.k)))
    report = TrainReport(
        served.name, version, len(users), n_items, interactions, fit_seconds, refreshed,
        time.perf_counter() - start,
    )  # fmt: skip
    logger.info("trained %s: %s", served.name, report)
    return report
