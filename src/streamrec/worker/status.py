"""A snapshot of queues, workers, state, freshness and models, for ``streamrec status``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq import Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import utcparse

from streamrec import keys
from streamrec.serving.registry import names
from streamrec.settings import Settings
from streamrec.state.drift import DriftReports
from streamrec.state.freshness import WINDOW_MINUTES, Freshness, read_freshness
from streamrec.state.queues import queue
from streamrec.state.registry import ModelRegistry
from streamrec.state.stats import StateCounts, read_counts


@dataclass(frozen=True)
class QueueStatus:
    """Jobs of one RQ queue by state."""

    name: str
    queued: int
    started: int
    failed: int
    scheduled: int


@dataclass(frozen=True)
class WorkerStatus:
    """One live RQ worker."""

    name: str
    state: str
    queues: list[str]
    current_job: str | None
    successful_jobs: int
    failed_jobs: int


@dataclass(frozen=True)
class Lag:
    """How far the workers are behind the producers.

    Attributes:
        queued_batches: event batches (jobs) waiting in the events queues (every shard's).
        oldest_queued_seconds: age of the oldest of them (None when none waits).
    """

    queued_batches: int
    oldest_queued_seconds: float | None


@dataclass(frozen=True)
class ModelStatus:
    """A model's last publish (a retrain, or a rebuild of its index).

    Attributes:
        name: the model's name.
        version: the version published (None: never trained).
        published_at: when, epoch seconds.
        age_seconds: seconds since.
    """

    name: str
    version: int | None
    published_at: float | None
    age_seconds: float | None


@dataclass(frozen=True)
class Status:
    """Everything ``streamrec status`` shows.

    Attributes:
        freshness: event→cache latency per model over the last ``freshness_minutes``.
        lag: the events queues' backlog.
        models: each model's last publish.
        drift: per model, its last drift check's report (``streamrec drift``, or the
            scheduler's ``drift`` task; :class:`~streamrec.serving.drift.DriftReport` as a
            dict); None when no model was checked.
    """

    redis: str
    queues: list[QueueStatus]
    workers: list[WorkerStatus]
    state: StateCounts
    freshness: list[Freshness]
    freshness_minutes: int
    lag: Lag
    models: list[ModelStatus]
    drift: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def collect_status(
    connection: redis.Redis,
    where: str,
    settings: Settings | None = None,
    models: Sequence[str] | None = None,
    minutes: int = WINDOW_MINUTES,
) -> Status:
    """Read queues, workers, state counters, freshness, lag, the models' publishes and their
    last drift checks.

    Args:
        connection: a redis-py client.
        where: a human description of the server (see ``state.connection.describe``).
        settings: the home of the model registry (default ``Settings()``).
        models: the models to report (default: every model of the registry).
        minutes: how far back freshness looks.
    """
    settings = settings or Settings()
    queues = []
    for name in keys.all_queues(settings.event_shards):
        q = queue(connection, name)
        queues.append(
            QueueStatus(
                name=name,
                queued=q.count,
                started=StartedJobRegistry(queue=q).count,
                failed=FailedJobRegistry(queue=q).count,
                scheduled=ScheduledJobRegistry(queue=q).count,  # type: ignore[no-untyped-call]
            )
        )
    workers = [
        WorkerStatus(
            name=w.name,
            state=str(w.get_state()),
            queues=w.queue_names(),
            current_job=w.get_current_job_id(),
            successful_jobs=w.successful_job_count,
            failed_jobs=w.failed_job_count,
        )
        for w in Worker.all(connection=connection)
    ]
    models = list(names() if models is None else models)
    registry = ModelRegistry(connection, settings)
    published = [(name, registry.last_published(name)) for name in models]
    now = time.time()
    return Status(
        redis=where,
        queues=queues,
        workers=workers,
        state=read_counts(connection),
        freshness=read_freshness(connection, models, minutes, now),
        freshness_minutes=minutes,
        lag=events_lag(connection, settings.event_shards, now),
        models=[
            ModelStatus(name, None, None, None)
            if p is None
            else ModelStatus(name, p.version, p.at, max(0.0, now - p.at))
            for name, p in published
        ],
        drift=DriftReports(connection).read(models) or None,
    )


def events_lag(connection: redis.Redis, shards: int, now: float | None = None) -> Lag:
    """Jobs waiting in the events queues of ``shards`` shards, and the age of the oldest."""
    lags = [queue_lag(connection, name, now) for name in keys.events_queues(shards)]
    ages = [lag.oldest_queued_seconds for lag in lags if lag.oldest_queued_seconds is not None]
    return Lag(sum(lag.queued_batches for lag in lags), max(ages) if ages else None)


def queue_lag(connection: redis.Redis, name: str, now: float | None = None) -> Lag:
    """Jobs waiting in queue ``name`` and the age of the oldest (two round trips)."""
    q = queue(connection, name)
    with connection.pipeline(transaction=False) as pipe:
        pipe.llen(q.key)
        pipe.lindex(q.key, 0)  # RQ pushes at the tail and workers pop the head
        waiting, head = pipe.execute()
    if not waiting or head is None:
        return Lag(int(waiting), None)
    job_id = head.decode() if isinstance(head, bytes) else str(head)
    raw = connection.hget(Job.key_for(job_id), "enqueued_at")
    if raw is None:
        return Lag(int(waiting), None)
    try:
        at = utcparse(raw.decode() if isinstance(raw, bytes) else str(raw)).timestamp()
    except ValueError:
        return Lag(int(waiting), None)
    return Lag(int(waiting), max(0.0, (time.time() if now is None else now) - at))
