"""RQ job functions: thin entry points that decode and delegate to the handlers.

Jobs run in a worker process started by :mod:`streamrec.worker.runner`; they receive only
JSON-serialisable arguments (RQ runs with its JSON serializer).
"""

from __future__ import annotations

from typing import Any

import redis
from rq import get_current_job

from streamrec.models.als import ALSParams
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.worker.handlers import EventHandler
from streamrec.worker.serving import OnlineALS
from streamrec.worker.training import train_als

_handlers: dict[int, EventHandler] = {}


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
    handler = _handlers.get(id(job.connection)) if job is not None else None
    if handler is None:
        connection, settings = _edge()
        handler = prepare(connection, settings)
    return handler


def prepare(connection: redis.Redis, settings: Settings) -> EventHandler:
    """The handler that jobs on ``connection`` use, with the active model already loaded
    (a worker calls this before its first job, so that job does not wait for the load)."""
    handler = _handlers.get(id(connection))
    if handler is None:
        online = OnlineALS(connection, settings)
        online.current()
        handler = EventHandler(connection, settings, hooks=[online.after_batch])
        _handlers[id(connection)] = handler
    return handler


def retrain_model(model: str = "als", params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain ``model`` from the whole state, publish it and refresh every cache entry."""
    if model != "als":
        raise ValueError(f"model must be 'als' (got {model!r})")
    connection, settings = _edge()
    return train_als(connection, settings, ALSParams(**(params or {}))).as_dict()
