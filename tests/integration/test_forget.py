"""Forget is complete and exact: every copy goes, no worker writes the user back, nobody
else is touched, and an unknown user changes nothing."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import redis
from click.testing import CliRunner
from rq.registry import FailedJobRegistry

from streamrec import keys
from streamrec.cli import cli
from streamrec.events import EventValidator
from streamrec.producer import JOB_FUNCTION, Producer
from streamrec.serving.registry import names
from streamrec.settings import Settings
from streamrec.state.deadletters import DeadLetterStore
from streamrec.state.erasure import forget_user
from streamrec.state.histories import HistoryStore
from streamrec.state.queues import queue
from streamrec.worker.jobs import prepare
from tests.integration.helpers import deferring_handler, drain

MODELS = names()


def everything(conn: redis.Redis) -> dict[str, Any]:
    """Every key and value of the database (RQ's included)."""
    out: dict[str, Any] = {}
    for key in sorted(conn.scan_iter(match="*")):
        kind = conn.type(key).decode()
        if kind == "hash":
            out[key.decode()] = conn.hgetall(key)
        elif kind == "zset":
            out[key.decode()] = conn.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[key.decode()] = conn.lrange(key, 0, -1)
        elif kind == "set":
            out[key.decode()] = sorted(conn.smembers(key))
        else:
            out[key.decode()] = conn.get(key)
    return out


def job_events(conn: redis.Redis, job_id: str) -> list[Any]:
    data = json.loads(zlib.decompress(conn.hget(f"rq:job:{job_id}", "data")))
    return list(data[2][1])


def test_a_deferred_refresh_does_not_write_a_forgotten_user_back(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    handler, online = deferring_handler(redis_conn, settings)  # as if more batches waited
    validator = EventValidator(settings)
    items = sorted(trained)[:3]
    handler.handle("b1", [validator.make("gone", i, 2).to_dict() for i in items])
    assert online.pending == 1
    assert redis_conn.hget(keys.unserved_key(), "b1") == b"gone"
    assert forget_user(redis_conn, settings, "gone", MODELS).existed
    assert redis_conn.hget(keys.unserved_key(), "b1") is None  # the user's line went
    online.flush()  # the worker serves what it deferred, after the forget
    assert redis_conn.get(keys.recommendations_key("gone", "als")) is None
    assert not redis_conn.exists(keys.user_version_key("gone"))


def test_queued_and_failed_payloads_are_scrubbed_and_never_recreate_the_user(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    with Producer(settings, connection=redis_conn, linger=0, batch_size=4) as producer:
        for n in range(8):
            producer.send("gone", f"i{n}", 1)
            producer.send("stays", f"i{n}", 1)
    q = queue(redis_conn)
    ids = q.job_ids
    failed = FailedJobRegistry(queue=q)
    redis_conn.lrem(q.key, 0, ids[0])
    redis_conn.zadd(failed.key, {ids[0]: time.time() + 3600})  # as if it had failed

    report = forget_user(redis_conn, settings, "gone", MODELS)
    assert (report.queued_events, report.existed) == (8, False) and report.found
    for job_id in ids:
        events = job_events(redis_conn, job_id)
        assert events and all(e["user"] == "stays" for e in events)
    drain(redis_conn, settings)
    store = HistoryStore(redis_conn, settings)
    assert store.get("gone").version == 0 and store.get("gone").interactions == {}
    assert len(store.get("stays").interactions) == 6  # the failed job's two stay failed


def test_a_batch_a_worker_took_before_the_forget_is_dropped_when_it_runs(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    validator = EventValidator(settings)
    handler = prepare(redis_conn, settings)
    handler.handle("b1", [validator.make("gone", "a", 1).to_dict()])
    sent = time.time()  # the next batch is sent now, and taken by a worker
    time.sleep(0.01)
    forget_user(redis_conn, settings, "gone", MODELS)
    batch = [validator.make(u, "b", 1).to_dict() for u in ("gone", "stays")]
    handler.handle("b2", batch, sent_at=sent)
    store = HistoryStore(redis_conn, settings)
    assert store.get("gone").interactions == {} and store.get("stays").interactions == {"b": 1}
    assert read_counts_dropped(redis_conn) == 1
    # a user who comes back after the forget starts anew
    handler.handle("b3", [validator.make("gone", "c", 1).to_dict()])
    assert store.get("gone").interactions == {"c": 1.0}


def read_counts_dropped(conn: redis.Redis) -> int:
    return int(conn.hget(keys.stats_key(), "dropped_forgotten") or 0)


def test_a_user_back_after_forget_gets_lists_again(
    redis_conn: redis.Redis, settings: Settings, trained: dict[str, int]
) -> None:
    items = sorted(trained)
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        for item in items[:4]:
            producer.send("phoenix", item, 1)
    drain(redis_conn, settings)
    old = json.loads(redis_conn.get(keys.recommendations_key("phoenix", "als")))
    forget_user(redis_conn, settings, "phoenix", MODELS)
    assert redis_conn.get(keys.recommendations_key("phoenix", "als")) is None
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("phoenix", items[10], 1)
    drain(redis_conn, settings)
    new = json.loads(redis_conn.get(keys.recommendations_key("phoenix", "als")))
    assert new["history_version"] == old["history_version"] + 1  # versions never go back
    assert HistoryStore(redis_conn, settings).get("phoenix").interactions == {items[10]: 1.0}


def test_dead_letters_match_the_user_exactly(redis_conn: redis.Redis, settings: Settings) -> None:
    q = queue(redis_conn)
    q.enqueue(JOB_FUNCTION, "bad", [{"user": "o", "item": ""}, {"user": "bob", "item": ""}])
    q.enqueue(JOB_FUNCTION, "text", ['{"user": "o", "item": ""}', "to be or not"])
    drain(redis_conn, settings)
    assert DeadLetterStore(redis_conn).count() == 4
    runner = CliRunner()
    out = runner.invoke(cli, ["forget", "b"], catch_exceptions=False).output
    assert "not known" in out and DeadLetterStore(redis_conn).count() == 4
    out = runner.invoke(cli, ["forget", "o"], catch_exceptions=False).output
    assert "2 dead letters" in out
    left = [letter.payload for letter in DeadLetterStore(redis_conn).recent(0)]
    assert sorted(map(str, left)) == sorted(["to be or not", str({"user": "bob", "item": ""})])


def test_an_unreadable_dead_letter_breaks_neither_forget_nor_the_listing(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    redis_conn.lpush(keys.dead_letters_key(), b"\xff not json", b'["a list"]', b'{"x": 1}')
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("carol", "x", 1)
    drain(redis_conn, settings)
    runner = CliRunner()
    assert "forgot carol" in runner.invoke(cli, ["forget", "carol"], catch_exceptions=False).output
    listing = runner.invoke(cli, ["dead-letters"], catch_exceptions=False)
    assert listing.exit_code == 0 and "unreadable" in listing.output
    assert DeadLetterStore(redis_conn).count() == 3


def test_forgetting_an_unknown_user_changes_nothing(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("someone", "x", 1)
        producer.send("other", "x", 1)
    drain(redis_conn, settings)
    with Producer(settings, connection=redis_conn, linger=0) as producer:
        producer.send("queued", "y", 1)
    before = everything(redis_conn)
    report = forget_user(redis_conn, settings, "nobody", MODELS)
    assert not report.found
    assert everything(redis_conn) == before
