"""The RQ queues and the only jobs they may carry.

Queues always use RQ's JSON serializer (nothing in Redis is ever unpickled) and
:class:`SafeJob`: RQ imports and calls whatever function name a job holds, and imports
the callbacks a job names (even when cleaning up after a dead worker), so anyone able to
write to Redis could otherwise run code on every worker. A :class:`SafeJob` names one of
streamrec's own job functions for its queue, or it is never run: :meth:`SafeJob.check`
says why, and the worker moves it aside (:mod:`~streamrec.state.quarantine`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.errors import ForbiddenJobError

#: The job functions a worker runs (dotted names, checked before anything is imported).
APPLY_EVENTS = "streamrec.worker.jobs.apply_events"
RETRAIN_MODEL = "streamrec.worker.jobs.retrain_model"
REBUILD_INDEX = "streamrec.worker.jobs.rebuild_index"
CHECK_DRIFT = "streamrec.worker.jobs.check_drift"

#: Which function each queue may carry (every shard's events queue as ``events``: see
#: :func:`allowed_functions`).
ALLOWED_FUNCTIONS: dict[str, frozenset[str]] = {
    keys.EVENTS_QUEUE: frozenset({APPLY_EVENTS}),
    keys.TRAINING_QUEUE: frozenset({RETRAIN_MODEL, REBUILD_INDEX, CHECK_DRIFT}),
}


def allowed_functions(queue_name: str) -> frozenset[str] | None:
    """The functions queue ``queue_name`` may carry (None: not a streamrec queue)."""
    if keys.is_events_queue(queue_name):
        return ALLOWED_FUNCTIONS[keys.EVENTS_QUEUE]
    return ALLOWED_FUNCTIONS.get(queue_name)


#: The job meta field in which the producer carries when a batch got its first event.
PUSHED_AT = "pushed_at"

#: Job ids as RQ itself accepts them for custom ids (ours are hex digests).
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


class SafeJob(Job):
    """An RQ job that runs only streamrec's own functions, and never a callback or webhook.

    The function is checked against :data:`ALLOWED_FUNCTIONS` before it is imported, so a
    job naming anything else fails without importing it; callbacks are never imported
    (their properties are always None) and webhooks are never sent.
    """

    def check(self) -> None:
        """Raise :class:`ForbiddenJobError` unless this is a job streamrec would send.

        The job must name the function allowed on its queue (``origin``), with JSON
        arguments (a list and a dict), and carry no instance, callback, webhook or
        dependency.
        """
        if not JOB_ID.fullmatch(self.id):
            raise ForbiddenJobError(self.id, f"job id {self.id!r} is not a streamrec job id")
        allowed = allowed_functions(self.origin)
        if allowed is None:
            raise ForbiddenJobError(self.id, f"queue {self.origin!r} is not a streamrec queue")
        name = self.func_name
        if name not in allowed:
            raise ForbiddenJobError(
                self.id,
                f"function {name!r} is not allowed on queue {self.origin!r} "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        if self.instance is not None:
            raise ForbiddenJobError(self.id, "a job must not name an instance")
        if not isinstance(self.args, list | tuple) or not isinstance(self.kwargs, dict):
            raise ForbiddenJobError(self.id, "arguments must be a JSON list and object")
        extras = {
            "success callback": self._success_callback_name,
            "failure callback": self._failure_callback_name,
            "stopped callback": self._stopped_callback_name,
            "webhooks": self.webhooks,
            "dependencies": self._dependency_ids,
        }
        for what, value in extras.items():
            if value:
                raise ForbiddenJobError(self.id, f"a streamrec job has no {what} (found {value!r})")

    @property
    def func(self) -> Callable[..., Any] | None:
        """The job function, imported only after :meth:`check` passed."""
        self.check()
        return super().func  # type: ignore[no-any-return]

    @property
    def success_callback(self) -> None:
        """Never a callback: streamrec jobs have none."""
        return None

    @property
    def failure_callback(self) -> None:
        """Never a callback: streamrec jobs have none."""
        return None

    @property
    def stopped_callback(self) -> None:
        """Never a callback: streamrec jobs have none."""
        return None

    def send_webhooks(self, status: str | JobStatus, *, exc_string: str | None = None) -> None:
        """Never sends anything: streamrec jobs have no webhooks."""


def queue(connection: redis.Redis, name: str = keys.EVENTS_QUEUE) -> Queue:
    """The RQ queue ``name`` with the JSON serializer and :class:`SafeJob`."""
    return Queue(name, connection=connection, serializer=JSONSerializer, job_class=SafeJob)


def pushed_at(job: Job) -> float | None:
    """When ``job``'s batch got its first event (epoch seconds, the producer's clock): the
    ``pushed_at`` the producer carries in the job's meta, else when the job was created
    (a job from an older producer); None when neither is known or the meta is not a
    finite number."""
    value = job.meta.get(PUSHED_AT) if isinstance(job.meta, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return job.created_at.timestamp() if job.created_at else None
