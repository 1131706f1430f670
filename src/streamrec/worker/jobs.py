"""RQ job functions: thin entry points that decode and delegate to the handlers.

Jobs run in a worker process started by :mod:`streamrec.worker.runner`; they receive only
JSON-serialisable arguments (RQ runs with its JSON serializer).
"""

from __future__ import annotations

from typing import Any

import redis
from rq import get_current_job

from streamrec import keys
from streamrec.errors import ConfigError
from streamrec.models.als import ALSParams
from streamrec.models.kernel_mf_params import KernelMFParams
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.queues import queue
from streamrec.worker.handlers import EventHandler
from streamrec.worker.serving import OnlineServing
from streamrec.worker.training import train_als, train_kmf

#: The handler of each worker connection: (connection, coalescing, handler) by id.
_handlers: dict[int, tuple[redis.Redis, bool, EventHandler]] = {}


def apply_events(batch_id: Any, events: Any) -> dict[str, Any]:
    """Apply one micro-batch of events (see :class:`~streamrec.worker.handlers.EventHandler`).

    Returns:
        A summary: batch id, whether it was applied (False for a redelivery), events applied,
        dead letters and users touched.
    """
    outcome = _handler().handle(batch_id, events)
    return {
        "batch_id": outcome.batch_id,
        "applied": outcome.applied,
        "events": outcome.events,
        "dead_letters": outcome.dead_letters,
        "users": len(outcome.users),
    }


def _edge() -> tuple[redis.Redis, Settings]:
    """The worker's connection (or a new one outside a job) and the settings from the env."""
    settings = Settings.from_env()
    job = get_current_job()
    return (job.connection if job is not None else connect(settings)), settings


def _handler() -> EventHandler:
    job = get_current_job()
    cached = _handlers.get(id(job.connection)) if job is not None else None
    if job is not None and cached is not None and cached[0] is job.connection:
        return cached[2]
    connection, settings = _edge()
    return prepare(connection, settings)


def prepare(connection: redis.Redis, settings: Settings, *, coalesce: bool = False) -> EventHandler:
    """The handler that jobs on ``connection`` use, with the active model already loaded
    (a worker calls this before its first job, so that job does not wait for the load).

    Args:
        connection: the worker's redis-py client.
        settings: the worker's settings.
        coalesce: defer serving while more event batches are queued; the caller must then
            call the handler's ``flush`` when the queue is empty and before it stops
            (:class:`~streamrec.worker.runner.CoalescingWorker` does).
    """
    cached = _handlers.get(id(connection))
    if cached is not None and cached[0] is connection and cached[1] == coalesce:
        return cached[2]
    events = queue(connection, keys.EVENTS_QUEUE).key
    busy = (lambda: bool(connection.llen(events))) if coalesce else None
    online = OnlineServing(connection, settings, busy=busy)
    online.current()
    handler = EventHandler(connection, settings, hooks=[online.after_batch], deferring=[online])
    _handlers[id(connection)] = (connection, coalesce, handler)
    return handler


def retrain_model(model: str = "als", params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain ``model`` (``als`` or ``kmf``) from the whole state, publish it and refresh
    every cache entry. ``params`` are the model's option values (as the CLI takes them)."""
    connection, settings = _edge()
    if model == "als":
        return train_als(connection, settings, ALSParams(**(params or {}))).as_dict()
    if model == "kmf":
        scale = {"min_rating": settings.rating_min, "max_rating": settings.rating_max}
        kmf = KernelMFParams(**{**scale, **(params or {})})
        return train_kmf(connection, settings, kmf).as_dict()
    raise ConfigError(f"model must be 'als' or 'kmf' (got {model!r})")
