"""Forgetting a user: every copy of their data goes, and nothing writes it back.

:func:`forget_user` removes, in this order:

1. the user's events from every job payload RQ holds (queued, taken by a worker, started,
   failed, scheduled or deferred ``apply_events`` jobs), rewritten without them;
2. the user's state (history, ratings, version, ids, cached lists, their line in unserved
   batches) and their share of the popularity counts, in one script that also leaves a
   tombstone: the events of batches sent before the forget are dropped if a worker
   applies them later, and no list computed from the old history is cached again (see
   ``lua/forget_user.lua``);
3. dead letters and quarantined jobs that name the user (exact match of the ``user``
   field, never a substring).

A user found nowhere is reported unknown and nothing changes.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from streamrec import keys
from streamrec.settings import Settings
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.histories import HistoryStore
from streamrec.state.quarantine import Quarantine
from streamrec.state.queues import APPLY_EVENTS, queue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetReport:
    """What forgetting a user removed.

    Attributes:
        user: the user.
        existed: anything of the user was stored in the state.
        queued_events: events removed from job payloads.
        jobs: job payloads rewritten.
        dead_letters: dead letters removed.
        quarantined: quarantined jobs removed.
    """

    user: str
    existed: bool
    queued_events: int
    jobs: int
    dead_letters: int
    quarantined: int

    @property
    def found(self) -> bool:
        """Whether the user was found anywhere."""
        return bool(self.existed or self.queued_events or self.dead_letters or self.quarantined)


def forget_user(
    connection: redis.Redis, settings: Settings, user: str, models: Sequence[str]
) -> ForgetReport:
    """Remove every copy of ``user`` (see the module doc).

    Args:
        connection: a redis-py client.
        settings: ledger retention (how long the tombstone lasts).
        user: the user's id.
        models: every model that may cache a list of the user (the model registry's names).
    """
    events = jobs = 0
    for job_id in _job_ids(connection, keys.events_queues(settings.event_shards)):
        removed = _scrub_job(connection, job_id, user)
        events += removed
        jobs += bool(removed)
    existed = HistoryStore(connection, settings).forget(
        user, extra_keys=keys.user_cache_keys(user, models), tombstone=events > 0
    )
    report = ForgetReport(
        user=user,
        existed=existed,
        queued_events=events,
        jobs=jobs,
        dead_letters=DeadLetterStore(connection).scrub_user(user),
        quarantined=Quarantine(connection).scrub_user(user),
    )
    logger.info("forgot %r: %s", user, report)
    return report


def _job_ids(connection: redis.Redis, queues: Sequence[str]) -> Iterator[str]:
    """Every job id RQ holds for the events ``queues`` (every shard's), once each."""
    seen: set[str] = set()
    found: list[Any] = []
    for q in (queue(connection, name) for name in queues):
        for key in (q.key, q.intermediate_queue_key):
            found += connection.lrange(key, 0, -1)
        for registry in (
            StartedJobRegistry(queue=q),
            FailedJobRegistry(queue=q),
            ScheduledJobRegistry(queue=q),  # type: ignore[no-untyped-call]
            DeferredJobRegistry(queue=q),
        ):
            members: list[bytes] = connection.zrange(registry.key, 0, -1)  # type: ignore[assignment]
            found += [raw.split(b":", 1)[0] for raw in members]
    for raw in found:
        job_id = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        if job_id not in seen:
            seen.add(job_id)
            yield job_id


def _scrub_job(connection: redis.Redis, job_id: str, user: str) -> int:
    """Rewrite one job's payload without the events of ``user``; returns how many went.

    The payload is read and written under WATCH, so a concurrent change of the job
    (a worker finishing it, say) makes this try again.
    """
    key = Job.key_for(job_id)
    for _ in range(20):
        with connection.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.type(key) != b"hash":
                    return 0
                raw = pipe.hget(key, "data")
                scrubbed = _without_user(raw, user)
                if scrubbed is None:
                    return 0
                data, removed = scrubbed
                pipe.multi()
                pipe.hset(key, "data", zlib.compress(data))
                pipe.execute()
                logger.info("job %s: removed %d events of a forgotten user", job_id, removed)
                return removed
            except redis.WatchError:
                continue
    logger.warning("job %s kept changing; its payload was not scrubbed", job_id)
    return 0


def pending_events(
    connection: redis.Redis, user: str, max_jobs: int = 2000, shards: int = 1
) -> int | None:
    """How many events of ``user`` wait in RQ jobs of the events queues of ``shards``
    shards (queued, taken, started, failed or scheduled); None when more than ``max_jobs``
    jobs are held, where counting would cost too much."""
    count = 0
    for n, job_id in enumerate(_job_ids(connection, keys.events_queues(shards))):
        if n == max_jobs:
            return None
        found = _apply_payload(connection.hget(Job.key_for(job_id), "data"))
        if found is not None:
            count += sum(1 for event in found[2][1] if _names(event, user))
    return count


def _apply_payload(raw: Any) -> list[Any] | None:
    """The decoded RQ job data of an ``apply_events`` job (None for anything else)."""
    if not isinstance(raw, bytes):
        return None
    try:
        payload = json.loads(zlib.decompress(raw))
    except (zlib.error, ValueError):
        try:
            payload = json.loads(raw)
        except ValueError:
            return None
    if not (isinstance(payload, list) and len(payload) == 4 and payload[0] == APPLY_EVENTS):
        return None
    args = payload[2]
    if not (isinstance(args, list) and len(args) == 2 and isinstance(args[1], list)):
        return None
    return payload


def _without_user(raw: Any, user: str) -> tuple[bytes, int] | None:
    """RQ job data without the events of ``user`` (None if it holds none or is not an
    ``apply_events`` payload)."""
    payload = _apply_payload(raw)
    if payload is None:
        return None
    batch_id, events = payload[2]
    kept = [event for event in events if not _names(event, user)]
    removed = len(events) - len(kept)
    if not removed:
        return None
    payload[2] = [batch_id, kept]
    return json.dumps(payload).encode(), removed


def _names(event: Any, user: str) -> bool:
    """Whether a raw event (a dict, or JSON text of one) is an event of ``user``."""
    if isinstance(event, str | bytes):
        try:
            event = json.loads(event)
        except ValueError:
            return False
    return isinstance(event, dict) and event.get("user") == user
