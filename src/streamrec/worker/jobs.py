"""RQ job functions: thin entry points that decode and delegate to the handlers.

Jobs run only in a streamrec worker (:mod:`streamrec.worker.runner`), which binds its
settings and event handler here before its first job (:func:`bind`), so a job uses the
worker's settings — command-line flags included — and never reads the environment. They
receive only JSON arguments (RQ runs with its JSON serializer), and a worker runs no other
function (:data:`~streamrec.state.queues.ALLOWED_FUNCTIONS`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job

from streamrec import keys
from streamrec.errors import ConfigError
from streamrec.serving.drift import check_drift as drift
from streamrec.serving.handler import EventHandler
from streamrec.serving.online import OnlineServing
from streamrec.serving.rebuild import rebuild_index as rebuild
from streamrec.serving.registry import spec
from streamrec.serving.training import train_model
from streamrec.settings import Settings
from streamrec.state.queues import pushed_at, queue
from streamrec.worker.drain import Drain
from streamrec.worker.scheduler import Scheduler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Binding:
    """What the jobs of this worker process use.

    Attributes:
        connection: the worker's redis-py client.
        settings: the worker's settings.
        handler: the event handler (None for a worker without the events queue).
        drain: takes the event jobs queued behind a running one (None: each job alone).
    """

    connection: redis.Redis
    settings: Settings
    handler: EventHandler | None
    drain: Drain | None = None


_bound: Binding | None = None


def bind(
    connection: redis.Redis,
    settings: Settings,
    handler: EventHandler | None,
    drain: Drain | None = None,
) -> None:
    """Make this process's jobs use ``settings``, ``handler`` and ``drain`` (called by the
    worker)."""
    global _bound
    _bound = Binding(connection, settings, handler, drain)


def bound() -> Binding:
    """The worker's binding.

    Raises:
        ConfigError: no streamrec worker runs in this process.
    """
    if _bound is None:
        raise ConfigError("streamrec jobs run only in a streamrec worker (streamrec worker)")
    return _bound


def apply_events(batch_id: Any, events: Any) -> dict[str, Any]:
    """Apply one micro-batch of events (see :class:`~streamrec.serving.handler.EventHandler`),
    and the event batches queued behind it when the worker drains (:mod:`~.drain`).

    Returns:
        A summary of this job's batch: batch id, whether it was applied (False for a
        redelivery), events applied, dead letters and users touched; and how many queued
        batches were applied with it.
    """
    binding = bound()
    handler = binding.handler
    if handler is None:
        raise ConfigError("this worker does not serve the events queue")
    job = get_current_job()
    sent_at = pushed_at(job) if job is not None else None
    origin = job.origin if job is not None else keys.EVENTS_QUEUE
    drain = binding.drain
    drained = drain.take(origin) if drain is not None else []
    outcomes = handler.handle_many(
        [(batch_id, events, sent_at), *((d.batch_id, d.events, d.sent_at) for d in drained)]
    )
    if drain is not None:
        drained += drain.follow(handler, origin, finished=drained)
    if drained:
        logger.info("job %s: applied %d queued batches with it", batch_id, len(drained))
    outcome = outcomes[0]
    return {
        "batch_id": outcome.batch_id,
        "applied": outcome.applied,
        "events": outcome.events,
        "dead_letters": outcome.dead_letters,
        "users": outcome.n_users,
        "drained": len(drained),
    }


def prepare(
    connection: redis.Redis,
    settings: Settings,
    *,
    coalesce: bool = False,
    queues: Sequence[str] = (keys.EVENTS_QUEUE,),
) -> EventHandler:
    """The event handler of a worker, with the active models already loaded (a worker calls
    this before its first job, so that job does not wait for the load).

    Args:
        connection: the worker's redis-py client.
        settings: the worker's settings.
        coalesce: defer serving while more event batches are queued; the caller must then
            call the handler's ``flush`` when the queue is empty and before it stops
            (:class:`~streamrec.worker.runner.StreamrecWorker` does).
        queues: the events queues the worker serves (the shards it owns).
    """
    lists = [queue(connection, name).key for name in queues]
    busy = (lambda: _waiting(connection, lists)) if coalesce else None
    online = OnlineServing(connection, settings, busy=busy)
    online.current()
    return EventHandler(connection, settings, hooks=[online.after_batches], deferring=[online])


def retrain_model(model: str = "als", params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain ``model`` (a name of the model registry) from the whole state, publish it and
    refresh every cache entry. ``params`` are the model's option values (as the CLI takes
    them)."""
    binding = bound()
    if not isinstance(params, dict | None):
        raise ConfigError(f"params must be a JSON object (got {params!r})")
    chosen = spec(model).make_params(binding.settings, params)
    return train_model(binding.connection, binding.settings, model, chosen).as_dict()


def rebuild_index(model: str = "als") -> dict[str, Any]:
    """Rebuild the active version of ``model`` with the items folded in since it was
    published, and publish it (see :mod:`~streamrec.serving.rebuild`)."""
    binding = bound()
    return rebuild(binding.connection, binding.settings, model).as_dict()


def check_drift(model: str = "als") -> dict[str, Any]:
    """Compare ``model``'s lists of the users seen last with a fresh retrain's (see
    :mod:`~streamrec.serving.drift`, ``settings.drift_users`` users, top ``top_k``) and keep
    the report; when the mean overlap is below ``settings.drift_threshold``, enqueue a
    retrain unless one is queued or running.

    Returns:
        The report, with ``retrain_job``: the id of the retrain enqueued, or None.
    """
    binding = bound()
    report = drift(binding.connection, binding.settings, model)
    job_id = None
    if report.drifted:
        reason = (
            f"drift: overlap@{report.k} {report.overlap:.2f} below "
            f"{report.threshold:g} over {report.users} users"
        )
        # the scheduler's busy check: never a second retrain of the model
        scheduler = Scheduler(binding.connection, binding.settings)
        enqueued = scheduler.retrain_unless_busy(model, reason)
        job_id = None if enqueued is None else enqueued.job_id
    return {**report.as_dict(), "retrain_job": job_id}


def _waiting(connection: redis.Redis, lists: Sequence[str]) -> bool:
    """Whether any of the queue ``lists`` holds a job (one round trip)."""
    if len(lists) == 1:
        return bool(connection.llen(lists[0]))
    with connection.pipeline(transaction=False) as pipe:
        for key in lists:
            pipe.llen(key)
        return any(pipe.execute())
