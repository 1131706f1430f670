"""The event pipeline on a real Redis: producer -> RQ (JSON) -> SimpleWorker -> state."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import pytest
import redis
from rq.serializers import JSONSerializer

from streamrec import keys
from streamrec.errors import InvalidEventError
from streamrec.events import EventValidator
from streamrec.producer import JOB_FUNCTION, Producer
from streamrec.serving.handler import EventHandler
from streamrec.settings import Settings
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import PUSHED_AT, pushed_at, queue
from streamrec.state.stats import read_counts
from tests.integration.helpers import drain, dump_state
from tests.malformed import MALFORMED


def test_producer_batches_reach_the_state_through_a_real_worker(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    with Producer(settings, connection=redis_conn, batch_size=4, linger=0) as producer:
        for n in range(10):
            producer.send(f"user-{n % 3}", f"item-{n}", weight=2, timestamp=1000 + n)
        producer.send("user-0", "item-0", kind="click")
    assert producer.batches_sent == 3  # 4 + 4 + 3
    job = queue(redis_conn).jobs[0]
    job_payload = redis_conn.hget(job.key, "data")
    assert job_payload is not None  # stored as zlib-compressed JSON, never a pickle
    assert JSONSerializer.loads(zlib.decompress(job_payload))[0] == JOB_FUNCTION
    drain(redis_conn, settings)
    history = HistoryStore(redis_conn, settings).get("user-0")
    assert history.interactions == {"item-0": 3.0, "item-3": 2.0, "item-6": 2.0, "item-9": 2.0}
    assert history.version == 5
    assert read_counts(redis_conn).events_applied == 11


def test_a_batch_carries_when_its_first_event_was_pushed(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """The job's meta holds the first event's push time (the start of the event→cache
    latency), before the linger that delays the job itself; a job without a usable one
    falls back to when it was created."""
    before = time.time()
    with Producer(settings, connection=redis_conn, linger=0.3) as producer:
        producer.send("pushed-1", "item-1", 1)
        producer.send("pushed-2", "item-2", 1)
        time.sleep(0.6)  # the linger sends the batch
    job = queue(redis_conn).get_jobs()[0]
    assert before <= job.meta[PUSHED_AT] <= before + 0.25
    assert job.created_at is not None and job.created_at.timestamp() - job.meta[PUSHED_AT] >= 0.25
    assert pushed_at(job) == job.meta[PUSHED_AT]
    for garbage in ("soon", float("nan"), True, None, [1]):
        job.meta[PUSHED_AT] = garbage
        assert pushed_at(job) == job.created_at.timestamp()


def test_linger_sends_a_partial_batch_without_flush(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    producer = Producer(settings, connection=redis_conn, batch_size=1000, linger=0.05)
    try:
        producer.send("u", "i")
        deadline = time.monotonic() + 5
        while queue(redis_conn).count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue(redis_conn).count == 1
    finally:
        producer.close()


def test_producer_rejects_invalid_events_and_keeps_the_valid_ones(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("u1", "i1")
        for label, raw, field in MALFORMED:
            with pytest.raises(InvalidEventError) as info:
                producer.send_raw(raw)
            assert info.value.field == field, label
        producer.send("u1", "i2")
    drain(redis_conn, settings)
    assert HistoryStore(redis_conn, settings).get("u1").interactions == {"i1": 1.0, "i2": 1.0}


def test_same_batch_delivered_twice_changes_nothing(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    store = HistoryStore(redis_conn, settings)
    events = [
        {"user": "u1", "item": "i1", "weight": 3},
        {"user": "u2", "item": "i1", "kind": "rating", "weight": 4, "timestamp": 10},
    ]
    q = queue(redis_conn)
    q.enqueue(JOB_FUNCTION, "batch-1", events, job_id="delivery-1")
    drain(redis_conn, settings)
    before = dump_state(redis_conn, store)
    q.enqueue(JOB_FUNCTION, "batch-1", events, job_id="delivery-2")  # a redelivery
    EventHandler(redis_conn, settings).handle("batch-1", events)  # and a retry in-process
    drain(redis_conn, settings)
    assert dump_state(redis_conn, store) == before
    counts = read_counts(redis_conn)
    assert (counts.events_applied, counts.batches_applied, counts.batches_duplicate) == (2, 1, 2)


def test_batches_applied_together_after_the_server_forgot_the_script(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    """Several batches go in one pipeline of plain EVALSHA calls; after SCRIPT FLUSH (as
    after a server restart) the script is loaded again and every batch applied once."""
    store = HistoryStore(redis_conn, settings)
    validator = EventValidator(settings)
    batches = [
        (f"flushed-{n}", [validator.parse({"user": f"u{n}", "item": "i1", "weight": 2})], [])
        for n in range(3)
    ]
    first = store.apply_many(batches[:2])
    redis_conn.script_flush()
    again = store.apply_many(batches)  # two redelivered, one new
    assert [o.applied for o in first] == [True, True]
    assert [o.applied for o in again] == [False, False, True]
    assert all(store.get(f"u{n}").items for n in range(3))


def test_every_malformed_event_is_dead_lettered_and_its_neighbours_applied(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    payload: list[Any] = []
    for n, (_, raw, _) in enumerate(MALFORMED):
        payload.append({"user": "good", "item": f"before-{n}"})
        payload.append(
            json.loads(json.dumps(raw)) if isinstance(raw, dict) and _json_safe(raw) else raw
        )
    payload.append({"user": "good", "item": "last"})
    # bytes and NaN do not survive RQ's JSON serializer, so this batch goes straight to the
    # handler; a JSON-safe copy goes through RQ below.
    outcome = EventHandler(redis_conn, settings).handle("mixed", payload)
    assert outcome.events == len(MALFORMED) + 1
    assert outcome.dead_letters == len(MALFORMED)
    letters = DeadLetterStore(redis_conn).recent(limit=0)
    assert sorted(d.field for d in letters) == sorted(field for _, _, field in MALFORMED)
    assert all(d.batch_id == "mixed" and "got" in d.reason for d in letters)
    good = HistoryStore(redis_conn, settings).get("good")
    assert len(good.interactions) == len(MALFORMED) + 1

    serialisable = [p for p in payload if _json_safe(p)]
    queue(redis_conn).enqueue(JOB_FUNCTION, "mixed-rq", serialisable)
    drain(redis_conn, settings)
    counts = read_counts(redis_conn)
    assert counts.events_applied == 2 * (len(MALFORMED) + 1)
    assert counts.dead_letters == len(MALFORMED) + len([p for p in serialisable if _is_bad(p)])


@pytest.mark.parametrize(
    ("batch_id", "events"),
    [
        ("b", "not a list"),
        ("b", {"user": "u", "item": "i"}),
        (None, [{"user": "u", "item": "i"}]),
        ("", 42),
    ],
)
def test_malformed_batches_never_crash_the_worker(
    redis_conn: redis.Redis, settings: Settings, batch_id: Any, events: Any
) -> None:
    job = queue(redis_conn).enqueue(JOB_FUNCTION, batch_id, events)
    drain(redis_conn, settings)
    assert job.get_status(refresh=True).value == "finished"
    counts = read_counts(redis_conn)
    valid = [e for e in events if not _is_bad(e)] if isinstance(events, list) else []
    assert counts.events_applied == len(valid)
    assert counts.dead_letters == (len(events) - len(valid) if isinstance(events, list) else 1)
    # a redelivery of a batch without an id is still recognised by its content
    queue(redis_conn).enqueue(JOB_FUNCTION, batch_id, events)
    drain(redis_conn, settings)
    assert read_counts(redis_conn).batches_applied == 1


def test_newest_rating_wins_whatever_the_arrival_order(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    validator = EventValidator(settings)
    store = HistoryStore(redis_conn, settings)
    new = validator.make("u", "film", 5, "rating", timestamp=200)
    old = validator.make("u", "film", 1, "rating", timestamp=100)
    store.apply("b1", [new])
    store.apply("b2", [old])
    store.apply("b3", [validator.make("u", "film", 3, "play", timestamp=150)])
    history = store.get("u")
    assert history.ratings == {"film": 5.0} and history.interactions == {"film": 3.0}
    assert history.version == 3 and history.last_ts == 200.0
    assert redis_conn.zscore(keys.popularity_key(), "film") == 1.0


def test_kind_weights_scale_additive_events(redis_conn: redis.Redis, settings: Settings) -> None:
    validator = EventValidator(settings)
    store = HistoryStore(redis_conn, settings)
    store.apply("b", [validator.make("u", "x", 2, "purchase"), validator.make("u", "x", 1, "view")])
    expected = 2 * settings.kind_weights["purchase"] + settings.kind_weights["view"]
    assert store.get("u").interactions == {"x": expected}


def test_forget_leaves_no_key_of_the_user(redis_conn: redis.Redis, settings: Settings) -> None:
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for n in range(5):
            producer.send("forget-me", f"item-{n}", 2)
            producer.send("keep-me", f"item-{n}")
        producer.send("forget-me", "item-0", 4, kind="rating")
    queue(redis_conn).enqueue(JOB_FUNCTION, "bad", [{"user": "forget-me", "item": ""}])
    drain(redis_conn, settings)
    assert DeadLetterStore(redis_conn).count() == 1
    store = HistoryStore(redis_conn, settings)
    assert store.forget("forget-me")
    assert DeadLetterStore(redis_conn).scrub_user("forget-me") == 1

    leftovers = []
    for key in redis_conn.scan_iter(match=f"{keys.PREFIX}:*"):
        name = key.decode()
        assert name.startswith(f"{keys.PREFIX}:")
        if "forget-me" in name:
            leftovers.append(name)
        kind = redis_conn.type(key).decode()
        if kind == "hash":
            blob = json.dumps({k.decode(): v.decode() for k, v in redis_conn.hgetall(key).items()})
        elif kind == "zset":
            blob = json.dumps([m.decode() for m in redis_conn.zrange(key, 0, -1)])
        elif kind == "list":
            blob = json.dumps([m.decode() for m in redis_conn.lrange(key, 0, -1)])
        else:
            blob = str(redis_conn.get(key))
        if "forget-me" in blob:
            leftovers.append(f"{name} (value)")
    assert leftovers == []
    assert store.get("keep-me").interactions == {f"item-{n}": 1.0 for n in range(5)}
    assert redis_conn.zscore(keys.popularity_key(), "item-0") == 1.0
    assert not store.forget("forget-me")


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def _is_bad(raw: Any) -> bool:
    try:
        EventValidator(Settings()).parse(raw)
        return False
    except InvalidEventError:
        return True


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_recovered(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    q = queue(redis_conn)
    q.enqueue(JOB_FUNCTION, "b-lost", [{"user": "u", "item": "i"}])
    # What a worker's dequeue does (BLMOVE to the intermediate list) before it dies, unseen.
    redis_conn.lmove(q.key, q.intermediate_queue_key, "LEFT", "RIGHT")
    assert q.count == 0
    drain(redis_conn, settings)
    assert HistoryStore(redis_conn, settings).get("u").interactions == {"i": 1.0}
    assert redis_conn.llen(q.intermediate_queue_key) == 0
