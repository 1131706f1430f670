"""Full retrains: build the matrix from state, fit, publish, refresh every cache entry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import redis

from streamrec.errors import NotFoundError
from streamrec.models.als import ALSParams, ImplicitALS
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.serving.online import OnlineServing
from streamrec.serving.served import M, ServedALS, ServedKernelMF, ServedModel
from streamrec.settings import Settings
from streamrec.state.cache import RecommendationCache
from streamrec.state.matrices import HistoryRows, MatrixReader
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary

if TYPE_CHECKING:
    from streamrec.models.kernel_mf import KernelMF

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


def train_als(
    connection: redis.Redis,
    settings: Settings,
    params: ALSParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainReport:
    """Retrain ALS on every stored history (all kinds of events), publish it, then refresh
    every user's entry.

    The refresh reads each user's history after the publish, so events applied while the
    model was training are folded in; workers switch to the new version on their next
    batch.

    Args:
        connection: a redis-py client.
        settings: registry location.
        params: hyper-parameters (defaults: :class:`ALSParams`).
        progress: called with (stage, done, total).
    """

    def fit(rows: HistoryRows) -> tuple[ImplicitALS, int]:
        return ImplicitALS(params).fit(rows.matrix), int(rows.matrix.nnz)

    return _train(connection, settings, ServedALS(connection, settings), fit, progress)


def train_kmf(
    connection: redis.Redis,
    settings: Settings,
    params: KernelMFParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainReport:
    """Retrain KernelMF on every stored rating, publish it, then refresh the entries of every
    user with a rating (as :func:`train_als` does).

    Args:
        connection: a redis-py client.
        settings: registry location; its rating scale is the model's unless ``params`` says.
        params: hyper-parameters (default: :class:`KernelMFParams` on the settings' scale).
        progress: called with (stage, done, total).

    Raises:
        NotFoundError: no rating is stored.
    """
    from streamrec.models.kernel_mf import KernelMF

    chosen = params or KernelMFParams(
        min_rating=settings.rating_min, max_rating=settings.rating_max
    )

    def fit(rows: HistoryRows) -> tuple[KernelMF, int]:
        if rows.ratings.nnz == 0:
            raise NotFoundError(
                "no ratings are stored: kmf learns from 'rating' events (import or push some)"
            )
        return KernelMF(chosen).fit(rows.ratings), int(rows.ratings.nnz)

    return _train(connection, settings, ServedKernelMF(connection, settings), fit, progress)


def _train(
    connection: redis.Redis,
    settings: Settings,
    served: ServedModel[M],
    fit: Callable[[HistoryRows], tuple[M, int]],
    progress: Callable[[str, int, int], None] | None,
) -> TrainReport:
    reader = MatrixReader(connection)
    users = reader.all_users()
    n_items = Vocabulary(connection, "items").capacity()
    rows = reader.rows(users, n_items)
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
    served.serve(model, version)
    online = OnlineServing(connection, settings, models=[served])
    refreshed = 0
    start = time.perf_counter()
    for offset in range(0, len(users), REFRESH_CHUNK):
        refreshed += online.refresh(users[offset : offset + REFRESH_CHUNK])
        if progress is not None:
            progress("refresh", min(offset + REFRESH_CHUNK, len(users)), len(users))
    cache = RecommendationCache(connection)
    cache.write_popular(cache.popular_from_counts(online.k))
    report = TrainReport(
        served.name, version, len(users), n_items, interactions, fit_seconds, refreshed,
        time.perf_counter() - start,
    )  # fmt: skip
    logger.info("trained %s: %s", served.name, report)
    return report
