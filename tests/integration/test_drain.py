"""A job takes the event batches queued behind it (worker.drain): fewer RQ jobs for a
backlog, nothing lost or doubled when the worker dies holding them, foreign jobs untouched."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.producer import Producer
from streamrec.serving.handler import EventHandler
from streamrec.settings import Settings
from streamrec.state.histories import HistoryStore
from streamrec.state.quarantine import Quarantine
from streamrec.state.queues import queue
from streamrec.state.stats import read_counts
from streamrec.worker.drain import Drain
from tests.integration.helpers import drain, dump_state


def backlog(conn: redis.Redis, settings: Settings, batches: int, tag: str = "u") -> None:
    """``batches`` jobs of 4 events each, queued as the producer queues them."""
    with Producer(settings, connection=conn, batch_size=4, linger=60) as producer:
        for n in range(batches * 4):
            producer.send(f"{tag}-{n % 7}", f"item-{n % 13}", 1 + n % 3)


def job_keys(conn: redis.Redis) -> list[bytes]:
    return [k for k in conn.scan_iter("rq:job:*") if not k.endswith(b":dependents")]


def test_take_moves_jobs_to_the_held_list_in_order_and_finish_deletes_them(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    backlog(redis_conn, settings, 5)
    q = queue(redis_conn)
    order = q.get_job_ids()

    taken = Drain(redis_conn, 3).take()

    assert [t.job_id for t in taken] == order[:3]
    assert q.get_job_ids() == order[3:]
    assert q.intermediate_queue.get_job_ids() == order[:3]
    assert all(len(t.events) == 4 and t.sent_at is not None for t in taken)
    Drain(redis_conn, 3).finish(taken)
    assert q.intermediate_queue.get_job_ids() == []
    assert len(job_keys(redis_conn)) == 2


def test_a_backlog_is_applied_by_fewer_jobs_than_batches_and_leaves_nothing_behind(
    redis_conn: redis.Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    backlog(redis_conn, settings, 40)
    caplog.set_level(logging.INFO, logger="streamrec.worker.jobs")

    drain(redis_conn, settings)

    counts = read_counts(redis_conn)
    assert counts.events_applied == 160 and counts.batches_applied == 40
    drained = [r for r in caplog.records if "queued batches with it" in r.getMessage()]
    assert drained, "a job should have taken the batches queued behind it"
    q = queue(redis_conn)
    assert q.count == 0 and q.intermediate_queue.get_job_ids() == []
    assert job_keys(redis_conn) == []


def test_follow_applies_batch_after_batch_until_none_waits(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """A running job goes on taking what arrives (here: a backlog three takes deep) and
    applies each batch once; the queue and the held list end empty, no job key is left."""
    backlog(redis_conn, settings, 10)
    handler = EventHandler(redis_conn, settings)

    followed = Drain(redis_conn, 4).follow(handler)

    assert len(followed) == 10 and len({f.job_id for f in followed}) == 10
    counts = read_counts(redis_conn)
    assert counts.events_applied == 40 and counts.batches_applied == 10
    q = queue(redis_conn)
    assert q.count == 0 and q.intermediate_queue.get_job_ids() == []
    assert job_keys(redis_conn) == []
    assert Drain(redis_conn, 4).follow(handler) == []  # nothing waits: one take, no apply


def test_without_draining_each_batch_is_a_job(
    redis_conn: redis.Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    backlog(redis_conn, settings, 10)
    caplog.set_level(logging.INFO, logger="streamrec.worker.jobs")

    drain(redis_conn, replace(settings, drain_batches=0))

    assert read_counts(redis_conn).events_applied == 40
    assert not [r for r in caplog.records if "queued batches with it" in r.getMessage()]


@pytest.mark.parametrize("applied", [False, True], ids=["before-apply", "after-apply"])
def test_batches_held_by_a_worker_that_died_are_applied_exactly_once(
    redis_conn: redis.Redis, settings: Settings, applied: bool
) -> None:
    """The state a kill -9 leaves between taking queued jobs and finishing them: the jobs
    on the held list, their batches applied or not. A new worker recovers them."""
    backlog(redis_conn, settings, 6)
    expected_events = 24
    taken = Drain(redis_conn, 4).take()  # the dying worker took four...
    if applied:  # ...and applied them before it died
        EventHandler(redis_conn, settings).handle_many(
            [(t.batch_id, t.events, t.sent_at) for t in taken]
        )

    drain(redis_conn, settings)

    counts = read_counts(redis_conn)
    assert counts.events_applied == expected_events
    assert counts.batches_applied == 6
    q = queue(redis_conn)
    assert q.count == 0 and q.intermediate_queue.get_job_ids() == []
    store = HistoryStore(redis_conn, settings)
    assert sum(h[2] for h in dump_state(redis_conn, store)["histories"].values()) == 24


def test_a_foreign_job_behind_a_batch_is_put_back_in_place_never_run_and_set_aside(
    redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    backlog(redis_conn, settings, 2, tag="before")
    plain = Queue(keys.EVENTS_QUEUE, connection=redis_conn, serializer=JSONSerializer)
    plain.enqueue("os.system", f"touch {marker}", job_id="foreign")
    backlog(redis_conn, settings, 2, tag="after")
    q = queue(redis_conn)
    order = q.get_job_ids()

    taken = Drain(redis_conn, 5).take()
    assert [t.job_id for t in taken] == order[:2]
    assert q.get_job_ids() == order[2:]  # the foreign job and those behind it: back in order
    EventHandler(redis_conn, settings).handle_many(
        [(t.batch_id, t.events, t.sent_at) for t in taken]
    )
    Drain(redis_conn, 5).finish(taken)

    drain(redis_conn, settings)

    assert read_counts(redis_conn).events_applied == 16
    assert not marker.exists()
    assert [e["job_id"] for e in Quarantine(redis_conn).entries(0)] == ["foreign"]


def test_ids_whose_job_key_is_missing_or_no_hash_are_put_back_and_nothing_breaks(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """The take script reads each moved job's hash: a key of another type (WRONGTYPE) or a
    missing one must not fail the take, and such an id goes back in its place."""
    backlog(redis_conn, settings, 1, tag="first")
    q = queue(redis_conn)
    redis_conn.set("rq:job:not-a-hash", "x")
    redis_conn.rpush(q.key, "not-a-hash", "no-such-job", "bad id with spaces")
    backlog(redis_conn, settings, 1, tag="last")
    order = q.get_job_ids()

    taken = Drain(redis_conn, 10).take()

    assert [t.job_id for t in taken] == order[:1]
    assert q.get_job_ids() == order[1:]
    assert redis_conn.get("rq:job:not-a-hash") == b"x"


def test_each_round_of_follow_finishes_the_batches_of_the_round_before(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """Taking and finishing share a round trip: the first take finishes the batches given,
    and the last round's batches are finished when follow ends."""
    backlog(redis_conn, settings, 3)
    q = queue(redis_conn)
    first = Drain(redis_conn, 1).take()
    EventHandler(redis_conn, settings).handle_many(
        [(t.batch_id, t.events, t.sent_at) for t in first]
    )
    assert q.intermediate_queue.get_job_ids() == [first[0].job_id]

    followed = Drain(redis_conn, 1).follow(EventHandler(redis_conn, settings), finished=first)

    assert len(followed) == 2
    assert q.count == 0 and q.intermediate_queue.get_job_ids() == []
    assert job_keys(redis_conn) == []
    assert read_counts(redis_conn).batches_applied == 3
