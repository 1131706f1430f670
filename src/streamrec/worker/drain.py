"""Draining: a worker running one event batch takes the batches queued behind it too.

RQ's bookkeeping costs a dozen round trips per job (registries, status, clean-up) whatever
the job's size, so a worker that falls behind would spend most of its time on it. While an
``apply_events`` job runs, :class:`Drain` moves up to ``limit`` more event jobs from the
head of the queue to the queue's intermediate list (where a worker keeps the jobs it
holds) and reads them, in one round trip (``lua/drain_take.lua``); the job applies all
their batches together (one round trip, one refresh of their users). At low load nothing
waits and a job is just itself; under load the cost per batch shrinks as the backlog
grows. The job then goes on taking the batches that arrived while it ran
(:meth:`Drain.follow`, for up to :data:`FOLLOW_SECONDS`), so a steady stream is served by
few jobs, round after round, without RQ's bookkeeping between them; each round's take
also deletes the jobs the round before applied. Only jobs as the
producer sends them are drained (``apply_events``, no
result kept); anything else is put back at the head of the queue, in order, where the
worker's normal path takes it (and sets it aside if it must).

Nothing is lost: a drained job stays on the intermediate list until its batch is applied
(its users' refresh is then as durable as any batch's, see
:mod:`~streamrec.serving.online`); if the worker dies first, recovery
(:mod:`~streamrec.worker.recovery`) finds the job unregistered there and puts it back on
the queue, and the apply ledger makes a second delivery a no-op where the first got
through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.errors import ForbiddenJobError
from streamrec.state.queues import APPLY_EVENTS, JOB_ID, SafeJob, pushed_at, queue
from streamrec.state.scripts import script

if TYPE_CHECKING:
    from streamrec.serving.handler import EventHandler

logger = logging.getLogger(__name__)

#: Seconds one job goes on applying batches that arrive while it runs (:meth:`Drain.follow`);
#: then the worker's loop runs again (heartbeat, recovery, a stop request).
FOLLOW_SECONDS = 1.0


@dataclass(frozen=True)
class DrainedBatch:
    """An event job taken from the queue by a running job.

    Attributes:
        job_id: the RQ job's id.
        batch_id: its first argument, as sent.
        events: its second argument, as sent.
        sent_at: when it was enqueued, epoch seconds (None if RQ did not record it).
        origin: the events queue it was taken from.
    """

    job_id: str
    batch_id: Any
    events: Any
    sent_at: float | None
    origin: str = keys.EVENTS_QUEUE


class Drain:
    """Takes queued event jobs for the running job, and finishes them.

    Args:
        connection: the worker's redis-py client.
        limit: jobs taken per call, at most (``settings.drain_batches``).
    """

    def __init__(self, connection: redis.Redis, limit: int) -> None:
        self.connection = connection
        self.limit = limit
        self._queues: dict[str, Queue] = {}
        self._take = script(connection, "drain_take")

    def queue(self, name: str = keys.EVENTS_QUEUE) -> Queue:
        """The events queue ``name`` (a shard's)."""
        if name not in self._queues:
            self._queues[name] = queue(self.connection, name)
        return self._queues[name]

    def take(
        self, name: str = keys.EVENTS_QUEUE, finished: Sequence[DrainedBatch] = ()
    ) -> list[DrainedBatch]:
        """Move up to ``limit`` jobs from the head of events queue ``name`` to its
        intermediate list and return the event batches among them (others go back to the
        head), in one round trip that also finishes ``finished`` (see :meth:`finish`;
        batches taken from queue ``name``)."""
        q = self.queue(name)
        reply = self._run(q, self.limit, finished)
        moved = [_text(j) for j in reply[::2]]
        if not moved:
            return []
        fetched = {
            job_id: _restore(self.connection, job_id, raw)
            for job_id, raw in zip(moved, reply[1::2], strict=True)
            if JOB_ID.fullmatch(job_id)
        }
        taken: list[DrainedBatch] = []
        back: list[str] = []
        for job_id in moved:
            batch = _batch(fetched.get(job_id), name)
            if batch is None or back:  # keep the queue's order behind a job put back
                back.append(job_id)
            else:
                taken.append(batch)
        if back:
            self._put_back(q, back)
        return taken

    def follow(
        self,
        handler: EventHandler,
        name: str = keys.EVENTS_QUEUE,
        finished: Sequence[DrainedBatch] = (),
    ) -> list[DrainedBatch]:
        """Keep taking and applying the batches that arrive while a job runs, for up to
        :data:`FOLLOW_SECONDS`, until a take finds none: under a steady load one job then
        serves a stream of batches, each round a drain of its own, without RQ's per-job
        bookkeeping (a dozen round trips); each round's take finishes the batches of the
        round before. ``finished``: batches of queue ``name`` applied already, finished by
        the first take. Returns the batches applied."""
        followed: list[DrainedBatch] = []
        done = list(finished)  # applied: finished with the next take
        deadline = time.monotonic() + FOLLOW_SECONDS
        while time.monotonic() < deadline:
            more = self.take(name, done)
            done = []
            if not more:
                break
            handler.handle_many([(d.batch_id, d.events, d.sent_at) for d in more])
            done = more
            followed += more
        self.finish(done)
        return followed

    def finish(self, batches: Sequence[DrainedBatch]) -> None:
        """Delete the drained jobs: their batches are applied and served (the take script
        with nothing to take, one round trip per queue)."""
        by_origin: dict[str, list[DrainedBatch]] = {}
        for batch in batches:
            by_origin.setdefault(batch.origin, []).append(batch)
        for origin, done in by_origin.items():
            self._run(self.queue(origin), 0, done)

    def _run(self, q: Queue, limit: int, finished: Sequence[DrainedBatch]) -> list[Any]:
        """``lua/drain_take.lua`` on queue ``q``: finish ``finished`` (what RQ deletes for a
        finished job with no result kept; drained jobs have no dependencies, SafeJob.check
        refuses them), then move up to ``limit`` jobs and read them."""
        done = [batch.job_id for batch in finished]
        reply: list[Any] = self._take(
            keys=[q.key, q.intermediate_queue_key],
            args=[limit, Job.redis_job_namespace_prefix, *done],
        )
        return reply

    def _put_back(self, q: Queue, job_ids: Sequence[str]) -> None:
        """Return jobs to the head of queue ``q``, in their order."""
        with self.connection.pipeline(transaction=True) as pipe:
            for job_id in reversed(job_ids):
                pipe.lrem(q.intermediate_queue_key, 1, job_id)
                pipe.lpush(q.key, job_id)
            pipe.execute()


def _restore(connection: redis.Redis, job_id: str, raw: Sequence[bytes]) -> SafeJob | None:
    """The job of hash fields ``raw`` (flat, as HGETALL gives them), or None when RQ cannot
    load it."""
    if not raw:
        return None
    try:
        job = SafeJob(job_id, connection=connection, serializer=JSONSerializer)
        job.restore(dict(zip(raw[::2], raw[1::2], strict=True)))
    except Exception:  # the normal path sorts it out
        logger.debug("drain: RQ could not load %s", job_id, exc_info=True)
        return None
    return job


def _batch(job: SafeJob | None, origin: str) -> DrainedBatch | None:
    """The event batch a job of queue ``origin`` carries, if it is a plain ``apply_events``
    job whose result is not kept (as the producer sends them: a drained job leaves no
    result behind)."""
    if job is None or job.origin != origin or job.result_ttl != 0:
        return None
    try:
        job.check()
        if job.func_name != APPLY_EVENTS or job.kwargs or len(job.args) != 2:
            return None
        sent_at = pushed_at(job)
    except ForbiddenJobError:
        return None
    except Exception:  # a field RQ cannot parse: the normal path sets the job aside
        return None
    return DrainedBatch(job.id, job.args[0], job.args[1], sent_at, origin)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
