"""Worker start-up: recover what dead workers left, then run RQ ``SimpleWorker`` processes.

``SimpleWorker`` runs jobs in its own process (no fork per job), which is what lets a batch
of hundreds of events cost a few milliseconds, and later keeps models warm in memory.
A worker killed mid-job leaves its job in RQ's started registry, or, if it died between
taking the job off the queue and registering it as started, in the queue's intermediate
list. RQ itself rescues either only after a minute or more. At start-up we expire the
executions of workers on this host whose process is gone, so RQ's own clean-up retries them
now, and push back intermediate entries that no worker registered within a grace period.
Retrying is always safe: the apply script's ledger makes a batch that was applied a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

import redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.settings import Settings
from streamrec.state.queues import queue
from streamrec.worker.handlers import EventHandler
from streamrec.worker.jobs import prepare

logger = logging.getLogger(__name__)

#: Seconds an intermediate-list entry may stay unregistered before it counts as abandoned (a
#: live worker registers a job within milliseconds of taking it).
INTERMEDIATE_GRACE = 0.5


def worker_name() -> str:
    """A worker name that records host and pid, so a restarted sibling can tell it died."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def recover_abandoned(connection: redis.Redis, queue_names: Sequence[str]) -> int:
    """Hand the jobs of dead workers on this host back to RQ for a retry.

    Returns:
        How many executions were found abandoned.
    """
    found = 0
    for name in queue_names:
        registry = StartedJobRegistry(queue=queue(connection, name))
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            try:
                execution = Execution.fetch(execution_id, job_id, connection)
                owner = execution.worker_name
            except ValueError:
                owner = ""  # the execution record expired with its worker
            if owner and not _is_dead_here(owner):
                continue
            composite = f"{job_id}:{execution_id}"
            connection.zadd(registry.key, {composite: 0}, xx=True)
            found += 1
            logger.warning("job %s of dead worker %r handed back for retry", job_id, owner)
        registry.cleanup()
        found += _recover_intermediate(connection, name, registry)
    return found


def _recover_intermediate(connection: redis.Redis, name: str, registry: StartedJobRegistry) -> int:
    q = queue(connection, name)

    def unregistered() -> set[str]:
        started = {job_id for job_id, _ in registry.get_job_and_execution_ids(cleanup=False)}
        return set(q.intermediate_queue.get_job_ids()) - started

    stuck = unregistered()
    if not stuck:
        return 0
    time.sleep(INTERMEDIATE_GRACE)
    stuck &= unregistered()
    for job_id in stuck:
        with connection.pipeline() as pipe:
            pipe.lrem(q.intermediate_queue_key, 1, job_id)
            q.push_job_id(job_id, pipeline=pipe, at_front=True)
            pipe.execute()
        logger.warning(
            "job %s was taken from queue %s by a worker that died: requeued", job_id, name
        )
    return len(stuck)


class CoalescingWorker(SimpleWorker):
    """A ``SimpleWorker`` that does its handler's deferred work whenever its queues are empty.

    The serving hook defers refreshing users while more batches wait (see
    :mod:`~streamrec.worker.serving`); before blocking for the next job this worker first
    looks for one without blocking and, finding none, flushes the deferred work. So nothing
    stays deferred while the worker idles, even when another worker took the jobs it saw.
    """

    handler: EventHandler | None = None

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Dequeue the next job, flushing deferred work first if none is waiting."""
        if self.handler is not None and self.handler.pending:
            found = super().dequeue_job_and_maintain_ttl(None)
            if found is not None:
                return found
            self.handler.flush()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)


def run_worker(connection: redis.Redis, queue_names: Sequence[str], *, burst: bool = False) -> None:
    """Run one worker in this process until stopped (or, with ``burst``, until queues empty)."""
    recover_abandoned(connection, queue_names)
    worker = CoalescingWorker(
        [queue(connection, name) for name in queue_names],
        connection=connection,
        serializer=JSONSerializer,
        name=worker_name(),
    )
    if keys.EVENTS_QUEUE in queue_names:
        worker.handler = prepare(connection, Settings.from_env(), coalesce=True)
    try:
        worker.work(burst=burst, logging_level=logging.getLevelName(logging.getLogger().level))
    finally:
        if worker.handler is not None:
            worker.handler.flush()  # a stopped worker leaves nothing deferred


def spawn_workers(
    count: int,
    queue_names: Sequence[str],
    *,
    burst: bool = False,
    env: dict[str, str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes (``python -m streamrec worker``) and return them."""
    command = [sys.executable, "-m", "streamrec", "worker", "--processes", "1"]
    for name in queue_names:
        command += ["--queue", name]
    if burst:
        command.append("--burst")
    return [subprocess.Popen(command, env=env) for _ in range(count)]


def stop_workers(children: Sequence[subprocess.Popen[bytes]]) -> None:
    """Ask worker processes to finish their job and exit (SIGTERM), and wait for them."""
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        child.wait()


def _is_dead_here(name: str) -> bool:
    parts = name.rsplit(".", 2)
    if len(parts) != 3:
        return False
    host, pid_text, _ = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
