"""Drift checks: how far the lists workers serve have drifted from what a retrain would serve.

Workers fold users in against item vectors frozen at the last retrain; as the data moves
(new items, new tastes, items that start to go together) those lists drift from the ones a
full retrain would give (implicit issue #650). A check takes the cached lists of the users
seen last (:func:`~streamrec.state.drift.recent_lists`), trains the model in-process on the
current state with the served version's hyper-parameters — publishing nothing — folds the
same users into it from their stored histories exactly as a worker would, and compares per
user, then averages:

* ``overlap``: ``|served ∩ retrain| / max(|served|, |retrain|)`` of the top ``k``;
* ``ndcg``: NDCG@k of the served list with the retrain's list as the ideal ranking (the
  retrain's item at place ``r`` has relevance ``len - r``, others 0);
* ``spearman`` / ``pearson``: correlation of the served items' cached scores with their
  scores under the retrain (users with fewer than 3 scored items or constant scores are
  left out; ``correlated`` counts the others).

The last report of each model is kept in Redis (:class:`~streamrec.state.drift.DriftReports`)
for ``streamrec status``. Training the two-tower or GMF needs TensorFlow: it is imported by
their trainers, only when such a check runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import orjson
import redis

from streamrec.errors import ConfigError, NotFoundError
from streamrec.models.als import ImplicitALS
from streamrec.models.sparse import with_width
from streamrec.serving.registry import spec
from streamrec.serving.reranking import link_rerankers
from streamrec.serving.served import ServedModel
from streamrec.serving.training import training_rows
from streamrec.settings import Settings
from streamrec.state.drift import CachedList, DriftReports, recent_lists
from streamrec.state.matrices import MatrixReader
from streamrec.state.vocab import Vocabulary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftReport:
    """What a drift check found (means over the users compared).

    Attributes:
        model: the model's name.
        version: the served version the lists came from (the active one).
        k: list length compared.
        users: users compared (the sample size).
        overlap: mean overlap@k (None when no user was compared).
        ndcg: mean NDCG@k of the served lists against the retrain's.
        spearman: mean Spearman correlation of the served items' scores under both models
            (None when no user had one).
        pearson: mean Pearson correlation, likewise.
        correlated: users whose correlations are defined.
        threshold: ``settings.drift_threshold``.
        drifted: ``overlap`` is below ``threshold``.
        checked_at: when, epoch seconds.
        fit_seconds: seconds the retrain took.
        seconds: seconds the whole check took.
    """

    model: str
    version: int
    k: int
    users: int
    overlap: float | None
    ndcg: float | None
    spearman: float | None
    pearson: float | None
    correlated: int
    threshold: float
    drifted: bool
    checked_at: float
    fit_seconds: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class UserDrift:
    """One user's comparison (see the module doc); correlations are None when undefined."""

    overlap: float
    ndcg: float
    spearman: float | None
    pearson: float | None


def check_drift(
    connection: redis.Redis,
    settings: Settings,
    name: str,
    users: int | None = None,
    k: int | None = None,
) -> DriftReport:
    """Compare the cached lists of ``name`` of the users seen last with a fresh retrain's,
    and keep the report as the model's last one.

    Args:
        connection: a redis-py client.
        settings: registry location, ``top_k``, ``drift_users``, ``drift_threshold``.
        name: a model of the registry.
        users: users to compare (default ``settings.drift_users``).
        k: list length compared (default and at most ``settings.top_k``).

    Raises:
        ConfigError: no such model, or ``users`` / ``k`` out of range.
        NotFoundError: the model was never trained.
    """
    started = time.perf_counter()
    model_spec = spec(name)
    wanted = settings.drift_users if users is None else users
    k = settings.top_k if k is None else k
    if wanted < 1:
        raise ConfigError(f"users must be ≥ 1 (got {wanted!r})")
    if not 1 <= k <= settings.top_k:
        raise ConfigError(f"k must be between 1 and top_k ({settings.top_k}) (got {k!r})")
    served = model_spec.served(connection, settings)
    active = served.current()
    if active is None or served.version is None:
        raise NotFoundError(f"{name} was never trained: nothing is served (streamrec train {name})")
    params = active.params  # the served version's: data drift, not a change of params
    lists = [c for c in recent_lists(connection, name, wanted) if c.items]
    fit_seconds = 0.0
    compared: list[UserDrift] = []
    if lists:
        features = bool(getattr(params, "item_features", False))  # the two-tower's
        rows = training_rows(connection, features)
        fit_at = time.perf_counter()
        fresh, _ = model_spec.fit(params, rows)
        fit_seconds = time.perf_counter() - fit_at
        compared = _compare(connection, settings, name, fresh, lists, k)
    report = _report(name, served.version, k, compared, settings.drift_threshold)
    report = replace(report, fit_seconds=fit_seconds, seconds=time.perf_counter() - started)
    DriftReports(connection).write(name, report.as_dict())
    logger.info("drift of %s: %s", name, report)
    return report


def _compare(
    connection: redis.Redis,
    settings: Settings,
    name: str,
    fresh: Any,
    lists: Sequence[CachedList],
    k: int,
) -> list[UserDrift]:
    """Fold the users of ``lists`` into the model ``fresh`` from their stored histories as a
    worker would (its served form, re-ranking stage included) and compare."""
    retrained: ServedModel[Any] = spec(name).served(connection, settings)
    retrained.serve(fresh, 0)
    retrained.k = k
    link_rerankers([retrained], connection, settings)
    users = [c.user for c in lists]
    rows = MatrixReader(connection).rows(users)
    theirs = {}
    for _, raw, user in retrained.entries(rows):
        theirs[user] = [str(i["item"]) for i in orjson.loads(raw)["items"]]
    # scores of the served items under the retrain (not with a re-ranking stage: the
    # served scores are then the re-ranker's, not the model's)
    scores = None
    if not retrained.wants_ratings:
        source = with_width(retrained.source(rows), fresh.n_items)
        vectors = fresh.fold_in_users(source)
        served_items = _item_ids(connection, [c.items[:k] for c in lists])
        scores = item_scores(fresh, vectors, served_items)
    out = []
    for n, cached in enumerate(lists):
        mine = cached.items[:k]
        other = theirs.get(cached.user, [])
        rho = r = None
        if scores is not None:
            rho, r = correlations(np.array(cached.scores[:k]), scores[n, : len(mine)])
        out.append(UserDrift(overlap(mine, other), ndcg(mine, other), rho, r))
    return out


def _item_ids(connection: redis.Redis, lists: Sequence[Sequence[str]]) -> np.ndarray:
    """Dense ids of the items of ``lists``, ``(n, longest)``, ``-1`` padding and unknown."""
    names = sorted({item for items in lists for item in items})
    dense = dict(zip(names, Vocabulary(connection, "items").ids(names), strict=True))
    out = np.full((len(lists), max((len(x) for x in lists), default=0)), -1, dtype=np.int64)
    for n, items in enumerate(lists):
        for m, item in enumerate(items):
            found = dense[item]
            out[n, m] = -1 if found is None else found
    return out


def item_scores(model: Any, vectors: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """Scores of ``items`` (``(n, m)`` dense ids) for users folded in as ``vectors``
    (``(n, d)``, the model's ``fold_in_users``), as the model's ``recommend`` scores them:
    ``(n, m)`` float64, NaN for ids the model does not know; None for a model without a
    scorer here (GMF)."""
    from streamrec.models.kernel_mf import KernelMF  # numba: once a check runs
    from streamrec.models.two_tower import TwoTower  # numpy only

    if isinstance(model, KernelMF):
        return model.score_items(vectors, items)
    if isinstance(model, ImplicitALS):
        table = model.item_factors
    elif isinstance(model, TwoTower):
        table = model.item_vectors
    else:
        return None
    known = (items >= 0) & (items < len(table))
    picked = table[np.where(known, items, 0)].astype(np.float64)
    out = np.einsum("nd,nmd->nm", np.asarray(vectors, dtype=np.float64), picked)
    return np.where(known, out, np.nan)


def overlap(served: Sequence[str], retrained: Sequence[str]) -> float:
    """Share of the longer list's items the two lists have in common (1 for two empty)."""
    longest = max(len(served), len(retrained))
    return len(set(served) & set(retrained)) / longest if longest else 1.0


def ndcg(served: Sequence[str], retrained: Sequence[str]) -> float:
    """NDCG of ``served`` with ``retrained`` as the ideal ranking: the retrain's item at
    place ``r`` has relevance ``len(retrained) - r``, any other item 0."""
    if not retrained:
        return 1.0 if not served else 0.0
    relevance = {item: len(retrained) - r for r, item in enumerate(retrained)}
    discounts = 1.0 / np.log2(np.arange(2, max(len(served), len(retrained)) + 2))
    gains = np.array([relevance.get(item, 0) for item in served], dtype=np.float64)
    ideal = np.array([relevance[item] for item in retrained], dtype=np.float64)
    return float(gains @ discounts[: len(gains)] / (ideal @ discounts[: len(ideal)]))


def correlations(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman, Pearson) of the pairs of ``a`` and ``b`` where both are finite; None when
    fewer than 3 such pairs or either side is constant."""
    both = np.isfinite(a) & np.isfinite(b)
    x, y = a[both].astype(np.float64), b[both].astype(np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    return _pearson(_ranks(x), _ranks(y)), _pearson(x, y)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` from 1, ties given their mean rank (as Spearman's correlation needs)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


def _report(
    name: str, version: int, k: int, compared: Sequence[UserDrift], threshold: float
) -> DriftReport:
    def mean(values: list[float | None]) -> float | None:
        defined = [v for v in values if v is not None]
        return float(np.mean(defined)) if defined else None

    mean_overlap = mean([u.overlap for u in compared])
    return DriftReport(
        model=name,
        version=version,
        k=k,
        users=len(compared),
        overlap=mean_overlap,
        ndcg=mean([u.ndcg for u in compared]),
        spearman=mean([u.spearman for u in compared]),
        pearson=mean([u.pearson for u in compared]),
        correlated=sum(u.spearman is not None for u in compared),
        threshold=threshold,
        drifted=mean_overlap is not None and mean_overlap < threshold,
        checked_at=time.time(),
        fit_seconds=0.0,
        seconds=0.0,
    )
