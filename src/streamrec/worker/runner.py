"""Worker start-up: recover what dead workers left, then run RQ ``SimpleWorker`` processes.

``SimpleWorker`` runs jobs in its own process (no fork per job), which is what lets a batch
of hundreds of events cost a few milliseconds, and later keeps models warm in memory.
A worker killed mid-job leaves its job in RQ's started registry; RQ itself retries it only
once the execution's heartbeat has expired (a minute or more). At start-up we look for
executions of workers on this host whose process is gone and expire them at once, so RQ's
own clean-up retries them now. Retrying is safe: the apply script's ledger makes a batch
that did get applied a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence

import redis
from rq import SimpleWorker
from rq.executions import Execution
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from streamrec.state.queues import queue

logger = logging.getLogger(__name__)


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
    return found


def run_worker(
    connection: redis.Redis, queue_names: Sequence[str], *, burst: bool = False
) -> None:
    """Run one worker in this process until stopped (or, with ``burst``, until queues empty)."""
    recover_abandoned(connection, queue_names)
    worker = SimpleWorker(
        [queue(connection, name) for name in queue_names],
        connection=connection,
        serializer=JSONSerializer,
        name=worker_name(),
    )
    worker.work(burst=burst, logging_level=logging.getLevelName(logging.getLogger().level))


def spawn_workers(
    count: int, queue_names: Sequence[str], *, burst: bool = False, env: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` worker processes (``python -m streamrec worker``) and return them."""
    command = [sys.executable, "-m", "streamrec", "worker", "--processes", "1"]
    for name in queue_names:
        command += ["--queue", name]
    if burst:
        command.append("--burst")
    return [subprocess.Popen(command, env=env) for _ in range(count)]


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
