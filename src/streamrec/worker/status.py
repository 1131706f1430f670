"""A snapshot of queues, workers and state, for ``streamrec status`` and monitoring."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq import Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from streamrec import keys
from streamrec.state.queues import queue
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
class Status:
    """Everything ``streamrec status`` shows."""

    redis: str
    queues: list[QueueStatus]
    workers: list[WorkerStatus]
    state: StateCounts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def collect_status(connection: redis.Redis, where: str) -> Status:
    """Read queues, workers and state counters.

    Args:
        connection: a redis-py client.
        where: a human description of the server (see ``state.connection.describe``).
    """
    queues = []
    for name in keys.ALL_QUEUES:
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
    return Status(redis=where, queues=queues, workers=workers, state=read_counts(connection))
