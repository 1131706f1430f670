"""Real worker processes: SIGKILL mid-batch, and concurrent workers vs a serial apply."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
from rq.registry import StartedJobRegistry

from streamrec import keys
from streamrec.events import EventValidator
from streamrec.producer import JOB_FUNCTION
from streamrec.settings import Settings
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import queue
from streamrec.state.stats import read_counts
from tests.integration.helpers import drain, dump_state

pytestmark = pytest.mark.slow


def make_batches(
    settings: Settings, n_batches: int, per_batch: int, n_users: int, seed: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Interleaved plays and ratings of a few users, with fixed timestamps and ids."""
    rng = random.Random(seed)
    validator = EventValidator(settings)
    batches = []
    for b in range(n_batches):
        events = []
        for n in range(per_batch):
            kind = rng.choice(["play", "play", "click", "rating"])
            weight = rng.choice([1, 2, 3, 4, 5]) if kind == "rating" else rng.randint(1, 9)
            event = validator.make(
                f"user-{rng.randrange(n_users)}",
                f"item-{rng.randrange(300)}",
                weight,
                kind,
                timestamp=1_700_000_000 + rng.randrange(10**6),
                event_id=f"e{b}-{n}",
            )
            events.append(event.to_dict())
        batches.append((f"batch-{seed}-{b}", events))
    return batches


def serial_state(conn: redis.Redis, settings: Settings, batches: list[Any]) -> dict[str, Any]:
    """The state after applying the batches one by one, in order, in this process."""
    validator = EventValidator(settings)
    store = HistoryStore(conn, settings)
    for batch_id, events in batches:
        store.apply(batch_id, [validator.parse(e) for e in events])
    state = dump_state(conn, store)
    conn.flushdb()
    return state


def enqueue(conn: redis.Redis, settings: Settings, batches: list[Any]) -> None:
    from rq import Retry

    q = queue(conn)
    for batch_id, events in batches:
        q.enqueue(
            JOB_FUNCTION, batch_id, events, job_id=batch_id, retry=Retry(max=settings.job_retries)
        )


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamrec", "worker", "--burst"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_worker_killed_with_sigkill_mid_batch_loses_and_doubles_nothing(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    batches = make_batches(settings, n_batches=60, per_batch=1500, n_users=400, seed=1)
    expected = serial_state(redis_conn, settings, batches)
    enqueue(redis_conn, settings, batches)
    registry = StartedJobRegistry(queue=queue(redis_conn))
    rng = random.Random(7)
    kills_mid_job = 0
    log: list[str] = []  # what each kill left behind, shown if an assertion fails
    for _ in range(5):
        applied_before = read_counts(redis_conn).events_applied
        worker = start_worker(subprocess_env)
        deadline = time.monotonic() + 30
        while read_counts(redis_conn).events_applied == applied_before:
            assert worker.poll() is None and time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        started = registry.get_job_and_execution_ids(cleanup=False)
        intermediate = queue(redis_conn).intermediate_queue.get_job_ids()
        kills_mid_job += bool(started or intermediate)
        log.append(
            f"applied {read_counts(redis_conn).events_applied}, started {started}, "
            f"intermediate {intermediate}, queued {queue(redis_conn).count}"
        )
    assert kills_mid_job >= 3, f"the kills should land while a batch is being processed: {log}"
    assert read_counts(redis_conn).events_applied < 60 * 1500  # work was really left over

    drain(redis_conn, settings)  # a restarted worker recovers the dead workers' jobs and finishes

    counts = read_counts(redis_conn)
    assert counts.events_applied == 60 * 1500, f"{counts}; after each kill: {log}"
    assert dump_state(redis_conn, HistoryStore(redis_conn, settings)) == expected
    parts = -(-1500 // settings.max_call_events)  # a batch over the cap is applied in parts
    assert counts.batches_applied == 60 * parts
    assert queue(redis_conn).count == 0 and registry.get_job_and_execution_ids() == []


def test_four_workers_on_interleaved_batches_match_a_serial_apply(
    redis_conn: redis.Redis, settings: Settings, subprocess_env: dict[str, str]
) -> None:
    batches = make_batches(settings, n_batches=80, per_batch=300, n_users=8, seed=2)
    expected = serial_state(redis_conn, settings, batches)
    enqueue(redis_conn, settings, batches)
    workers = [start_worker(subprocess_env) for _ in range(4)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    assert dump_state(redis_conn, HistoryStore(redis_conn, settings)) == expected
    assert read_counts(redis_conn).batches_applied == 80
    finished_by = {
        job.worker_name for job in (queue(redis_conn).fetch_job(b) for b, _ in batches) if job
    }
    assert len(finished_by) >= 2, "the batches should have been shared between workers"
    assert queue(redis_conn).name == keys.EVENTS_QUEUE
