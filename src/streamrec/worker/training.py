"""Full retrains: build the matrix from state, fit, publish, refresh every cache entry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from streamrec.models.als import ALSParams, ImplicitALS, with_width
from streamrec.settings import Settings
from streamrec.state.cache import RecommendationCache
from streamrec.state.matrices import MatrixReader
from streamrec.state.registry import ModelRegistry
from streamrec.state.vocab import Vocabulary
from streamrec.worker.serving import MODEL, OnlineALS

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
    """Retrain ALS on every stored history, publish it, then refresh every user's entry.

    The refresh reads each user's history after the publish, so events applied while the
    model was training are folded in; workers switch to the new version on their next
    batch.

    Args:
        connection: a redis-py client.
        settings: registry location.
        params: hyper-parameters (defaults: :class:`ALSParams`).
        progress: called with (stage, done, total).
    """
    reader = MatrixReader(connection)
    users = reader.all_users()
    n_items = Vocabulary(connection, "items").capacity()
    rows = reader.rows(users)
    matrix = with_width(rows.matrix, n_items)
    start = time.perf_counter()
    model = ImplicitALS(params).fit(matrix)
    fit_seconds = time.perf_counter() - start
    metadata = {
        "params": asdict(model.params),
        "users": len(users),
        "items": n_items,
        "interactions": int(matrix.nnz),
        "fit_seconds": fit_seconds,
    }
    version = ModelRegistry(connection, settings).publish(MODEL, model.save, metadata)
    online = OnlineALS(connection, settings)
    online.serve(model, version)
    refreshed = 0
    start = time.perf_counter()
    for offset in range(0, len(users), REFRESH_CHUNK):
        refreshed += online.refresh(users[offset : offset + REFRESH_CHUNK])
        if progress is not None:
            progress("refresh", min(offset + REFRESH_CHUNK, len(users)), len(users))
    cache = RecommendationCache(connection)
    cache.write_popular(cache.popular_from_counts(online.k))
    report = TrainReport(
        MODEL, version, len(users), n_items, int(matrix.nnz), fit_seconds, refreshed,
        time.perf_counter() - start,
    )  # fmt: skip
    logger.info("trained %s: %s", MODEL, report)
    return report
