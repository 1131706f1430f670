"""Worker processes: RQ ``SimpleWorker`` s that no data can stop and that outlive Redis.

``SimpleWorker`` runs jobs in its own process (no fork per job), which is what lets a batch
of hundreds of events cost a few milliseconds and keeps models warm in memory. On top of
it, :class:`StreamrecWorker`

- loads every job it takes itself and sets aside (:mod:`~streamrec.state.quarantine`)
  whatever RQ cannot load or streamrec did not send, instead of letting RQ's loop quit;
- heartbeats from a thread, also while a long job runs, so other workers can tell it is
  alive across hosts (:mod:`~streamrec.worker.recovery`), and every few seconds hands back
  the jobs of dead workers and serves users a dead worker left unserved;
- serves its handler's deferred users whenever its queues are empty.

:func:`run_worker` restarts the worker when Redis goes away (restarting the embedded
server when it is this home's), and gives up with :class:`RedisUnavailableError` after
``settings.reconnect_timeout``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from streamrec import keys
from streamrec.errors import RedisUnavailableError
from streamrec.serving.handler import EventHandler
from streamrec.serving.online import OnlineServing
from streamrec.settings import Settings
from streamrec.state.connection import connect
from streamrec.state.embedded import EmbeddedRedis
from streamrec.state.quarantine import Quarantine
from streamrec.state.queues import SafeJob, queue
from streamrec.worker import jobs
from streamrec.worker.drain import Drain
from streamrec.worker.recovery import load_job, recover, worker_name

logger = logging.getLogger(__name__)

#: Crashes of the work loop in a row (with Redis reachable) after which a worker gives up.
MAX_CRASHES = 5
#: Seconds between a worker's looks for what dead workers left (jobs, unserved users).
RECOVERY_EVERY = 2.0


class StreamrecWorker(SimpleWorker):
    """A ``SimpleWorker`` hardened as the module doc says.

    Args:
        queues: the RQ queues to serve (from :func:`~streamrec.state.queues.queue`).
        connection: the worker's redis-py client.
        settings: heartbeat TTL, dead-letter limit.
        handler: the event handler, whose deferred work is done when the queues are empty.
        known_dead: names of this process's earlier workers (see :func:`run_worker`).
    """

    def __init__(
        self,
        queues: Sequence[Queue],
        *,
        connection: redis.Redis,
        settings: Settings,
        handler: EventHandler | None = None,
        known_dead: Sequence[str] = (),
    ) -> None:
        super().__init__(
            list(queues),
            connection=connection,
            serializer=JSONSerializer,
            job_class=SafeJob,
            name=worker_name(),
            worker_ttl=settings.worker_ttl,
        )
        self.settings = settings
        self.handler = handler
        self.known_dead = list(known_dead)
        self.quarantine = Quarantine(connection, settings.dead_letter_limit)
        self.finished = False  # a burst run found its queues empty
        self._next_recovery = 0.0
        self._seen: dict[str, set[str]] = {}
        self._stop_beating = threading.Event()
        self._last_beat = -1.0

    @property
    def dequeue_timeout(self) -> int:
        """Seconds one blocking pop waits: a third of the heartbeat TTL."""
        return max(1, self.worker_ttl // 3)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """Extend the worker key by the heartbeat TTL (never longer: a dead worker must be
        recognised within it, while a job runs too). RQ asks several times per job; the
        heartbeat thread keeps the key alive anyway, so at most one a second is sent."""
        now = time.monotonic()
        if now - self._last_beat >= 1.0:
            self._last_beat = now
            super().heartbeat(self.worker_ttl, pipeline=pipeline)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """Run RQ's work loop with the heartbeat thread beside it, after handing back what
        dead workers left (waiting a moment for entries another worker is just taking)."""
        recover(self.connection, self.queue_names(), self.quarantine, self.known_dead)
        self._next_recovery = time.monotonic() + RECOVERY_EVERY
        self._stop_beating.clear()
        beat = threading.Thread(target=self._heartbeats, name="worker-heartbeat", daemon=True)
        beat.start()
        try:
            return bool(super().work(*args, **kwargs))
        finally:
            self._stop_beating.set()

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's bookkeeping, always taking the job off the intermediate list (RQ does so only
        for a single queue, but this worker pops every queue through one)."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The next runnable job; entries that cannot run are set aside on the way."""
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + ",".join(self.queue_names()))  # type: ignore[no-untyped-call]
        idle_since = time.monotonic()
        while True:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            self._between_jobs()
            pending = self.handler is not None and self.handler.pending
            popped = self._pop(None if pending else timeout)
            if popped is None:
                if pending:
                    assert self.handler is not None
                    self.handler.flush()  # nothing waits: serve the deferred users now
                    continue
                if timeout is None:
                    self.finished = True
                    return None
                if max_idle_time is not None and time.monotonic() - idle_since > max_idle_time:
                    return None
                continue
            loaded = self._load(*popped)
            if loaded is not None:
                job, found_on = loaded
                job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
                self.log.info("Worker %s: %s: %s", self.name, found_on.name, job.id)
                return loaded

    def run_maintenance_tasks(self) -> None:
        """RQ's registry clean-up, after ours (which sets aside what RQ would choke on)."""
        self._recover()
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError, StopRequested):
            raise
        except Exception:
            self.log.exception("Worker %s: RQ's maintenance failed; going on", self.name)
            self.last_cleaned_at = self.last_cleaned_at or _utcnow()

    def _between_jobs(self) -> None:
        if time.monotonic() >= self._next_recovery:
            self._recover()

    def _recover(self) -> None:
        self._next_recovery = time.monotonic() + RECOVERY_EVERY
        names = self.queue_names()
        recover(self.connection, names, self.quarantine, self.known_dead, self._seen)
        if self.handler is not None:
            for hook in self.handler.deferring:
                if isinstance(hook, OnlineServing):
                    hook.recover()

    def _pop(self, timeout: int | None) -> tuple[Queue, str] | None:
        """Move the next job id to its queue's intermediate list (blocking up to
        ``timeout`` seconds on the first queue; None does not block)."""
        for q in self._ordered_queues:
            job_id = self.connection.lmove(q.key, q.intermediate_queue_key)
            if job_id is not None:
                return q, _text(job_id)
        if timeout is None:
            return None
        first = self._ordered_queues[0]
        wait = timeout if len(self._ordered_queues) == 1 else min(timeout, 1)
        job_id = self.connection.blmove(first.key, first.intermediate_queue_key, wait)
        return None if job_id is None else (first, _text(job_id))

    def _load(self, q: Queue, job_id: str) -> tuple[Job, Queue] | None:
        job, problem = load_job(self.connection, q.name, job_id)
        if problem == "missing":  # a finished job's leftover id
            self.connection.lrem(q.intermediate_queue_key, 0, job_id)
            return None
        if job is None:
            assert problem is not None
            self.quarantine.set_aside(q.name, job_id, problem, lists=(q.intermediate_queue_key,))
            return None
        return job, q

    def _heartbeats(self) -> None:
        """Keep the worker key, and the running job's registry entry, alive."""
        every = self.worker_ttl / 3
        while not self._stop_beating.wait(every):
            try:
                with self.connection.pipeline() as pipe:
                    super().heartbeat(self.worker_ttl, pipeline=pipe)
                    for execution in list(self.executions.values()):
                        job = execution._job
                        if job is not None:
                            ttl = self.get_heartbeat_ttl(job)
                            execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
                    pipe.execute()
            except Exception:  # the main loop notices a lost Redis; this thread only beats
                logger.debug("worker %s: heartbeat failed", self.name, exc_info=True)


def run_worker(
    connection: redis.Redis,
    settings: Settings,
    queue_names: Sequence[str],
    *,
    burst: bool = False,
    freeze: bool = False,
) -> None:
    """Run one worker in this process until stopped (or, with ``burst``, until the queues
    are empty), restarting it when Redis goes away. ``freeze``: the process is the
    worker's own (``streamrec worker``): what is loaded before the first job is frozen
    out of the garbage collector's sight (``gc.freeze``).

    Give it a connection that does not retry on its own (:func:`worker_connection`): a
    worker must notice a lost server, since a restarted server may have lost its last
    writes, and the worker's in-memory copy of histories then starts afresh.

    Raises:
        RedisUnavailableError: Redis stayed unreachable for ``settings.reconnect_timeout``.
        RuntimeError: the work loop kept crashing with Redis reachable.
    """
    known_dead: list[str] = []
    crashes = 0
    while True:
        handler = None
        events = [name for name in queue_names if keys.is_events_queue(name)]
        if events:
            handler = jobs.prepare(connection, settings, coalesce=True, queues=events)
        if freeze:  # what is loaded now (modules, numba, the models) lives as long as the
            gc.freeze()  # process: out of the collector's sight, a full collection no longer
            # walks it (135k objects, about 0.1 s); no collection first: it would finalise
            # whatever garbage the host process holds, mid-start
        drain = (
            Drain(connection, settings.drain_batches)
            if handler and settings.drain_batches
            else None
        )
        jobs.bind(connection, settings, handler, drain)
        worker = StreamrecWorker(
            [queue(connection, name) for name in queue_names],
            connection=connection,
            settings=settings,
            handler=handler,
            known_dead=known_dead,
        )
        started = time.monotonic()
        stop_writing = threading.Event()
        writers = _freshness_writers(handler, stop_writing)
        try:
            worker.work(burst=burst, logging_level=logging.getLevelName(logger.getEffectiveLevel()))
            if handler is not None:
                handler.flush()  # a stopped worker leaves nothing deferred
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            logger.warning("worker %s: lost Redis (%s)", worker.name, exc)
        finally:
            stop_writing.set()  # each writer writes what it holds, then ends
            for writer in writers:
                writer.join(timeout=5.0)
        if worker.finished or worker._stop_requested or worker._shutdown_requested_date:
            return
        known_dead.append(worker.name)
        if time.monotonic() - started > 60:
            crashes = 0  # it worked for a while: count crashes in a row only
        if _reachable(connection):
            crashes += 1
            if crashes >= MAX_CRASHES:
                raise RuntimeError(f"worker crashed {crashes} times in a row; see the log")
            time.sleep(min(2.0**crashes * 0.1, 5.0))
        else:
            crashes = 0
            _wait_for_redis(connection, settings)
        logger.warning("worker: starting again (earlier workers: %s)", ", ".join(known_dead))


def _freshness_writers(
    handler: EventHandler | None, stop: threading.Event
) -> list[threading.Thread]:
    """Threads writing the event→cache latencies the handler's serving records to Redis
    once a second (see :mod:`~streamrec.state.freshness`), until ``stop`` is set."""
    logs = [
        h.freshness for h in (handler.deferring if handler else []) if isinstance(h, OnlineServing)
    ]
    threads = [
        threading.Thread(target=log.run, args=(stop,), name="worker-freshness", daemon=True)
        for log in logs
    ]
    for thread in threads:
        thread.start()
    return threads


def worker_connection(settings: Settings) -> redis.Redis:
    """A client for a worker: no silent retries (see :func:`run_worker`)."""
    return connect(settings, retry=Retry(NoBackoff(), 0))


def _reachable(connection: redis.Redis) -> bool:
    try:
        return bool(connection.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _wait_for_redis(connection: redis.Redis, settings: Settings) -> None:
    """Wait (with backoff) until Redis answers again; restart the embedded server when this
    home's has died."""
    deadline = time.monotonic() + settings.reconnect_timeout
    wait = 0.1
    while time.monotonic() < deadline:
        if settings.redis_url is None:
            try:
                EmbeddedRedis(settings.redis_dir).ensure_running()
            except RedisUnavailableError as exc:
                logger.warning("worker: cannot restart the embedded Redis yet: %s", exc)
        if _reachable(connection):
            return
        time.sleep(wait)
        wait = min(wait * 2, 5.0)
    raise RedisUnavailableError(
        f"Redis stayed unreachable for {settings.reconnect_timeout:g} s; the worker gives up"
    )


def _text(value: Any) -> str:
    return (
        value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else str(value)
    )


def _utcnow() -> Any:
    from rq.utils import now

    return now()
