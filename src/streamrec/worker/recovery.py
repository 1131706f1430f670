"""Hand back what dead workers left, and set aside what no worker can run.

A worker killed mid-job leaves its job in RQ's started registry or, if it died between
taking the job off the queue and registering it as started, in the queue's intermediate
list. RQ itself rescues either only after minutes. Every streamrec worker runs
:func:`recover` when it starts and then every few seconds: it hands back the jobs of
workers that are dead, and moves aside (:class:`~streamrec.state.quarantine.Quarantine`)
any entry that cannot be loaded or is not a streamrec job, instead of pushing it back.

A worker is dead when its RQ worker key is gone (its heartbeat stopped: this works across
hosts and containers) or, on the same machine, when its process is gone. A worker name
records host, boot id, pid and the process's start time, so a restarted container that
reuses the hostname and pid 1 of its predecessor is still told apart from it.
Retrying is always safe: the ledger makes a batch that was applied a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Collection, Sequence
from functools import cache
from pathlib import Path

import redis
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from streamrec.errors import ForbiddenJobError
from streamrec.state.quarantine import Quarantine
from streamrec.state.queues import JOB_ID, SafeJob, queue
from streamrec.state.scripts import script

logger = logging.getLogger(__name__)

#: What the broad handlers below never swallow: a lost Redis (the worker reconnects) and a
#: stop request (RQ raises it from its signal handler, wherever the worker is).
_PASS_THROUGH = (redis.ConnectionError, redis.TimeoutError, StopRequested)

#: Seconds an intermediate-list entry may stay unregistered before it counts as abandoned (a
#: live worker registers a job within milliseconds of taking it).
INTERMEDIATE_GRACE = 0.5


@cache
def _machine() -> tuple[str, str]:
    """This host's name and (on Linux) boot id, which tell processes of one machine."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        boot = "0"
    return socket.gethostname(), boot


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (None if it does not exist;
    ``"0"`` where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counting after the command name


def worker_name() -> str:
    """A unique worker name: ``host.boot.pid.start.random``."""
    host, boot = _machine()
    pid = os.getpid()
    return f"{host}.{boot}.{pid}.{_start_ticks(pid) or 0}.{uuid.uuid4().hex[:6]}"


def is_dead(connection: redis.Redis, name: str, known_dead: Collection[str] = ()) -> bool:
    """Whether the worker ``name`` is gone (see the module doc)."""
    if not name or name in known_dead:
        return True
    if not connection.exists(Worker.redis_worker_namespace_prefix + name):
        return True
    parts = name.rsplit(".", 4)
    if len(parts) != 5:
        return False
    host, boot, pid, ticks, _ = parts
    if (host, boot) != _machine() or not pid.isdigit():
        return False
    running = _start_ticks(int(pid))
    return running is None or (running != "0" and running != ticks)


def recover(
    connection: redis.Redis,
    queue_names: Sequence[str],
    quarantine: Quarantine,
    known_dead: Collection[str] = (),
    seen: dict[str, set[str]] | None = None,
) -> int:
    """Hand the jobs of dead workers back to RQ; set aside entries no worker can run.

    An entry of a queue's intermediate list that no worker registered as started is
    abandoned when it is still there a moment later: with ``seen`` (what the previous call
    found, updated in place) when it was there at the previous call too, which spares a
    periodic caller any waiting; without, after :data:`INTERMEDIATE_GRACE` seconds.

    Args:
        connection: a redis-py client.
        queue_names: the queues to look after.
        quarantine: where unloadable or foreign entries go.
        known_dead: names of workers of this process that stopped (they look alive).
        seen: unregistered intermediate entries per queue at the previous call.

    Returns:
        How many jobs were handed back or set aside.
    """
    found = 0
    now = time.time()
    for name in queue_names:
        registry = StartedJobRegistry(queue=queue(connection, name))
        entries: list[tuple[bytes, float]] = connection.zrange(  # type: ignore[assignment]
            registry.key, 0, -1, withscores=True
        )
        for raw, score in entries:
            composite = raw.decode("utf-8", errors="replace")
            job_id, _, execution_id = composite.partition(":")
            try:
                owner = Execution.fetch(execution_id, job_id, connection).worker_name
            except _PASS_THROUGH:
                raise
            except Exception:  # the execution record expired with its worker, or is garbage
                owner = ""
            dead = is_dead(connection, owner, known_dead)
            if not dead and score > now:
                continue
            if not _loadable(connection, name, job_id, quarantine, ()):
                connection.zrem(registry.key, raw)
                found += 1
            elif dead:
                connection.zadd(registry.key, {raw: 0}, xx=True)
                logger.warning("job %s of dead worker %r marked abandoned", job_id, owner)
                found += 1
        try:
            registry.cleanup()  # RQ retries (or fails) what is expired, and what was marked so
        except _PASS_THROUGH:
            raise
        except Exception:
            logger.exception("queue %s: cleaning up the started registry failed", name)
        found += _recover_intermediate(connection, name, registry, quarantine, seen)
    return found


def _loadable(
    connection: redis.Redis,
    queue_name: str,
    job_id: str,
    quarantine: Quarantine,
    lists: tuple[str, ...],
) -> bool:
    """Whether ``job_id`` is a streamrec job RQ can load; if not, it is set aside."""
    _, reason = load_job(connection, queue_name, job_id)
    if reason is None:
        return True
    if reason != "missing":
        quarantine.set_aside(queue_name, job_id, reason, lists=lists)
    elif lists:
        for key in lists:
            connection.lrem(key, 0, job_id)
    return False


def load_job(
    connection: redis.Redis, queue_name: str, job_id: str
) -> tuple[SafeJob | None, str | None]:
    """Load ``job_id`` found on ``queue_name``: ``(job, None)`` if it can run there, else
    ``(None, why not)``, where the reason ``"missing"`` means its job key no longer exists
    (as for a finished job's leftover id)."""
    if not JOB_ID.fullmatch(job_id):
        return None, f"job id {job_id!r} is not a streamrec job id"
    try:
        job = SafeJob.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert isinstance(job, SafeJob)
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        if not connection.exists(Job.key_for(job_id)):
            return None, "missing"
        return None, f"RQ cannot load it: {_describe(exc)}"
    if job.origin != queue_name:
        return None, f"it names queue {job.origin!r} but was found on {queue_name!r}"
    try:
        job.check()
    except ForbiddenJobError as exc:
        return None, exc.reason
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        return None, f"RQ cannot read its data: {_describe(exc)}"
    return job, None


def _recover_intermediate(
    connection: redis.Redis,
    name: str,
    registry: StartedJobRegistry,
    quarantine: Quarantine,
    seen: dict[str, set[str]] | None,
) -> int:
    q = queue(connection, name)

    def unregistered() -> set[str]:
        started = {job_id for job_id, _ in registry.get_job_and_execution_ids(cleanup=False)}
        return set(q.intermediate_queue.get_job_ids()) - started

    stuck = unregistered()
    if seen is not None:
        stuck, seen[name] = stuck & seen.get(name, set()), stuck
    elif stuck:
        time.sleep(INTERMEDIATE_GRACE)
        stuck &= unregistered()
    requeue = script(connection, "requeue")
    for job_id in stuck:
        lists = (q.intermediate_queue_key,)
        if _loadable(connection, name, job_id, quarantine, lists) and requeue(
            keys=[q.intermediate_queue_key, q.key], args=[job_id]
        ):
            logger.warning(
                "job %s was taken from queue %s by a worker that died: requeued", job_id, name
            )
    return len(stuck)


def _describe(exc: BaseException) -> str:
    """An exception for a reason text (RQ's parsers fail with bare assertions)."""
    text = str(exc) or "a field holds a value RQ cannot parse (see the job snapshot)"
    return f"{type(exc).__name__}: {text}"
