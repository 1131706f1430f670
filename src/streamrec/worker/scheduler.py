"""The scheduler: retrains, index rebuilds and drift checks enqueued on their own, by one
process at a time.

Every trained model (one with a published version) has three tasks: ``retrain`` (a full
retrain, :func:`~streamrec.worker.jobs.retrain_model`), ``rebuild`` (the model's index
rebuilt with the items folded in since its last publish,
:func:`~streamrec.worker.jobs.rebuild_index`) and ``drift`` (a drift check,
:func:`~streamrec.worker.jobs.check_drift`, which enqueues a retrain through
:meth:`Scheduler.retrain_unless_busy` when the lists drifted). A task is due when its
interval has passed (``retrain_every`` since the model was last trained, ``rebuild_every``
since its last publish, a rebuild's included; ``drift_every`` since the later of the last
publish and the last check), or, for a retrain, when ``retrain_after_events`` events were
applied since the last training; it is never enqueued
while a job of the same task is queued or running (whoever enqueued it: ``streamrec train
--queue`` and a drift check too), and a task whose job ended without publishing (it failed) waits
:data:`RETRY_AFTER` seconds (or its interval, if shorter) before it is enqueued again.
Jobs go to the ``training`` queue as JSON through :func:`~streamrec.state.queues.queue`
(nothing pickled, ever), where a worker with TensorFlow runs them.

Many schedulers may run; one is active: it holds a lease in Redis
(:class:`~streamrec.state.lock.Lease`) renewed every tick, and the others stand by and
take it within ``scheduler_ttl`` seconds when the active one dies.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.serving.registry import REGISTRY
from streamrec.settings import Settings, per_model
from streamrec.state.lock import Lease
from streamrec.state.queues import CHECK_DRIFT, REBUILD_INDEX, RETRAIN_MODEL, SafeJob, queue
from streamrec.state.registry import ModelRegistry
from streamrec.state.stats import read_counts

logger = logging.getLogger(__name__)

#: Seconds before a task whose job ended without a publish (it failed) is enqueued again.
RETRY_AFTER = 60.0

Kind = Literal["retrain", "rebuild", "drift"]
FUNCTIONS: dict[Kind, str] = {
    "retrain": RETRAIN_MODEL,
    "rebuild": REBUILD_INDEX,
    "drift": CHECK_DRIFT,
}


@dataclass(frozen=True)
class Enqueued:
    """A job the scheduler enqueued.

    Attributes:
        kind: ``retrain``, ``rebuild`` or ``drift``.
        model: the model's name.
        job_id: the RQ job's id.
        reason: why it was due.
    """

    kind: Kind
    model: str
    job_id: str
    reason: str


class Scheduler:
    """Enqueues due retrains and rebuilds while it holds the scheduler lease.

    Args:
        connection: a redis-py client.
        settings: intervals, event thresholds and the lease's time to live.
        models: the models to schedule (default: every model of the registry; only those
            with a published version are scheduled).
    """

    def __init__(
        self, connection: redis.Redis, settings: Settings, models: Sequence[str] | None = None
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.models = list(models) if models is not None else list(REGISTRY)
        holder = f"{socket.gethostname()}:{os.getpid()}"
        self.lease = Lease(connection, keys.scheduler_lease_key(), settings.scheduler_ttl, holder)
        self.registry = ModelRegistry(connection, settings)
        self.queue = queue(connection, keys.TRAINING_QUEUE)

    @property
    def tick(self) -> float:
        """Seconds between two looks (a third of the lease's time to live, at most 1)."""
        return min(1.0, self.settings.scheduler_ttl / 3)

    def run(self, stop: threading.Event | None = None) -> None:
        """Look every :attr:`tick` until ``stop`` is set: when this scheduler holds (or
        takes) the lease, enqueue what is due; otherwise stand by."""
        stop = stop or threading.Event()
        active = False
        try:
            while not stop.is_set():
                held = self.lease.acquire()
                if held != active:
                    logger.info("scheduler %s: %s", self.lease.token, _change(held))
                    active = held
                if held:
                    self.run_due()
                stop.wait(self.tick)
        finally:
            if active:
                self.lease.release()

    def once(self) -> list[Enqueued] | None:
        """Enqueue what is due now and release the lease; None if another scheduler is
        active (it does the work)."""
        if not self.lease.acquire():
            return None
        try:
            return self.run_due()
        finally:
            self.lease.release()

    def run_due(self) -> list[Enqueued]:
        """Enqueue every due task that has no job queued or running."""
        busy = self._busy_tasks()
        events = read_counts(self.connection).events_applied
        last = self._last_enqueued()
        now = time.time()
        enqueued = []
        for model in self.models:
            published = self.registry.last_published(model)
            if published is None:
                continue  # never trained: nothing to retrain or rebuild
            for kind in FUNCTIONS:
                task = f"{kind}:{model}"
                if task in busy:
                    continue
                since = {  # a rebuild publishes too, but does not count as a retrain
                    "retrain": published.trained_at,
                    "rebuild": published.at,
                    "drift": max(published.at, last.get(task, 0.0)),
                }[kind]
                reason = self._due(kind, model, now - since, events - published.events)
                every = self._every(kind, model)
                spacing = min(RETRY_AFTER, every) if every else RETRY_AFTER
                if reason is None or now - last.get(task, 0.0) < spacing:
                    continue
                enqueued.append(self._enqueue(kind, model, reason, now))
        return enqueued

    def retrain_unless_busy(self, model: str, reason: str) -> Enqueued | None:
        """Enqueue a retrain of ``model`` now, unless one is queued or running (then None)."""
        if f"retrain:{model}" in self._busy_tasks():
            logger.info("scheduler: a retrain of %s is already queued or running", model)
            return None
        return self._enqueue("retrain", model, reason, time.time())

    def _every(self, kind: Kind, model: str) -> float:
        values = {
            "retrain": self.settings.retrain_every,
            "rebuild": self.settings.rebuild_every,
            "drift": self.settings.drift_every,
        }[kind]
        return per_model(values, model)

    def _due(self, kind: Kind, model: str, age: float, events: int) -> str | None:
        every = self._every(kind, model)
        if every and age >= every:
            last = {"retrain": "training", "rebuild": "publish", "drift": "check or publish"}[kind]
            return f"{age:.0f} s since the last {last} (every {every:g} s)"
        threshold = per_model(self.settings.retrain_after_events, model)
        if kind == "retrain" and threshold and events >= threshold:
            return f"{events} events since the last training (after {threshold:g})"
        return None

    def _enqueue(self, kind: Kind, model: str, reason: str, now: float) -> Enqueued:
        job = self.queue.enqueue(
            FUNCTIONS[kind],
            model,
            job_timeout=max(self.settings.job_timeout, 3_600),
            result_ttl=86_400,
            failure_ttl=7 * 86_400,
            description=f"scheduled {kind} of {model}: {reason}",
        )
        record = {"job_id": job.id, "at": now, "reason": reason}
        self.connection.hset(keys.scheduler_tasks_key(), f"{kind}:{model}", json.dumps(record))
        logger.info("scheduler: enqueued the %s of %s (%s): job %s", kind, model, reason, job.id)
        return Enqueued(kind, model, job.id, reason)

    def _last_enqueued(self) -> dict[str, float]:
        raw = self.connection.hgetall(keys.scheduler_tasks_key())
        return {_text(task): float(json.loads(value)["at"]) for task, value in raw.items()}

    def _busy_tasks(self) -> set[str]:
        """Tasks with a job on the training queue, held by a worker or running."""
        q = self.queue
        ids = set(q.get_job_ids()) | set(q.intermediate_queue.get_job_ids())
        started = StartedJobRegistry(queue=q)
        ids |= {job_id for job_id, _ in started.get_job_and_execution_ids(cleanup=False)}
        busy = set()
        jobs = SafeJob.fetch_many(sorted(ids), self.connection, serializer=JSONSerializer)
        for job in jobs:
            if job is None:
                continue
            try:
                name, args = job.func_name, job.args
            except Exception:  # unreadable: a worker sets it aside
                continue
            for kind, function in FUNCTIONS.items():
                if name == function and args:
                    busy.add(f"{kind}:{args[0]}")
        return busy


def _change(held: bool) -> str:
    return "active (holds the lease)" if held else "standing by (another scheduler is active)"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
